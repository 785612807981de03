"""A look: what an object or collection is (its prompt, negative, weight, base colour and
reference images), defined once for the add-on's panels, looks files, character bank and
export, and for the server, which checks shot.json's regions against the same limits."""

from __future__ import annotations

from dataclasses import dataclass

MAX_LOOKS = 16  # one text encoding and one mask per look per layer
NAME_MAX = 128  # an object or collection name, as Blender allows it (63) with room to spare
TEXT_MAX = 2000  # prompt and negative, as a shot's own prompt
WEIGHT_MIN, WEIGHT_MAX = 0.05, 4.0  # 1 = as strongly as the shot's prompt steers its pixels


@dataclass(frozen=True)
class Look:
    name: str
    prompt: str
    negative: str = ""
    weight: float = 1.0
    color: tuple[float, float, float] | None = None  # base colour for the preview engine
    references: tuple[tuple[str, float], ...] = ()  # (image path, weight)

    def problems(self) -> list[str]:
        """Every limit this look breaks, as 'field: what is wrong' (empty: none)."""
        out = []
        if not self.prompt.strip():
            out.append("prompt: a look needs a prompt (what this object is)")
        for field in ("prompt", "negative"):
            if len(getattr(self, field)) > TEXT_MAX:
                out.append(f"{field}: longer than {TEXT_MAX} characters")
        if not WEIGHT_MIN <= self.weight <= WEIGHT_MAX:
            out.append(f"weight: {self.weight} is not between {WEIGHT_MIN} and {WEIGHT_MAX}")
        if self.color is not None and not all(0.0 <= c <= 1.0 for c in self.color):
            out.append("color: channels must be between 0 and 1")
        return out

    def region(self, region_id: int) -> dict:
        """Its entry in shot.json's regions table (references travel as settings)."""
        entry = {
            "id": region_id,
            "name": self.name,
            "prompt": self.prompt,
            "negative": self.negative,
            "weight": self.weight,
        }
        if self.color is not None:
            entry["color"] = list(self.color)
        return entry

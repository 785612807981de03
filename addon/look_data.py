"""A look as plain data (no bpy): what the .blend's look panels, a looks file and the
character bank each hold, in one shape."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Look:
    name: str
    prompt: str
    negative: str = ""
    weight: float = 1.0
    color: tuple[float, float, float] | None = None
    references: tuple[tuple[str, float], ...] = ()  # (image path, weight)

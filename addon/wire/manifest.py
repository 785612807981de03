"""shot.json, written by the add-on and read by both sides.

Reading is strict because the server reads untrusted text: NaN and Infinity (which
Python's json accepts by default) are refused, too-deep nesting is an error rather than a
crash, and anything that is not a StoryShade shot is named as such. The field-by-field
schema and its limits live with the server's validator (backend/storyshade/bundle.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .layout import FORMAT, MANIFEST


class ManifestError(ValueError):
    """shot.json cannot be read: the problem, how to fix it, and where."""

    def __init__(self, problem: str, fix: str, field: str = "shot.json") -> None:
        super().__init__(problem)
        self.problem, self.fix, self.field = problem, fix, field


def reject_constant(name: str) -> float:
    """json.loads' parse_constant: NaN and Infinity are not JSON numbers."""
    raise ValueError(f"{name} is not a JSON number")


def loads(raw: bytes | str) -> dict[str, Any]:
    """shot.json text as a dict, refused unless it is a StoryShade shot."""
    try:
        data = json.loads(raw, parse_constant=reject_constant)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise ManifestError(
            f"shot.json is not valid JSON ({reason})",
            "re-export the shot from Blender (StoryShade > Export)",
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ManifestError(
            f"this is not a StoryShade shot bundle (shot.json has no format '{FORMAT}')",
            "point at a folder written by the add-on's export",
            field="shot.json:format",
        )
    return data


def read(folder: Path) -> dict[str, Any]:
    return loads((Path(folder) / MANIFEST).read_bytes())


def write(folder: Path, shot: dict[str, Any]) -> Path:
    """Write `shot` as the folder's shot.json (NaN refused, so the server can read it)."""
    path = Path(folder) / MANIFEST
    path.write_text(json.dumps(shot, indent=1, allow_nan=False), encoding="utf-8")
    return path

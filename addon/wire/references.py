"""Reference images as both command lines take them (`--reference IMG[:WEIGHT][@LOOK]`,
in `storyshade render` and in Blender's `-c storyshade shade`) and their shared limit."""

from __future__ import annotations

from pathlib import Path

MAX_REFERENCES = 4  # per job: each is an image encoding and extra attention keys


def parse_reference_arg(text: str, base: Path | None = None) -> dict:
    """{"image", "weight"?, "look"?}; a relative image path is taken from `base` (default:
    the current folder). A ':' that does not end in a number is part of the path."""
    out: dict = {}
    head, sep, look = text.rpartition("@")
    if sep and head and look and "/" not in look and "\\" not in look:
        out["look"] = look
        text = head
    path, weight = text, None
    head, sep, tail = text.rpartition(":")
    if sep and head:
        try:
            weight = float(tail)
            path = head
        except ValueError:
            path = text  # e.g. C:\\... on Windows
    image = Path(path).expanduser()
    result: dict = {"image": str(image if image.is_absolute() else (base or Path.cwd()) / image)}
    if weight is not None:
        result["weight"] = weight
    return {**result, **out}

"""The latest shaded frame as an icon for the panel (bpy.utils.previews: nothing is
added to the .blend, and it works the same in background mode)."""

from __future__ import annotations

from pathlib import Path

import bpy
import bpy.utils.previews

_pcoll = None
_loaded = ""
KEY = "latest"


def create() -> None:
    """The icon collection (registration.py makes it when the add-on is registered)."""
    global _pcoll
    _pcoll = bpy.utils.previews.new()


def remove() -> None:
    global _pcoll, _loaded
    if _pcoll is not None:
        bpy.utils.previews.remove(_pcoll)
    _pcoll, _loaded = None, ""


def icon_for(path: str) -> int:
    """Icon id of the PNG at `path` (loaded once per path); 0 if there is none."""
    global _loaded
    if _pcoll is None or not path or not Path(path).is_file():
        return 0
    if path != _loaded or KEY not in _pcoll:
        _pcoll.clear()
        _pcoll.load(KEY, path, "IMAGE")
        _loaded = path
    return _pcoll[KEY].icon_id


def loaded() -> tuple[str, tuple[int, int]]:
    """The path and pixel size of the loaded preview (icons are 0 in background mode,
    where Blender has no icon system, but the image itself still loads)."""
    if _pcoll is None or KEY not in _pcoll:
        return "", (0, 0)
    return _loaded, tuple(_pcoll[KEY].image_size)

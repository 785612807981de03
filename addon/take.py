"""Takes: each shading run's frames in their own folder, shown as a new image strip."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import bpy

from . import compat

MAX_CHANNEL = 128


def takes_root(shot: str) -> tuple[Path, bool]:
    """`//storyshade/<shot>/` beside the .blend, or a temp folder for an unsaved file.

    Returns (folder, is_temporary) so the caller can tell the user where frames went.
    """
    if bpy.data.filepath:
        return Path(bpy.path.abspath("//storyshade")) / shot, False
    return Path(tempfile.gettempdir()) / "storyshade" / shot, True


def next_take_dir(shot: str) -> tuple[Path, str, bool]:
    root, temporary = takes_root(shot)
    numbers = [
        int(m.group(1))
        for p in (root.iterdir() if root.is_dir() else [])
        if (m := re.fullmatch(r"take_(\d+)", p.name))
    ]
    name = f"take_{max(numbers, default=0) + 1:03d}"
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder, name, temporary


def _overlaps(strip, start: int, end: int) -> bool:
    return strip.frame_final_start <= end and strip.frame_final_end > start


def free_channel(scene, start: int, end: int, shot: str) -> int:
    """Lowest channel above this shot's earlier takes with nothing in [start, end]."""
    ed = scene.sequence_editor
    if ed is None:
        return 1
    strips = list(compat.all_strips(ed))
    floor = max(
        (s.channel for s in strips if s.get("storyshade_shot") == shot),
        default=0,
    )
    for channel in range(floor + 1, MAX_CHANNEL + 1):
        if not any(s.channel == channel and _overlaps(s, start, end) for s in strips):
            return channel
    raise RuntimeError("no free Video Sequence Editor channel for this take")


def add_take_strip(scene, folder: Path, frames: list[int], shot: str, take: str, info: dict):
    """An image strip of `folder/NNNN.png`, one element per frame, at the shot's frames."""
    ed = scene.sequence_editor or scene.sequence_editor_create()
    start, end = frames[0], frames[-1]
    channel = free_channel(scene, start, end, shot)
    names = [f"{f:04d}.png" for f in frames]
    strip = compat.strips(ed).new_image(
        name=f"{shot}_{take}",
        filepath=str(folder / names[0]),
        channel=channel,
        frame_start=start,
    )
    for name in names[1:]:
        strip.elements.append(name)
    strip["storyshade_shot"] = shot
    strip["storyshade_take"] = take
    for key, value in info.items():
        strip[f"storyshade_{key}"] = (
            value if isinstance(value, (int, float, str)) else json.dumps(value)
        )
    return strip

"""Takes: each shading run's frames in their own folder, shown as a new image strip.

A take strip is named `<shot>_take_NNN`, sits on the first free channel above the shot's
earlier takes (so no run ever overwrites another), and carries the run's settings as
`storyshade_*` custom properties so it can be compared with, or re-run as, another take.
"""

from __future__ import annotations

import glob
import json
import re
import tempfile
import time
from pathlib import Path

import bpy

from .. import compat
from ..errors import StoryShadeError
from ..wire.layout import frame_name

MAX_CHANNEL = 128
DEFAULT_PATTERN = "//storyshade/{shot}/{take}"
KEEP, REPLACE = "KEEP", "REPLACE"
_INT32 = 2**31 - 1


def take_name(number: int) -> str:
    return f"take_{number:03d}"


def take_number(name: str) -> int | None:
    m = re.fullmatch(r"take_(\d+)", name or "")
    return int(m.group(1)) if m else None


def _format(
    pattern: str, shot: str, take: str, scene_name: str, blend_path: str | None = None
) -> tuple[str, bool]:
    """The pattern with its tokens filled, absolute; True if it had to go to a temp folder.
    `blend_path`: the .blend it is for (default: the open file)."""
    pattern = (pattern or DEFAULT_PATTERN).strip()
    if "{take}" not in pattern:  # every take needs its own folder, or runs overwrite each other
        pattern = pattern.rstrip("/\\") + "/{take}"
    blend_path = bpy.data.filepath if blend_path is None else blend_path
    blend = Path(blend_path).stem if blend_path else "untitled"
    text = pattern.format_map(
        {"shot": shot, "take": take, "scene": re.sub(r"[^\w.-]+", "_", scene_name), "blend": blend}
    )
    temporary = False
    if text.startswith("//"):
        if blend_path:
            text = str(Path(blend_path).parent / text[2:])
        else:
            text = str(Path(tempfile.gettempdir()) / text[2:])
            temporary = True
    return str(Path(text).expanduser()), temporary


def takes_root(
    shot: str, pattern: str = DEFAULT_PATTERN, scene_name: str = ""
) -> tuple[Path, bool]:
    """The folder holding the shot's take folders (for the default pattern,
    `//storyshade/<shot>/`), or a temp folder for an unsaved file."""
    folder, temporary = _format(pattern, shot, take_name(1), scene_name)
    return Path(folder).parent, temporary


def shot_strips(scene, shot: str) -> list:
    ed = scene.sequence_editor
    if ed is None:
        return []
    return [s for s in compat.all_strips(ed) if s.get("storyshade_shot") == shot]


def next_take_dir(
    shot: str, pattern: str = DEFAULT_PATTERN, scene=None, blend_path: str | None = None
) -> tuple[Path, str, bool]:
    """Create the next take's folder: one past every take on disk or in the sequencer
    (`blend_path`: of the .blend being saved there; default: the open file)."""
    scene_name = scene.name if scene is not None else ""
    marker = "\x00"
    probe, temporary = _format(pattern, shot, marker, scene_name, blend_path)
    head, _, tail = probe.partition(marker)
    matcher = re.compile(re.escape(head) + r"take_(\d+)" + re.escape(tail))
    used = {
        int(m.group(1))
        for p in glob.glob(glob.escape(head) + "take_*" + glob.escape(tail))
        if (m := matcher.fullmatch(p))
    }
    if scene is not None:
        used |= {
            n for s in shot_strips(scene, shot) if (n := take_number(s.get("storyshade_take", "")))
        }
    name = take_name(max(used, default=0) + 1)
    folder = Path(_format(pattern, shot, name, scene_name, blend_path)[0])
    folder.mkdir(parents=True, exist_ok=True)
    return folder, name, temporary


def take_dir(shot: str, take: str, pattern: str, scene, blend_path: str) -> tuple[Path, str]:
    """Create the folder for take `take` of `shot` beside `blend_path`, or, where that one
    exists already, the next free take's."""
    folder = Path(_format(pattern, shot, take, scene.name, blend_path)[0])
    if folder.exists():
        folder, take, _ = next_take_dir(shot, pattern, scene, blend_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder, take


def blend_relative(path: Path) -> str:
    """`//...` relative to the saved .blend, so a copied or moved project still finds its
    takes; absolute for an unsaved file or another drive (Windows), where no `//` exists."""
    if not bpy.data.filepath:
        return str(path)
    try:
        return bpy.path.relpath(str(path))
    except ValueError:  # another drive: no relative path
        return str(path)


def _overlaps(strip, start: int, end: int) -> bool:
    return strip.frame_final_start <= end and strip.frame_final_end > start


def free_channel(scene, start: int, end: int, shot: str, floor: int | None = None) -> int:
    """Lowest channel above this shot's earlier takes with nothing in [start, end]."""
    ed = scene.sequence_editor
    if ed is None:
        return max(1, (floor or 0) + 1)
    strips = list(compat.all_strips(ed))
    if floor is None:
        floor = max((s.channel for s in strips if s.get("storyshade_shot") == shot), default=0)
    for channel in range(floor + 1, MAX_CHANNEL + 1):
        if not any(s.channel == channel and _overlaps(s, start, end) for s in strips):
            return channel
    raise StoryShadeError(
        f"no free sequencer channel for frames {start}-{end} (all {MAX_CHANNEL} are used)",
        "delete or move old take strips, or use 'Replace' for takes",
    )


def _remove_earlier_takes(scene, shot: str, start: int, end: int) -> int | None:
    """Replace mode: drop the shot's take strips over these frames (their files stay on
    disk); returns the lowest channel they used, where the new take goes."""
    old = [s for s in shot_strips(scene, shot) if _overlaps(s, start, end)]
    if not old:
        return None
    lowest = min(s.channel for s in old)
    strips = compat.strips(scene.sequence_editor)
    for strip in old:
        strips.remove(strip)
    return lowest


def _idprop(value):
    """Custom properties hold int/float/str; others go in as JSON text."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and -_INT32 - 1 <= value <= _INT32:
        return value
    if isinstance(value, float | str):
        return value
    return json.dumps(value)


def add_take_strip(
    scene,
    folder: Path,
    frames: list[int],
    shot: str,
    take: str,
    info: dict,
    mode: str = KEEP,
):
    """An image strip of `folder/NNNN.png`, one element per frame, at the shot's frames.

    `info` becomes `storyshade_<key>` custom properties; its "settings" dict (what was sent
    to the server) is also unpacked into preset/seed/prompt/negative_prompt properties.
    """
    ed = scene.sequence_editor or scene.sequence_editor_create()
    start, end = frames[0], frames[-1]
    channel = None
    if mode == REPLACE:
        lowest = _remove_earlier_takes(scene, shot, start, end)
        if lowest is not None:
            channel = free_channel(scene, start, end, shot, floor=lowest - 1)
    if channel is None:
        channel = free_channel(scene, start, end, shot)
    names = [frame_name(f) for f in frames]
    strip = compat.strips(ed).new_image(
        name=f"{shot}_{take}",
        filepath=blend_relative(Path(folder) / names[0]),
        channel=channel,
        frame_start=start,
    )
    for name in names[1:]:
        strip.elements.append(name)
    settings = dict(info.get("settings") or {})
    props = {
        "shot": shot,
        "take": take,
        "folder": blend_relative(folder),
        "frame_start": start,
        "frame_end": end,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "preset": settings.get("preset", ""),
        "seed": settings.get("seed", 0),
        "prompt": settings.get("prompt", ""),
        "negative_prompt": settings.get("negative_prompt", ""),
        **info,
    }
    for key, value in props.items():
        strip[f"storyshade_{key}"] = _idprop(value)
    return strip


def strip_settings(strip) -> dict:
    """The settings a take was shaded with (what to send again to re-run it)."""
    raw = strip.get("storyshade_settings", "")
    try:
        data = json.loads(raw) if isinstance(raw, str) and raw else {}
    except ValueError:
        data = {}
    return data if isinstance(data, dict) else {}

"""Re-shading frames A-B of a take: the plan, the held frames, and the completed take.

Only A-B are generated again. The earlier take's frames around them travel in the bundle as
held frames (a margin of half a context window on each side, so the windows that cross the
boundary see them), and the new take folder gets byte-identical copies of every frame
outside A-B: the new take shares the untouched frames and differs only where it was asked to.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from .. import compat
from ..errors import StoryShadeError
from ..wire import manifest as shot_json
from ..wire.layout import VERSION, frame_name, take_file
from . import take

DEFAULT_CONTEXT = 16  # frames per context window when the settings do not say


@dataclass
class Reshade:
    """Which take, which frames, and what to copy where."""

    strip: str
    shot: str
    take: str
    folder: Path
    take_frames: list[int]
    start: int
    end: int
    settings: dict = field(default_factory=dict)
    margin: int = DEFAULT_CONTEXT // 2
    regions: list[dict] = field(default_factory=list)  # the looks the take was shaded with

    @property
    def frames(self) -> list[int]:
        """The frames generated again."""
        return list(range(self.start, self.end + 1))

    @property
    def span(self) -> tuple[int, int]:
        """The frames exported and sent: A-B and up to `margin` held frames on each side."""
        first, last = self.take_frames[0], self.take_frames[-1]
        return max(first, self.start - self.margin), min(last, self.end + self.margin)

    @property
    def untouched(self) -> list[int]:
        return [f for f in self.take_frames if not self.start <= f <= self.end]


def take_strips(scene) -> list:
    ed = scene.sequence_editor
    return [s for s in compat.all_strips(ed) if s.get("storyshade_take")] if ed else []


def find_take(scene, name: str):
    """The take strip called `name` (its strip name, or `take_NNN` when one shot has it)."""
    strips = take_strips(scene)
    exact = [s for s in strips if s.name == name]
    if not exact:
        exact = [s for s in strips if s.get("storyshade_take") == name]
    if len(exact) == 1:
        return exact[0]
    known = ", ".join(sorted(s.name for s in strips)) or "none"
    if exact:
        raise StoryShadeError(
            f"'{name}' names {len(exact)} takes ({', '.join(s.name for s in exact)})",
            "give the take strip's full name",
        )
    raise StoryShadeError(
        f"no take strip '{name}' in scene '{scene.name}' (takes: {known})",
        "give a take strip's name as the Sequencer shows it",
    )


def take_regions(strip) -> list[dict]:
    """The looks a take was shaded with (the regions table stored on its strip)."""
    raw = strip.get("storyshade_looks", "")
    try:
        data = json.loads(raw) if isinstance(raw, str) and raw else []
    except ValueError:
        data = []
    return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []


def plan(
    scene,
    name: str,
    start: int,
    end: int,
    overrides: dict | None = None,
    settings: dict | None = None,
) -> Reshade:
    """Check the take and the range before any export: every problem named up front.
    The frames are shaded with the take's own settings changed by `overrides`, or with
    `settings` instead when given (the sidebar's: the user asked for them)."""
    strip = find_take(scene, name)
    first = int(strip.get("storyshade_frame_start", strip.frame_final_start))
    last = int(strip.get("storyshade_frame_end", strip.frame_final_end - 1))
    if start > end:
        raise StoryShadeError(f"frames {start}-{end}: the range ends before it starts")
    if start < first or end > last:
        raise StoryShadeError(
            f"frames {start}-{end} are outside take {strip.name} (its frames are {first}-{last})",
            f"pick frames within {first}-{last}",
        )
    folder = Path(bpy.path.abspath(strip.get("storyshade_folder", "")))
    if settings is None:
        settings = {**take.strip_settings(strip), **(overrides or {})}
    context = settings.get("context_length", DEFAULT_CONTEXT)
    context = context if isinstance(context, int) and context > 0 else DEFAULT_CONTEXT
    reshade = Reshade(
        strip=strip.name,
        shot=str(strip.get("storyshade_shot", "")),
        take=str(strip.get("storyshade_take", "")),
        folder=folder,
        take_frames=list(range(first, last + 1)),
        start=start,
        end=end,
        settings=settings,
        margin=max(2, context // 2),
        regions=take_regions(strip),
    )
    if start == first and end == last:
        raise StoryShadeError(
            f"frames {start}-{end} are the whole take {strip.name}; nothing would be kept",
            "shade the shot again instead, or pick fewer frames",
        )
    missing = [f for f in reshade.untouched if not (folder / frame_name(f)).is_file()]
    if missing:
        shown = ", ".join(map(str, missing[:8])) + (" ..." if len(missing) > 8 else "")
        raise StoryShadeError(
            f"take {strip.name} is missing {len(missing)} frame(s) on disk ({shown}) in {folder}",
            "restore the take's folder, or shade the shot again",
        )
    return reshade


def hold_frames(bundle_dir: Path, reshade: Reshade) -> None:
    """Turn an exported bundle of the span into a re-shade bundle: every frame outside A-B
    names the earlier take's picture of it (version 3)."""
    shot = shot_json.read(bundle_dir)
    for entry in shot["frames"]:
        frame = entry["frame"]
        if reshade.start <= frame <= reshade.end:
            continue
        entry["take"] = take_file(frame)
        target = bundle_dir / entry["take"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(reshade.folder / frame_name(frame), target)
    shot["version"] = VERSION
    shot_json.write(bundle_dir, shot)


def complete_take(folder: Path, reshade: Reshade) -> None:
    """Copy the untouched frames into the new take's folder, byte for byte."""
    for frame in reshade.untouched:
        name = frame_name(frame)
        shutil.copyfile(reshade.folder / name, Path(folder) / name)

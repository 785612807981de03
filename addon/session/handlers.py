"""What StoryShade does when Blender saves or loads a file (registration.py hands these
to bpy.app.handlers).

- Saving: takes shaded before the first save move beside the .blend (takes/unsaved.py), and
  the sidebar's "the .blend is not saved" note goes.
- Loading: what the sidebar said about the last file goes (runtime.Status is not saved).
"""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.app.handlers import persistent

from ..export import background
from ..settings import prefs
from ..takes import take, unsaved
from . import runtime

_moved: list[unsaved.Moved] = []  # by the save under way (save_pre to save_post)


def busy_folders() -> set[Path]:
    """Take folders a run is still writing into."""
    runs = [runtime.current, getattr(runtime.sequence, "current", None)]
    return {Path(r.run.folder) for r in runs if r is not None and r.running and r.run}


@persistent
def save_pre(filepath: str = "", *_args) -> None:
    if background.saving_copy or not filepath:
        return  # the add-on's own copy for a background export: no user's save
    pattern = prefs.value("output_pattern", default=take.DEFAULT_PATTERN)
    try:
        _moved[:] = unsaved.move_beside(filepath, pattern, busy_folders())
    except OSError as exc:  # a save must never fail for this: the takes stay where they are
        print(f"StoryShade: could not move the takes beside {filepath}: {exc}")
        _moved.clear()


@persistent
def save_post(filepath: str = "", *_args) -> None:
    if background.saving_copy or not filepath:
        return
    if bpy.data.filepath != filepath:  # Save Copy: the open file is not the one saved
        unsaved.point_absolute(_moved)
    else:
        runtime.forget_unsaved_notes()
    for entry in _moved:  # "Take untitled_take_001 added" names what is now first_take_001
        runtime.take_moved(entry.renamed, str(entry.old), str(entry.new))
    _moved.clear()


@persistent
def load_post(*_args) -> None:
    runtime.clear()

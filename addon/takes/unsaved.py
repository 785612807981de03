"""Takes shaded before the .blend's first save: moved beside it when it is saved.

An unsaved file has no `//`, so its takes go to the temporary folder
(`<tmp>/storyshade/untitled/take_001/`) and their strips point there by absolute path: a
project moved after *Save As* lost every frame. When the file is saved (session/handlers.py,
on `save_pre`, before Blender writes it) each such take moves to where takes of the saved
file go (the Output Folder pattern, by default `//storyshade/<shot>/<take>/`) and its strip
points there relative to the .blend, as takes shaded after saving do. The shot called
`untitled` after the unsaved file is renamed after the saved one, so later takes of the
shot continue its numbering on the channels above.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import bpy

from .. import compat
from ..export import bundle
from . import take
from .run import JOB_RECORD

TEMPORARY = "storyshade_temporary"  # a take strip's flag: its folder is the temporary one


@dataclass
class Moved:
    strip_names: list[tuple[str, str]]  # (scene, strip) pointing at the take
    old: Path
    new: Path
    renamed: dict[str, str]  # strip names before the move → after


def temporary_strips() -> list:
    """Every take strip, in every scene, whose frames are in the temporary folder."""
    out = []
    for scene in bpy.data.scenes:
        if scene.sequence_editor is not None:
            out += [s for s in compat.all_strips(scene.sequence_editor) if s.get(TEMPORARY)]
    return sorted(out, key=lambda s: (s.get("storyshade_shot", ""), s.get("storyshade_take", "")))


def _relative(path: Path, blend_path: str) -> str:
    try:
        return bpy.path.relpath(str(path), start=str(Path(blend_path).parent))
    except ValueError:  # another drive (Windows): no relative path
        return str(path)


def _point(strip, folder: str, shot: str, name: str) -> None:
    strip.directory = folder.rstrip("/\\") + "/"
    strip["storyshade_folder"] = folder
    strip["storyshade_shot"], strip["storyshade_take"] = shot, name
    strip.name = f"{shot}_{name}"


def _move_files(old: Path, new: Path, shot: str, name: str) -> None:
    for path in old.iterdir():
        shutil.move(str(path), str(new / path.name))
    old.rmdir()
    record = new / JOB_RECORD
    if record.is_file():  # Reattach reads the shot and take from it
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
            data.update(shot=shot, take=name)
            record.write_text(json.dumps(data, indent=1), encoding="utf-8")
        except (OSError, ValueError):
            pass


def move_beside(blend_path: str, pattern: str, busy: set[Path] = frozenset()) -> list[Moved]:
    """Move the temporary takes to where takes of `blend_path` go and point their strips
    there, relative to it. Folders in `busy` (a run still writing) stay where they are."""
    moved: dict[Path, Moved] = {}
    for strip in temporary_strips():
        scene = strip.id_data
        old = Path(bpy.path.abspath(strip.get("storyshade_folder", "")))
        before = strip.name
        if old in moved:  # a second strip of the same take
            done = moved[old]
            _point(strip, _relative(done.new, blend_path), *_names(strip, done))
            done.renamed[before] = strip.name
            done.strip_names.append((scene.name, strip.name))
            del strip[TEMPORARY]
            continue
        if old in busy or not old.is_dir():
            continue
        shot = str(strip.get("storyshade_shot", ""))
        if shot == bundle.shot_name(scene, ""):  # named after the unsaved file
            shot = bundle.shot_name(scene, blend_path)
        folder, name = take.take_dir(
            shot, str(strip.get("storyshade_take")), pattern, scene, blend_path
        )
        _move_files(old, folder, shot, name)
        _point(strip, _relative(folder, blend_path), shot, name)
        del strip[TEMPORARY]
        moved[old] = Moved([(scene.name, strip.name)], old, folder, {before: strip.name})
    return list(moved.values())


def _names(strip, done: Moved) -> tuple[str, str]:
    scene_name, strip_name = done.strip_names[0]
    first = compat.all_strips(bpy.data.scenes[scene_name].sequence_editor)[strip_name]
    return str(first["storyshade_shot"]), str(first["storyshade_take"])


def point_absolute(moved: list[Moved]) -> None:
    """The file saved was a copy (the open file is still unsaved or elsewhere): the takes
    stay where they went, beside the copy, and the open file's strips point there by
    absolute path (the copy has them relative)."""
    for entry in moved:
        for scene_name, strip_name in entry.strip_names:
            scene = bpy.data.scenes.get(scene_name)
            editor = scene.sequence_editor if scene else None
            strip = compat.all_strips(editor).get(strip_name) if editor else None
            if strip is not None:
                _point(strip, str(entry.new), strip["storyshade_shot"], strip["storyshade_take"])

"""Where a finished take ends up: visible in a Sequencer (Blender 5's per-workspace
sequencer scene) and findable after the project folder is moved (`//` paths)."""

from __future__ import annotations

import shutil
from pathlib import Path

import bpy
import pytest
from test_addon_helpers import FakeClient, disable_prefs, ensure_registered, new_scene

from addon import compat
from addon.session import runtime
from addon.session.shade import DONE, ShadeRequest, ShadeSession
from addon.takes import take

NEEDS_5 = pytest.mark.skipif(
    not compat.has_sequencer_scene(), reason="Blender 5.0+ only: per-workspace sequencer scene"
)


@pytest.fixture(autouse=True)
def registered():
    ensure_registered()
    yield
    runtime.current = None
    disable_prefs()
    bpy.ops.wm.read_factory_settings(use_empty=True)


def _shade(scene, pattern: str) -> ShadeSession:
    """A whole run against a scripted server (real export, real take placement)."""
    fake = FakeClient()
    request = ShadeRequest(settings={"preset": "preview"}, output_pattern=pattern)
    session = ShadeSession(scene, fake, request).run_blocking(poll=0.05)
    assert session.outcome == DONE, session.log
    return session


def _strip(scene, session: ShadeSession):
    return compat.all_strips(scene.sequence_editor)[session.strip_name]


@NEEDS_5
def test_take_in_a_scene_no_sequencer_shows_becomes_visible(tmp_path: Path) -> None:
    scene = new_scene(frames=2)
    assert all(ws.sequencer_scene is None for ws in bpy.data.workspaces)
    session = _shade(scene, str(tmp_path / "{shot}" / "{take}"))
    assert compat.sequencer_shows(scene)
    assert bpy.context.workspace.sequencer_scene == scene
    assert "Sequencer shows another scene" not in session.note


@NEEDS_5
def test_a_chosen_sequencer_scene_is_kept_and_the_fix_is_one_click(tmp_path: Path) -> None:
    scene = new_scene(frames=2)
    edit = bpy.data.scenes.new("Edit")
    for ws in bpy.data.workspaces:
        ws.sequencer_scene = edit  # the user edits in another scene everywhere
    session = _shade(scene, str(tmp_path / "{shot}" / "{take}"))
    assert bpy.context.workspace.sequencer_scene == edit
    assert f"pick '{scene.name}'" in session.note and "Show Takes in Sequencer" in session.note
    with bpy.context.temp_override(scene=scene):
        assert bpy.ops.storyshade.show_in_sequencer() == {"FINISHED"}
    assert bpy.context.workspace.sequencer_scene == scene


def test_before_5_every_scene_is_shown() -> None:
    scene = new_scene(frames=2)
    if compat.has_sequencer_scene():
        pytest.skip("5.x: covered above")
    assert compat.sequencer_shows(scene) and compat.show_in_sequencer(scene)
    assert not bpy.ops.storyshade.show_in_sequencer.poll()


def test_saved_project_moved_elsewhere_still_finds_its_takes(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    scene = new_scene(frames=2)
    blend = project / "board.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    scene = bpy.context.scene
    session = _shade(scene, take.DEFAULT_PATTERN)
    strip = _strip(scene, session)
    assert strip.directory.startswith("//storyshade/"), strip.directory
    assert strip["storyshade_folder"].startswith("//storyshade/")
    bpy.ops.wm.save_mainfile()
    bpy.ops.wm.read_factory_settings(use_empty=True)

    moved = tmp_path / "elsewhere" / "copy"
    moved.parent.mkdir()
    shutil.move(str(project), str(moved))
    bpy.ops.wm.open_mainfile(filepath=str(moved / "board.blend"))
    scene = bpy.context.scene
    (strip,) = [s for s in compat.all_strips(scene.sequence_editor) if s.get("storyshade_take")]
    folder = Path(bpy.path.abspath(strip.directory))
    assert folder.resolve() == (moved / "storyshade" / "board" / "take_001").resolve()
    assert [e.filename for e in strip.elements] == ["0001.png", "0002.png"]
    assert all((folder / e.filename).is_file() for e in strip.elements)
    assert Path(bpy.path.abspath(strip["storyshade_folder"])).resolve() == folder.resolve()


def test_unsaved_file_keeps_absolute_paths(tmp_path: Path) -> None:
    scene = new_scene(frames=2)
    session = _shade(scene, str(tmp_path / "{shot}" / "{take}"))
    strip = _strip(scene, session)
    assert Path(strip.directory).is_absolute() and not strip.directory.startswith("//")

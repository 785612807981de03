"""Saving and opening files: takes shaded before the first save move beside the .blend,
and what the sidebar says about a run is never saved (nor shown once its cause is gone).

Shaded in-process with real Cycles exports and a scripted server (FakeClient); the moved
project is opened in a fresh bpy process, as a user opening it the next day would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import bpy
import pytest
from test_addon_helpers import (
    FakeClient,
    disable_prefs,
    enable_prefs,
    ensure_registered,
    new_scene,
)

from addon import compat
from addon.operators import modal
from addon.session import runtime
from addon.session.shade import DONE, FAILED, ShadeRequest, ShadeSession
from addon.settings import props
from addon.ui import sidebar

FRAMES = [1, 2, 3, 4]


@pytest.fixture(autouse=True)
def scene(tmp_path: Path, monkeypatch):
    ensure_registered()
    # An unsaved file's takes go to the system temp folder: this test's own.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "systemp"))
    (tmp_path / "systemp").mkdir()
    scene = new_scene(frames=len(FRAMES))
    enable_prefs()  # the default Output Folder: //storyshade/{shot}/{take}
    yield scene
    runtime.current = None
    disable_prefs()


def _shade(scene, fake: FakeClient | None = None) -> ShadeSession:
    """A whole run as the Shade button makes it, shown in the panel as it goes."""
    fake = fake or FakeClient(frames=FRAMES)
    request = ShadeRequest(settings={"seed": 3}, server_url=fake.url)
    session = ShadeSession(scene, fake, request)
    deadline = time.monotonic() + 120
    while session.running and time.monotonic() < deadline:
        session.tick(wait=0.05)
        modal.show(session, bpy.context)
    modal.show(session, bpy.context)
    return session


def _labels(scene) -> list[str]:
    """The texts the main panel shows."""
    out: list[str] = []

    class Layout:
        def __getattr__(self, name):
            return lambda *a, **k: Layout()

        def __setattr__(self, name, value):
            pass

        def panel(self, *_a, **_k):
            return Layout(), Layout()

        def label(self, text: str = "", **_k):
            out.append(text)

    sidebar.draw(Layout(), SimpleNamespace(scene=scene, region=SimpleNamespace(width=2000)))
    return out


OPEN = """
import json, os, sys, bpy
bpy.ops.wm.open_mainfile(filepath=sys.argv[-1])
out = {}
for scene in bpy.data.scenes:
    editor = scene.sequence_editor
    strips = (editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all) if editor else []
    for s in strips:
        if s.get("storyshade_take"):
            found = [os.path.isfile(bpy.path.abspath(s.directory + e.filename)) for e in s.elements]
            out[s.name] = [s.directory, sum(found), len(found)]
print("FOUND " + json.dumps(out))
"""


def test_takes_of_an_unsaved_file_survive_save_as_and_a_moved_project(scene, tmp_path) -> None:
    session = _shade(scene)
    assert session.outcome == DONE, session.text
    strip = compat.all_strips(scene.sequence_editor)[session.strip_name]
    assert strip.directory.startswith(str(tmp_path / "systemp")), "unsaved: the temp folder"
    assert "not saved" in runtime.status(scene).note

    project = tmp_path / "project"
    project.mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(project / "film.blend"))
    (strip,) = [s for s in compat.all_strips(scene.sequence_editor) if s.get("storyshade_take")]
    # beside the .blend now, relative to it, named after the saved file
    assert strip.directory == "//storyshade/film/take_001/" and strip.name == "film_take_001"
    assert strip["storyshade_folder"] == "//storyshade/film/take_001"
    assert not list((tmp_path / "systemp").rglob("*.png")), "moved, not copied"
    record = json.loads((project / "storyshade/film/take_001/job.json").read_text())
    assert (record["shot"], record["take"]) == ("film", "take_001")
    assert runtime.status(scene).note == "", "the 'not saved' note went with the save"
    assert runtime.status(scene).text.startswith("Take film_take_001 added"), "its new name"
    assert runtime.status(scene).preview_path == str(project / "storyshade/film/take_001/0004.png")
    assert not any("not saved" in text for text in _labels(scene))

    moved = shutil.move(str(project), str(tmp_path / "elsewhere"))
    run = subprocess.run(
        [sys.executable, "-c", OPEN, str(Path(moved) / "film.blend")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = [line for line in run.stdout.splitlines() if line.startswith("FOUND ")]
    assert found, run.stdout[-2000:] + run.stderr[-2000:]
    assert json.loads(found[0][6:]) == {"film_take_001": ["//storyshade/film/take_001/", 4, 4]}


def test_a_take_finished_after_the_save_goes_beside_the_blend(scene, tmp_path) -> None:
    """Saved while the job still ran: the take lands in the temp folder, then moves."""
    fake = FakeClient(frames=FRAMES)
    session = ShadeSession(scene, fake, ShadeRequest(settings={}, server_url=fake.url))
    while session.running and session.run is None:
        session.tick(wait=0.05)
    assert session.run.temporary
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "late.blend"))
    while session.running:
        session.tick(wait=0.05)
    assert session.outcome == DONE, session.text
    strip = compat.all_strips(scene.sequence_editor)[session.strip_name]
    assert strip.directory == "//storyshade/late/take_001/"
    assert (tmp_path / "storyshade/late/take_001/0004.png").is_file()
    assert session.note == "", "no 'not saved' note on a saved file"


def test_status_is_not_saved_and_a_reopened_file_shows_none(scene, tmp_path) -> None:
    assert "status" not in props.StoryShadeSceneSettings.bl_rna.properties
    assert not {"fix", "note", "progress", "is_error", "preview_path", "job_id"} & set(
        props.StoryShadeSceneSettings.bl_rna.properties.keys()
    )
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "a.blend"))
    session = _shade(scene)
    assert runtime.status(scene).text.startswith("Take ")
    bpy.ops.wm.save_mainfile()
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "a.blend"))
    enable_prefs()  # opening a file keeps preferences, but be sure
    assert not any(text.startswith("Take ") for text in _labels(bpy.context.scene))
    assert session.outcome == DONE


def test_a_good_check_ends_an_old_cannot_reach_error(scene) -> None:
    session = _shade(scene, FakeClient(unreachable=True))
    assert session.outcome == FAILED
    assert any("cannot reach" in text for text in _labels(scene))
    runtime.health.start(FakeClient())  # Check, now that the server is up
    runtime.health.join(10)
    labels = _labels(scene)
    assert not any("cannot reach" in text for text in labels), labels
    assert not any(text.startswith("Fix: start it") for text in labels), labels

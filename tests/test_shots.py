"""Shots of an edit (camera markers, scene strips) and shading them as a sequence through
the add-on's CLI and a real server: one job and one take per shot, in the shot's scene at
its frames; bad edits are errors naming the shot; exit 1 names the shots that failed."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import blender_env  # noqa: F401
import blender_scenes as bs
import bpy
import pytest
from serverproc import ServerProcess

from addon import compat
from addon.errors import StoryShadeError
from addon.operators import cli
from addon.session import runtime, shots

PREVIEW = json.dumps({"width": 64, "height": 64})


@pytest.fixture(autouse=True)
def registered():
    """The add-on is enabled wherever its CLI runs (its command comes from it)."""
    from test_addon_helpers import ensure_registered

    ensure_registered()


def _camera(scene, name: str, x: float):
    cam = bpy.data.objects.new(name, bpy.data.cameras.new(name))
    scene.collection.objects.link(cam)
    cam.location = (x, 0.0, 5.0)
    return cam


def marker_edit(frames: int = 6):
    """One scene, two camera markers (frames 1 and 4) and a note marker without a camera."""
    scene = bs.new_scene(width=64, height=48, frames=frames)
    bs.add_plane(scene, 40.0, name="Wall")
    a, b = _camera(scene, "CamA", -1.0), _camera(scene, "CamB", 1.0)
    scene.camera = a
    scene.timeline_markers.new("sh010", frame=1).camera = a
    scene.timeline_markers.new("sh020", frame=4).camera = b
    scene.timeline_markers.new("fix the lighting", frame=2)
    return scene


def strip_edit():
    """An edit scene with two scene strips, each showing a shot scene with its camera."""
    edit = bs.new_scene()
    edit.name = "Edit"
    editor = edit.sequence_editor_create()
    for i, name in enumerate(("Shot1", "Shot2")):
        shot = bpy.data.scenes.new(name)
        shot.render.resolution_x, shot.render.resolution_y = 64, 48
        shot.render.resolution_percentage = 100
        shot.frame_start, shot.frame_end = 1, 3
        shot.world = None
        bs.add_plane(shot, 40.0, name=f"Wall{i}")
        shot.camera = _camera(shot, f"Cam{i}", 0.0)
        compat.strips(editor).new_scene(
            name=f"sh0{i + 1}0", scene=shot, channel=1, frame_start=1 + 3 * i
        )
    return edit


def test_camera_markers_are_shots_until_the_next_marker() -> None:
    found = shots.marker_shots(marker_edit())
    assert [(s.name, s.camera, s.frame_start, s.frame_end) for s in found.shots] == [
        ("sh010", "CamA", 1, 3),
        ("sh020", "CamB", 4, 6),
    ]
    assert found.notes == ["marker 'fix the lighting' (frame 2) has no camera"]


def test_scene_strips_are_shots_of_their_scenes() -> None:
    found = shots.find_shots(strip_edit())
    assert [(s.name, s.scene_name, s.camera, s.frame_start, s.frame_end) for s in found.shots] == [
        ("sh010", "Shot1", "Cam0", 1, 3),
        ("sh020", "Shot2", "Cam1", 1, 3),
    ]


def test_bad_edits_are_errors_naming_the_shot() -> None:
    scene = marker_edit()
    scene.timeline_markers.new("sh030", frame=4).camera = scene.objects["CamA"]
    with pytest.raises(StoryShadeError, match="'sh020' and 'sh030' are both on frame 4"):
        shots.marker_shots(scene)

    scene = marker_edit()
    scene.timeline_markers.new("late", frame=9).camera = scene.objects["CamA"]
    with pytest.raises(StoryShadeError, match="shot 'late' has no frames"):
        shots.marker_shots(scene)

    edit = strip_edit()
    bpy.data.scenes["Shot2"].camera = None
    with pytest.raises(StoryShadeError, match="'sh020' shows scene 'Shot2', which has no camera"):
        shots.find_shots(edit)

    edit = strip_edit()
    compat.strips(edit.sequence_editor)["sh020"].frame_start = 2  # now overlaps sh010
    with pytest.raises(StoryShadeError, match="'sh010' and 'sh020' overlap"):
        shots.find_shots(edit)

    with pytest.raises(StoryShadeError, match="no shots"):
        shots.pick(shots.find_shots(bs.new_scene()), None)
    with pytest.raises(StoryShadeError, match="the shots are: sh010, sh020"):
        shots.pick(shots.marker_shots(marker_edit()), ["sh999"])


def test_shade_all_shots_places_one_take_per_shot(server, tmp_path: Path, capsys) -> None:
    marker_edit()
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "edit.blend"))
    args = ["shade", "--server", server.url, "--preset", "preview", "--settings", PREVIEW]
    assert cli.main([*args, "--all-shots"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "shot 1/2 'sh010'" in out and "shot 2/2 'sh020'" in out
    assert "note: marker 'fix the lighting' (frame 2) has no camera" in out
    strips = sorted(compat.strips(bpy.context.scene.sequence_editor), key=lambda s: s.frame_start)
    assert [(s["storyshade_shot"], s.frame_final_start, s.frame_final_end) for s in strips] == [
        ("sh010", 1, 4),
        ("sh020", 4, 7),
    ]
    assert (tmp_path / "storyshade" / "sh020" / "take_001" / "0006.png").is_file()

    assert cli.main([*args, "--shots", "sh020", "--no-save"]) == 0  # earlier takes stay
    takes = [s["storyshade_take"] for s in compat.strips(bpy.context.scene.sequence_editor)]
    assert sorted(takes) == ["take_001", "take_001", "take_002"]
    seeds = {s["storyshade_shot"]: s["storyshade_seed"] for s in strips}
    assert seeds == {"sh010": 0, "sh020": 0}  # one seed for the sequence by default

    per_shot = ["--seed", "7", "--seed-policy", "per-shot", "--no-save"]
    assert cli.main([*args, "--all-shots", *per_shot]) == 0
    newest = {}
    for s in compat.strips(bpy.context.scene.sequence_editor):
        if s["storyshade_take"] == "take_003" or s["storyshade_shot"] == "sh010":
            newest[s["storyshade_shot"], s["storyshade_take"]] = s["storyshade_seed"]
    expected = {n: (7 + zlib.crc32(n.encode())) % 2**32 for n in ("sh010", "sh020")}
    assert newest[("sh010", "take_002")] == expected["sh010"]
    assert newest[("sh020", "take_003")] == expected["sh020"]
    assert expected["sh010"] != expected["sh020"]


def test_a_failed_shot_is_named_and_the_others_keep_their_takes(
    tmp_path, tiny_models, capsys
) -> None:
    edit = strip_edit()
    bpy.data.scenes["Shot2"].render.resolution_x = 96  # over this server's limit
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "edit.blend"))
    with ServerProcess(tmp_path / "data", tiny_models, "--max-resolution", "64") as srv:
        rc = cli.main(
            [
                "shade",
                "--server",
                srv.url,
                "--preset",
                "preview",
                "--settings",
                PREVIEW,
                "--all-shots",
            ]
        )
    err = capsys.readouterr().err
    assert rc == 1 and "1 of 2 shots failed: sh020" in err and "shot 'sh020' failed" in err
    shot1 = bpy.data.scenes["Shot1"]
    assert [s["storyshade_shot"] for s in compat.strips(shot1.sequence_editor)] == ["sh010"]
    assert edit.name == "Edit" and len(compat.strips(edit.sequence_editor)) == 2  # untouched


def test_shade_sequence_button_shades_the_ticked_shots(server, tmp_path: Path) -> None:
    """The sidebar's path (background mode: runs to the end): the shot list's toggle leaves a
    shot out, Shade Sequence shades the others with the panel's settings."""
    from test_addon_helpers import disable_prefs, enable_prefs, ensure_registered

    ensure_registered()
    scene = marker_edit()
    enable_prefs(server_url=server.url, output_pattern=str(tmp_path / "takes/{shot}/{take}"))
    try:
        scene.storyshade.quality = "preview"
        assert bpy.ops.storyshade.shot_toggle(name="sh020") == {"FINISHED"}
        assert bpy.ops.storyshade.shade_sequence() == {"FINISHED"}
        first = [s["storyshade_shot"] for s in compat.strips(scene.sequence_editor)]
        assert first == ["sh010"]
        assert "1 of 1 shots shaded" in runtime.status(scene).text
        bpy.ops.storyshade.shot_toggle(name="sh020")  # ticked again
        scene.storyshade_seed_policy = "PER_SHOT"
        assert bpy.ops.storyshade.shade_sequence() == {"FINISHED"}
        takes = sorted(
            (s["storyshade_shot"], s["storyshade_take"], s["storyshade_seed"])
            for s in compat.strips(scene.sequence_editor)
        )
        per_shot = {n: zlib.crc32(n.encode()) % 2**32 for n in ("sh010", "sh020")}
        assert takes == [
            ("sh010", "take_001", 0),
            ("sh010", "take_002", per_shot["sh010"]),
            ("sh020", "take_001", per_shot["sh020"]),
        ]
        assert (tmp_path / "takes" / "sh020" / "take_001" / "0004.png").is_file()
    finally:
        disable_prefs()


def test_the_cancel_button_stops_the_sequence_not_only_its_shot() -> None:
    """The panel's Cancel during Shade Sequence: no shot starts after the cancelled one
    (it used to cancel only the shot under way, and the next one started)."""
    from addon.operators import cancel
    from addon.session.sequence import SequenceRun
    from addon.session.shade import CANCELLED

    class FakeSession:
        running, outcome, text = True, "", ""

        def tick(self, wait: float = 0.0) -> None:
            pass

        def cancel(self) -> None:
            self.running, self.outcome = False, CANCELLED

    seq = SequenceRun(shots.find_shots(marker_edit()).shots, lambda shot: FakeSession())
    seq.tick()  # the first shot under way
    runtime.current, runtime.sequence = seq.current, seq
    try:
        assert cancel.STORYSHADE_OT_cancel.execute(None, bpy.context) == {"FINISHED"}
        for _ in range(10):  # before the fix the next shot started (and ran on here)
            if not seq.tick():
                break
        seq.close()
        assert seq.index == 0 and seq.cancelled and not seq.failed
        assert seq.headline() == "Sequence: 0 of 2 shots shaded; cancelled"
    finally:
        runtime.current = runtime.sequence = None

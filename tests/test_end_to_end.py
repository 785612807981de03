"""bpy builds a shot → the add-on's CLI `shade` → a real server with tiny models → a take
strip of valid PNGs at the scene's size. Plus the errors a user meets on that path."""

from __future__ import annotations

from pathlib import Path

import blender_env  # noqa: F401
import bpy
import pytest
from PIL import Image
from storyboard import build_storyboard

from addon import compat
from addon.operators import cli


@pytest.fixture(autouse=True)
def registered():
    """The add-on is enabled wherever its CLI runs (its command comes from it)."""
    from test_addon_helpers import ensure_registered

    ensure_registered()


def _shot(tmp_path: Path, frames: int = 6):
    scene = build_storyboard(frames=frames, width=80, height=48)
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    return scene


def test_shade_places_take_strip(server, tmp_path: Path, capsys) -> None:
    _shot(tmp_path)
    rc = cli.main(["shade", "--server", server.url, "--preset", "tiny", "--frames", "2-6"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "Denoising" in out.out and "Frames 5/5 received" in out.out
    scene = bpy.context.scene
    (strip,) = compat.strips(scene.sequence_editor)
    assert strip.type == "IMAGE"
    assert (strip.frame_final_start, strip.frame_final_end) == (2, 7)
    assert len(strip.elements) == 5
    take = Path(bpy.path.abspath(strip.directory))
    assert take == tmp_path / "storyshade" / "shot" / "take_001"
    for i, element in enumerate(strip.elements):
        assert element.filename == f"{i + 2:04d}.png"
        with Image.open(take / element.filename) as img:
            img.verify()
        with Image.open(take / element.filename) as img:
            assert img.format == "PNG" and img.size == (80, 48)
    assert strip["storyshade_take"] == "take_001" and strip["storyshade_job"]
    # --no-save was not given: the saved file holds the strip.
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "shot.blend"))
    assert len(compat.strips(bpy.context.scene.sequence_editor)) == 1


def test_server_unreachable_says_how_to_start(tmp_path: Path, capsys) -> None:
    _shot(tmp_path, frames=2)
    rc = cli.main(["shade", "--server", "http://127.0.0.1:9", "--no-save"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "cannot reach the StoryShade server" in err and "storyshade serve" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--preset", "no-such-preset"], "unknown preset 'no-such-preset'"),
        (["--settings", '{"checkpoint": "missing-model"}', "--preset", "tiny"], "missing-model"),
        (["--settings", '{"steps": 0}', "--preset", "tiny"], "settings.steps"),
        (["--frames", "5-2"], "inverted"),
        (["--frames", "x"], "not a range"),
    ],
)
def test_server_and_input_errors_are_one_line(server, tmp_path, capsys, args, expected) -> None:
    _shot(tmp_path, frames=2)
    rc = cli.main(["shade", "--server", server.url, "--no-save", *args])
    err = capsys.readouterr().err
    assert rc == 1
    assert expected in err, err
    assert "Traceback" not in err


def test_no_camera(tmp_path: Path, capsys) -> None:
    _shot(tmp_path, frames=2)
    bpy.context.scene.camera = None
    assert cli.main(["export", "--out", str(tmp_path / "b")]) == 1
    assert "no active camera" in capsys.readouterr().err


def test_export_command_writes_bundle(tmp_path: Path) -> None:
    from storyshade.bundle import load_bundle

    _shot(tmp_path, frames=3)
    assert cli.main(["export", "--out", str(tmp_path / "b"), "--frames", "1-2"]) == 0
    assert load_bundle(tmp_path / "b").shot.frame_numbers == [1, 2]

    # What the panel's background export asks for: a scene by name, the shot's name, and a
    # camera that replaces the scene's (a scene strip's override).
    scene = bpy.context.scene
    other = bpy.data.objects.new("Other", bpy.data.cameras.new("Other"))
    scene.collection.objects.link(other)
    other.location = (3.0, 0.0, 5.0)
    args = ["export", "--out", str(tmp_path / "c"), "--frames", "2-3", "--scene", scene.name]
    assert cli.main([*args, "--shot", "sh010", "--camera", "Other"]) == 0
    shot = load_bundle(tmp_path / "c").shot
    assert shot.shot == "sh010" and shot.frame_numbers == [2, 3]
    assert shot.frames[0].camera.matrix_world[0][3] == pytest.approx(3.0)
    assert cli.main([*args[:-1], "Nope"]) == 1


def test_shade_with_a_looks_file_through_a_real_server(server, tmp_path: Path, capsys) -> None:
    """--looks: the looks reach the server (a version-2 bundle, regional attention on the
    tiny models), the take strip remembers them, and a bad file fails before export."""
    import json

    _shot(tmp_path, frames=3)
    looks = tmp_path / "looks.json"
    looks.write_text(
        json.dumps(
            {"objects": {"Crate": {"prompt": "a wooden crate"}, "Head": {"prompt": "a girl"}}}
        )
    )
    rc = cli.main(["shade", "--server", server.url, "--preset", "tiny", "--looks", str(looks)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    (strip,) = compat.strips(bpy.context.scene.sequence_editor)
    assert [r["name"] for r in json.loads(strip["storyshade_looks"])] == ["Crate", "Head"]

    looks.write_text(json.dumps({"objects": {"Girl": {"prompt": "a girl"}}}))
    rc = cli.main(["shade", "--server", server.url, "--preset", "tiny", "--looks", str(looks)])
    err = capsys.readouterr().err
    assert rc == 1 and "object 'Girl'" in err and "Exporting" not in err


def test_wan_shades_through_the_same_paths(server, tmp_path: Path, capsys) -> None:
    """The Wan engine from Blender, unchanged: the `wan-tiny` quality with the default
    style and camera, looks from a file, then a re-shade of two frames of that take (the
    frames outside the range come back byte for byte: VACE's keep mask)."""
    import json

    _shot(tmp_path, frames=9)
    looks = tmp_path / "looks.json"
    looks.write_text(json.dumps({"objects": {"Crate": {"prompt": "a wooden crate"}}}))
    args = ["shade", "--server", server.url, "--preset", "wan-tiny", "--no-save"]
    rc = cli.main([*args, "--looks", str(looks)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    (strip,) = compat.strips(bpy.context.scene.sequence_editor)
    assert "wan-tiny" in strip["storyshade_preset"]
    assert [r["name"] for r in json.loads(strip["storyshade_looks"])] == ["Crate"]
    first = Path(bpy.path.abspath(strip["storyshade_folder"]))
    before = {p.name: p.read_bytes() for p in first.glob("*.png")}
    assert len(before) == 9

    rc = cli.main([*args, "--take", strip.name, "--frames", "4-5"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    new = max(compat.strips(bpy.context.scene.sequence_editor), key=lambda s: s.channel)
    after = {
        p.name: p.read_bytes()
        for p in Path(bpy.path.abspath(new["storyshade_folder"])).glob("*.png")
    }
    assert sorted(after) == sorted(before)
    for name, data in before.items():
        if name not in ("0004.png", "0005.png"):
            assert after[name] == data, f"{name} must be byte-identical"

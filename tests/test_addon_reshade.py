"""Re-shading frames A-B of a take from Blender (`shade --take NAME --frames A-B`) with a
real server: only A-B are made again, the new take copies every other frame byte for byte,
and bad takes or ranges are refused before any export."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import blender_env  # noqa: F401
import blender_scenes as bs
import bpy
import pytest

from addon import compat
from addon.operators import cli
from addon.session import runtime

PREVIEW = json.dumps({"width": 64, "height": 64})
# The server runs from the backend's Python (the bpy 4.2 suite's venv has no backend).
SERVER_PYTHON = os.environ.get("STORYSHADE_SERVER_PYTHON") or sys.executable


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real server with no models: these runs use the model-free preview engine."""
    from serverproc import ServerProcess

    with ServerProcess(tmp_path_factory.mktemp("reshade") / "data", python=SERVER_PYTHON) as s:
        yield s


def take_folder(strip) -> Path:
    return Path(bpy.path.abspath(strip["storyshade_folder"]))


def shot_with_take(server, tmp_path: Path, capsys):
    """A 12-frame shot and its first take (preview engine)."""
    scene = bs.new_scene(width=64, height=48, frames=12)
    bs.add_plane(scene, 40.0, name="Wall")
    bs.add_cube(scene).name = "Box"
    bs.add_camera(scene)
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    args = ["shade", "--server", server.url, "--preset", "preview", "--settings", PREVIEW]
    assert cli.main([*args, "--no-save"]) == 0, capsys.readouterr().err
    return scene, args


def test_reshade_makes_only_the_range_and_copies_the_rest(server, tmp_path, capsys) -> None:
    scene, args = shot_with_take(server, tmp_path, capsys)
    old = take_folder(compat.strips(scene.sequence_editor)[0])
    before = {p.name: p.read_bytes() for p in old.glob("*.png")}
    assert len(before) == 12
    bpy.data.objects["Box"].location.x += 1.5  # so new frames differ from the old ones
    windows = json.dumps({**json.loads(PREVIEW), "context_length": 4, "context_overlap": 1})
    again = [*args[:-1], windows, "--take", "take_001", "--frames", "5-7", "--no-save"]
    assert cli.main(again) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "re-shading frames 5-7 of" in out and "exporting 3-9" in out  # half a window

    strips = sorted(compat.strips(scene.sequence_editor), key=lambda s: s.channel)
    new = strips[-1]
    assert new["storyshade_take"] == "take_002" and new["storyshade_reshaded"].startswith("5-7")
    assert (new.frame_final_start, new.frame_final_end) == (1, 13)  # the whole take
    folder = take_folder(new)
    after = {p.name: p.read_bytes() for p in folder.glob("*.png")}
    assert sorted(after) == sorted(before)
    remade = [f"{f:04d}.png" for f in (5, 6, 7)]
    for name in before:
        if name in remade:
            assert after[name] != before[name], f"{name} should be shaded again"
        else:
            assert after[name] == before[name], f"{name} must be byte-identical"
    record = json.loads((folder / "job.json").read_text())
    assert record["frames"] == [5, 6, 7]  # the server made three frames


def test_bad_takes_and_ranges_are_named_before_any_export(server, tmp_path, capsys) -> None:
    scene, args = shot_with_take(server, tmp_path, capsys)
    strip = compat.strips(scene.sequence_editor)[0]

    def error(*extra: str) -> str:
        assert cli.main([*args, *extra, "--no-save"]) == 1
        return capsys.readouterr().err

    assert "--take needs --frames" in error("--take", "take_001")
    assert f"no take strip 'take_9' in scene '{scene.name}' (takes: {strip.name})" in error(
        "--take", "take_9", "--frames", "2-3"
    )
    assert "frames 10-14 are outside take" in error("--take", strip.name, "--frames", "10-14")
    assert "are the whole take" in error("--take", strip.name, "--frames", "1-12")
    (take_folder(strip) / "0002.png").unlink()
    assert "is missing 1 frame(s) on disk (2)" in error("--take", strip.name, "--frames", "5-6")
    assert len(compat.strips(scene.sequence_editor)) == 1  # the edit is unchanged
    assert not (take_folder(strip).parent / "take_002").exists()


@pytest.fixture(autouse=True)
def _fresh_file():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield


def test_panel_reshades_the_selected_take_and_writes_the_sheet(server, tmp_path, capsys) -> None:
    """The Sequencer sidebar's Re-shade Frames (background mode: runs to the end) and the
    Shots panel's Contact Sheet, through `storyshade sheet` in the server's Python."""
    from test_addon_helpers import disable_prefs, enable_prefs, ensure_registered

    ensure_registered()
    scene, _ = shot_with_take(server, tmp_path, capsys)
    enable_prefs(server_url=server.url, server_python=SERVER_PYTHON)
    try:
        opts = scene.storyshade
        st = runtime.status(scene)
        opts.quality = "preview"
        assert bpy.ops.storyshade.reshade_take.poll() is False  # no take selected
        first = compat.strips(scene.sequence_editor)[0]
        scene.sequence_editor.active_strip = first
        opts.reshade_start, opts.reshade_end = 11, 12
        assert bpy.ops.storyshade.reshade_take() == {"FINISHED"}, st.text
        new = max(compat.strips(scene.sequence_editor), key=lambda s: s.channel)
        assert new["storyshade_reshaded"] == f"11-12 of {first.name}"
        old, again = take_folder(first), take_folder(new)
        for f in range(1, 11):
            name = f"{f:04d}.png"
            assert (again / name).read_bytes() == (old / name).read_bytes()

        opts.reshade_start, opts.reshade_end = 12, 14  # past the take: refused, named
        with pytest.raises(RuntimeError, match="frames 12-14 are outside take"):
            bpy.ops.storyshade.reshade_take()  # reported as an error
        assert "frames 12-14 are outside take" in st.text and st.is_error

        assert bpy.ops.storyshade.contact_sheet() == {"FINISHED"}, st.text
        sheet = old.parent.parent / "sequence_sheet.png"
        assert sheet.is_file() and bpy.data.images[sheet.name].size[0] > 0
    finally:
        disable_prefs()

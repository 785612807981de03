"""`blender -c storyshade shade --reference` against a real server with the tiny models: the
image travels inside the bundle, the job's settings name it, and the `tiny` preset's tiny
IP-Adapter makes the take (it changes the frames). Uses test_addon_server's server."""

from __future__ import annotations

import json
from pathlib import Path

import bpy
import pytest
from test_addon_helpers import png_bytes
from test_addon_server import live, scene  # noqa: F401 (fixtures: the server, a scene)

from addon.export import bundle
from addon.operators import cli
from addon.takes import take

pytestmark = pytest.mark.slow


def test_cli_reference_reaches_the_server_and_steers_the_take(live, scene, tmp_path) -> None:  # noqa: F811
    image = tmp_path / "palette.png"
    image.write_bytes(png_bytes(32, 32, (240, 30, 200)))
    cube = bpy.data.objects["Cube"]
    cube.storyshade_look.enabled, cube.storyshade_look.prompt = True, "a crate"
    argv = ["shade", "--server", live["server_url"], "--preset", "tiny", "--seed", "3"]
    argv += ["--frames", "1-1", "--no-save"]
    assert cli.main(argv) == 0
    assert cli.main([*argv, "--reference", f"{image}:1.5@Cube"]) == 0
    plain, steered = sorted(
        take.shot_strips(scene, bundle.shot_name(scene)), key=lambda s: s.channel
    )
    job = steered["storyshade_job"]
    jobs = list(Path(live["models_dir"]).parent.glob(f"home/**/jobs/{job}"))
    assert len(jobs) == 1, "the server's job folder"
    settings = json.loads((jobs[0] / "settings.json").read_text(encoding="utf-8"))
    (ref,) = settings["references"]
    assert Path(ref["image"]).parts[-2:] == ("references", "1-palette.png")
    assert (ref["weight"], ref["look"]) == (1.5, "Cube")
    assert settings["ip_adapter"] == "tiny-ip-adapter"
    assert Path(ref["image"]).read_bytes() == image.read_bytes(), "the bundle carried it"
    frames = [Path(s["storyshade_folder"], "0001.png").read_bytes() for s in (plain, steered)]
    assert frames[0] != frames[1], "the reference changed the frame"

"""The add-on against a real `storyshade serve` with the tiny models: the panel's Start and
Stop buttons, the headless CLI, the button's operator in background mode, and Esc.

The server runs from another Python, as for users: STORYSHADE_SERVER_PYTHON, else what the
add-on's own auto-detect finds (the .venv beside this checkout). So this module also runs
under a bpy that has no backend installed (scripts/test_bpy42.sh).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import bpy
import pytest
from serverproc import free_port
from test_addon_helpers import REPO, disable_prefs, enable_prefs, ensure_registered, new_scene

from addon import compat
from addon.export import bundle
from addon.operators import cli
from addon.remote import server_local
from addon.remote.client import Client
from addon.session import runtime
from addon.session.shade import CANCELLED, DONE, ModalDriver, ShadeRequest, ShadeSession
from addon.takes import take

pytestmark = pytest.mark.slow


def _server_command() -> list[str]:
    configured = os.environ.get("STORYSHADE_SERVER_PYTHON", "")
    command = server_local.detect_command(configured, REPO)
    if command is None:
        pytest.skip("no Python with the StoryShade backend to run a server")
    probe = subprocess.run([*command[:-1], "--help"], capture_output=True, timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"{command[0]} cannot run storyshade: {probe.stderr[-300:]!r}")
    return command


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):
    """Tiny models, then a server started by the panel's Start operator; Stop at the end."""
    ensure_registered()
    command = _server_command()
    root = tmp_path_factory.mktemp("addon-server")
    models = root / "models"
    subprocess.run(
        [*command[:-1], "models", "tiny", str(models)],
        check=True,
        timeout=300,
        capture_output=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    config = {
        "server_url": f"http://127.0.0.1:{free_port()}",
        "server_python": command[0],
        "models_dir": str(models),
        "output_pattern": str(root / "takes" / "{shot}" / "{take}"),
    }
    new_scene()
    enable_prefs(**config)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(root / "home"))  # the server's default --data folder
        mp.setenv("OMP_NUM_THREADS", "1")
        assert bpy.ops.storyshade.server_start() == {"FINISHED"}
    yield config
    assert bpy.ops.storyshade.server_stop() == {"FINISHED"}
    assert not runtime.local_server.running
    disable_prefs()


@pytest.fixture
def scene(live, tmp_path: Path):
    scene = new_scene(frames=2)  # resets preferences too: put them back
    live["takes"] = tmp_path / "takes"
    live["output_pattern"] = str(live["takes"] / "{shot}" / "{take}")
    enable_prefs(**{k: v for k, v in live.items() if k != "takes"})
    scene.storyshade.quality = "tiny"
    return scene


def test_start_button_started_a_reachable_server(live, scene) -> None:
    assert runtime.local_server.running
    assert runtime.local_server.command[-2:] == ["--models", live["models_dir"]]
    assert bpy.ops.storyshade.server_check() == {"FINISHED"}
    ok, line, fix = runtime.health.summary()
    assert ok and line.startswith("Reachable") and "1 folder" in line and not fix


def test_headless_cli_shades_two_takes_on_two_channels(live, scene, capsys) -> None:
    argv = ["shade", "--server", live["server_url"], "--preset", "tiny", "--seed", "5", "--no-save"]
    assert cli.main(argv) == 0
    assert cli.main([*argv, "--frames", "1-2", "--prompt", "night"]) == 0
    out = capsys.readouterr().out
    for line in ("Exporting 2/2", "submitted", "Denoising", "Frames 2/2 received", "take strip"):
        assert "storyshade: " in out and line in out, line
    shot = bundle.shot_name(scene)
    strips = sorted(take.shot_strips(scene, shot), key=lambda s: s.channel)
    assert [(s.name, s.channel) for s in strips] == [
        (f"{shot}_take_001", 1),
        (f"{shot}_take_002", 2),
    ]
    for strip in strips:
        folder = Path(strip["storyshade_folder"])
        assert sorted(p.name for p in folder.glob("*.png")) == ["0001.png", "0002.png"]
        # the sidebar's picks, --preset's tiny replacing its layer's (quality)
        assert strip["storyshade_preset"] == "anime-cel,static,512x512,tiny"
        assert strip["storyshade_seed"] == 5
        assert len(strip["storyshade_job"]) > 0
    assert strips[1]["storyshade_prompt"] == "night" and strips[0]["storyshade_prompt"] == ""
    assert strips[0]["storyshade_job"] != strips[1]["storyshade_job"]
    # --replace: the new take takes the old ones' place; their frames stay on disk
    assert cli.main([*argv, "--replace"]) == 0
    (strip,) = take.shot_strips(scene, shot)
    assert (strip["storyshade_take"], strip.channel) == ("take_003", 1)
    assert all(Path(s).is_dir() for s in (live["takes"] / shot / "take_001",))


def test_cli_unreachable_server_exits_1_with_fix(scene, capsys) -> None:
    assert cli.main(["shade", "--server", f"http://127.0.0.1:{free_port()}", "--no-save"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach" in err and "Fix:" in err


def test_shade_button_in_background_mode_runs_to_a_take(live, scene) -> None:
    scene.storyshade.seed = 11
    scene.storyshade.prompt = "storm"
    assert bpy.ops.storyshade.shade("INVOKE_DEFAULT") == {"FINISHED"}
    (strip,) = take.shot_strips(scene, bundle.shot_name(scene))
    assert strip["storyshade_seed"] == 11 and strip["storyshade_prompt"] == "storm"
    assert strip["storyshade_server"] == live["server_url"]
    st = runtime.status(scene)
    assert st.text.startswith("Take ") and Path(st.preview_path).is_file()
    job = Client(live["server_url"]).job(strip["storyshade_job"])
    assert job["state"] == "done"


def test_esc_cancels_the_real_server_job(live, scene) -> None:
    client = Client(live["server_url"])
    request = ShadeRequest(
        settings={"preset": "tiny", "steps": 150},  # long enough to cancel mid-denoise
        output_pattern=live["output_pattern"],
        server_url=live["server_url"],
    )
    session = ShadeSession(scene, client, request)
    driver = ModalDriver(session, lambda s: None)
    deadline = time.monotonic() + 240
    while not session.text.startswith("Denoising") and time.monotonic() < deadline:
        assert driver.handle("TIMER", "NOTHING") == {"RUNNING_MODAL"}, session.log
        time.sleep(0.05)
    assert session.text.startswith("Denoising"), session.log
    job_id = session.job_id
    result = driver.handle("ESC", "PRESS")
    while result == {"RUNNING_MODAL"} and time.monotonic() < deadline:
        result = driver.handle("TIMER", "NOTHING")
        time.sleep(0.05)
    assert result == {"CANCELLED"} and session.outcome == CANCELLED, session.log
    assert client.job(job_id)["state"] == "cancelled"
    assert session.text.startswith(f"Cancelled: the server stopped job {job_id} "), session.text
    assert session.text.endswith("no frames were made"), session.text
    ed = scene.sequence_editor
    assert ed is None or not list(compat.all_strips(ed))
    assert session.outcome != DONE
    shot = live["takes"] / bundle.shot_name(scene)
    assert not shot.exists() or not list(shot.iterdir()), "no empty take folder is left"
    assert take.next_take_dir(bundle.shot_name(scene), live["output_pattern"], scene)[1] == (
        "take_001"
    ), "the cancelled run used no take number"


def test_job_outlives_blender_and_reattach_places_its_take(live, scene, capsys) -> None:
    """Blender ends the run (quit, crash, file load) after the upload: the server job goes
    on, and `reattach` in a later session fetches its frames and places the take."""
    client = Client(live["server_url"])
    request = ShadeRequest(
        settings={"preset": "tiny", "seed": 3},
        output_pattern=live["output_pattern"],
        server_url=live["server_url"],
    )
    session = ShadeSession(scene, client, request)
    deadline = time.monotonic() + 240
    while not session.job_id and time.monotonic() < deadline:
        session.tick(wait=0.1)
    job_id = session.job_id
    assert job_id, session.log
    session.abandon()  # what Blender closing does to a running modal
    assert session.outcome == CANCELLED and "keeps running" in session.text
    session.job.join(60)
    assert not session.job.alive, "a detached run stops following (and writing frames)"
    assert client.job(job_id)["state"] != "cancelled"
    bpy.ops.wm.read_factory_settings(use_empty=True)  # "restart": no memory of the run
    scene = new_scene(frames=2)
    enable_prefs(**{k: v for k, v in live.items() if k != "takes"})
    argv = ["reattach", "--server", live["server_url"], "--no-save"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert f"reattached to job {job_id}" in capsys.readouterr().out
    (strip,) = take.shot_strips(scene, bundle.shot_name(scene))
    assert strip["storyshade_job"] == job_id and len(strip.elements) == 2
    assert client.job(job_id)["state"] == "done"
    assert cli.main(argv) == 1  # nothing left to reattach to
    assert "no unfinished StoryShade job" in capsys.readouterr().err


def test_missing_models_refuse_shade_before_exporting(live, scene) -> None:
    """The default quality with only tiny models: the server says so before a frame is
    rendered, naming what is missing and which quality works now."""
    scene.storyshade.quality = "standard"
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="cannot run here"):  # how bpy.ops reports ERROR
        bpy.ops.storyshade.shade("INVOKE_DEFAULT")
    assert time.monotonic() - started < 20
    st = runtime.status(scene)
    assert st.is_error, st.text
    assert st.text.startswith("'standard' cannot run here: missing checkpoint")
    assert "'stable-diffusion-v1-5'" in st.text
    # `storyshade models tiny` writes the SD1.5 and the Wan VACE tiny sets
    assert st.text.endswith("works now: preview, tiny, wan-tiny"), st.text
    assert st.fix.startswith("pick Quality 'preview' (or 'tiny', 'wan-tiny'), which works now")
    assert not live["takes"].exists(), "nothing exported, no take folder"
    # The panel shows the same next to the Quality picker after Check.
    assert bpy.ops.storyshade.server_check() == {"FINISHED"}
    answer = runtime.health.readiness_for("anime-cel,static,512x512,standard")
    assert answer is not None and answer["ready"] is False
    scene.storyshade.quality = "tiny"
    assert bpy.ops.storyshade.server_check() == {"FINISHED"}
    assert runtime.health.readiness_for("anime-cel,static,512x512,tiny")["ready"] is True


def test_a_run_that_cannot_reach_the_server_updates_the_server_box(live, scene) -> None:
    assert bpy.ops.storyshade.server_check() == {"FINISHED"}
    assert runtime.health.summary()[0], "reachable before"
    url = f"http://127.0.0.1:{free_port()}"
    enable_prefs(server_url=url)
    try:
        with pytest.raises(RuntimeError, match="cannot reach"):
            bpy.ops.storyshade.shade("INVOKE_DEFAULT")
    finally:
        enable_prefs(server_url=live["server_url"])
    reachable, line, _fix = runtime.health.summary()
    assert not reachable and line == f"Not reachable at {url}"

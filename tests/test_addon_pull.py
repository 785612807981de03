"""The sidebar's Download Models button against a real server whose hub is the stand-in
(tests/hubstandin.py): offered above the readiness line when the server lacks the chosen
quality's models, the size shown before anything downloads, then progress, cancel, and the
readiness answer turning "ready"."""

from __future__ import annotations

import re
import time
from pathlib import Path
from types import SimpleNamespace

import bpy
import pytest
from hub_repos import DEPTH
from serverproc import ServerProcess
from test_addon_helpers import disable_prefs, enable_prefs, ensure_registered, new_scene
from test_addon_panel import Layout

from addon.operators import pull
from addon.remote.client import Client
from addon.remote.pull_run import ASKED, CANCELLED, DONE, PullRun
from addon.session import runtime
from addon.ui import sidebar

pytestmark = pytest.mark.slow


@pytest.fixture
def server(monkeypatch, fresh_hub, tmp_path: Path):
    """A server with an empty models folder and the stand-in as its hub."""
    monkeypatch.setenv("HF_ENDPOINT", fresh_hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    for name in ("HF_TOKEN", "STORYSHADE_OFFLINE", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    models = tmp_path / "models"
    models.mkdir()
    with ServerProcess(tmp_path / "data", models) as srv:
        srv.models = models
        yield srv


def _draw(scene) -> list:
    log: list = []
    ctx = SimpleNamespace(scene=scene, region=SimpleNamespace(width=280))
    sidebar.STORYSHADE_PT_main.draw(SimpleNamespace(layout=Layout(log)), ctx)
    return log


def test_download_models_for_the_chosen_quality(server, fresh_hub) -> None:
    ensure_registered()
    scene = new_scene()
    scene.storyshade.quality = "draft"
    enable_prefs(server_url=server.url)
    try:
        assert bpy.ops.storyshade.server_check() == {"FINISHED"}
        answer = runtime.health.readiness_for("anime-cel,static,512x512,draft")
        assert answer is not None and answer["ready"] is False
        log = _draw(scene)
        # Download Models for draft, above the list of what is missing (which can run past
        # the bottom of the window)
        offer = log.index(("operator", "storyshade.models_pull"))
        said = [i for i, (kind, text, *_) in enumerate(log) if "cannot run here" in str(text)]
        assert said and offer < said[0], log

        assert bpy.ops.storyshade.models_pull() == {"FINISHED"}  # the size, nothing yet
        run = pull.current("anime-cel,static,512x512,draft")
        assert run is not None and run.state == ASKED and run.plan["needed_bytes"] > 0
        assert not list(server.models.iterdir())
        log = _draw(scene)
        question = " ".join(text for kind, text, *_ in log if kind == "label")
        assert re.search(r"Download [\d.]+ [KMG]?B to the server \([\d.]+ [KMG]?B free", question)
        assert ("operator", "storyshade.models_pull") in log
        assert ("operator", "storyshade.models_pull_cancel") in log

        assert bpy.ops.storyshade.models_pull(confirm=True) == {"FINISHED"}
        assert run.state == DONE, run.error
        assert run.progress["done"] == run.progress["total"] == run.plan["needed_bytes"]
        assert runtime.health.readiness_for("anime-cel,static,512x512,draft")["ready"] is True
        assert ("label", "Models for draft downloaded") in _draw(scene)
        lightning = server.models / "motion" / "animatediff_lightning_4step_diffusers.safetensors"
        assert lightning.is_file()
    finally:
        disable_prefs()


def test_a_download_in_progress_can_be_cancelled(server, fresh_hub) -> None:
    fresh_hub.configure(throttle={f"{DEPTH}/diffusion_pytorch_model.fp16.safetensors": 100_000})
    run = PullRun(Client(server.url, timeout=120), "control_v11f1p_sd15_depth", "standard")
    run.ask()
    run.join(120)
    assert run.state == ASKED
    run.download()
    deadline = time.time() + 60
    while run.progress.get("done", 0) < 50_000:
        assert time.time() < deadline and run.error is None
        time.sleep(0.1)
    assert 0 < run.fraction < 1 and "of" in run.line()
    run.cancel()
    run.join(60)
    assert run.state == CANCELLED
    assert server.get(f"/v1/jobs/{run.job_id}")["state"] == "cancelled"
    assert not (server.models / "controlnet" / "control_v11f1p_sd15_depth").exists()

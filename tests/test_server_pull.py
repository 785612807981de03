"""`POST /v1/models/pull` and `GET /v1/models` on a real server process whose hub is the
stand-in (tests/hubstandin.py): a pull is a job with the render jobs' record, SSE stream and
cancel, for the administrator only, and it survives a server restart by resuming."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from hub_repos import DEPTH
from test_server_helpers import TokenServer, bundle_zip, post_job, read_events, wait_state

ADMIN = "admin-token-0123456789"
ALICE = "alice-token-0123456789"
DEPTH16 = f"{DEPTH}/diffusion_pytorch_model.fp16.safetensors"


@pytest.fixture
def online(monkeypatch, fresh_hub, tmp_path: Path):
    """The server's environment: the stand-in as its hub, no stored token."""
    monkeypatch.setenv("HF_ENDPOINT", fresh_hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    for name in ("HF_TOKEN", "STORYSHADE_OFFLINE", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    return fresh_hub


def start(tmp_path: Path, models: Path, data: str = "data") -> TokenServer:
    clients = tmp_path / "clients.toml"
    clients.write_text(f'alice = "{ALICE}"\n')
    return TokenServer(tmp_path / data, models, ADMIN, "--clients", str(clients)).start()


def as_(srv: TokenServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=srv.url, timeout=120, headers={"Authorization": f"Bearer {token}"})


def test_the_admin_pulls_a_preset_as_a_job_with_progress(online, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    srv = start(tmp_path, models)
    try:
        with as_(srv, ADMIN) as admin, as_(srv, ALICE) as alice:
            # Rendering never fetches: a shot for missing models is refused, the hub untouched.
            refused = post_job(admin, bundle_zip(tmp_path / "b"), {"preset": "anime-cel"})
            assert refused.status_code == 422 and "not found" in refused.json()["error"]
            assert (
                admin.get("/v1/readiness", params={"preset": "anime-cel"}).json()["ready"] is False
            )
            lacking = {p["name"]: p for p in admin.get("/v1/models").json()["presets"]}
            names = {m["name"]: m["pullable"] for m in lacking["anime-cel"]["lacks"]}
            assert names["stable-diffusion-v1-5"] is True and not lacking["anime-cel"]["complete"]
            assert lacking["preview"]["complete"]
            assert online.requests() == []

            body = {"names": ["anime-cel,standard"]}
            denied = alice.post("/v1/models/pull", json=body)
            assert denied.status_code == 403 and "administrator" in denied.json()["error"]
            unknown = admin.post("/v1/models/pull", json={"names": ["no-such"]})
            assert unknown.status_code == 400 and unknown.json()["field"] == "names"

            plan = admin.post("/v1/models/pull", json={**body, "dry_run": True})
            assert plan.status_code == 200, plan.text
            plan = plan.json()
            assert {m["name"] for m in plan["models"]} >= {
                "stable-diffusion-v1-5",
                "control_v11f1p_sd15_depth",
            }
            assert plan["needed_bytes"] > 0 and str(models) not in plan.__repr__()
            assert not list(models.iterdir())  # the dry run wrote nothing

            resp = admin.post("/v1/models/pull", json=body)
            assert resp.status_code == 201, resp.text
            job = resp.json()
            assert job["kind"] == "pull" and job["state"] in ("queued", "running")
            events = read_events(srv.url, job["id"], headers=admin.headers)
            progress = [e for e in events if e["type"] == "progress"]
            assert progress and all(e["stage"] == "downloading" for e in progress)
            last = progress[-1]
            assert last["done"] == last["total"] == plan["needed_bytes"]
            assert {"rate", "file", "model", "file_done", "file_total"} <= set(last)
            assert events[-1]["type"] == "state" and events[-1]["state"] == "done", events[-3:]
            assert any(e.get("message") == "ready" for e in events)
            assert str(models) not in str(events)  # the server's folders stay its own

            assert admin.get(f"/v1/jobs/{job['id']}").json()["state"] == "done"
            assert job["id"] in [j["id"] for j in admin.get("/v1/jobs").json()["jobs"]]
            assert alice.get(f"/v1/jobs/{job['id']}").status_code == 404
            assert alice.delete(f"/v1/jobs/{job['id']}").status_code == 404
            assert job["id"] not in [j["id"] for j in alice.get("/v1/jobs").json()["jobs"]]
            ready = admin.get("/v1/readiness", params={"preset": "anime-cel,standard"}).json()
            assert ready["ready"] is True, ready
            lacking = {p["name"]: p for p in admin.get("/v1/models").json()["presets"]}
            assert lacking["anime-cel"]["complete"] and lacking["standard"]["complete"]
    finally:
        srv.stop()


def test_cancel_keeps_the_partial_and_a_restart_resumes(online, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    online.configure(throttle={DEPTH16: 100_000})
    body = {"names": ["control_v11f1p_sd15_depth"]}
    part = (
        models
        / "controlnet"
        / ".control_v11f1p_sd15_depth.pull"
        / "diffusion_pytorch_model.safetensors.part"
    )
    srv = start(tmp_path, models)
    try:
        with as_(srv, ADMIN) as admin:
            first = admin.post("/v1/models/pull", json=body).json()
            wait_state(admin, first["id"], ("running",))
            _wait(lambda: part.is_file() and part.stat().st_size > 50_000)
            assert admin.delete(f"/v1/jobs/{first['id']}").status_code == 200
            done = wait_state(admin, first["id"])
            assert done["state"] == "cancelled" and done["kind"] == "pull"
            kept = part.stat().st_size
            assert kept > 50_000  # what it fetched stays for the next pull

            second = admin.post("/v1/models/pull", json=body).json()
            _wait(lambda: part.stat().st_size > kept + 20_000)
    finally:
        srv.kill()  # the server dies mid-pull; its child pull dies with it
    online.configure()
    online.clear_log()
    srv = start(tmp_path, models)
    try:
        with as_(srv, ADMIN) as admin:
            resumed = wait_state(admin, second["id"])
            assert resumed["state"] == "done", resumed
            assert resumed["attempts"] == 2
            events = read_events(srv.url, second["id"], headers=admin.headers)
            assert any(e.get("resumed") for e in events)
    finally:
        srv.stop()
    final = (
        models / "controlnet" / "control_v11f1p_sd15_depth" / "diffusion_pytorch_model.safetensors"
    )
    assert final.read_bytes() == (online.root / DEPTH16).read_bytes()
    ranges = [r["range"] for r in online.requests() if r["range"]]
    assert ranges and int(ranges[0].split("=")[1].rstrip("-")) > kept


def test_an_offline_server_never_downloads(online, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("STORYSHADE_OFFLINE", "1")
    models = tmp_path / "models"
    models.mkdir()
    srv = start(tmp_path, models)
    try:
        with as_(srv, ADMIN) as admin:
            resp = admin.post("/v1/models/pull", json={"names": ["control_v11f1p_sd15_depth"]})
            assert resp.status_code == 403 and resp.json()["field"] == "STORYSHADE_OFFLINE"
    finally:
        srv.stop()
    assert online.requests() == []


def _wait(predicate, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)

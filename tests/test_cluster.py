"""`storyshade serve --ray` against a real Ray cluster on loopback: a head started here with
`ray start` (2 CPUs, token auth), a real server process pointed at it with two workers, the
tiny models and real HTTP. Workers are killed with SIGKILL on their real PIDs.

What is checked: N jobs all finish with the frames an in-process render makes; jobs go to
the worker that has their models; a worker killed mid-job (during denoising, and after it
sent some frames) gets its job re-queued and finished elsewhere, each frame written and
announced once; cancel reaches a job running on a worker, which lives on.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import write_synthetic_bundle
from PIL import Image
from serverproc import REPO, ServerProcess, free_port
from test_server_helpers import submit, wait_state, zip_dir

if importlib.util.find_spec("ray") is None:
    if os.environ.get("CI"):  # CI installs .[dev], which brings storyshade[cluster]: never skip
        raise RuntimeError("Ray is missing: the cluster tests need `pip install -e '.[cluster]'`")
    pytest.skip(
        "Ray is not installed: `pip install -e '.[cluster]'` to run the cluster tests",
        allow_module_level=True,
    )

# about 2.5 minutes on 2 cores, mostly Ray starting up; one Ray cluster at a time, so one
# test process runs them all (pytest-xdist's loadgroup)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]
TERMINAL = ("done", "failed", "cancelled")
FIGURES: Counter[str] = Counter()


class RayHead:
    """`ray start --head --block` on 127.0.0.1 in its own process group, stopped by group
    (never `ray stop`, which would stop every Ray on the machine)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.tmp = tempfile.mkdtemp(prefix="rayt", dir="/tmp")  # short: socket paths
        self.log = Path(self.tmp) / "head.log"
        self.env = env
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> RayHead:
        ray_cli = Path(sys.executable).parent / "ray"
        cmd = [str(ray_cli), "start", "--head", "--block", "--node-ip-address=127.0.0.1"]
        cmd += [f"--port={self.port}", "--num-cpus=2", "--num-gpus=0", f"--temp-dir={self.tmp}"]
        cmd += ["--include-dashboard=false", "--disable-usage-stats"]
        # Ports Ray would otherwise fix (10001, 52365): two test runs on one machine coexist.
        cmd += [f"--ray-client-server-port={free_port()}"]
        cmd += [f"--dashboard-agent-listen-port={free_port()}"]
        self.proc = subprocess.Popen(
            cmd, stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=self.env,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited:\n{self.log.read_text()}")
            if "Ray runtime started" in self.log.read_text():
                return self
            time.sleep(0.5)
        raise RuntimeError(f"ray head did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path) -> Path:
    """The tiny models plus a second checkpoint (a copy: another ModelKey, same weights)."""
    root = tmp_path_factory.mktemp("cluster-models") / "models"
    shutil.copytree(tiny_models, root)
    shutil.copytree(root / "checkpoints" / "tiny-sd15", root / "checkpoints" / "tiny-sd15-b")
    return root


@pytest.fixture(scope="module")
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, models: Path):
    token = secrets.token_hex(32)
    ray_env = {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # every Ray server on 127.0.0.1 only
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
    }
    saved = {k: os.environ.get(k) for k in ray_env}
    os.environ.update(ray_env)  # the server process inherits them (as a real deployment)
    head = RayHead(dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "backend"))).start()
    server = ServerProcess(
        tmp_path_factory.mktemp("cluster") / "data", models, "--ray", head.address
    )
    try:
        server.start(timeout=120)
        wait_workers(server, idle=2)
        yield server
    finally:
        server.stop()
        head.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled():
            print(f"\n[figures] cluster: {dict(FIGURES)}", flush=True)


@pytest.fixture
def client(srv: ServerProcess):
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        yield c


# -- helpers -------------------------------------------------------------------------------
def pool(srv: ServerProcess) -> list[dict]:
    return srv.get("/v1/health")["workers"]["pool"]


def wait_workers(srv: ServerProcess, idle: int, timeout: float = 180) -> list[dict]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        workers = pool(srv)
        if sum(w["state"] == "idle" for w in workers) >= idle:
            return workers
        time.sleep(0.3)
    raise TimeoutError(f"fewer than {idle} Ray workers idle: {workers}")


def events(url: str, job_id: str) -> list[dict]:
    """The whole event history of a finished job."""
    with httpx.Client(base_url=url, timeout=60) as c:
        text = c.get(f"/v1/jobs/{job_id}/events").text
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


def notes(history: list[dict], key: str) -> list[dict]:
    return [e for e in history if e["type"] == "note" and key in e]


def check_exactly_once(job: dict, history: list[dict]) -> None:
    """One frame event per frame, one terminal state, every frame on record."""
    frames = Counter(e["frame"] for e in history if e["type"] == "frame")
    assert frames == Counter(job["frame_numbers"]), frames
    finals = [e["state"] for e in history if e["type"] == "state" and e["state"] in TERMINAL]
    assert finals == [job["state"]], finals
    assert job["frames_done"] == job["frame_numbers"]


def frame_pixels(client: httpx.Client, job: dict) -> dict[int, np.ndarray]:
    out = {}
    for f in job["frame_numbers"]:
        resp = client.get(f"/v1/jobs/{job['id']}/frames/{f}")
        assert resp.status_code == 200
        out[f] = np.asarray(Image.open(io.BytesIO(resp.content)).convert("RGB"), np.int16)
    return out


def reference(models: Path, bundle: Path, overrides: dict) -> dict[int, np.ndarray]:
    """The same job rendered in this process, one torch thread, no server, no Ray."""
    import torch
    from storyshade.bundle import load_bundle
    from storyshade.presets import resolve
    from storyshade.render import render_bundle

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = Path(tempfile.mkdtemp(prefix="ref-"))
    try:
        settings = resolve("tiny", {k: v for k, v in overrides.items() if k != "preset"})
        paths = render_bundle(load_bundle(bundle), settings, out, [models])
        return {int(p.stem): np.asarray(Image.open(p).convert("RGB"), np.int16) for p in paths}
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(out, ignore_errors=True)


def same_pictures(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for f in a:
        assert a[f].shape == b[f].shape
        assert np.abs(a[f] - b[f]).max() <= 2, f"frame {f} differs"


# -- tests ---------------------------------------------------------------------------------
def test_jobs_run_on_both_workers_with_the_right_frames(srv, client, models, tmp_path) -> None:
    bundle = write_synthetic_bundle(tmp_path / "b", 2)
    data = zip_dir(bundle)
    n = 6
    jobs = [
        submit(client, data, {"preset": "tiny", "steps": 1, "seed": 100 + i}, tag=f"n-{i}")
        for i in range(n)
    ]
    finals = [wait_state(client, j["id"], timeout=300) for j in jobs]
    assert [f["state"] for f in finals] == ["done"] * n
    used = Counter()
    for job in finals:
        history = events(srv.url, job["id"])
        check_exactly_once(job, history)
        (ran,) = notes(history, "worker")
        used[ran["worker"]] += 1
    assert set(used) == {"w0", "w1"}, f"both workers must take jobs: {used}"
    for i in (0, n - 1):  # results are the ones a plain in-process render gives
        same_pictures(
            frame_pixels(client, finals[i]),
            reference(models, bundle, {"steps": 1, "seed": 100 + i}),
        )
    workers = pool(srv)
    assert [w["model_loads"] for w in workers] == [1, 1], "same models: one load per worker"

    again = submit(client, data, {"preset": "tiny", "steps": 1, "seed": 100})
    again = wait_state(client, again["id"])
    assert again["state"] == "done" and "frames" in again["reused"]  # served by the server
    assert not notes(events(srv.url, again["id"]), "worker"), "a cache hit never leaves"
    FIGURES.update(jobs=n + 1, done=n + 1, workers_used=len(used))


def test_jobs_go_to_the_worker_that_has_their_models(srv, client, tmp_path) -> None:
    data = zip_dir(write_synthetic_bundle(tmp_path / "b", 2))
    wait_workers(srv, idle=2)
    warm = submit(client, data, {"preset": "tiny", "steps": 1, "seed": 199})  # a is loaded
    assert wait_state(client, warm["id"])["state"] == "done"
    loads = sum(w["model_loads"] for w in pool(srv))
    ran: dict[str, list[str]] = {"a": [], "b": []}
    for i, ckpt in enumerate(["b", "a", "b", "a", "b"]):
        settings = {"preset": "tiny", "steps": 1, "seed": 200 + i}
        if ckpt == "b":
            settings["checkpoint"] = "tiny-sd15-b"
        job = wait_state(client, submit(client, data, settings)["id"])
        assert job["state"] == "done"
        ran[ckpt].append(notes(events(srv.url, job["id"]), "worker")[0]["worker"])
    assert len(set(ran["b"])) == 1, f"checkpoint b moved between workers: {ran}"
    assert sum(w["model_loads"] for w in pool(srv)) == loads + 1, "b loaded once, a never"
    FIGURES.update(jobs=6, done=6)


def test_worker_killed_mid_job_gets_its_job_requeued(srv, client, models, tmp_path) -> None:
    bundle = write_synthetic_bundle(tmp_path / "b", 2)
    settings = {"preset": "tiny", "steps": 3, "seed": 300}
    wait_workers(srv, idle=2)
    job = submit(client, zip_dir(bundle), settings)
    victim = None
    deadline = time.time() + 120
    while victim is None and time.time() < deadline:
        record = client.get(f"/v1/jobs/{job['id']}").json()
        if record["progress"].get("stage") == "denoising":
            victim = next(w for w in pool(srv) if w["job"] == job["id"])
        time.sleep(0.05)
    assert victim, "the job never reached denoising"
    os.kill(victim["pid"], signal.SIGKILL)

    final = wait_state(client, job["id"], timeout=300)
    assert final["state"] == "done", final
    history = events(srv.url, job["id"])
    check_exactly_once(final, history)
    (requeue,) = notes(history, "requeued")
    assert requeue["worker"] == victim["name"] and requeue["pid"] == victim["pid"]
    runs = notes(history, "node")
    assert len(runs) == 2 and runs[1]["pid"] != victim["pid"], "must finish on another worker"
    same_pictures(frame_pixels(client, final), reference(models, bundle, settings))
    replaced = next(w for w in wait_workers(srv, idle=2) if w["name"] == victim["name"])
    assert replaced["lost"] >= 1 and replaced["pid"] != victim["pid"]
    FIGURES.update(jobs=1, done=1, kills=1, requeues=1)


def test_frames_received_before_a_kill_are_kept_and_recorded_once(srv, client, tmp_path) -> None:
    """Kill the worker the moment its first frame arrives: the frames already here stay as
    they are, the re-run's copies are dropped, and every frame is announced once."""
    data = zip_dir(write_synthetic_bundle(tmp_path / "b", 8))
    for attempt in range(3):  # the kill races the remaining frames (~0.1 s apart): retry
        wait_workers(srv, idle=2)
        settings = {"preset": "tiny", "steps": 1, "seed": 400 + attempt, "decode_chunk_size": 1}
        job = submit(client, data, settings)
        pid = first = None
        with httpx.Client(base_url=srv.url, timeout=300) as c:
            with c.stream("GET", f"/v1/jobs/{job['id']}/events") as resp:
                for line in resp.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    event = json.loads(line[5:])
                    if event["type"] == "note" and "node" in event:
                        pid = event["pid"]
                    elif event["type"] == "frame":
                        os.kill(pid, signal.SIGKILL)
                        first = event["frame"]
                        break
        kept = client.get(f"/v1/jobs/{job['id']}/frames/{first}").content
        final = wait_state(client, job["id"], timeout=300)
        assert final["state"] == "done", final
        history = events(srv.url, job["id"])
        check_exactly_once(final, history)
        FIGURES.update(jobs=1, done=1, kills=1)
        requeues = notes(history, "requeued")
        if not requeues:  # every frame was already sent: nothing to re-run, nothing lost
            continue
        FIGURES.update(requeues=1)
        assert first in requeues[0]["frames_kept"]
        assert len(requeues[0]["frames_kept"]) < len(final["frame_numbers"])
        after = client.get(f"/v1/jobs/{job['id']}/frames/{first}").content
        assert hashlib.sha256(after).digest() == hashlib.sha256(kept).digest()
        return
    pytest.fail("three kills all came after the last frame; the re-queue path never ran")


def test_cancel_reaches_a_job_running_on_a_worker(srv, client, tmp_path) -> None:
    data = zip_dir(write_synthetic_bundle(tmp_path / "b", 2))
    wait_workers(srv, idle=2)
    job = submit(client, data, {"preset": "tiny", "steps": 40, "seed": 500})
    deadline = time.time() + 120
    while time.time() < deadline:
        record = client.get(f"/v1/jobs/{job['id']}").json()
        if record["progress"].get("stage") == "denoising":
            break
        time.sleep(0.05)
    worker = next(w for w in pool(srv) if w["job"] == job["id"])
    asked = time.time()
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 200
    final = wait_state(client, job["id"], timeout=60)
    took = time.time() - asked
    assert final["state"] == "cancelled"
    assert took < 20, f"cancel took {took:.1f} s: it did not reach the worker"
    steps = [e for e in events(srv.url, job["id"]) if e.get("stage") == "denoising"]
    assert steps[-1]["done"] < 40
    after = next(w for w in wait_workers(srv, idle=2) if w["name"] == worker["name"])
    assert after["pid"] == worker["pid"] and after["lost"] == worker["lost"], "worker lives on"
    FIGURES.update(jobs=1, cancelled=1)

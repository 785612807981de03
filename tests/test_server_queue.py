"""The queue under load, against one real server process on loopback: many clients at once,
priorities, queue positions, cancel races, clients that vanish, the stage cache and
resident models. Jobs are tiny (2 frames, 1 step) and most reruns are cache hits, so the
module runs in about a minute on 2 cores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import write_synthetic_bundle
from serverproc import ServerProcess
from test_server_helpers import TINY, bundle_zip, read_events, submit, wait_state

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path):
    with ServerProcess(tmp_path_factory.mktemp("queue") / "data", tiny_models) as proc:
        yield proc


@pytest.fixture
def client(srv: ServerProcess):
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        yield c


def _states(events: list[dict]) -> list[str]:
    return [e["state"] for e in events if e["type"] == "state"]


def test_twenty_concurrent_clients_lose_and_duplicate_nothing(srv, tmp_path, capsys) -> None:
    data = bundle_zip(tmp_path / "b")
    n = 20

    def one_client(i: int) -> tuple[str, dict, list[bytes]]:
        with httpx.Client(base_url=srv.url, timeout=120) as c:
            job = submit(c, data, {**TINY, "seed": 100 + i % 2}, tag=f"crowd-{i}")
            final = wait_state(c, job["id"], timeout=400)
            frames = [c.get(f"/v1/jobs/{job['id']}/frames/{f}") for f in final["frame_numbers"]]
            assert all(r.status_code == 200 for r in frames)
            return job["id"], final, [r.content for r in frames]

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one_client, range(n)))

    ids = [job_id for job_id, _, _ in results]
    finals = [final for _, final, _ in results]
    assert len(set(ids)) == n, "a job id was handed out twice"
    assert [f["state"] for f in finals] == ["done"] * n
    assert all(f["frames_done"] == f["frame_numbers"] == [1, 2] for f in finals)
    assert all(png.startswith(PNG) for _, _, pngs in results for png in pngs)
    listed = httpx.get(f"{srv.url}/v1/jobs", timeout=30).json()["jobs"]
    crowd = [j for j in listed if j["tag"].startswith("crowd-")]
    assert sorted(j["id"] for j in crowd) == sorted(ids), "listing lost or duplicated a job"
    assert sorted(j["tag"] for j in crowd) == sorted(f"crowd-{i}" for i in range(n))
    with capsys.disabled():
        print(f"\n[figures] concurrent: submitted={n} completed={len(finals)} lost=0 "
              f"duplicated={n - len(set(ids))} cache-served={sum('frames' in f['reused'] for f in finals)}")  # fmt: skip


def test_priority_then_fifo_with_positions_and_resumable_events(srv, client, tmp_path) -> None:
    data = bundle_zip(tmp_path / "b")
    warm = submit(client, data, {**TINY, "seed": 7})
    assert wait_state(client, warm["id"])["state"] == "done"
    blocker = submit(client, data, {**TINY, "seed": 8, "steps": 3})
    wait_state(client, blocker["id"], ("running", "done"))
    head = read_events(srv.url, blocker["id"], stop=lambda e: e.get("stage") == "denoising")

    same = {**TINY, "seed": 7}  # served by the cache once it runs: the order is what counts
    b = submit(client, data, same, tag="b")
    c = submit(client, data, same, priority=5, tag="c")
    d = submit(client, data, same, tag="d")
    e = submit(client, data, same, priority=5, tag="e")
    queued = client.get("/v1/jobs", params={"state": "queued"}).json()["jobs"]
    if client.get(f"/v1/jobs/{blocker['id']}").json()["state"] == "running":
        order = [j["tag"] for j in sorted(queued, key=lambda j: j["position"])]
        assert order == ["c", "e", "b", "d"]

    finals = {t: wait_state(client, j["id"]) for t, j in zip("bcde", (b, c, d, e), strict=True)}
    assert sorted(finals, key=lambda t: finals[t]["started"]) == ["c", "e", "b", "d"]
    assert all(f["state"] == "done" and f["reused"] == ["frames"] for f in finals.values())

    d_events = read_events(srv.url, d["id"])
    positions = [ev["position"] for ev in d_events if ev.get("stage") == "queued"]
    assert positions and positions[-1] == 1, positions
    assert any("eta_start_s" in ev for ev in d_events if ev.get("stage") == "queued")

    # Resume the blocker's stream after the last event read while it ran.
    rest = read_events(srv.url, blocker["id"], last=head[-1]["id"])
    whole = head + rest
    assert [ev["id"] for ev in whole] == list(range(1, len(whole) + 1))
    assert whole == read_events(srv.url, blocker["id"])
    assert _states(whole) == ["queued", "running", "done"]
    denoise = [ev for ev in whole if ev.get("stage") == "denoising"]
    assert denoise[-1]["done"] == denoise[-1]["total"] and "eta_s" in denoise[-1]
    assert "step" in denoise[-1] and "window" in denoise[-1]
    frames = [ev for ev in whole if ev["type"] == "frame"]
    assert [ev["frame"] for ev in frames] == [1, 2]
    assert client.get(frames[0]["url"]).content.startswith(PNG)


def test_cancel_races(srv, client, tmp_path) -> None:
    data = bundle_zip(tmp_path / "b")
    running = submit(client, data, {**TINY, "seed": 300, "steps": 6})
    queued = submit(client, data, {**TINY, "seed": 301})

    # While queued: cancelled at once, never started; a second cancel changes nothing.
    wait_state(client, running["id"], ("running",))
    first = client.delete(f"/v1/jobs/{queued['id']}")
    again = client.delete(f"/v1/jobs/{queued['id']}")
    assert first.status_code == again.status_code == 200
    assert first.json()["state"] == again.json()["state"] == "cancelled"
    assert first.json()["started"] is None

    # While running: stops at the next step, from any number of racing cancels.
    read_events(srv.url, running["id"], stop=lambda e: e.get("stage") == "denoising")
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: client.delete(f"/v1/jobs/{running['id']}"), range(6)))
    assert all(a.status_code == 200 and a.json()["cancel_requested"] for a in answers)
    final = wait_state(client, running["id"])
    assert final["state"] == "cancelled"
    events = read_events(srv.url, running["id"])
    asked = next(i for i, e in enumerate(events) if e.get("cancel"))
    steps_after = [e for e in events[asked:] if e.get("stage") == "denoising"]
    assert len(steps_after) <= 1, "cancel took longer than one step"
    assert sum(bool(e.get("cancel")) for e in events) == 1
    assert _states(events) == ["queued", "running", "cancelled"]
    assert _states(read_events(srv.url, queued["id"])) == ["queued", "cancelled"]

    # Cancelled the instant it was submitted (racing the worker's pick-up).
    for k in range(3):
        job = submit(client, data, {**TINY, "seed": 310 + k})
        assert client.delete(f"/v1/jobs/{job['id']}").status_code == 200
        assert wait_state(client, job["id"])["state"] == "cancelled"

    # After done: nothing changes and the frames stay.
    done = submit(client, data, {**TINY, "seed": 320})
    assert wait_state(client, done["id"])["state"] == "done"
    after = client.delete(f"/v1/jobs/{done['id']}")
    assert after.status_code == 200 and after.json()["state"] == "done"
    assert client.get(f"/v1/jobs/{done['id']}/frames/1").content.startswith(PNG)


def test_stage_cache_identical_rerun_and_prompt_only(srv, client, tmp_path) -> None:
    data = bundle_zip(tmp_path / "b")
    settings = {**TINY, "seed": 500, "prompt": "a red barn"}
    first = wait_state(client, submit(client, data, settings)["id"])
    rerun = wait_state(client, submit(client, data, settings)["id"])
    assert first["state"] == rerun["state"] == "done"
    assert rerun["reused"] == ["frames"]
    first_s = first["finished"] - first["started"]
    rerun_s = rerun["finished"] - rerun["started"]
    assert rerun_s <= 0.05 * first_s, (rerun_s, first_s)
    for f in (1, 2):
        a = client.get(f"/v1/jobs/{first['id']}/frames/{f}").content
        assert client.get(f"/v1/jobs/{rerun['id']}/frames/{f}").content == a
    events = read_events(srv.url, rerun["id"])
    assert any(e["type"] == "note" and e.get("reused") == "frames" for e in events)
    assert not [e for e in events if e.get("stage") in ("denoising", "loading")]

    prompt = wait_state(client, submit(client, data, {**settings, "prompt": "a blue barn"})["id"])
    assert prompt["state"] == "done" and prompt["reused"] == ["controls"]
    events = read_events(srv.url, prompt["id"])
    assert any(e["type"] == "note" and e.get("reused") == "controls" for e in events)
    before_denoise = events[
        : next(i for i, e in enumerate(events) if e.get("stage") == "denoising")
    ]
    computing = [
        e for e in before_denoise
        if e["type"] == "progress" and e["stage"] not in ("queued", "loading") and not e.get("cached")
    ]  # fmt: skip
    assert computing == [], "a prompt-only rerun recomputed control images"

    models = client.get("/v1/health").json()["models"]
    assert models["loads"] == 1, "models were reloaded between jobs"


def test_killed_client_never_cancels_and_addon_reattaches(srv, tmp_path) -> None:
    """A client (the add-on's own) dies mid-job; a fresh one, as after a Blender restart,
    reattaches by job id, resumes the event stream and fetches every frame."""
    bundle = write_synthetic_bundle(tmp_path / "b", frames=2)
    script = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from pathlib import Path\n"
        "from addon.remote.client import Client\n"
        f"c = Client({srv.url!r})\n"
        f"job = c.submit(Path({str(bundle)!r}), {{'preset': 'tiny', 'steps': 4, 'seed': 600}})\n"
        "print(json.dumps({'submitted': job['id']}), flush=True)\n"
        "for e in c.events(job['id']):\n"
        "    print(json.dumps(e), flush=True)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "backend"))
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    )
    job_id, last = None, 0
    assert child.stdout is not None
    for line in child.stdout:
        msg = json.loads(line)
        if "submitted" in msg:
            job_id = msg["submitted"]
            continue
        last = msg["id"]
        if msg.get("stage") == "denoising":
            break
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert job_id and last

    sys.path.insert(0, str(REPO))
    from addon.remote.client import Client

    client = Client(srv.url)  # the add-on after a restart: it kept only the job id
    assert client.job(job_id)["state"] in ("running", "done")
    rest = list(client.events(job_id, last))
    assert rest[0]["id"] == last + 1
    assert rest[-1]["type"] == "state" and rest[-1]["state"] == "done"
    for frame in client.job(job_id)["frame_numbers"]:
        assert client.frame(job_id, frame).startswith(PNG)


SUBMIT_ONLY = """
import json, sys
from pathlib import Path
from fastapi.testclient import TestClient
from storyshade.server.app import create_app
from storyshade.server.config import ServerConfig

data_dir, models, bundle = map(Path, sys.argv[1:4])
app = create_app(ServerConfig(data_dir, [models]), start_worker=False)
client = TestClient(app, base_url="http://127.0.0.1")
files = {"bundle": ("b.zip", bundle.read_bytes(), "application/zip")}
resp = client.post("/v1/jobs", files=files, data={"settings": json.dumps({"preset": "tiny"})})
heavy = sorted(m for m in ("diffusers", "transformers", "peft") if m in sys.modules)
print(json.dumps({"status": resp.status_code, "heavy": heavy}))
"""


def test_a_submit_answers_without_importing_an_engine(tmp_path, tiny_models) -> None:
    """Importing diffusers takes seconds; a first submit that did it (to check the engine's
    name) kept a client waiting ~5 s. The job's worker pays that cost when it starts."""
    bundle = tmp_path / "b.zip"
    bundle.write_bytes(bundle_zip(tmp_path / "shot"))
    out = subprocess.run(
        [sys.executable, "-c", SUBMIT_ONLY, str(tmp_path / "data"), str(tiny_models), str(bundle)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"status": 201, "heavy": []}

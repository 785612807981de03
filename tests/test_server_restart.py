"""Nothing finished is lost when the server dies: SIGKILL mid-job, restart on the same data
folder, and every job ends done with its frames; plus what a crash at other moments leaves
behind (a half-written upload, a job with all frames, a job that keeps killing the server)."""

from __future__ import annotations

import json
import shutil

import httpx
import pytest
from serverproc import ServerProcess
from test_server_helpers import TINY, bundle_zip, read_events, submit, wait_state

PNG = b"\x89PNG\r\n\x1a\n"


def _frames(client: httpx.Client, job: dict) -> dict[int, bytes]:
    return {f: client.get(f"/v1/jobs/{job['id']}/frames/{f}").content for f in job["frames_done"]}


def test_sigkill_mid_job_then_restart_loses_nothing(tmp_path, tiny_models, capsys) -> None:
    data_dir = tmp_path / "data"
    data = bundle_zip(tmp_path / "b")
    first = ServerProcess(data_dir, tiny_models).start()
    try:
        with httpx.Client(base_url=first.url, timeout=60) as c:
            done = wait_state(c, submit(c, data, {**TINY, "seed": 1})["id"])
            before = _frames(c, done)
            mid = submit(c, data, {**TINY, "seed": 2, "steps": 4})
            later = submit(c, data, {**TINY, "seed": 3})
            again = submit(c, data, {**TINY, "seed": 1}, priority=1)  # same as `done`
            seen = read_events(first.url, mid["id"], stop=lambda e: e.get("stage") == "denoising")
    finally:
        first.kill()  # SIGKILL: no shutdown code runs
    assert done["state"] == "done" and set(before) == {1, 2}

    second = ServerProcess(data_dir, tiny_models).start()
    try:
        with httpx.Client(base_url=second.url, timeout=60) as c:
            assert c.get(f"/v1/jobs/{done['id']}").json()["state"] == "done"
            assert _frames(c, done) == before, "a finished job's frames changed or vanished"
            finals = {j["id"]: wait_state(c, j["id"]) for j in (mid, later, again)}
            assert {f["state"] for f in finals.values()} == {"done"}
            assert finals[mid["id"]]["attempts"] == 2
            assert finals[again["id"]]["reused"] == ["frames"], "disk cache lost on restart"
            listed = c.get("/v1/jobs").json()["jobs"]
            assert sorted(j["id"] for j in listed) == sorted([done["id"], *finals])
            events = read_events(second.url, mid["id"])
            assert events[: len(seen)] == seen, "event history changed across the restart"
            assert [e["id"] for e in events] == list(range(1, len(events) + 1))
            assert any(e.get("resumed") for e in events if e["type"] == "note")
            assert [e["state"] for e in events if e["type"] == "state"] == [
                "queued", "running", "queued", "running", "done"
            ]  # fmt: skip
            assert all(p.startswith(PNG) for p in _frames(c, finals[mid["id"]]).values())
    finally:
        second.stop()
    with capsys.disabled():
        print(f"\n[figures] sigkill-restart: submitted=4 completed={1 + len(finals)} lost=0")

    # What a crash at other moments leaves behind, as a restart finds it.
    jobs = data_dir / "jobs"
    src = jobs / done["id"]

    def crashed(name: str, attempts: int, keep: list[int]) -> str:
        folder = jobs / name
        shutil.copytree(src, folder)
        (folder / "events.jsonl").unlink()
        record = json.loads((folder / "job.json").read_text())
        record.update(id=name, state="running", attempts=attempts, finished=None)
        (folder / "job.json").write_text(json.dumps(record))
        for png in (folder / "frames").glob("*.png"):
            if int(png.stem) not in keep:
                png.unlink()
        (folder / "frames" / "0002.tmp").write_bytes(b"half a frame")
        return name

    all_written = crashed("aaaaaaaaaaaa", 1, [1, 2])
    doomed = crashed("bbbbbbbbbbbb", 3, [1])
    (jobs / "cccccccccccc" / "bundle").mkdir(parents=True)  # an upload cut off mid-way
    third = ServerProcess(data_dir, tiny_models).start()
    try:
        with httpx.Client(base_url=third.url, timeout=60) as c:
            assert c.get(f"/v1/jobs/{all_written}").json()["state"] == "done"
            failed = c.get(f"/v1/jobs/{doomed}").json()
            assert failed["state"] == "failed" and failed["frames_done"] == [1]
            assert "3 times" in failed["error"]["error"]
            assert c.get(f"/v1/jobs/{doomed}/frames/1").content.startswith(PNG)
            assert c.get("/v1/jobs/cccccccccccc").status_code == 404
        assert not (jobs / "cccccccccccc").exists()
        assert not (jobs / doomed / "frames" / "0002.tmp").exists()

        # One data folder, one server: a second one refuses to start.
        with pytest.raises(RuntimeError, match="in use by another StoryShade server"):
            ServerProcess(data_dir, tiny_models).start()
    finally:
        third.stop()

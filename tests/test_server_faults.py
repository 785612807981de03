"""No fault stops the queue (#23 item 3, and the 507 of item 5): a full disk, a failing disk
and a worker thread that ends anyway each fail the job they hit with its reason, and the
next job runs. Two ways of making the disk fail, both against a real server process:

- a real small filesystem: a tmpfs mounted in a private mount namespace (`unshare -m`,
  root only), filled and freed from outside through /proc/PID/root;
- faults injected where the server writes (tests/faultserve.py: an audit hook makes the
  opens of chosen paths fail): events, the job record, frames, the stage cache and the
  upload spool, each on its own.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import write_synthetic_bundle
from serverproc import REPO, ServerProcess
from test_server_helpers import TINY, TokenServer, bundle_zip, post_job, read_events, wait_state

PREVIEW = {"preset": "preview", "width": 64, "height": 64}
SLOW = {**TINY, "steps": 30}  # a job that is still running while a test fills the disk


def _padded_zip(root: Path, mib: int) -> bytes:
    """A valid bundle zip over the 1 MiB the multipart parser keeps in memory: the upload
    spools to the data folder's tmp/ (the padding is never unpacked)."""
    bundle = write_synthetic_bundle(root, frames=2)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(p for p in bundle.rglob("*") if p.is_file()):
            zf.write(path, path.relative_to(bundle).as_posix())
        zf.writestr("padding.bin", os.urandom(mib << 20))
    return buf.getvalue()


# -- a real small filesystem ---------------------------------------------------------------
def _can_mount() -> str | None:
    """Why a private tmpfs cannot be made here, or None."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    if not (shutil.which("unshare") and shutil.which("nsenter")):
        return "needs unshare and nsenter (util-linux)"
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "true"], capture_output=True, timeout=30
    )
    if probe.returncode:
        return f"no private mount namespace here ({probe.stderr.decode().strip()[:120]})"
    return None


NO_MOUNT = _can_mount()


class SmallDisk:
    """A tmpfs of `mib` MiB at `where`, seen only by processes entered into its namespace.

    The holder process (a `sleep`) keeps the namespace, and so the tmpfs, alive across
    server restarts; the test reaches the files through /proc/<holder>/root."""

    def __init__(self, where: Path, mib: int) -> None:
        where.mkdir(parents=True)
        self.where = where
        script = f"mount -t tmpfs -o size={mib}m tmpfs '{where}' && echo ready && exec sleep 3600"
        self.holder = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.holder.stdout is not None and self.holder.stdout.readline() == "ready\n"
        self.outside = Path(f"/proc/{self.holder.pid}/root") / where.relative_to("/")
        self.enter = ["nsenter", "-t", str(self.holder.pid), "-m"]

    def fill(self) -> int:
        """Write a filler file until the disk refuses; how many bytes it took."""
        filler = self.outside / "filler"
        written = 0
        with filler.open("wb") as fh:
            try:
                while True:
                    fh.write(b"\0" * (256 << 10))
                    fh.flush()
                    written += 256 << 10
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        return written

    def free(self) -> None:
        (self.outside / "filler").unlink(missing_ok=True)

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait(10)


@pytest.fixture
def small_disk(tmp_path: Path):
    if NO_MOUNT:
        pytest.skip(f"no real small filesystem: {NO_MOUNT}; the injected faults below cover it")
    disk = SmallDisk(tmp_path / "small", 96)
    try:
        yield disk
    finally:
        disk.close()


def _server(disk: SmallDisk, models: Path, *extra: str) -> ServerProcess:
    return ServerProcess(disk.where / "data", models, *extra, prefix=disk.enter)


def _record(disk: SmallDisk, job_id: str) -> dict:
    return json.loads((disk.outside / "data" / "jobs" / job_id / "job.json").read_text())


def _until(check, timeout: float = 30.0):
    deadline = time.time() + timeout
    while True:
        value = check()
        if value or time.time() > deadline:
            return value
        time.sleep(0.2)


def test_full_disk_fails_the_job_and_the_queue_goes_on(small_disk, tiny_models, tmp_path) -> None:
    data = bundle_zip(tmp_path / "b")
    srv = _server(small_disk, tiny_models, "--min-free-mb", "8").start()
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            assert c.get("/v1/health").json()["status"] == "ok"
            blocker = post_job(c, data, SLOW).json()
            wait_state(c, blocker["id"], ("running",))
            victim = post_job(c, data, PREVIEW).json()  # queued behind the blocker
            assert small_disk.fill() > 0
            c.delete(f"/v1/jobs/{blocker['id']}")
            failed = wait_state(c, victim["id"])
            # the job says why, naming the data folder (as <data>) and the free space
            assert failed["state"] == "failed", failed
            assert "disk is full" in failed["error"]["error"]
            assert "<data>" in failed["error"]["error"] and "MiB free" in failed["error"]["error"]
            assert wait_state(c, blocker["id"])["state"] in ("cancelled", "failed")
            events = read_events(srv.url, victim["id"])  # the stream ends: state is in memory
            assert events[-1]["state"] == "failed"

            health = c.get("/v1/health").json()
            assert health["status"] == "degraded" and health["degraded"] == ["disk"]
            refused = post_job(c, data, PREVIEW)
            assert refused.status_code == 507, refused.text
            assert "nearly full" in refused.json()["error"]

            small_disk.free()  # no restart: the records catch up and submits work again
            assert _until(lambda: c.get("/v1/health").json()["status"] == "ok")
            assert _until(lambda: _record(small_disk, victim["id"])["state"] == "failed")
            after = post_job(c, data, PREVIEW)
            assert after.status_code == 201, after.text
            assert wait_state(c, after.json()["id"])["state"] == "done"
            ids = [e["id"] for e in read_events(srv.url, victim["id"])]
            assert ids == list(range(1, len(ids) + 1))
    finally:
        srv.stop()

    srv = _server(small_disk, tiny_models, "--min-free-mb", "0").start()  # restart, no floor
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            again = c.get(f"/v1/jobs/{victim['id']}").json()
            assert again["state"] == "failed" and "disk is full" in again["error"]["error"]
            assert c.get(f"/v1/jobs/{after.json()['id']}").json()["state"] == "done"

            # Uploads on a full disk: 507 whether they spool to disk (large) or not (small),
            # never the multipart parser's 400 that blames the client.
            large, small = _padded_zip(tmp_path / "big", 3), bundle_zip(tmp_path / "small")
            small_disk.fill()
            for body in (large, small):
                resp = post_job(c, body, PREVIEW)
                assert resp.status_code == 507, resp.text[:300]
                assert "disk is full" in resp.json()["error"]
            small_disk.free()
            assert post_job(c, large, PREVIEW).status_code == 201
            assert not [p for p in (small_disk.outside / "data" / "tmp").iterdir()]
    finally:
        srv.stop()


# -- faults injected at each write point -----------------------------------------------------
@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path):
    root = tmp_path_factory.mktemp("faults")
    rules = root / "rules.json"
    entry = [str(REPO / "tests" / "faultserve.py"), str(rules)]
    with ServerProcess(root / "data", tiny_models, "--min-free-mb", "0", entry=entry) as srv:
        srv.rules = rules  # type: ignore[attr-defined]
        yield srv


def _inject(srv, pattern: str, code: str = "ENOSPC", skip: int = 0) -> None:
    srv.rules.write_text(json.dumps([{"pattern": pattern, "errno": code, "skip": skip}]))


def _heal(srv) -> None:
    srv.rules.unlink(missing_ok=True)


WRITE_POINTS = {
    # name: (path pattern, first writes let through, settings, the job's end)
    "events": (r"events\.jsonl$", 0, PREVIEW, "failed"),
    "record": (r"/job\.tmp$", 1, PREVIEW, "failed"),  # 1: the submit's own record
    "frame": (r"/frames/\d+\.tmp$", 0, PREVIEW, "failed"),
    "cache": (r"/cache/frames/", 0, {**TINY, "seed": 77}, "done"),  # a cache: noted, done
}


@pytest.mark.parametrize("point", sorted(WRITE_POINTS))
def test_a_full_disk_at_each_write_point_fails_only_that_job(faulty, tmp_path, point) -> None:
    pattern, skip, settings, end = WRITE_POINTS[point]
    data = bundle_zip(tmp_path / "b")
    with httpx.Client(base_url=faulty.url, timeout=60) as c:
        _inject(faulty, pattern, skip=skip)
        try:
            job = post_job(c, data, settings)
            assert job.status_code == 201, job.text
            final = wait_state(c, job.json()["id"])
        finally:
            _heal(faulty)
        assert final["state"] == end, final
        if end == "failed":
            assert "disk is full" in final["error"]["error"], final["error"]
            assert "MiB free" in final["error"]["error"]
        else:
            notes = [e for e in read_events(faulty.url, final["id"]) if e["type"] == "note"]
            assert any(e.get("cache") == "not kept" for e in notes), notes
            cache = faulty.data / "cache" / "frames"
            assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]
        # what memory had and the disk did not take is written once the disk takes it
        record = faulty.data / "jobs" / final["id"] / "job.json"
        assert _until(lambda: json.loads(record.read_text())["state"] == end)
        events = read_events(faulty.url, final["id"])
        log_file = faulty.data / "jobs" / final["id"] / "events.jsonl"
        assert _until(lambda: log_file.exists() and log_file.read_text().count("\n") == len(events))
        assert [json.loads(line)["id"] for line in log_file.read_text().splitlines()] == [
            e["id"] for e in events
        ]
        nxt = post_job(c, data, PREVIEW)  # the worker is alive and the disk heals
        assert nxt.status_code == 201 and wait_state(c, nxt.json()["id"])["state"] == "done"


def test_a_failing_disk_fails_the_job_with_the_os_reason(faulty, tmp_path) -> None:
    with httpx.Client(base_url=faulty.url, timeout=60) as c:
        _inject(faulty, r"/frames/\d+\.tmp$", "EIO")
        try:
            final = wait_state(c, post_job(c, bundle_zip(tmp_path / "b"), PREVIEW).json()["id"])
        finally:
            _heal(faulty)
        assert final["state"] == "failed"
        assert "Input/output error" in final["error"]["error"], final["error"]
        assert str(faulty.data) not in json.dumps(final)  # the folder is <data> to clients


def test_upload_spool_on_a_full_disk_is_a_507(faulty, tmp_path) -> None:
    large = _padded_zip(tmp_path / "big", 2)
    with httpx.Client(base_url=faulty.url, timeout=60) as c:
        _inject(faulty, r"/data/tmp($|/)")
        try:
            resp = post_job(c, large, PREVIEW)
        finally:
            _heal(faulty)
        assert resp.status_code == 507, resp.text[:300]
        assert set(resp.json()) == {"error", "fix", "field"} and "disk is full" in resp.text
        assert post_job(c, large, PREVIEW).status_code == 201


def test_a_record_that_cannot_be_written_at_submit_is_a_507(faulty, tmp_path) -> None:
    with httpx.Client(base_url=faulty.url, timeout=60) as c:
        before = sorted(p.name for p in (faulty.data / "jobs").iterdir())
        _inject(faulty, r"/job\.tmp$")
        try:
            resp = post_job(c, bundle_zip(tmp_path / "b"), PREVIEW)
        finally:
            _heal(faulty)
        assert resp.status_code == 507 and "disk is full" in resp.json()["error"]
        assert sorted(p.name for p in (faulty.data / "jobs").iterdir()) == before


# -- the floor, retention and quotas ---------------------------------------------------------
def test_below_the_free_space_floor_submits_get_507_and_health_says_so(tmp_path, tiny_models):
    """A floor no disk meets (a petabyte): the same answers a nearly full disk gets."""
    with ServerProcess(tmp_path / "data", tiny_models, "--min-free-mb", str(1 << 30)) as srv:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            health = c.get("/v1/health").json()
            assert health["status"] == "degraded" and health["degraded"] == ["disk"]
            assert health["disk"]["min_free_bytes"] == 1 << 50
            resp = post_job(c, bundle_zip(tmp_path / "b"), PREVIEW)
            assert resp.status_code == 507 and resp.json()["fix"]
            assert "--min-free-mb" in resp.json()["fix"]
            assert not list((srv.data / "jobs").iterdir())


def test_finished_jobs_expire_after_the_retention_time(tmp_path, tiny_models) -> None:
    keep_s = 6.0
    data_dir = tmp_path / "data"
    with ServerProcess(data_dir, tiny_models, "--keep-days", str(keep_s / 86400)) as srv:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            job = post_job(c, bundle_zip(tmp_path / "b"), PREVIEW).json()
            done = wait_state(c, job["id"])
            assert done["state"] == "done"
            assert c.get(f"/v1/jobs/{job['id']}/frames/1").status_code == 200
            gone = _until(lambda: c.get(f"/v1/jobs/{job['id']}").status_code == 404, 20)
            assert gone and time.time() - done["finished"] >= keep_s - 0.5
            assert not (data_dir / "jobs" / job["id"]).exists()
    # without --keep-days nothing expires, however old
    with ServerProcess(data_dir, tiny_models) as srv:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            job = post_job(c, bundle_zip(tmp_path / "c"), PREVIEW).json()
            assert wait_state(c, job["id"])["state"] == "done"
    record = data_dir / "jobs" / job["id"] / "job.json"
    old = {**json.loads(record.read_text()), "finished": time.time() - 10 * 86400}
    record.write_text(json.dumps(old))
    with ServerProcess(data_dir, tiny_models) as srv:
        assert srv.get(f"/v1/jobs/{job['id']}")["state"] == "done"
    with ServerProcess(data_dir, tiny_models, "--keep-days", "7") as srv:  # expired at start
        with pytest.raises(Exception, match="404"):
            srv.get(f"/v1/jobs/{job['id']}")


ADMIN = "quota-admin-token-0123456789"
ALICE = "quota-alice-token-0123456789"
BOB = "quota-bob-token-0123456789abc"


def test_a_client_over_its_quota_gets_507_and_others_do_not(tmp_path, tiny_models) -> None:
    clients = tmp_path / "clients.toml"
    clients.write_text(f'alice = {{token = "{ALICE}", quota_mb = 1}}\nbob = "{BOB}"\n')
    rng = np.random.default_rng(0)  # noise: passes that do not compress, 1.2 MiB unpacked
    big = bundle_zip(
        tmp_path / "big", 24, (128, 96), depth_fn=lambda i: rng.uniform(1, 9, (96, 128))
    )
    with TokenServer(tmp_path / "data", tiny_models, ADMIN, "--clients", str(clients)) as srv:

        def client(token: str) -> httpx.Client:
            return httpx.Client(
                base_url=srv.url, timeout=60, headers={"Authorization": f"Bearer {token}"}
            )

        with client(ALICE) as alice, client(BOB) as bob, client(ADMIN) as admin:
            first = post_job(alice, big, PREVIEW)
            assert first.status_code == 201, first.text
            wait_state(alice, first.json()["id"])
            over = post_job(alice, big, PREVIEW)
            assert over.status_code == 507 and over.json()["field"] == "quota", over.text
            assert "quota_mb" in over.json()["fix"]
            assert post_job(bob, big, PREVIEW).status_code == 201
            assert post_job(admin, big, PREVIEW).status_code == 201


@pytest.mark.parametrize(
    "text, says",
    [
        ('alice = {token = "0123456789abcdefgh", quota_mb = -5}', "quota_mb"),
        ('alice = {token = "0123456789abcdefgh", quota_mb = "lots"}', "quota_mb"),
        ('alice = {token = "0123456789abcdefgh", quota = 5}', "unknown keys"),
        ("alice = {quota_mb = 5}", "16+ characters"),
    ],
)
def test_bad_quotas_are_refused_at_start(tmp_path, text, says) -> None:
    clients = tmp_path / "clients.toml"
    clients.write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "STORYSHADE_TOKEN"}
    result = subprocess.run(
        [sys.executable, "-m", "storyshade", "serve", "--port", "9", "--data", str(tmp_path / "d"),
         "--clients", str(clients)],
        capture_output=True, text=True, timeout=60, env={**env, "PYTHONPATH": str(REPO / "backend")},
    )  # fmt: skip
    assert result.returncode == 2 and says in result.stderr, result.stderr


# -- a worker thread that ends anyway --------------------------------------------------------
class ExitingRunner:
    """Renders like the local runner, except that the first job's render calls sys.exit()
    (as a library might), which no `except Exception` catches."""

    slots = 1

    def __init__(self, real) -> None:
        self.real, self.calls = real, 0

    def render(self, job_id, job_dir, work, reporter, cancel) -> None:
        self.calls += 1
        if self.calls == 1:
            sys.exit("a library gave up")
        self.real.render(job_id, job_dir, work, reporter, cancel)


def test_a_worker_that_dies_is_replaced_and_the_job_says_so(tmp_path) -> None:
    from storyshade.bundle import load_bundle
    from storyshade.presets import resolve
    from storyshade.server.jobs import JobStore
    from storyshade.server.runners import LocalRunner
    from storyshade.settings import Settings

    runner = ExitingRunner(LocalRunner([], None))  # type: ignore[arg-type]
    store = JobStore(tmp_path / "data", [], runner=runner, tick=0.2)  # type: ignore[arg-type]
    settings: Settings = resolve("preview", {"width": 64, "height": 64})
    jobs = []
    for i in range(2):
        job_id = store.new_id()
        shutil.copytree(
            write_synthetic_bundle(tmp_path / f"b{i}"), store.job_dir(job_id) / "bundle"
        )
        jobs.append(store.submit(job_id, load_bundle(store.job_dir(job_id) / "bundle"), settings))
    first, second = jobs
    assert _until(lambda: second.state == "done", 60), (first, second)
    assert first.state == "failed" and "worker running this job stopped" in first.error["error"]
    assert "a library gave up" in first.error["error"]
    assert store.worker_restarts == 1
    notes = [e for e in store.logs[first.id].items if e.get("worker_replaced")]
    assert notes and "new worker took its place" in notes[0]["message"]
    assert all(t.is_alive() for t in store.workers)

"""The worker thread ↔ main loop protocol, driven directly (no Blender event loop).

The worker (addon/remote/worker.py) must never touch bpy: it only puts protocol messages on
a queue, and the main thread drains them. These tests run it against a scripted fake server.
"""

from __future__ import annotations

import ast
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from test_addon_helpers import REPO, WAIT_FOR_CANCEL, FakeClient, png_bytes
from test_import_graph import imports

from addon.errors import ConnectionLost, StoryShadeError
from addon.remote import protocol
from addon.remote.client import Client
from addon.remote.worker import NetworkJob, apply, follow_job
from addon.takes.run import TakeRun

# What runs off Blender's main thread: the network worker, a model download, the local
# server and its health check.
THREAD_SIDE = (
    "addon.remote.worker",
    "addon.remote.pull_run",
    "addon.remote.server_local",
    "addon.remote.client",
)
# Plain files and data, bpy-free by design (the worker or tests use them without Blender).
PLAIN = ("addon.looks.bank", "addon.settings.presets", "addon.settings.request_settings")


def _reached(starts: tuple[str, ...]) -> list[str]:
    """The add-on modules `starts` import, directly or not, with the sub-packages whose
    __init__ runs on the way (the add-on's own __init__ registers; the thread never runs
    it)."""
    graph = imports(REPO / "addon", "addon")
    seen, todo = set(), list(starts)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo += graph[module]
        parent = module.rpartition(".")[0]
        if parent != "addon" and parent in graph:
            todo.append(parent)
    return sorted(seen - {"addon"})


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", _reached(THREAD_SIDE + PLAIN))
def test_thread_side_modules_never_import_bpy(module: str) -> None:
    """What runs in the worker thread, and everything it imports, cannot reach bpy."""
    path = REPO / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    assert not _imports(path) & {"bpy", "mathutils", "blf"}


def test_the_thread_side_is_what_the_worker_needs() -> None:
    """The walk reaches the worker's imports (so a bpy import among them would fail)."""
    reached = _reached(THREAD_SIDE)
    for module in (
        "addon.remote.protocol",
        "addon.errors",
        "addon.looks.reference_files",
        "addon.wire.layout",
    ):
        assert module in reached


def _run(tmp_path: Path, frames=(1, 2)) -> TakeRun:
    folder = tmp_path / "take_001"
    folder.mkdir(parents=True)
    return TakeRun("shot", "take_001", folder, False, list(frames), settings={"preset": "tiny"})


def _bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    (bundle / "frames").mkdir(parents=True)
    (bundle / "shot.json").write_text("{}", encoding="utf-8")
    return bundle


def _all_messages(job: NetworkJob, timeout: float = 20.0) -> list[protocol.Message]:
    out: list[protocol.Message] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out += job.drain(timeout=0.2)
        if out and out[-1].terminal:
            return out
    raise AssertionError(f"no terminal message; got {[m.kind for m in out]}")


def test_describe_gives_stage_text_and_fraction() -> None:
    windowed = {
        "stage": "denoising",
        "done": 6,
        "total": 8,
        "step": 3,
        "steps": 4,
        "window": 2,
        "windows": 2,
    }
    assert protocol.describe(windowed) == ("Denoising step 3/4, window 2/2", 0.75)
    legacy = {"stage": "denoising", "done": 12, "total": 20, "window": 3, "windows": 7}
    text, fraction = protocol.describe(legacy)
    assert text == "Denoising step 12/20, window 3/7"
    assert fraction == pytest.approx((2 + 12 / 20) / 7)
    assert protocol.describe({"stage": "denoising", "done": 1, "total": 2}) == (
        "Denoising step 1/2",
        0.5,
    )
    assert (
        protocol.describe({"stage": "controls", "done": 3, "total": 4})[0]
        == "Preparing controls 3/4"
    )
    assert protocol.describe({"stage": "loading", "done": 0, "total": 1})[0] == "Loading models"
    assert protocol.describe({"stage": "new_stage", "done": 1, "total": 0}) == (
        "New stage 1/0",
        0.0,
    )
    queued = {"stage": "queued", "done": 2, "total": 3, "position": 2, "eta_start_s": 40.2}
    assert protocol.describe(queued) == ("Queued #2 (~40 s to start)", 0.0)
    windowed["eta_s"] = 300
    assert protocol.describe(windowed)[0] == "Denoising step 3/4, window 2/2 (~5 min left)"


def test_queue_position_counts_jobs_ahead() -> None:
    jobs = [
        {"id": "a", "state": "running", "created": 5.0},
        {"id": "b", "state": "queued", "created": 1.0},
        {"id": "me", "state": "queued", "created": 2.0},
        {"id": "c", "state": "queued", "created": 3.0},
        {"id": "d", "state": "done", "created": 0.5},
    ]
    assert protocol.queue_position(jobs, "me") == 2, "1 = next to run"
    jobs[2]["position"] = 5
    assert protocol.queue_position(jobs, "me") == 5, "the server's own count wins"
    assert protocol.queue_position(jobs, "missing") is None
    assert protocol.queued_text(2) == "Queued #2"
    assert protocol.queued_text(None) == "Queued"


def test_worker_submits_follows_and_downloads_in_order(tmp_path: Path) -> None:
    fake = FakeClient()
    run = _run(tmp_path)
    bundle = _bundle(tmp_path)
    job = NetworkJob(fake, run, bundle).start()
    messages = _all_messages(job)
    job.join(5)
    kinds = [m.kind for m in messages]
    assert kinds[0] == protocol.SUBMITTED and kinds[-1] == protocol.DONE
    assert kinds.count(protocol.FRAME) == 2
    texts = [m.text for m in messages]
    assert "Queued #2" in texts and "Starting" in texts
    assert "Denoising step 1/2, window 1/2" in texts and "Receiving 2/2" in texts
    frames = [m for m in messages if m.kind == protocol.FRAME]
    assert [m.frame for m in frames] == [1, 2]
    assert all(Path(m.path).read_bytes().startswith(b"\x89PNG") for m in frames)
    assert not list(run.folder.glob("*.part")), "frames are written atomically"
    assert not bundle.exists(), "the uploaded bundle is deleted"
    assert fake.submitted["settings"] == {"preset": "tiny"}
    assert messages[0].job_id == "job1" and messages[-1].received == 2
    assert not job.alive
    # The worker never wrote the caller's TakeRun: the main thread learns by applying.
    assert run.job_id == "" and run.received == []
    for msg in messages:
        apply(run, msg)
    assert run.job_id == "job1" and run.received == [1, 2]


def test_worker_fetches_frames_whose_events_were_missed(tmp_path: Path) -> None:
    script = [{"type": "state", "state": "running"}, {"type": "state", "state": "done"}]
    fake = FakeClient(script=script, frames=(1, 2, 3))
    run = _run(tmp_path, frames=(1, 2, 3))
    messages = _all_messages(NetworkJob(fake, run, None).start())
    assert messages[-1].kind == protocol.DONE
    assert sorted(m.frame for m in messages if m.kind == protocol.FRAME) == [1, 2, 3]
    assert fake.count("frame") == 3


def test_worker_reports_server_failure_in_plain_words(tmp_path: Path) -> None:
    error = {"error": "model 'x' not found", "fix": "put it in the models folder"}
    script = [
        {"type": "state", "state": "running"},
        {"type": "state", "state": "failed", "error": error},
    ]
    run = _run(tmp_path)
    messages = _all_messages(NetworkJob(FakeClient(script=script), run, None).start())
    last = messages[-1]
    assert last.kind == protocol.FAILED
    assert "model 'x' not found" in last.text and str(run.folder) in last.text
    assert last.fix == "put it in the models folder"


def test_worker_reports_unreachable_server_with_fix(tmp_path: Path) -> None:
    job = NetworkJob(FakeClient(unreachable=True), _run(tmp_path), _bundle(tmp_path)).start()
    last = _all_messages(job)[-1]
    assert last.kind == protocol.FAILED
    assert "cannot reach" in last.text and last.fix


def test_worker_reconnects_after_a_dropped_stream(tmp_path: Path) -> None:
    class Flaky(FakeClient):
        drops = 1

        def events(self, job_id, last_event_id=0):
            for event in super().events(job_id, last_event_id):
                yield event
                if event["id"] == 3 and self.drops:
                    self.drops -= 1
                    raise ConnectionLost("lost the connection", "check the server")

    fake = Flaky()
    run = _run(tmp_path)
    messages = _all_messages(NetworkJob(fake, run, None, retry_delay=0.01).start())
    assert messages[-1].kind == protocol.DONE
    resumed = [c for c in fake.calls if c[0] == "events"]
    assert [c[2] for c in resumed] == [0, 3], "resumes after the last event id"
    assert any(m.kind == protocol.NOTE and "Reconnecting" in m.text for m in messages)


def test_worker_gives_up_after_retries(tmp_path: Path) -> None:
    class Down(FakeClient):
        def events(self, job_id, last_event_id=0):
            raise ConnectionLost("cannot reach the server", "start it")
            yield  # pragma: no cover

    run = _run(tmp_path)
    last = _all_messages(NetworkJob(Down(), run, None, retries=2, retry_delay=0.01).start())[-1]
    assert last.kind == protocol.FAILED and "0 frames kept" in last.text and last.fix == "start it"


def test_cancel_sends_one_delete_and_ends_cancelled(tmp_path: Path) -> None:
    script = [{"type": "state", "state": "running"}, WAIT_FOR_CANCEL]
    fake = FakeClient(script=script)
    job = NetworkJob(fake, _run(tmp_path), _bundle(tmp_path)).start()
    deadline = time.monotonic() + 10
    seen: list[protocol.Message] = []
    while not any(m.text == "Starting" for m in seen) and time.monotonic() < deadline:
        seen += job.drain(timeout=0.1)
    t0 = time.monotonic()
    job.cancel()
    job.cancel()
    assert time.monotonic() - t0 < 0.5, "cancel never waits on the network"
    seen += _all_messages(job)
    assert seen[-1].kind == protocol.CANCELLED
    time.sleep(0.1)
    assert fake.count("cancel") == 1


def test_cancel_before_submit_sends_nothing(tmp_path: Path) -> None:
    fake = FakeClient()
    job = NetworkJob(fake, _run(tmp_path), _bundle(tmp_path))
    job.cancel()  # before start: no job id yet, so no DELETE either
    last = _all_messages(job.start())[-1]
    assert last.kind == protocol.CANCELLED
    assert fake.count("submit") == 0 and fake.count("cancel") == 0


def test_unexpected_worker_error_still_ends_the_run(tmp_path: Path) -> None:
    class Broken(FakeClient):
        def submit(self, bundle_dir, settings, **_kw):
            return {}  # no "id": a KeyError inside the thread

    last = _all_messages(NetworkJob(Broken(), _run(tmp_path), _bundle(tmp_path)).start())[-1]
    assert last.kind == protocol.FAILED and "KeyError" in last.text


def test_preview_event_is_written_for_the_panel(tmp_path: Path) -> None:
    import base64

    png = base64.b64encode(png_bytes()).decode()
    script = [
        {"type": "preview", "step": 1, "steps": 2, "png_base64": png},
        {"type": "state", "state": "done"},
    ]
    run = _run(tmp_path)
    messages = _all_messages(NetworkJob(FakeClient(script=script), run, None).start())
    previews = [m for m in messages if m.kind == protocol.PREVIEW]
    assert previews and Path(previews[0].path).read_bytes() == png_bytes()


def test_follow_job_blocking_wrapper(tmp_path: Path) -> None:
    """The old blocking helper still works for scripts: texts in order, errors raised."""
    run = _run(tmp_path)
    run.job_id = "job1"
    texts: list[str] = []
    follow_job(FakeClient(), run, texts.append)
    assert texts[-1] == "Received 2/2" and "Receiving 1/2" in texts
    assert run.received == [1, 2]  # applied on the calling thread
    script = [{"type": "state", "state": "failed", "error": {"error": "boom", "fix": "f"}}]
    run2 = _run(tmp_path / "b")
    run2.job_id = "job1"
    with pytest.raises(StoryShadeError, match="boom"):
        follow_job(FakeClient(script=script), run2, texts.append)


class SlowUploadServer:
    """A server on 127.0.0.1 that takes an upload at ~256 KiB/s (a slow link, or a large
    1920x1080 shot) and notes how much arrived before the client hung up."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.received = 0
        self.started = threading.Event()
        self.fast = threading.Event()  # read what is in flight at once (to see the hang-up)
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            while True:
                data = conn.recv(32 * 1024)
                if not data:
                    break
                self.received += len(data)
                self.started.set()
                if not self.fast.is_set():
                    time.sleep(0.125)
        self.closed.set()


def test_cancel_during_the_upload_is_confirmed_at_once(tmp_path: Path) -> None:
    """Cancel while the bundle is still going up: the upload stops within a chunk, the run
    ends as cancelled with nothing on the server, well inside 2 s (took 19 s on 5.2)."""
    server = SlowUploadServer()
    bundle = _bundle(tmp_path)
    size = 32 * 1024 * 1024
    (bundle / "frames" / "0001.exr").write_bytes(os.urandom(size))
    job = NetworkJob(Client(server.url), _run(tmp_path), bundle).start()
    assert server.started.wait(10), "the upload began"
    pressed = time.monotonic()
    job.cancel()
    last = _all_messages(job, timeout=5)[-1]
    waited = time.monotonic() - pressed
    assert last.kind == protocol.CANCELLED and "nothing reached the server" in last.text
    assert waited < 2.0, waited
    server.fast.set()  # the socket buffers still hold what was sent before the cancel
    assert server.closed.wait(10), "the client hung up"
    assert server.received < size // 2, "it stopped sending"
    assert not bundle.exists(), "the bundle folder is cleaned up as after an upload"

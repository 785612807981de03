"""Jobs on disk and the worker that runs them one at a time.

Layout under the data folder: `jobs/<id>/job.json` (state), `bundle/` (the upload),
`frames/NNNN.png` (results, written as they finish) and `events.jsonl` (progress history,
replayed to SSE clients that reconnect).
"""

from __future__ import annotations

import json
import queue
import threading
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from storyshade.bundle import load_bundle
from storyshade.errors import Cancelled, NotFound, StoryShadeError
from storyshade.models.loader import ModelCache
from storyshade.progress import Reporter
from storyshade.render import render_bundle
from storyshade.settings import Settings

TERMINAL = ("done", "failed", "cancelled")


@dataclass
class Job:
    id: str
    shot: str
    state: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    frame_numbers: list[int] = field(default_factory=list)
    frames_done: list[int] = field(default_factory=list)
    error: dict[str, Any] | None = None
    progress: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return asdict(self)


class JobStore:
    """All jobs: their records on disk, their events in memory, and one worker thread."""

    def __init__(self, data_dir: Path, roots: list[Path], cache: ModelCache | None = None):
        self.dir = data_dir / "jobs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.roots = roots
        self.cache = cache or ModelCache()
        self.jobs: dict[str, Job] = {}
        self.settings: dict[str, Settings] = {}
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.cancels: dict[str, threading.Event] = {}
        self.cond = threading.Condition()
        self.queue: queue.Queue[str] = queue.Queue()
        self._load_existing()
        self.worker = threading.Thread(
            target=self._run_forever, name="storyshade-worker", daemon=True
        )
        self.worker.start()

    # -- records ---------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.dir / job_id

    def _save(self, job: Job) -> None:
        path = self.job_dir(job.id) / "job.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(job.public(), indent=1), encoding="utf-8")
        tmp.replace(path)

    def _load_existing(self) -> None:
        for path in sorted(self.dir.glob("*/job.json"), key=lambda p: p.stat().st_mtime):
            try:
                job = Job(**json.loads(path.read_text(encoding="utf-8")))
                settings = Settings.model_validate_json(
                    (path.parent / "settings.json").read_text(encoding="utf-8")
                )
            except (OSError, ValueError, TypeError):
                continue
            self.jobs[job.id] = job
            self.settings[job.id] = settings
            self.cancels[job.id] = threading.Event()
            self.events[job.id] = self._read_events(job.id)
            if job.state == "running":  # interrupted by a crash: run again, keeping frames
                job.state = "queued"
                self._save(job)
            if job.state == "queued":
                self.queue.put(job.id)

    def _read_events(self, job_id: str) -> list[dict[str, Any]]:
        path = self.job_dir(job_id) / "events.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                break  # a torn last line after a crash
        return out

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id}", "list jobs with GET /v1/jobs", field="job_id")
        return job

    # -- events ----------------------------------------------------------------------------
    def emit(self, job_id: str, event: dict[str, Any]) -> None:
        with self.cond:
            events = self.events.setdefault(job_id, [])
            event = {"id": len(events) + 1, "job": job_id, "time": time.time(), **event}
            events.append(event)
            with (self.job_dir(job_id) / "events.jsonl").open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(event) + "\n")
            if event.get("type") == "progress":
                self.jobs[job_id].progress = {
                    k: event[k] for k in ("stage", "done", "total") if k in event
                }
            self.cond.notify_all()

    def events_after(self, job_id: str, last_id: int, timeout: float) -> list[dict[str, Any]]:
        """Events newer than `last_id`, waiting up to `timeout` seconds for one."""
        with self.cond:
            self.cond.wait_for(
                lambda: (
                    len(self.events.get(job_id, [])) > last_id
                    or self.jobs[job_id].state in TERMINAL
                ),
                timeout=timeout,
            )
            return list(self.events.get(job_id, [])[last_id:])

    # -- lifecycle -------------------------------------------------------------------------
    def submit(self, bundle_dir: Path, job_dir: Path, job_id: str, settings: Settings) -> Job:
        """Register a job whose bundle is already unpacked into `job_dir/bundle`."""
        bundle = load_bundle(bundle_dir)
        job = Job(id=job_id, shot=bundle.shot.shot, frame_numbers=bundle.shot.frame_numbers)
        (job_dir / "settings.json").write_text(settings.model_dump_json(indent=1), encoding="utf-8")
        with self.cond:
            self.jobs[job.id] = job
            self.settings[job.id] = settings
            self.cancels[job.id] = threading.Event()
            self.events[job.id] = []
            self._save(job)
        self.emit(job.id, {"type": "state", "state": "queued"})
        self.queue.put(job.id)
        return job

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:12]

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        with self.cond:
            if job.state in TERMINAL:
                return job
            self.cancels[job_id].set()
            if job.state == "queued":
                self._finish(job, "cancelled")
        return job

    def _finish(self, job: Job, state: str, error: dict[str, Any] | None = None) -> None:
        job.state = state
        job.error = error
        job.finished = time.time()
        self._save(job)
        self.emit(job.id, {"type": "state", "state": state, **({"error": error} if error else {})})

    def _run_forever(self) -> None:
        while True:
            job_id = self.queue.get()
            job = self.jobs.get(job_id)
            if job is None or job.state != "queued":
                continue
            self._run(job)

    def _run(self, job: Job) -> None:
        job.state, job.started = "running", time.time()
        self._save(job)
        self.emit(job.id, {"type": "state", "state": "running"})
        frames_dir = self.job_dir(job.id) / "frames"

        def listener(event: dict[str, Any]) -> None:
            if event.get("type") == "frame":
                job.frames_done.append(event["frame"])
                self._save(job)
            self.emit(job.id, event)

        reporter = Reporter(listener, self.cancels[job.id])
        try:
            bundle = load_bundle(self.job_dir(job.id) / "bundle")
            render_bundle(
                bundle, self.settings[job.id], frames_dir, self.roots, self.cache, reporter
            )
        except Cancelled:
            self._finish(job, "cancelled")
        except StoryShadeError as exc:
            self._finish(job, "failed", exc.to_json())
        except Exception as exc:  # keep the server alive; the job says what broke
            traceback.print_exc()
            self._finish(
                job, "failed", {"error": f"internal error: {exc!r}", "fix": "", "field": None}
            )
        else:
            self._finish(job, "done")

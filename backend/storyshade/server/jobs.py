"""The job store: a priority queue of jobs and the worker threads that run them (one per
GPU), over the records on disk (server/records.py) and each job's events (server/events.py).

After a crash or restart, queued jobs queue again in their old order. A job that was
running is resumed (run again from the start: a whole-shot diffusion model cannot render
only the missing frames) and frames it already wrote stay on disk and downloadable,
overwritten only by the same frame of the new run. A job found with every frame written is
done; a job interrupted MAX_ATTEMPTS times is marked failed (it may be what kills the
server), keeping its frames.

A runner (server/runners.py) renders each job: in this process on one worker thread by
default, or elsewhere (storyshade.cluster for `serve --ray`), `runner.slots` at a time;
records, events and cancel stay here either way.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from storyshade.bundle import Bundle, load_bundle
from storyshade.cache import StageCache
from storyshade.cancel import CancelToken
from storyshade.errors import Cancelled, NotFound, StoryShadeError
from storyshade.job_input import JobInput, prepare
from storyshade.models.loader import ModelCache, ModelKey
from storyshade.presets import search_dirs
from storyshade.progress import Reporter
from storyshade.server.eta import JobEta, JobSize, Rates
from storyshade.server.events import EventLog
from storyshade.server.job_queue import JobQueue
from storyshade.server.records import Job, Records
from storyshade.server.redact import Redactor
from storyshade.server.runners import LocalRunner, Runner
from storyshade.settings import Settings
from storyshade.wire.states import TERMINAL, Event, JobState, Stage

log = logging.getLogger("storyshade.server")

MAX_ATTEMPTS = 3
PROGRESS_KEYS = (
    "stage", "done", "total", "step", "steps", "window", "windows", "cached", "eta_s",
    "elapsed_s", "position", "eta_start_s",
)  # fmt: skip


class JobStore:
    """Every job: records on disk, events, the priority queue and its worker threads."""

    def __init__(
        self,
        data_dir: Path,
        roots: list[Path],
        models: ModelCache | None = None,
        stages: StageCache | None = None,
        start: bool = True,
        runner: Runner | None = None,
    ) -> None:
        self.records = Records(data_dir / "jobs")
        # errors name models and presets by name, never the server's folders
        self.redact = Redactor(
            {"<data>": data_dir, "<models>": list(roots), "<presets>": search_dirs()}
        )
        self.roots = roots
        self.models = models or ModelCache()
        self.jobs: dict[str, Job] = {}
        self.settings: dict[str, Settings] = {}
        self.inputs: dict[str, JobInput] = {}  # submitted in this process: models resolved
        self.logs: dict[str, EventLog] = {}
        self.cancels: dict[str, CancelToken] = {}  # job id → its token; the cancel route sets it
        self.lock = threading.Condition(threading.RLock())
        self.queue = JobQueue()
        self.rates = Rates()  # what this server measured, per engine and size
        self.runner = runner  # the Ray runner, when there is one (health, CLI)
        self.renders: Runner = runner or LocalRunner(roots, self.models, stages)
        self.clocks: dict[str, JobEta] = {}  # running job id → its clock and estimate
        self._announced: dict[str, int] = {}
        self._load_existing()
        self.workers = [
            threading.Thread(target=self._run_forever, name=f"storyshade-worker-{i}", daemon=True)
            for i in range(self.renders.slots)
        ]
        if start:
            for worker in self.workers:
                worker.start()

    # -- records ---------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.records.job_dir(job_id)

    def _save(self, job: Job) -> None:
        self.records.save(job)

    def _load_existing(self) -> None:
        for job, settings in self.records.load():
            self.queue.seen(job.seq)
            self._register(job, settings)
            if job.state == JobState.RUNNING:
                self._recover(job)
            elif job.state == JobState.QUEUED:
                self.queue.push(job.id, job.priority, job.seq)

    def _register(self, job: Job, settings: Settings) -> None:
        self.jobs[job.id] = job
        self.settings[job.id] = settings
        self.cancels[job.id] = CancelToken()
        self.logs[job.id] = EventLog(self.job_dir(job.id) / "events.jsonl")

    def _recover(self, job: Job) -> None:
        """A job the last server process was running when it stopped."""
        on_disk = [f for f in job.frame_numbers if self.frame_path(job.id, f).is_file()]
        job.frames_done = on_disk
        if job.cancel_requested:
            self._finish(job, JobState.CANCELLED)
        elif on_disk == job.frame_numbers:
            self._note(job, "the server stopped after the last frame was written")
            self._finish(job, JobState.DONE)
        elif job.attempts >= MAX_ATTEMPTS:
            self._finish(
                job,
                JobState.FAILED,
                {
                    "error": f"the server stopped {job.attempts} times while running this job",
                    "fix": "check the server log and memory; resubmit with fewer frames or a "
                    f"smaller size ({len(on_disk)} frames written are kept)",
                    "field": None,
                },
            )
        else:
            job.state, job.progress = JobState.QUEUED, {}
            self._save(job)
            self._note(
                job,
                f"resuming after the server stopped; {len(on_disk)} frames already written "
                "are kept",
                resumed=True,
            )
            self._emit(job, {"type": Event.STATE, "state": JobState.QUEUED, "resumed": True})
            self.queue.push(job.id, job.priority, job.seq)

    def frame_path(self, job_id: str, frame: int) -> Path:
        return self.records.frame_path(job_id, frame)

    def get(self, job_id: str, client: str | None = None) -> Job:
        """The job; for a named client only its own (another's is as good as missing)."""
        job = self.jobs.get(job_id)
        if job is None or (client is not None and job.owner != client):
            raise NotFound(
                f"no job '{job_id}' on this server", "list jobs with GET /v1/jobs", field="job_id"
            )
        return job

    def public(self, job: Job) -> dict[str, Any]:
        out = asdict(job)
        out.pop("seq", None)
        out["position"] = self.positions().get(job.id) if job.state == JobState.QUEUED else None
        return out

    def list(
        self, state: str | None = None, tag: str | None = None, client: str | None = None
    ) -> list[dict[str, Any]]:
        with self.lock:
            jobs = sorted(self.jobs.values(), key=lambda j: (j.created, j.seq))
            positions = self.positions()
            out = []
            for job in jobs:
                if (state and job.state != state) or (tag is not None and job.tag != tag):
                    continue
                if client is not None and job.owner != client:
                    continue
                record = asdict(job)
                record.pop("seq", None)
                record["position"] = positions.get(job.id)
                out.append(record)
            return out

    # -- events ----------------------------------------------------------------------------
    def _emit(self, job: Job, event: dict[str, Any]) -> dict[str, Any]:
        return self.logs[job.id].append(job.id, event)

    def _note(self, job: Job, message: str, **info: Any) -> None:
        self._emit(job, {"type": Event.NOTE, "message": message, **info})

    def positions(self) -> dict[str, int]:
        """Queue position (1 = next to run) of every queued job."""
        with self.lock:
            return self.queue.positions(lambda i: self.jobs[i].state == JobState.QUEUED)

    def _announce_positions(self) -> None:
        """Tell each queued job whose place changed where it stands and when it may start."""
        with self.lock:
            positions = self.positions()
            ahead = self._until_free_slot()
            for job_id, position in sorted(positions.items(), key=lambda kv: kv[1]):
                job = self.jobs[job_id]
                if self._announced.get(job_id) != position:
                    self._announced[job_id] = position
                    event = {
                        "type": Event.PROGRESS,
                        "stage": Stage.QUEUED,
                        "done": position,
                        "total": len(positions),
                        "position": position,
                    }
                    if ahead is not None:
                        event["eta_start_s"] = round(ahead, 2)
                    job.progress = {k: event[k] for k in PROGRESS_KEYS if k in event}
                    self._emit(job, event)
                predicted = self.rates.predict(self._size(job))
                slots = len(self.workers)
                ahead = None if ahead is None or predicted is None else ahead + predicted / slots
            for job_id in list(self._announced):
                if job_id not in positions:
                    del self._announced[job_id]

    def _until_free_slot(self) -> float | None:
        """Seconds until a worker thread frees up (0 if one is free; None if unknown)."""
        if len(self.clocks) < len(self.workers):
            return 0.0
        waits = [clock.remaining() for clock in self.clocks.values()]
        return None if None in waits else min(w for w in waits if w is not None)

    # -- lifecycle -------------------------------------------------------------------------
    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:12]

    def submit(
        self,
        job_id: str,
        bundle: Bundle,
        settings: Settings,
        *,
        priority: int = 0,
        tag: str = "",
        preset: str | None = None,
        owner: str | None = None,
        models: ModelKey | None = None,
    ) -> Job:
        """Queue a job whose bundle is already unpacked and validated in its folder, with the
        models resolved when its settings were checked (else they are resolved here)."""
        work = prepare(bundle, settings, self.roots, models=models)
        self.records.write_settings(job_id, settings)
        with self.lock:
            job = Job(
                id=job_id,
                shot=bundle.shot.shot,
                priority=priority,
                seq=self.queue.next_seq(),
                tag=tag,
                preset=preset,
                engine=settings.engine,
                frame_numbers=bundle.shot.generated_frames,
                owner=owner,
                bundle_hash=work.bundle_hash,
            )
            self.inputs[job.id] = work
            self._save(job)  # the commit point: from here on the job survives a restart
            self._register(job, settings)
            self._emit(job, {"type": Event.STATE, "state": JobState.QUEUED})
            self.queue.push(job.id, job.priority, job.seq)
            self._announce_positions()
            self.lock.notify_all()
        return job

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job now, or a running one at its next step; idempotent."""
        with self.lock:
            job = self.get(job_id)
            if job.state in TERMINAL or job.cancel_requested:
                return job
            job.cancel_requested = True
            self.cancels[job_id].cancel()
            if job.state == JobState.QUEUED:
                self._finish(job, JobState.CANCELLED)
                self._announce_positions()
            else:
                self._save(job)
                self._note(job, "cancel requested; the job stops at its next step", cancel=True)
            return job

    def _finish(self, job: Job, state: str, error: dict[str, Any] | None = None) -> None:
        error = self.redact.error(error) if error else None
        with self.lock:
            # The event goes first: an SSE stream that sees a terminal state has its event.
            event: dict[str, Any] = {"type": Event.STATE, "state": state}
            if error:
                event["error"] = error
            event["frames_done"] = len(job.frames_done)
            self._emit(job, event)
            job.state, job.error, job.finished = state, error, time.time()
            self._save(job)
            self.inputs.pop(job.id, None)
            self.lock.notify_all()

    def _run_forever(self) -> None:
        while True:
            with self.lock:
                while not self.queue:
                    self.lock.wait()
                job_id = self.queue.pop()
                job = self.jobs.get(job_id)
                if job is None or job.state != JobState.QUEUED:
                    continue
                job.state, job.started, job.error = JobState.RUNNING, time.time(), None
                job.attempts += 1
                job.progress = {}
                self.clocks[job_id] = JobEta(self._size(job), self.rates)
                self._save(job)
                self._emit(
                    job, {"type": Event.STATE, "state": JobState.RUNNING, "attempt": job.attempts}
                )
                self._announce_positions()
            try:
                self._run(job)
            finally:
                with self.lock:
                    self.clocks.pop(job_id, None)

    def _size(self, job: Job) -> JobSize:
        return JobSize.of(self.settings[job.id], len(job.frame_numbers))

    def _listener(self, job: Job, clock: JobEta):
        def listen(event: dict[str, Any]) -> None:
            kind = event.get("type")
            if kind == Event.FRAME:
                frame = event["frame"]
                event = {**event, "url": f"/v1/jobs/{job.id}/frames/{frame}"}
                with self.lock:
                    if frame not in job.frames_done:
                        job.frames_done = sorted([*job.frames_done, frame])
                        self._save(job)
            elif kind == Event.PROGRESS:
                event = {**event, **clock.update(event)}
                with self.lock:  # read by status requests on other threads
                    job.progress = {k: event[k] for k in PROGRESS_KEYS if k in event}
            elif kind == Event.NOTE and event.get("reused"):
                with self.lock:
                    job.reused = sorted({*job.reused, str(event["reused"])})
                    self._save(job)
            self._emit(job, event)

        return listen

    def _run(self, job: Job) -> None:
        settings = self.settings[job.id]
        clock = self.clocks.get(job.id) or JobEta(self._size(job), self.rates)
        reporter = Reporter(self._listener(job, clock))
        cancel = self.cancels[job.id]
        try:
            cancel.check()  # cancelled between dequeue and start
            work = self.inputs.get(job.id) or prepare(  # a job from before a restart
                load_bundle(self.job_dir(job.id) / "bundle"),
                settings,
                self.roots,
                bundle_hash=job.bundle_hash or None,
            )
            self.renders.render(job.id, self.job_dir(job.id), work, reporter, cancel)
        except Cancelled:
            clock.finish(learn=False)
            self._finish(job, JobState.CANCELLED)
        except StoryShadeError as exc:
            clock.finish(learn=False)
            self._finish(job, JobState.FAILED, exc.to_json())
        except Exception as exc:  # keep the server alive; the job says what broke
            log.exception("job %s failed", job.id)
            clock.finish(learn=False)
            self._finish(
                job,
                JobState.FAILED,
                {
                    "error": f"internal error: {type(exc).__name__}: {str(exc)[:300]}",
                    "fix": "see the server log; frames written so far are kept",
                    "field": None,
                },
            )
        else:
            clock.finish(learn="frames" not in job.reused)  # its last phase, measured
            self._finish(job, JobState.DONE)

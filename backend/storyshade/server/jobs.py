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

No fault stops the queue: whatever goes wrong with a job (a full disk while writing its
frames, events or record, a bug) fails that job with its reason and the worker takes the
next; a worker thread that ends anyway is replaced, and the job it was running says so. A
record or event that cannot be written stays in memory and is written again every few
seconds (`flush`), so freeing space needs no restart. With a retention time, finished jobs
older than it are deleted with their folders.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from collections.abc import Sequence
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
from storyshade.server.disk import Disk, os_error
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
        *,
        disk: Disk | None = None,
        keep_seconds: float = 0.0,
        tick: float = 2.0,
        devices: Sequence[str] | None = None,
    ) -> None:
        self.records = Records(data_dir / "jobs")
        self.disk = disk or Disk(data_dir, 0)
        self.keep_seconds = keep_seconds  # finished jobs older than this are deleted; 0: never
        self.tick = tick  # seconds between retries of unwritten records and retention sweeps
        self.devices = devices  # what settings.device may name (None: the runner knows)
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
        self.running: dict[int, str] = {}  # worker slot → the job it runs
        self.unsaved: set[str] = set()  # jobs whose record on disk is behind memory
        self.worker_restarts = 0
        self._announced: dict[str, int] = {}
        self._load_existing()
        self.workers = [self._worker_thread(i) for i in range(self.renders.slots)]
        if start:
            self.expire()
            for worker in self.workers:
                worker.start()
            threading.Thread(target=self._upkeep, name="storyshade-upkeep", daemon=True).start()

    # -- records ---------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.records.job_dir(job_id)

    def _save(self, job: Job) -> None:
        """Write the record; raises when it cannot (the caller fails what it was doing)."""
        self.records.save(job)
        self.unsaved.discard(job.id)

    def _save_quietly(self, job: Job) -> None:
        """Write the record, or keep it in memory to be written again by `flush`."""
        try:
            self._save(job)
        except OSError as exc:
            self.unsaved.add(job.id)
            log.warning("job %s: record not written (%s); retrying", job.id, exc)

    def _load_existing(self) -> None:
        for job, settings in self.records.load():
            try:
                self._register(job, settings)
            except (OSError, ValueError) as exc:  # e.g. events.jsonl unreadable
                self._forget(job.id)
                self.records.damaged(self.job_dir(job.id), f"{type(exc).__name__}: {exc}")
                continue
            self.queue.seen(job.seq)
            if job.state == JobState.RUNNING:
                self._recover(job)
            elif job.state == JobState.QUEUED:
                self.queue.push(job.id, job.priority, job.seq)

    def _register(self, job: Job, settings: Settings) -> None:
        events = EventLog(self.job_dir(job.id) / "events.jsonl")
        self.jobs[job.id] = job
        self.settings[job.id] = settings
        self.cancels[job.id] = CancelToken()
        self.logs[job.id] = events

    def _forget(self, job_id: str) -> None:
        for table in (self.jobs, self.settings, self.cancels, self.logs, self.inputs):
            table.pop(job_id, None)
        self.unsaved.discard(job_id)

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
            self._save_quietly(job)
            self._note(
                job,
                f"resuming after the server stopped; {len(on_disk)} frames already written "
                "are kept",
                resumed=True,
            )
            self._emit_quietly(
                job, {"type": Event.STATE, "state": JobState.QUEUED, "resumed": True}
            )
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
        """Stream and write an event; raises when it could not be written (it is still
        streamed, and written later)."""
        return self.logs[job.id].append(job.id, event)

    def _emit_quietly(self, job: Job, event: dict[str, Any]) -> None:
        try:
            self._emit(job, event)
        except OSError as exc:
            log.warning("job %s: event not written (%s); retrying", job.id, exc)

    def _note(self, job: Job, message: str, **info: Any) -> None:
        self._emit_quietly(job, {"type": Event.NOTE, "message": message, **info})

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
                    self._emit_quietly(job, event)
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
            self._emit_quietly(job, {"type": Event.STATE, "state": JobState.QUEUED})
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
                self._save_quietly(job)
                self._note(job, "cancel requested; the job stops at its next step", cancel=True)
            return job

    def _finish(self, job: Job, state: str, error: dict[str, Any] | None = None) -> None:
        """End a job; never raises for a disk that cannot take the news (memory has it, and
        `flush` writes it once the disk can)."""
        if error:
            error = self.redact.error(
                {"error": str(error.get("error")), "fix": str(error.get("fix") or "")}
                | {"field": error.get("field") if isinstance(error.get("field"), str) else None}
            )
        with self.lock:
            # The state first, then its event: a client that reads the event and then GETs
            # the job finds it ended (the event stream waits for the event: routes_jobs).
            event: dict[str, Any] = {"type": Event.STATE, "state": state}
            if error:
                event["error"] = error
            event["frames_done"] = len(job.frames_done)
            job.state, job.error, job.finished = JobState(state), error, time.time()
            self._emit_quietly(job, event)
            self._save_quietly(job)
            self.inputs.pop(job.id, None)
            self.lock.notify_all()

    def job_error(self, exc: BaseException) -> dict[str, Any]:
        """What a job that raised `exc` says: a full disk names the data folder's free space."""
        if isinstance(exc, StoryShadeError):
            return exc.to_json()
        oserror = os_error(exc)
        if oserror is not None:
            log.error("job failed on the disk: %s", oserror)
            return self.disk.job_error(oserror)
        log.error("job failed", exc_info=exc)
        return {
            "error": f"internal error: {type(exc).__name__}: {str(exc)[:300]}",
            "fix": "see the server log; frames written so far are kept",
            "field": None,
        }

    # -- workers ---------------------------------------------------------------------------
    def _worker_thread(self, slot: int) -> threading.Thread:
        return threading.Thread(
            target=self._worker, args=(slot,), name=f"storyshade-worker-{slot}", daemon=True
        )

    def _worker(self, slot: int) -> None:
        try:
            self._run_forever(slot)
        except BaseException as exc:  # the loop never ends by itself; it did
            self._replace_worker(slot, exc)

    def _replace_worker(self, slot: int, exc: BaseException) -> None:
        """A worker thread ended (say a render called sys.exit): start another in its slot
        first, then fail the job it was running, saying so."""
        what = f"{type(exc).__name__}: {str(exc)[:200]}".rstrip(": ")
        log.error("worker %d stopped (%s); a new worker takes its place", slot, what)
        with self.lock:
            self.worker_restarts += 1
            job = self.jobs.get(self.running.pop(slot, ""))
            self.clocks.pop(job.id if job else "", None)
            self.workers[slot] = self._worker_thread(slot)
            self.workers[slot].start()
            if job is not None and job.state == JobState.RUNNING:
                message = (
                    f"the worker running this job stopped ({what}); a new worker took its place"
                )
                self._note(job, message, worker_replaced=True)
                self._finish(
                    job,
                    JobState.FAILED,
                    {
                        "error": message,
                        "fix": "see the server log; frames written so far are kept",
                        "field": None,
                    },
                )

    def _next(self, slot: int) -> Job:
        """Wait for the next queued job and mark it running (in memory)."""
        with self.lock:
            while True:
                while not self.queue:
                    self.lock.wait()
                job = self.jobs.get(self.queue.pop())
                if job is not None and job.state == JobState.QUEUED:
                    break
            job.state, job.started, job.error = JobState.RUNNING, time.time(), None
            job.attempts += 1
            job.progress = {}
            self.running[slot] = job.id
            self.clocks[job.id] = JobEta(self._size(job), self.rates)
            self._announce_positions()
            return job

    def _run_forever(self, slot: int) -> None:
        while True:
            job = self._next(slot)
            try:
                self._save(job)
                self._emit(
                    job, {"type": Event.STATE, "state": JobState.RUNNING, "attempt": job.attempts}
                )
                self._run(job)
            except Exception as exc:  # the job could not even start: say why, go on
                self._finish(job, JobState.FAILED, self.job_error(exc))
            # not in a `finally`: a thread ending here leaves its job for _replace_worker
            with self.lock:
                self.clocks.pop(job.id, None)
                self.running.pop(slot, None)

    # -- upkeep ----------------------------------------------------------------------------
    def _upkeep(self) -> None:
        while True:
            time.sleep(self.tick)
            try:
                self.flush()
                self.expire()
            except Exception:  # upkeep must outlive any one bad folder
                log.exception("upkeep failed; trying again in %.0f s", self.tick)

    def flush(self) -> bool:
        """Write records and events that could not be written before; True when all are."""
        with self.lock:
            for job_id in sorted(self.unsaved):
                job = self.jobs.get(job_id)
                if job is None:
                    self.unsaved.discard(job_id)
                    continue
                try:
                    self._save(job)
                except OSError:
                    break
            logs = list(self.logs.values())
        events = all([events.flush() for events in logs if events.pending])
        return events and not self.unsaved

    def expire(self) -> list[str]:
        """Delete finished jobs older than the retention time, folders and all."""
        if self.keep_seconds <= 0:
            return []
        cutoff = time.time() - self.keep_seconds
        with self.lock:
            old = [
                j.id
                for j in self.jobs.values()
                if j.state in TERMINAL and (j.finished or j.created) < cutoff
            ]
            for job_id in old:
                self._forget(job_id)
        for job_id in old:
            shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
            log.info(
                "job %s expired (finished over %.0f s ago): deleted", job_id, self.keep_seconds
            )
        return old

    def usage(self, owner: str | None) -> int:
        """Bytes on disk of `owner`'s jobs (frames, bundles, events)."""
        with self.lock:
            folders = [self.job_dir(j.id) for j in self.jobs.values() if j.owner == owner]
        total = 0
        for folder in folders:
            for path in folder.rglob("*"):
                try:
                    total += path.lstat().st_size
                except OSError:
                    continue
        return total

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
        except Exception as exc:  # keep the server alive; the job says what broke
            log.warning("job %s failed: %s", job.id, exc)
            clock.finish(learn=False)
            self._finish(job, JobState.FAILED, self.job_error(exc))
        else:
            clock.finish(learn="frames" not in job.reused)  # its last phase, measured
            self._finish(job, JobState.DONE)

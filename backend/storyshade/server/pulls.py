"""Model pulls as server jobs: `POST /v1/models/pull` (server/routes_models.py) starts one.

A pull job is a `Job` record like a render's (kind "pull"), with the same event log, SSE
stream, job routes and cancel; its folder is `<data>/pulls/<id>/` (job.json, request.json,
events.jsonl, pull.log). It runs `storyshade models pull --events` as a child process into
the server's first models folder, one pull at a time, and relays the child's JSON events:
the server process itself never downloads, so rendering stays offline. Cancel stops the
child; its hidden partial folder is kept, and pulling again continues it. A pull the last
server process was running when it stopped is queued again and continues where its files
stopped. The hub token a request carries is kept in memory only: a pull resumed after a
restart uses the server's own (HF_TOKEN or a stored login).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Any

from storyshade.errors import NotFound
from storyshade.server.events import EventLog
from storyshade.server.records import DAMAGED, Job, Records, read_record
from storyshade.server.redact import Redactor
from storyshade.wire.states import TERMINAL, Event, JobState

log = logging.getLogger("storyshade.server")

KIND = "pull"
PROGRESS_KEYS = (
    "stage",
    "done",
    "total",
    "eta_s",
    "rate",
    "model",
    "file",
    "file_done",
    "file_total",
)
ONLINE = {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0"}  # the server sets them to 1
DRY_RUN_S = 120


def pull_command(names: list[str], variant: str, roots: list[Path], dry_run: bool) -> list[str]:
    cmd = [sys.executable, "-m", "storyshade", "models", "pull", *names, "--variant", variant]
    for root in roots:
        cmd += ["--models", str(root)]
    return [*cmd, "--events", *(["--dry-run"] if dry_run else [])]


def child_env(token: str | None) -> dict[str, str]:
    env = {**os.environ, **ONLINE}
    if token:
        env["HF_TOKEN"] = token  # not on the command line, where `ps` shows it
    return env


def _die_with_parent() -> None:
    """Linux: the child is stopped when the server dies, so a pull resumed by the next
    server never waits for an orphan (the model lock would make it wait, not break)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def dry_run(names: list[str], variant: str, roots: list[Path], token: str | None) -> dict:
    """The plan (files, bytes, free space) from a child `pull --dry-run`; raises its error."""
    from storyshade.errors import StoryShadeError
    from storyshade.models.hub import PullError

    done = subprocess.run(
        pull_command(names, variant, roots, dry_run=True),
        capture_output=True,
        text=True,
        env=child_env(token),
        timeout=DRY_RUN_S,
        check=False,
    )
    for line in done.stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("type") == "plan":
            event.pop("type")
            return event
        if event.get("type") == "error":
            cls = PullError if event.get("field") not in ("names", "variant") else StoryShadeError
            raise cls(event["error"], event.get("fix", ""), field=event.get("field"))
    raise PullError(
        f"the dry run failed (exit {done.returncode}): {done.stderr.strip()[-300:]}",
        "see the server log",
    )


class PullJobs:
    """Every pull job: records on disk, events, a FIFO queue and the thread running it."""

    def __init__(
        self, data_dir: Path, roots: list[Path], redact: Redactor, start: bool = True
    ) -> None:
        self.records = Records(data_dir / "pulls")
        self.roots = roots
        self.redact = redact
        self.jobs: dict[str, Job] = {}
        self.logs: dict[str, EventLog] = {}
        self.requests: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, str] = {}  # in memory only
        self.children: dict[str, subprocess.Popen] = {}
        self.lock = threading.Condition(threading.RLock())
        self.queue: deque[str] = deque()
        self._load()
        self.thread = threading.Thread(
            target=self._run_forever, name="storyshade-pull", daemon=True
        )
        if start:
            self.thread.start()

    # -- records ---------------------------------------------------------------------------
    def _register(self, job: Job, request: dict[str, Any]) -> None:
        self.jobs[job.id] = job
        self.requests[job.id] = request
        self.logs[job.id] = EventLog(self.records.job_dir(job.id) / "events.jsonl")

    def _load(self) -> None:
        found = []
        for folder in self.records.root.iterdir():
            if folder.name == DAMAGED or not (folder / "job.json").is_file():
                continue  # a request cut short before its record: never a job
            try:  # one schema for every record the server wrote (records.py)
                job = read_record((folder / "job.json").read_bytes())
                request = json.loads((folder / "request.json").read_text("utf-8"))
                if not isinstance(request, dict):
                    raise ValueError("request.json is not an object")
            except (OSError, ValueError) as exc:
                self.records.damaged(folder, exc)
                continue
            found.append((job, request))
        for job, request in sorted(found, key=lambda jr: jr[0].created):
            self._register(job, request)
            if job.state in TERMINAL:
                continue
            if job.cancel_requested:
                self._finish(job, JobState.CANCELLED)
                continue
            job.state, job.progress = JobState.QUEUED, {}
            self.records.save(job)
            self._emit(job, {"type": Event.NOTE, "message": "the server stopped during this "
                             "pull; it continues where its files stopped", "resumed": True})  # fmt: skip
            self._emit(job, {"type": Event.STATE, "state": JobState.QUEUED, "resumed": True})
            self.queue.append(job.id)

    def _emit(self, job: Job, event: dict[str, Any]) -> None:
        self.logs[job.id].append(job.id, event)

    # -- what the job routes ask -------------------------------------------------------------
    def get(self, job_id: str, client: str | None = None) -> Job:
        """A pull job; named clients have none (only the administrator pulls)."""
        job = self.jobs.get(job_id)
        if job is None or client is not None:
            raise NotFound(
                f"no job '{job_id}' on this server", "list jobs with GET /v1/jobs", field="job_id"
            )
        return job

    def public(self, job: Job) -> dict[str, Any]:
        out = asdict(job)
        out.pop("seq", None)
        out["position"] = None
        return out

    def list(
        self, state: str | None = None, tag: str | None = None, client: str | None = None
    ) -> list[dict[str, Any]]:
        if client is not None:
            return []
        with self.lock:
            jobs = sorted(self.jobs.values(), key=lambda j: j.created)
            return [
                self.public(j)
                for j in jobs
                if (not state or j.state == state) and (tag is None or j.tag == tag)
            ]

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, names: list[str], variant: str, token: str | None, tag: str = "") -> Job:
        from storyshade.server.jobs import JobStore

        job_id = JobStore.new_id()
        self.records.job_dir(job_id).mkdir(parents=True)
        request = {"names": names, "variant": variant}
        (self.records.job_dir(job_id) / "request.json").write_text(
            json.dumps(request), encoding="utf-8"
        )
        job = Job(id=job_id, shot="", kind=KIND, preset=" ".join(names), tag=tag)
        with self.lock:
            self.records.save(job)  # the commit point: from here on it survives a restart
            self._register(job, request)
            if token:
                self.tokens[job_id] = token
            self._emit(job, {"type": Event.STATE, "state": JobState.QUEUED})
            self.queue.append(job_id)
            self.lock.notify_all()
        return job

    def cancel(self, job_id: str) -> Job:
        """A queued pull stops now, a running one as soon as its child is stopped; what it
        downloaded stays in the hidden partial folder for the next pull."""
        with self.lock:
            job = self.get(job_id)
            if job.state in TERMINAL or job.cancel_requested:
                return job
            job.cancel_requested = True
            if job.state == JobState.QUEUED:
                self._finish(job, JobState.CANCELLED)
                return job
            self.records.save(job)
            self._emit(job, {"type": Event.NOTE, "message": "cancel requested", "cancel": True})
            child = self.children.get(job_id)
        if child is not None and child.poll() is None:
            child.terminate()
        return job

    def _finish(self, job: Job, state: str, error: dict[str, Any] | None = None) -> None:
        error = self.redact.error(error) if error else None
        with self.lock:
            event: dict[str, Any] = {"type": Event.STATE, "state": state}
            if error:
                event["error"] = error
            # The job's state first: a client that reads the terminal event and then asks
            # for the job must find it ended (GET reads it without this lock).
            job.state, job.error, job.finished = state, error, time.time()
            self._emit(job, event)
            self.records.save(job)
            self.tokens.pop(job.id, None)
            self.lock.notify_all()

    def _run_forever(self) -> None:
        while True:
            with self.lock:
                while not self.queue:
                    self.lock.wait()
                job = self.jobs[self.queue.popleft()]
                if job.state != JobState.QUEUED:
                    continue
                job.state, job.started, job.error = JobState.RUNNING, time.time(), None
                job.attempts += 1
                self.records.save(job)
                self._emit(
                    job, {"type": Event.STATE, "state": JobState.RUNNING, "attempt": job.attempts}
                )
            try:
                self._run(job)
            except Exception as exc:  # keep the thread alive; the job says what broke
                log.exception("pull %s failed", job.id)
                self._finish(
                    job,
                    JobState.FAILED,
                    {"error": f"internal error: {type(exc).__name__}: {exc}", "fix": "see the "
                     "server log", "field": None},
                )  # fmt: skip

    def _run(self, job: Job) -> None:
        request = self.requests[job.id]
        folder = self.records.job_dir(job.id)
        with (folder / "pull.log").open("a", encoding="utf-8") as stderr:
            child = subprocess.Popen(
                pull_command(request["names"], request["variant"], self.roots, dry_run=False),
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=child_env(self.tokens.get(job.id)),
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
            with self.lock:
                self.children[job.id] = child
                cancelled = job.cancel_requested
            if cancelled:
                child.terminate()
            error = None
            assert child.stdout is not None
            for line in child.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                error = self._relay(job, event) or error
            code = child.wait()
        with self.lock:
            self.children.pop(job.id, None)
        if job.cancel_requested:
            self._emit(job, {"type": Event.NOTE, "message": "the files downloaded so far are "
                             "kept: pulling again continues from there"})  # fmt: skip
            self._finish(job, JobState.CANCELLED)
        elif code == 0:
            self._finish(job, JobState.DONE)
        else:
            self._finish(
                job,
                JobState.FAILED,
                error
                or {
                    "error": f"the pull stopped (exit {code}) without saying why",
                    "fix": "see pull.log in the job's folder on the server",
                    "field": None,
                },
            )

    def _relay(self, job: Job, event: dict[str, Any]) -> dict[str, Any] | None:
        """One event of the child onto the job's stream; returns an error it reports."""
        kind = event.pop("type", None)
        if kind == "error":
            return {k: event.get(k) for k in ("error", "fix", "field")}
        if kind == Event.PROGRESS:
            with self.lock:
                job.progress = {k: event[k] for k in PROGRESS_KEYS if k in event}
            self._emit(job, {"type": Event.PROGRESS, **event})
        elif kind == Event.NOTE:
            self._emit(job, {"type": Event.NOTE, **self.redact.error(event)})
        elif kind == "end":
            self._emit(job, {"type": Event.NOTE, "message": "ready" if event.get("ready")
                             else "downloaded; the presets asked still lack models",
                             "ready": bool(event.get("ready"))})  # fmt: skip
        return None

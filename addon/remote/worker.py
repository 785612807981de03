"""The network half of a shading run, in a thread that never touches bpy.

`NetworkJob` uploads the bundle, follows the job's Server-Sent Events, writes each shaded
frame into the take folder as soon as it exists, and reports everything as `protocol`
messages on a queue. Blender's main thread drains the queue (modal timer or blocking
loop); only it touches bpy. The two threads share no mutable object: the worker keeps its
own copy of the TakeRun, and the main thread's copy changes only by `apply`ing messages
(the job id arrives with SUBMITTED, each frame with FRAME). Cancel is a flag plus a DELETE sent from a short-lived thread,
so pressing Esc never waits on the network.
"""

from __future__ import annotations

import base64
import binascii
import os
import queue
import shutil
import threading
from dataclasses import replace
from pathlib import Path

from ..errors import ConnectionLost, JobFailed, StoryShadeError
from ..looks.reference_files import wire_settings
from ..takes.run import Progress, TakeRun, write_job_record
from ..wire.layout import frame_name
from ..wire.states import TERMINAL, Event, JobState, Stage
from . import protocol
from .client import UploadCancelled
from .protocol import Message


def write_atomic(path: Path, data: bytes) -> None:
    """Readers (the preview, the sequencer) never see a half-written PNG; the temporary
    name is per thread, so two writers of one frame (a detached run and its reattach)
    never rename each other's file."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class NetworkJob:
    """Submit → follow → download, in one daemon thread; results arrive as `messages`.

    `client` needs health/submit/jobs/job/events/frame/cancel (see client.Client); tests
    pass a fake. `bundle_dir` is deleted once uploaded.
    """

    def __init__(
        self,
        client,
        run: TakeRun,
        bundle_dir: Path | None,
        retries: int = 3,
        retry_delay: float = 1.0,
    ) -> None:
        self.client = client
        self.run = replace(run, frames=list(run.frames), received=list(run.received))
        self.run.settings = dict(run.settings)  # the worker's own copy (see the docstring)
        self.bundle_dir = bundle_dir
        self.retries = retries
        self.retry_delay = retry_delay
        self.messages: queue.Queue[Message] = queue.Queue()
        self._cancel = threading.Event()
        self._detached = threading.Event()
        self._lock = threading.Lock()
        self._cancel_sent = False
        self._thread = threading.Thread(target=self._main, name="storyshade-network", daemon=True)

    # -- main-thread API -------------------------------------------------------------------
    def start(self) -> NetworkJob:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        """Ask the server to stop; returns at once (the DELETE goes from its own thread)."""
        self._cancel.set()
        self._send_cancel_async()

    def detach(self) -> None:
        """Stop following without cancelling: the server job goes on (Blender is ending the
        run; a later Reattach picks the job up)."""
        self._detached.set()

    def drain(self, timeout: float = 0.0) -> list[Message]:
        """Every message waiting; with `timeout`, wait that long for the first one."""
        out: list[Message] = []
        try:
            out.append(
                self.messages.get(timeout=timeout) if timeout > 0 else self.messages.get_nowait()
            )
            while True:
                out.append(self.messages.get_nowait())
        except queue.Empty:
            pass
        return out

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # -- worker thread ---------------------------------------------------------------------
    def _put(self, kind: str, **fields) -> None:
        self.messages.put(Message(kind, job_id=self.run.job_id, **fields))

    def _send_cancel_async(self) -> None:
        with self._lock:
            if self._cancel_sent or not self.run.job_id:
                return
            self._cancel_sent = True
        threading.Thread(target=self._send_cancel, name="storyshade-cancel", daemon=True).start()

    def _send_cancel(self) -> None:
        try:
            self.client.cancel(self.run.job_id)
        except StoryShadeError:
            pass  # unreachable server: the follow loop reports the outcome

    def _main(self) -> None:
        try:
            if self.bundle_dir is not None:
                self._submit()
            if self._cancel.is_set() and not self.run.job_id:
                self._put(
                    protocol.CANCELLED,
                    text="Cancelled during the upload; nothing reached the server",
                )
                return
            self._follow()
        except StoryShadeError as exc:
            self._put(
                protocol.FAILED,
                text=exc.problem,
                fix=exc.fix,
                received=len(self.run.received),
                data={"job_over": isinstance(exc, JobFailed)},
            )
        except Exception as exc:  # the UI waits for a terminal message: never die silently
            self._put(
                protocol.FAILED,
                text=f"unexpected error while talking to the server: {type(exc).__name__}: {exc}",
                fix="report this with the system console output",
                received=len(self.run.received),
            )

    def _submit(self) -> None:
        try:
            if self._cancel.is_set():
                return
            # The images are in the bundle: the server gets their names inside it.
            try:
                job = self.client.submit(
                    self.bundle_dir,
                    wire_settings(self.run.settings),
                    tag=self.run.strip,
                    cancelled=self._cancel.is_set,
                )
            except UploadCancelled:
                return  # _main says so: nothing reached the server
            self.run.job_id = str(job["id"])
            try:
                write_job_record(self.run)
            except OSError:
                pass  # only reattaching after a restart needs it; the run goes on

        finally:
            shutil.rmtree(self.bundle_dir, ignore_errors=True)
        self._put(protocol.SUBMITTED, text="Submitted", total=len(self.run.frames))
        if self._cancel.is_set():
            self._send_cancel_async()

    def _follow(self) -> None:
        last, failures, idle_ends = 0, 0, 0
        while True:
            try:
                for event in self.client.events(self.run.job_id, last):
                    if self._detached.is_set():
                        return
                    failures = 0
                    last = int(event.get("id") or last)
                    final = self._on_event(event)
                    if final is not None:
                        self._finish(final)
                        return
                # The stream closed without a final state (proxy, server restart): resume.
                job = self.client.job(self.run.job_id)
                if job.get("state") in TERMINAL:
                    idle_ends += 1
                    if idle_ends >= 2:  # replay from `last` had nothing: trust the record
                        self._finish({"state": job["state"], "error": job.get("error")})
                        return
            except ConnectionLost as exc:
                failures += 1
                if self._cancel.is_set():
                    self._put(
                        protocol.CANCELLED,
                        text="Cancelled (the server stopped answering; it may still finish the job)",
                        received=len(self.run.received),
                    )
                    return
                if failures > self.retries:
                    raise StoryShadeError(
                        f"{exc.problem}; {len(self.run.received)} frames kept in {self.run.folder}",
                        exc.fix,
                    ) from None
                self._put(
                    protocol.NOTE, text=f"Reconnecting to the server ({failures}/{self.retries})"
                )
                self._cancel.wait(self.retry_delay)

    def _on_event(self, event: dict) -> dict | None:
        """Turn one server event into messages; return it when it ends the job."""
        kind = event.get("type")
        if kind == Event.FRAME:
            self._download(int(event["frame"]))
        elif kind == Event.PROGRESS:
            text, fraction = protocol.describe(event)
            self._put(
                protocol.PROGRESS,
                text=text,
                fraction=fraction,
                stage=str(event.get("stage", "")),
                data={k: event.get(k) for k in ("done", "total", "eta_s")},
            )
        elif kind == Event.NOTE and event.get("message"):
            self._put(protocol.NOTE, text=str(event["message"]))
        elif kind == Event.STATE:
            state = event.get("state")
            if state in TERMINAL:
                return event
            if state == JobState.QUEUED:
                self._put(
                    protocol.PROGRESS,
                    stage=Stage.QUEUED,
                    text=protocol.queued_text(self._position()),
                )
            elif state == JobState.RUNNING:
                self._put(protocol.PROGRESS, stage=Stage.RUNNING, text="Starting")
        elif kind == Event.PREVIEW and event.get("png_base64"):
            self._preview(event)
        return None  # unknown kinds are skipped: newer servers may send more

    def _position(self) -> int | None:
        try:
            return protocol.queue_position(self.client.jobs(), self.run.job_id)
        except (StoryShadeError, KeyError, TypeError, ValueError):
            return None  # the place in line is a nicety, not worth failing for

    def _preview(self, event: dict) -> None:
        """The denoiser's rough estimate, until real frames arrive (best effort)."""
        try:
            data = base64.b64decode(event["png_base64"], validate=True)
        except (binascii.Error, ValueError, TypeError):
            return
        path = self.run.folder / "_preview.png"
        write_atomic(path, data)
        self._put(protocol.PREVIEW, path=str(path), data={"step": event.get("step")})

    def _download(self, frame: int) -> None:
        if self._detached.is_set():
            return
        path = self.run.folder / frame_name(frame)
        write_atomic(path, self.client.frame(self.run.job_id, frame))
        if frame not in self.run.received:
            self.run.received.append(frame)
        n, total = len(self.run.received), len(self.run.frames)
        self._put(
            protocol.FRAME,
            text=f"Receiving {n}/{total}",
            fraction=n / total if total else 1.0,
            stage="receiving",
            frame=frame,
            path=str(path),
            received=n,
            total=total,
        )

    def _finish(self, final: dict) -> None:
        state = final.get("state")
        kept = f"{len(self.run.received)} frames kept in {self.run.folder}"
        if state == JobState.FAILED:
            err = final.get("error") or {}
            raise JobFailed(
                f"the server could not shade the shot: {err.get('error', 'unknown error')} ({kept})",
                err.get("fix") or "see the server's console output",
            )
        if state == JobState.CANCELLED:
            self._put(
                protocol.CANCELLED, text=f"Cancelled; {kept}", received=len(self.run.received)
            )
            return
        for frame in [f for f in self.run.frames if f not in self.run.received]:
            self._download(frame)  # e.g. a reconnect skipped some frame events
        self._put(
            protocol.DONE,
            text=f"Received {len(self.run.received)}/{len(self.run.frames)}",
            fraction=1.0,
            received=len(self.run.received),
            total=len(self.run.frames),
        )


def apply(run: TakeRun, msg: Message) -> None:
    """The main thread's side of the hand-over: what a message says about the run."""
    if msg.job_id and msg.kind == protocol.SUBMITTED:
        run.job_id = msg.job_id
    if msg.kind == protocol.FRAME and msg.frame is not None and msg.frame not in run.received:
        run.received.append(msg.frame)


def follow_job(client, run: TakeRun, progress: Progress, cancelled=lambda: False) -> None:
    """Follow an already submitted job to its end, blocking (kept for scripts and tests).

    Raises StoryShadeError if the job fails or is cancelled; frames already received stay.
    """
    job = NetworkJob(client, run, None).start()
    while True:
        if cancelled() and not job.cancel_requested:
            job.cancel()
        for msg in job.drain(timeout=0.2):
            apply(run, msg)
            if msg.text:
                progress(msg.text)
            if msg.kind == protocol.FAILED:
                raise StoryShadeError(msg.text, msg.fix)
            if msg.kind == protocol.CANCELLED:
                raise StoryShadeError(msg.text)
            if msg.kind == protocol.DONE:
                return

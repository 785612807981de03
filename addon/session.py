"""One shading run as a state machine that Blender advances one small step at a time.

check server → export (one Cycles frame per tick) → network worker thread → take strip.

`ShadeSession.tick()` never blocks (unless asked to wait for messages), so the same code
serves the modal operator's timer, the headless CLI (a blocking loop: timers never fire in
background mode) and tests, which call `tick()` or `ModalDriver.handle()` in a loop to
simulate Blender's event loop. Only this main-thread side touches bpy.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from . import compat, export, protocol, take
from .errors import StoryShadeError
from .protocol import Message
from .server_local import HealthCheck
from .shade import TakeRun, remove_bundle, temp_bundle_dir, write_job_record
from .worker import NetworkJob

# Phases of a run, in order.
CHECKING, EXPORTING, NETWORK, FINISHED = "checking", "exporting", "network", "finished"
# Outcomes of a finished run.
DONE, FAILED, CANCELLED = protocol.DONE, protocol.FAILED, protocol.CANCELLED


@dataclass
class ShadeRequest:
    """What to shade and where the take goes; `settings` is the server's settings JSON."""

    settings: dict
    frame_start: int | None = None
    frame_end: int | None = None
    take_mode: str = take.KEEP
    output_pattern: str = take.DEFAULT_PATTERN
    server_url: str = ""
    inputs: dict = field(default_factory=dict)  # the panel's fields, stored on the take


class ShadeSession:
    """Advance with `tick()`; read `phase`, `text`, `fraction`, `preview_path`, `error`."""

    def __init__(self, scene, client, request: ShadeRequest, cancel_grace: float = 15.0) -> None:
        export.check_scene(scene)  # no camera etc.: say so before anything starts
        self.scene_name = scene.name
        self.client = client
        self.request = request
        self.start, self.end = export.frame_range(scene, request.frame_start, request.frame_end)
        self.shot = export.shot_name(scene)
        self.cancel_grace = cancel_grace
        self.phase = CHECKING
        self.outcome = ""
        self.log: list[str] = []  # every distinct stage text, oldest first (for the console)
        self._text = ""
        self.text = "Checking the server"
        self.fraction = 0.0
        self.note = ""
        self.error: StoryShadeError | None = None
        self.preview_path = ""
        self.strip_name = ""
        self.channel = 0
        self.run: TakeRun | None = None
        self.job: NetworkJob | None = None
        self._bundle_dir: Path | None = None
        self._export = None
        self._cancel_at: float | None = None
        self._health = HealthCheck()
        self._health.start(client)

    # -- state -----------------------------------------------------------------------------
    @property
    def text(self) -> str:
        """The current stage in words ("Exporting 12/48", "Queued #2", ...)."""
        return self._text

    @text.setter
    def text(self, value: str) -> None:
        if value != self._text:
            self._text = value
            self.log.append(value)  # a run has at most a few thousand

    @property
    def running(self) -> bool:
        return self.phase != FINISHED

    @property
    def job_id(self) -> str:
        return self.run.job_id if self.run else ""

    @property
    def total(self) -> int:
        return self.end - self.start + 1

    def scene(self):
        """Looked up by name each time: undo and file loads replace the scene datablock."""
        scene = bpy.data.scenes.get(self.scene_name)
        if scene is None:
            raise StoryShadeError(f"the scene '{self.scene_name}' is gone", "run Shade again")
        return scene

    # -- driving ---------------------------------------------------------------------------
    def tick(self, wait: float = 0.0) -> bool:
        """One step; `wait` > 0 blocks that long for news (background mode only)."""
        try:
            if self.phase == CHECKING:
                self._check(wait)
            elif self.phase == EXPORTING:
                self._export_step()
            elif self.phase == NETWORK:
                self._network(wait)
        except StoryShadeError as exc:
            self._fail(exc)
        except OSError as exc:  # e.g. the take folder cannot be created
            self._fail(
                StoryShadeError(
                    f"could not write {exc.filename or 'a file'} ({exc.strerror or exc})",
                    "check the Output Folder in the add-on preferences and free disk space",
                )
            )
        except Exception as exc:  # a bug must end the run, not leave Blender "busy" forever
            traceback.print_exc()
            self._fail(
                StoryShadeError(
                    f"unexpected error: {type(exc).__name__}: {exc}",
                    "report this with the system console output",
                )
            )
        return self.running

    def run_blocking(
        self, on_change: Callable[[ShadeSession], None] | None = None, poll: float = 0.2
    ) -> ShadeSession:
        """Run to the end on this thread (background mode: no timers there); Ctrl+C cancels."""
        while True:
            try:
                running = self.tick(wait=poll)
            except KeyboardInterrupt:
                self.cancel()
                running = self.running
            if on_change:
                on_change(self)
            if not running:
                return self

    def cancel(self) -> None:
        """Stop now if nothing reached the server; otherwise ask it and wait for its answer."""
        if self.phase in (CHECKING, EXPORTING):
            self._finish(CANCELLED, "Cancelled during export; nothing was sent to the server")
        elif self.phase == NETWORK and self.job is not None and self._cancel_at is None:
            self._cancel_at = time.monotonic()
            self.job.cancel()
            self.text = "Cancelling…"

    def abandon(self) -> None:
        """Blender is ending the run itself (file load, quit). A job already on the server
        keeps running there (artists queue shots and close Blender): reattach later with
        StoryShade > Reattach. An export still in progress is cancelled."""
        if self.phase == NETWORK and self.job is not None and self.run and self.run.job_id:
            self.job.detach()
            self._finish(
                CANCELLED,
                f"Detached from job {self.run.job_id}; it keeps running on the server "
                "(StoryShade > Reattach picks it up)",
            )
            return
        self.cancel()
        if self.running:
            self._finish(
                CANCELLED, "Cancelled (Blender ended the run; the server was asked to stop)"
            )

    @classmethod
    def reattach(cls, scene, client, request: ShadeRequest, run: TakeRun) -> ShadeSession:
        """Follow a job an earlier Blender session submitted (found by shade.unplaced_runs)
        and place its take; frames already in the take folder are not fetched again."""
        request.frame_start, request.frame_end = run.frames[0], run.frames[-1]
        session = cls(scene, client, request)
        session.shot = run.shot or session.shot
        session.run = run
        session.job = NetworkJob(client, run, None).start()
        session.phase = NETWORK
        session.text, session.fraction = f"Reattached to job {run.job_id}", 0.0
        return session

    # -- phases ----------------------------------------------------------------------------
    def _check(self, wait: float) -> None:
        if self._health.busy and wait > 0:
            self._health.join(wait)
        if self._health.busy:
            return
        if self._health.error is not None:
            raise self._health.error
        self._bundle_dir = temp_bundle_dir()
        self._export = export.iter_export(self.scene(), self._bundle_dir, self.start, self.end)
        self.phase = EXPORTING
        self.text, self.fraction = f"Exporting 0/{self.total}", 0.0

    def _export_step(self) -> None:
        try:
            done, total = next(self._export)
        except StopIteration:
            self._export = None
            self._start_network()
            return
        except RuntimeError as exc:  # bpy.ops.render.render reports Blender errors this way
            raise StoryShadeError(
                f"Blender could not render the depth/normal passes ({exc})",
                "check that Cycles is enabled and the scene renders (F12)",
            ) from None
        self.text, self.fraction = f"Exporting {done}/{total}", done / total

    def _start_network(self) -> None:
        scene = self.scene()
        folder, name, temporary = take.next_take_dir(self.shot, self.request.output_pattern, scene)
        frames = list(range(self.start, self.end + 1))
        self.run = TakeRun(self.shot, name, folder, temporary, frames)
        self.run.settings = dict(self.request.settings)
        if temporary:
            self.note = f"The .blend is not saved: frames go to the temporary folder {folder}"
        self.job = NetworkJob(self.client, self.run, self._bundle_dir).start()
        self._bundle_dir = None  # the worker uploads and deletes it
        self.phase = NETWORK
        self.text, self.fraction = "Uploading", 0.0

    def _network(self, wait: float) -> None:
        for msg in self.job.drain(wait):
            self._apply(msg)
            if not self.running:
                return
        if self._cancel_at is not None and time.monotonic() - self._cancel_at > self.cancel_grace:
            self._finish(
                CANCELLED, "Cancelled (the server did not confirm; it may still finish the job)"
            )

    def _apply(self, msg: Message) -> None:
        if msg.kind == protocol.SUBMITTED:
            self.text = f"job {msg.job_id} submitted"
        elif msg.kind == protocol.PROGRESS:
            if msg.stage == "saving" and self.run.received:
                return  # "Receiving n/N" already says it, from our side of the wire
            if self._cancel_at is None:
                self.text, self.fraction = msg.text, msg.fraction
        elif msg.kind == protocol.NOTE:
            self.note = msg.text
        elif msg.kind == protocol.PREVIEW:
            if not self.run.received:  # a real frame beats a rough estimate
                self.preview_path = msg.path
        elif msg.kind == protocol.FRAME:
            self.preview_path = msg.path
            if self._cancel_at is None:
                self.text, self.fraction = msg.text, msg.fraction
        elif msg.kind == protocol.DONE:
            self._place_take()
        elif msg.kind == protocol.FAILED:
            self._fail(StoryShadeError(msg.text, msg.fix))
        elif msg.kind == protocol.CANCELLED:
            self._finish(CANCELLED, msg.text)

    def _place_take(self) -> None:
        run = self.run
        info = {"job": run.job_id, "settings": run.settings, "server": self.request.server_url}
        if self.request.inputs:
            info["inputs"] = self.request.inputs
        strip = take.add_take_strip(
            self.scene(), run.folder, run.frames, run.shot, run.take, info, self.request.take_mode
        )
        self.strip_name, self.channel = strip.name, strip.channel
        scene = self.scene()
        if not compat.show_in_sequencer(scene, getattr(bpy.context, "workspace", None)):
            self.note = (
                f"The Sequencer shows another scene: pick '{scene.name}' in its scene "
                "selector, or press Show Takes in Sequencer"
            )
        try:
            write_job_record(run, state="placed")
        except OSError:
            pass  # the strip is placed; the record only serves reattaching
        self.fraction = 1.0
        self._finish(DONE, f"Take {strip.name} added on channel {strip.channel}")

    # -- endings ---------------------------------------------------------------------------
    def _fail(self, exc: StoryShadeError) -> None:
        self.error = exc
        self._finish(FAILED, exc.problem)

    def _finish(self, outcome: str, text: str) -> None:
        if self._export is not None:
            self._export.close()  # runs export's finally: the scene is restored
            self._export = None
        if self._bundle_dir is not None:
            remove_bundle(self._bundle_dir)
            self._bundle_dir = None
        self.phase, self.outcome, self.text = FINISHED, outcome, text


class ModalDriver:
    """The modal operator's event handling, free of Blender's event loop so tests can feed
    it ("TIMER", "ESC", anything else) and check the return sets Blender would get."""

    def __init__(self, session: ShadeSession, on_update: Callable[[ShadeSession], None]) -> None:
        self.session = session
        self.on_update = on_update

    def handle(self, event_type: str, event_value: str = "PRESS") -> set[str]:
        if event_type == "ESC" and event_value == "PRESS":
            self.session.cancel()
        elif event_type == "TIMER":
            self.session.tick()
        else:
            return {"PASS_THROUGH"}  # the rest of Blender stays usable while shading
        self.on_update(self.session)
        if self.session.running:
            return {"RUNNING_MODAL"}
        return {"FINISHED"} if self.session.outcome == DONE else {"CANCELLED"}

"""One shading run as a state machine that Blender advances one small step at a time.

check server → export (one Cycles frame per tick) → network worker thread → take strip.

`ShadeSession.tick()` never blocks (unless asked to wait for messages), so the same code
serves the modal operator's timer, the headless CLI (a blocking loop: timers never fire in
background mode) and tests, which call `tick()` or `ModalDriver.handle()` in a loop to
simulate Blender's event loop. Only this main-thread side touches bpy.
"""

from __future__ import annotations

import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from .. import compat
from ..errors import StoryShadeError
from ..export import background, bundle
from ..looks import reference_files, references
from ..looks.resolve import LookOverrides, looks_in_shot, shot_regions
from ..remote import protocol
from ..remote.protocol import Message
from ..remote.server_local import HealthCheck
from ..remote.worker import NetworkJob, apply
from ..takes import reshade, take, unsaved
from ..takes.reshade import Reshade
from ..takes.run import (
    TakeRun,
    discard_take_folder,
    remove_bundle,
    temp_bundle_dir,
    write_job_record,
)
from ..wire.states import INDETERMINATE, Stage

# Phases of a run, in order.
CHECKING, EXPORTING, NETWORK, FINISHED = "checking", "exporting", "network", "finished"
CANCELLING = "Cancelling: waiting for the server to stop the job"
# Server stages whose amount is unknown (loading reports 0/1 then 1/1), and those that
# become frames: the server decodes and saves while the worker receives.
FRAME_STAGES = frozenset({Stage.DECODING, Stage.SAVING})
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
    looks: LookOverrides | None = None  # from a looks file (--looks), over the .blend's own
    shot: str = ""  # the shot's name when shading one shot of an edit (default: from the file)
    camera: str = ""  # a camera that overrides the scene's for the whole range (scene strips)
    reshade: Reshade | None = None  # re-shade frames A-B of an earlier take (reshade.plan)
    # Style references, (image, weight): the panel's scene's, when the shot is another
    # scene (an edit's scene strips); None: the shot's scene's own.
    style_references: list[tuple[str, float]] | None = None
    follow_only: bool = False  # reattaching: the job is on the server, nothing is sent


class ShadeSession:
    """Advance with `tick()`; read `phase`, `text`, `fraction`, `preview_path`, `error`."""

    def __init__(self, scene, client, request: ShadeRequest) -> None:
        bundle.check_scene(scene)  # no camera etc.: say so before anything starts
        self.regions, _ids = shot_regions(scene, request.looks)  # a bad look, too
        if not request.follow_only:  # reference images: bad files, too many... all now
            request.settings = references.attach(
                request.settings,
                looks_in_shot(scene, request.looks)[1],
                references.style_of(scene)
                if request.style_references is None
                else request.style_references,
            )
        self.scene_name = scene.name
        self.client = client
        self.request = request
        if request.reshade:  # export A-B and the held frames around them
            request.frame_start, request.frame_end = request.reshade.span
            request.shot = request.shot or request.reshade.shot
        self.start, self.end = bundle.frame_range(scene, request.frame_start, request.frame_end)
        self.shot = request.shot or bundle.shot_name(scene)
        self.phase = CHECKING
        self.outcome = ""
        self.log: list[str] = []  # every distinct stage text, oldest first (for the console)
        self._text = ""
        self.text = "Checking the server"
        self.fraction: float | None = None  # of the current stage; None: not knowable
        self.stage = "checking"
        self.stage_since = time.monotonic()
        self._decoded = 0
        self.eta_s: float | None = None  # the server's latest estimate of the seconds left
        self.note = ""  # the server's latest remark while running ("control images ready")
        self.lasting_note = ""  # what still matters after the run (temp folder, Sequencer)
        self.unsaved_note = ""  # the note that the .blend is not saved (a save ends it)
        self.error: StoryShadeError | None = None
        self.preview_path = ""
        self.shown: tuple | None = None  # what the UI last displayed (operators.show)
        self.strip_name = ""
        self.channel = 0
        self.run: TakeRun | None = None
        self.job: NetworkJob | None = None
        self._bundle_dir: Path | None = None
        self._export = None
        self._cancel_at: float | None = None
        self.health = HealthCheck()  # the server's answers; the panel adopts them
        self.health.start(client, preset=request.settings.get("preset", ""))

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
        return run_to_end(self, on_change, poll)

    def cancel(self) -> None:
        """Stop now if nothing reached the server; otherwise ask it, and keep listening
        until it confirms (it stops within one model call). Cancel again while waiting
        stops waiting: the server may then still finish the job (Reattach picks it up)."""
        if self.phase in (CHECKING, EXPORTING):
            self._discard_take_folder()
            self._finish(CANCELLED, "Cancelled during export; nothing was sent to the server")
        elif self.phase == NETWORK and self.job is not None and self._cancel_at is None:
            self._cancel_at = time.monotonic()
            self.job.cancel()
            self._progress("cancelling", CANCELLING, None)
        elif self.phase == NETWORK and self.job is not None:
            self.job.detach()
            job = self.job_id or "the job"
            self._finish(
                CANCELLED,
                f"Stopped waiting after {self.cancel_wait():.0f} s: the server had not confirmed "
                f"the cancel, so it may still finish {job} (Reattach picks it up)",
            )

    def cancel_wait(self) -> float:
        """Seconds since Cancel was pressed (0 if it was not)."""
        return time.monotonic() - self._cancel_at if self._cancel_at is not None else 0.0

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
        """Follow a job an earlier Blender session submitted (found by run.unplaced_runs)
        and place its take; frames already in the take folder are not fetched again."""
        request.frame_start, request.frame_end = run.frames[0], run.frames[-1]
        request.follow_only = True
        session = cls(scene, client, request)
        session.shot = run.shot or session.shot
        session.run = run
        session.job = NetworkJob(client, run, None).start()
        session.phase = NETWORK
        session._progress("reattached", f"Reattached to job {run.job_id}", None)
        return session

    # -- phases ----------------------------------------------------------------------------
    def _check(self, wait: float) -> None:
        if self.health.busy and wait > 0:
            self.health.join(wait)
        if self.health.busy:
            return
        if self.health.error is not None:
            raise self.health.error
        ready = self.health.readiness
        if ready is not None and not ready.get("ready", True):
            raise not_ready_error(ready)  # before minutes of export and upload, not after
        try:
            self._bundle_dir = temp_bundle_dir()
        except OSError as exc:
            raise StoryShadeError(
                f"cannot make the export folder in {tempfile.gettempdir()} ({exc.strerror or exc})",
                "free disk space there, or point TMPDIR at a writable folder",
            ) from None
        if background.available() and self.request.looks is None:
            # A window: Cycles runs in a background Blender, the UI only reads progress.
            self._export = background.ExportProcess(
                self.scene(),
                self._bundle_dir,
                self.start,
                self.end,
                shot=self.shot,
                camera=self.request.camera or None,
            )
        else:
            self._export = bundle.iter_export(
                self.scene(),
                self._bundle_dir,
                self.start,
                self.end,
                self.request.looks,
                shot=self.shot,
                camera=self.request.camera or None,
            )
        self.phase = EXPORTING
        self._progress("exporting", self._export_text(0, self.total), 0.0)

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
        self._progress("exporting", self._export_text(done, total), done / total)

    def _export_text(self, done: int, total: int) -> str:
        """ "Exporting 3/16", and from a background Blender what it is doing: starting,
        or which frame it renders and how long a frame takes."""
        text = f"Exporting {done}/{total}"
        proc = self._export
        if not isinstance(proc, background.ExportProcess):
            return text
        if not proc.ready:
            return f"{text}: starting Blender"
        if done < total:
            text += f": rendering frame {done + 1} of {total}"
        per_frame = proc.seconds_per_frame()
        if per_frame is not None:
            text += f", {per_frame:.1f} s per frame"
        return text

    def _start_network(self) -> None:
        scene = self.scene()
        folder, name, temporary = take.next_take_dir(self.shot, self.request.output_pattern, scene)
        frames = list(range(self.start, self.end + 1))
        if self.request.reshade:
            reshade.hold_frames(self._bundle_dir, self.request.reshade)
            frames = self.request.reshade.frames  # the server makes only these
        reference_files.copy_into(self._bundle_dir, self.request.settings)
        self.run = TakeRun(self.shot, name, folder, temporary, frames, strip=f"{self.shot}_{name}")
        self.run.settings = dict(self.request.settings)
        if temporary:
            self.lasting_note = self.unsaved_note = (
                f"The .blend is not saved: frames go to the temporary folder {folder} "
                "(they move beside it when you save)"
            )
            self.note = self.lasting_note
        self.job = NetworkJob(self.client, self.run, self._bundle_dir).start()
        self._bundle_dir = None  # the worker uploads and deletes it
        self.phase = NETWORK
        self._progress("uploading", "Uploading", None)

    def _network(self, wait: float) -> None:
        for msg in self.job.drain(wait):
            self._apply(msg)
            if not self.running:
                return
        if self._cancel_at is not None:  # the server stops at its next check: say so
            self.text = f"{CANCELLING} (Esc again to stop waiting)"

    def _apply(self, msg: Message) -> None:
        apply(self.run, msg)  # job id and received frames: the worker's news, on this thread
        if msg.kind == protocol.SUBMITTED:
            self._progress("submitted", f"Job {msg.job_id} submitted", None)
        elif msg.kind == protocol.PROGRESS:
            eta = msg.data.get("eta_s")
            self.eta_s = float(eta) if isinstance(eta, int | float) else None
            if msg.stage in FRAME_STAGES:  # the server decodes while we receive: one bar
                self._decoded = max(self._decoded, int(msg.data.get("done", 0) or 0))
                self._frames_progress()
            else:
                known = msg.stage not in INDETERMINATE
                self._progress(msg.stage, msg.text, msg.fraction if known else None)
        elif msg.kind == protocol.NOTE:
            self.note = msg.text
        elif msg.kind == protocol.PREVIEW:
            if not self.run.received:  # a real frame beats a rough estimate
                self.preview_path = msg.path
        elif msg.kind == protocol.FRAME:
            self.preview_path = msg.path
            self._frames_progress()
        elif msg.kind == protocol.DONE:
            self._place_take()
        elif msg.kind == protocol.FAILED:
            self._fail(StoryShadeError(msg.text, msg.fix), job_over=msg.data.get("job_over", False))
        elif msg.kind == protocol.CANCELLED:
            if "stopped answering" not in msg.text:  # else the job may still be running
                self._discard_take_folder()
            self._finish(CANCELLED, self._cancelled_text(msg.text))

    def _place_take(self) -> None:
        run = self.run
        info = {"job": run.job_id, "settings": run.settings, "server": self.request.server_url}
        if self.request.inputs:
            info["inputs"] = self.request.inputs
        if self.regions:
            info["looks"] = self.regions  # the looks this take was shaded with
        frames = run.frames
        if self.request.reshade:  # the new take shares the untouched frames, byte for byte
            again = self.request.reshade
            reshade.complete_take(run.folder, again)
            frames = again.take_frames
            info["reshaded"] = f"{again.start}-{again.end} of {again.strip}"
        if run.temporary:
            info["temporary"] = 1  # the strip's storyshade_temporary (takes/unsaved.py)
        strip = take.add_take_strip(
            self.scene(), run.folder, frames, run.shot, run.take, info, self.request.take_mode
        )
        if run.temporary and bpy.data.filepath:  # saved while it ran: beside the .blend now
            pattern = self.request.output_pattern
            unsaved.move_beside(bpy.data.filepath, pattern)
            self.lasting_note = self.unsaved_note = ""
        self.strip_name, self.channel = strip.name, strip.channel
        scene = self.scene()
        if not compat.show_in_sequencer(scene, getattr(bpy.context, "workspace", None)):
            self.lasting_note = (
                f"The Sequencer shows another scene: pick '{scene.name}' in its scene "
                "selector, or press Show Takes in Sequencer"
            )
        try:
            write_job_record(run, state="placed")
        except OSError:
            pass  # the strip is placed; the record only serves reattaching
        self.fraction = 1.0
        self._finish(DONE, f"Take {strip.name} added on channel {strip.channel}")

    # -- progress -------------------------------------------------------------------------
    def _progress(self, stage: str, text: str, fraction: float | None) -> None:
        """One bar per stage that only moves forward; None where the amount is unknown."""
        if self._cancel_at is not None and stage != "cancelling":
            return  # "Cancelling" stays until the server confirms
        if stage != self.stage:
            self.stage, self.stage_since = stage, time.monotonic()
        elif fraction is not None and self.fraction is not None:
            fraction = max(fraction, self.fraction)
        self.text, self.fraction = text, fraction

    def _frames_progress(self) -> None:
        n, total = len(self.run.received), len(self.run.frames)
        text = f"Frames {n}/{total} received"
        if self._decoded > n:
            text += f" ({min(self._decoded, total)} decoded)"
        self._progress("frames", text, n / total if total else 1.0)

    def stage_seconds(self) -> float:
        return time.monotonic() - self.stage_since

    def status_line(self) -> str:
        """The text for the panel: an indeterminate stage, and the export (whose frames
        can take a minute each), count their seconds."""
        if self.running and (self.fraction is None or self.phase == EXPORTING):
            return f"{self.text} · {self.stage_seconds():.0f} s"
        return self.text

    # -- endings ---------------------------------------------------------------------------
    def _cancelled_text(self, server_text: str) -> str:
        """What happened, in words: who stopped the job, when, and what is left."""
        kept = len(self.run.received) if self.run else 0
        if self._cancel_at is not None:
            head = f"Cancelled: the server stopped job {self.job_id} {self.cancel_wait():.0f} s after Cancel"
        elif self.job_id:
            head = f"Job {self.job_id} was cancelled on the server"
        else:
            return server_text or "Cancelled before the shot reached the server"
        if "stopped answering" in server_text:
            return server_text
        if kept:
            return f"{head}; {kept} frames kept in {self.run.folder}"
        return f"{head}; no frames were made"

    def _discard_take_folder(self) -> None:
        """A run that ends without frames leaves no take folder, so it uses no take number."""
        if self.job is not None:
            self.job.join(1.0)  # it has sent its last message and is returning
            if self.job.alive:
                return  # still writing there: leave the folder alone
        if self.run is not None and not self.run.received:
            discard_take_folder(self.run.folder)

    def _fail(self, exc: StoryShadeError, job_over: bool = False) -> None:
        """`job_over`: the server ended the job; else a job it accepted may still run
        (its folder's job.json is what Reattach needs)."""
        self.error = exc
        if job_over or not self.job_id:
            self._discard_take_folder()
        self._finish(FAILED, exc.problem)

    def _finish(self, outcome: str, text: str) -> None:
        if self._export is not None:
            self._export.close()  # runs export's finally: the scene is restored
            self._export = None
        if self._bundle_dir is not None:
            remove_bundle(self._bundle_dir)
            self._bundle_dir = None
        self.phase, self.outcome, self.text = FINISHED, outcome, text
        self.note = self.lasting_note  # the server's remarks were about the run


def run_to_end(run, on_change: Callable | None = None, poll: float = 0.2):
    """Tick `run` (a session, or a sequence of them) on this thread until it ends, calling
    `on_change` after each tick; Ctrl+C cancels it (and it still runs to its end)."""
    while True:
        try:
            running = run.tick(wait=poll)
        except KeyboardInterrupt:
            run.cancel()
            running = run.running
        if on_change:
            on_change(run)
        if not running:
            return run


def not_ready_error(readiness: dict) -> StoryShadeError:
    """The server's /v1/readiness answer as a problem and what to do about it."""
    works = [w for w in readiness.get("works_now") or [] if w != readiness.get("quality")]
    fix = ""
    if works:
        fix = f"pick Quality '{works[0]}'"
        fix += f" (or {', '.join(repr(w) for w in works[1:])})" if works[1:] else ""
        fix += ", which works now, or "
    preset = readiness.get("preset") or "PRESET"
    fix += (
        "put the missing models in the server's models folder (on the server, "
        f"`storyshade models check {preset}` says where to get them)"
    )
    return StoryShadeError(readiness.get("summary") or "the server lacks models", fix)


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

"""What Shade, Reattach, Re-shade Frames and Shade Sequence share: a run driven by a modal
operator (ShadeRun) and shown in the panel, status bar and preview.

Interactive: a modal operator. Its timer exports one frame per tick and then drains the
network worker's queue (session/shade.py); Blender stays responsive, Esc or the Cancel
button stops the run and the server job. Background mode (`blender -b`, scripts, tests) never
fires timers, so there the same session runs to the end synchronously.
"""

from __future__ import annotations

import time

import bpy

from ..errors import ConnectionLost, StoryShadeError
from ..session import runtime
from ..session.build import build_session
from ..session.shade import DONE, FAILED, ModalDriver, ShadeSession

TICK_SECONDS = 0.1
REDRAW_SPACES = {"VIEW_3D", "SEQUENCE_EDITOR"}


def background() -> bool:
    """Whether timers can fire; a function so tests can exercise the modal path."""
    return bool(bpy.app.background)


def redraw(context, whole: bool = False) -> None:
    """The sidebars only, unless `whole`: redrawing every 3D viewport at each tick stalled
    a software-GL window for over a second (measured with scripts/gui_check.sh)."""
    wm = context.window_manager
    for window in wm.windows if wm else ():
        for area in window.screen.areas:
            if area.type not in REDRAW_SPACES:
                continue
            if whole:
                area.tag_redraw()
                continue
            for region in area.regions:
                if region.type == "UI":
                    region.tag_redraw()


def show(session: ShadeSession, context, shot: str = "") -> None:
    """Main thread only: the session's state into the panel, status bar and preview;
    nothing is redrawn when nothing shown changed. `shot`: which shot of a sequence."""
    shown = (session.status_line(), session.fraction, session.note, session.preview_path, shot)
    if session.shown == shown and session.running:
        return
    session.shown = shown
    scene = bpy.data.scenes.get(session.scene_name)
    if scene is not None:
        st = runtime.status(scene)
        st.text = session.status_line()
        st.progress_known = session.fraction is not None
        st.progress = min(max(session.fraction or 0.0, 0.0), 1.0)
        st.note = session.note
        st.unsaved_note = bool(session.note) and session.note == session.unsaved_note
        st.job_id = session.job_id
        st.is_error = session.error is not None
        st.unreachable = isinstance(session.error, ConnectionLost)
        st.fix = session.error.fix if session.error else ""
        st.preview_path = session.preview_path
        st.at = time.time()
    workspace = getattr(context, "workspace", None)
    if workspace is not None:
        workspace.status_text_set(
            f"StoryShade: {shot}{session.text}  (Esc to cancel)" if session.running else None
        )
    redraw(context, whole=not session.running)  # a new take strip: the Sequencer too


def adopt_server_state(session: ShadeSession) -> None:
    """What the run learnt about the server goes into the Server box, so it never says
    "Reachable" after a run that could not reach it (or the reverse)."""
    h = session.health
    if h.checked_at and not h.busy:
        runtime.health.record(h.url, h.result, h.error, h.readiness, h.preset)
    if isinstance(session.error, ConnectionLost):
        runtime.health.record(session.client.url, None, session.error)


def show_error(context, exc: StoryShadeError) -> None:
    runtime.set_error(context.scene, exc.problem, exc.fix, isinstance(exc, ConnectionLost))
    redraw(context)


class ShadeRun:
    """What Shade, Reattach and Shade Sequence share: a run (a session, or a sequence of
    them) driven modally (or blocking in background mode) into the panel. A mixin, since
    Blender cannot subclass a registered operator. Subclasses change `_begin`, `_update`
    and `_end`; the run needs `tick`, `cancel`, `abandon`, `running`, `outcome` and
    `run_blocking`."""

    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if runtime.busy():
            cls.poll_message_set("A shot is already shading: cancel it or wait")
            return False
        return context.scene is not None

    def _build(self, context) -> ShadeSession:
        return build_session(context)

    def _begin(self, context) -> ShadeSession | None:
        try:
            session = self._build(context)
        except StoryShadeError as exc:
            show_error(context, exc)
            self.report({"ERROR"}, str(exc))
            return None
        runtime.current = session
        runtime.status(context.scene).preview_path = ""  # the last take's frame is not this run's
        show(session, context)
        return session

    def _update(self, session: ShadeSession, context) -> None:
        """After each tick: the run's state into the panel."""
        show(session, context)

    def _stop_timer(self, context) -> None:
        timer = getattr(self, "_timer", None)
        if timer is not None:
            context.window_manager.event_timer_remove(timer)
            self._timer = None

    def _end(self, context, session: ShadeSession) -> set[str]:
        self._stop_timer(context)
        if runtime.current is session:
            runtime.current = None
        adopt_server_state(session)
        show(session, context)
        if session.outcome == DONE:
            self.report({"INFO"}, session.text)
            return {"FINISHED"}
        if session.outcome == FAILED:
            self.report({"ERROR"}, str(session.error))
        else:
            self.report({"WARNING"}, session.text)
        return {"CANCELLED"}

    def invoke(self, context, event):
        if background():
            return self.execute(context)
        session = self._begin(context)
        if session is None:
            return {"CANCELLED"}
        self._context = context
        self._driver = ModalDriver(session, lambda s: self._update(s, self._context))
        wm = context.window_manager
        self._timer = wm.event_timer_add(TICK_SECONDS, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        self._context = context
        result = self._driver.handle(event.type, event.value)
        if result & {"FINISHED", "CANCELLED"}:
            return self._end(context, self._driver.session)
        return result

    def cancel(self, context):
        """Blender ends the modal itself (file loaded, window closed): stop the job too."""
        session = self._driver.session
        session.abandon()
        self._end(context, session)

    def execute(self, context):
        session = self._begin(context)
        if session is None:
            return {"CANCELLED"}
        session.run_blocking(lambda s: self._update(s, context))
        return self._end(context, session)

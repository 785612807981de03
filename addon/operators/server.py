"""Server operators: Check (health), Start and Stop a local `storyshade serve`.

Network calls run in a thread (runtime.health); a bpy.app.timers poll redraws the panel
when the answer is in. In background mode, where timers never fire, Start waits instead.
"""

from __future__ import annotations

import time

import bpy

from ..errors import StoryShadeError
from ..remote import server_local
from ..remote.client import Client
from ..session import runtime
from ..settings import prefs, props

START_TIMEOUT = 180.0  # first start imports torch and diffusers: slow on a cold disk


def _client(context) -> Client:
    url, token = prefs.server(context)
    return Client(url, token, timeout=5.0)


def _redraw_all() -> None:
    wm = bpy.context.window_manager
    for window in wm.windows if wm else ():
        for area in window.screen.areas:
            if area.type in {"VIEW_3D", "SEQUENCE_EDITOR"}:
                area.tag_redraw()


def watch_health():
    """Timer: redraw once the health thread answers."""
    if runtime.health.busy:
        return 0.25
    _redraw_all()
    return None


_starting: tuple[Client, float, str | None] | None = None  # (client, deadline, preset)


def watch_start():
    """Timer after Start: re-check until the new server answers, dies, or times out."""
    if _starting is None:
        return None
    client, deadline, preset = _starting
    if runtime.health.busy:
        return 0.5
    if runtime.local_server.exited_error() is not None or runtime.health.result is not None:
        _redraw_all()
        return None
    if time.monotonic() > deadline:
        _redraw_all()
        return None
    runtime.health.start(client, preset=preset)
    _redraw_all()
    return 0.5


def ask(context, preset: str | None) -> None:
    """Ask the server (in a thread) whether it answers and can run `preset`; in a window,
    the panels redraw once the answer is in (without it they keep the old one until the
    pointer moves)."""
    runtime.health.start(_client(context), preset=preset)
    if not bpy.app.background and not bpy.app.timers.is_registered(watch_health):
        bpy.app.timers.register(watch_health, first_interval=0.25)


def check_readiness(context) -> None:
    """Ask the server about the scene's presets, if it is known to answer; the panel
    shows the answer under the Quality picker."""
    if bpy.app.background or runtime.health.result is None or context.scene is None:
        return
    ask(context, props.preset_spec(context.scene.storyshade))


class STORYSHADE_OT_server_check(bpy.types.Operator):
    """Ask the server whether it is reachable and which models it has"""

    bl_idname = "storyshade.server_check"
    bl_label = "Check"

    def execute(self, context):
        ask(context, props.preset_spec(context.scene.storyshade) if context.scene else None)
        if bpy.app.background:
            runtime.health.join(10.0)
        return {"FINISHED"}


class STORYSHADE_OT_server_start(bpy.types.Operator):
    """Start `storyshade serve` on this computer with the Python set in the preferences"""

    bl_idname = "storyshade.server_start"
    bl_label = "Start Server"

    @classmethod
    def poll(cls, context):
        return not runtime.local_server.running

    def execute(self, context):
        global _starting
        command = server_local.detect_command(prefs.value("server_python", context))
        try:
            if command is None:
                raise StoryShadeError(
                    "no Python with StoryShade found to start the server",
                    "set 'Server Python' in the add-on preferences (or install StoryShade so "
                    "`storyshade` is on PATH)",
                )
            url, token = prefs.server(context)
            runtime.local_server.start(
                command, url, prefs.value("models_dir", context), token=token
            )
            client = _client(context)
            runtime.health.result = runtime.health.error = None
            if bpy.app.background:
                runtime.health.result = runtime.local_server.wait_ready(client, START_TIMEOUT)
            else:
                spec = props.preset_spec(context.scene.storyshade)
                _starting = (client, time.monotonic() + START_TIMEOUT, spec)
                if not bpy.app.timers.is_registered(watch_start):
                    bpy.app.timers.register(watch_start, first_interval=0.5)
        except StoryShadeError as exc:
            runtime.set_error(context.scene, exc.problem, exc.fix)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Starting: {' '.join(runtime.local_server.command)}")
        return {"FINISHED"}


class STORYSHADE_OT_server_stop(bpy.types.Operator):
    """Stop the server this Blender started (never one started elsewhere)"""

    bl_idname = "storyshade.server_stop"
    bl_label = "Stop Server"

    @classmethod
    def poll(cls, context):
        return runtime.local_server.running

    def execute(self, context):
        runtime.local_server.stop()
        runtime.health.result = runtime.health.error = None
        return {"FINISHED"}

"""The sidebar's Download Models button, above the readiness line: when the server lacks a
quality's models, offer to pull them there (its size first, then a progress bar and Cancel).

Works for the server this Blender started and for a remote server whose administrator token
is set in the preferences (another token gets the server's "administrator only" answer).
In background mode, where timers never fire, each step runs to its end before returning.
"""

from __future__ import annotations

import bpy

from ..remote.client import Client
from ..remote.pull_run import ACTIVE, ASKED, ASKING, DONE, FAILED, PULLING, PullRun
from ..session import runtime
from ..settings import prefs, props
from .modal import redraw
from .server import ask

PULL_TIMEOUT = 120.0  # the dry run asks the hub about every repository first

_run: PullRun | None = None


def current(spec: str) -> PullRun | None:
    return _run if _run is not None and _run.spec == spec else None


def _recheck(context) -> None:
    """Ask the server again whether the presets are ready now."""
    ask(context, _run.spec if _run else None)


def watch():
    """Timer: redraw while a step runs; after a download, re-check readiness."""
    redraw(bpy.context)
    if _run is not None and _run.state in ACTIVE:
        return 0.5
    if _run is not None and _run.state == DONE:
        _recheck(bpy.context)
    return None


class STORYSHADE_OT_models_pull(bpy.types.Operator):
    """Download the models the chosen presets need onto the server (its first models folder);
    shows the size first"""

    bl_idname = "storyshade.models_pull"
    bl_label = "Download Models"

    confirm: bpy.props.BoolProperty(
        name="Confirm",
        description="Start the download (after its size was shown)",
        options={"SKIP_SAVE"},
    )

    @classmethod
    def poll(cls, context):
        return context.scene is not None and (_run is None or _run.state not in ACTIVE)

    def execute(self, context):
        global _run
        opts = context.scene.storyshade
        spec = props.preset_spec(opts)
        url, token = prefs.server(context)
        if self.confirm and _run is not None and _run.spec == spec and _run.state == ASKED:
            _run.download()
        else:
            answer = runtime.health.readiness_for(spec) or {}
            _run = PullRun(
                Client(url, token, timeout=PULL_TIMEOUT),
                spec,
                answer.get("quality") or opts.quality,
            )
            _run.ask()
        if bpy.app.background:
            _run.join()
            if _run.state == DONE:
                _recheck(context)
                runtime.health.join(30.0)
            if _run.state == FAILED and _run.error is not None:
                self.report({"ERROR"}, str(_run.error))
                return {"CANCELLED"}
            if _run.state == ASKED:
                self.report({"INFO"}, _run.question())
        elif not bpy.app.timers.is_registered(watch):
            bpy.app.timers.register(watch, first_interval=0.25)
        return {"FINISHED"}


class STORYSHADE_OT_models_pull_cancel(bpy.types.Operator):
    """Stop the model download (what the server fetched is kept: downloading again continues)"""

    bl_idname = "storyshade.models_pull_cancel"
    bl_label = "Cancel Download"

    @classmethod
    def poll(cls, context):
        return _run is not None and _run.state in (ASKING, ASKED, PULLING)

    def execute(self, context):
        _run.cancel()
        if bpy.app.background:
            _run.join()
        return {"FINISHED"}

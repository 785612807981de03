"""The `storyshade.shade_sequence` operator and the shot list's include/exclude toggle.

Shade Sequence runs one session per chosen shot (session/sequence.py) on the same modal
timer as a single shot: Esc or Cancel stops the shot under way and the rest; each finished
shot keeps its take. In background mode it runs to the end before returning.
"""

from __future__ import annotations

import bpy

from ..errors import StoryShadeError
from ..looks.references import style_of
from ..remote.client import Client
from ..session import runtime, shots
from ..session.build import shade_request
from ..session.sequence import SequenceRun, shot_request, shot_settings
from ..session.shade import DONE, ShadeSession
from ..settings import prefs
from . import modal

SKIP_SEPARATOR = "\n"


def skipped(scene) -> set[str]:
    """Shots the user left out of the sequence (stored in the .blend, by name)."""
    return {n for n in scene.storyshade_skip_shots.split(SKIP_SEPARATOR) if n}


def chosen_shots(scene) -> list[shots.Shot]:
    found = shots.find_shots(scene)
    chosen = [s for s in shots.pick(found, None) if s.name not in skipped(scene)]
    if not chosen:
        raise StoryShadeError("every shot is left out", "tick at least one shot in the list")
    return chosen


def build_sequence(context) -> SequenceRun:
    """A run over the chosen shots with the sidebar's settings and the preferences."""
    url, token = prefs.server(context)
    client = Client(url, token)

    def session_for(shot: shots.Shot) -> ShadeSession:
        request = shade_request(
            bpy.data.scenes[shot.scene_name],
            url,
            context=context,
            sidebar=context.scene,  # the edit's sidebar, for every shot
            style_references=style_of(context.scene),  # the edit's, for every shot's scene
            **shot_request(shot),
        )
        request.settings = shot_settings(
            request.settings, shot, context.scene.storyshade_seed_policy
        )
        return ShadeSession(bpy.data.scenes[shot.scene_name], client, request)

    return SequenceRun(chosen_shots(context.scene), session_for)


class STORYSHADE_OT_shot_toggle(bpy.types.Operator):
    """Include this shot in Shade Sequence, or leave it out"""

    bl_idname = "storyshade.shot_toggle"
    bl_label = "Include Shot"
    bl_options = {"REGISTER", "UNDO"}

    name: bpy.props.StringProperty()

    def execute(self, context):
        names = skipped(context.scene)
        names ^= {self.name}
        context.scene.storyshade_skip_shots = SKIP_SEPARATOR.join(sorted(names))
        return {"FINISHED"}


class STORYSHADE_OT_shade_sequence(modal.ShadeRun, bpy.types.Operator):
    """Shade every ticked shot of the edit, one job each, into takes at the shots' frames"""

    bl_idname = "storyshade.shade_sequence"
    bl_label = "Shade Sequence"
    bl_options = {"REGISTER"}

    def _update(self, seq: SequenceRun, context) -> None:
        runtime.sequence = seq
        runtime.current = seq.current
        if seq.current is not None:
            self._last = seq.current
            shot = seq.shot
            where = f"Shot {seq.index + 1}/{len(seq.shots)} {shot.name}: " if shot else ""
            modal.show(seq.current, context, shot=where)
        modal.redraw(context)

    def _begin(self, context) -> SequenceRun | None:
        try:
            seq = build_sequence(context)
        except StoryShadeError as exc:
            modal.show_error(context, exc)
            self.report({"ERROR"}, str(exc))
            return None
        runtime.sequence = seq
        runtime.status(context.scene).preview_path = ""  # the last take's frame is not this run's
        return seq

    def _end(self, context, seq: SequenceRun) -> set[str]:
        self._stop_timer(context)
        seq.close()
        runtime.current = None
        last = getattr(self, "_last", None)
        if last is not None:  # what the shots learnt about the server, into the Server box
            modal.adopt_server_state(last)
        st = runtime.status(context.scene)
        st.text, st.is_error, st.unreachable = seq.headline(), bool(seq.failed), False
        st.fix = "see each shot's take, or its error in the Info editor" if seq.failed else ""
        for name, why in seq.failed:
            self.report({"ERROR"}, f"shot '{name}': {why}")
        modal.redraw(context, whole=True)
        self.report({"INFO"} if seq.outcome == DONE else {"WARNING"}, seq.headline())
        return {"FINISHED"} if seq.outcome == DONE else {"CANCELLED"}

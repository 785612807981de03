"""The `storyshade.take_use_settings` operator: load a take's settings back into the
panel, to re-run it or to shade a variation to compare with it."""

from __future__ import annotations

import json

import bpy

from .. import compat
from ..settings import props
from ..takes import take


def active_take(context):
    ed = context.scene.sequence_editor if context.scene else None
    strip = ed.active_strip if ed else None
    return strip if strip is not None and strip.get("storyshade_take") else None


class STORYSHADE_OT_take_use_settings(bpy.types.Operator):
    """Copy the active take strip's preset, seed, prompts and weights into the panel"""

    bl_idname = "storyshade.take_use_settings"
    bl_label = "Use Take's Settings"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        if active_take(context) is None:
            cls.poll_message_set("Select a StoryShade take strip in the sequencer")
            return False
        return True

    def execute(self, context):
        strip = active_take(context)
        opts = context.scene.storyshade
        try:
            inputs = json.loads(strip.get("storyshade_inputs", "") or "{}")
        except ValueError:
            inputs = {}
        if not inputs:  # a take shaded headless: only its settings JSON is there
            settings = take.strip_settings(strip)
            inputs = {k: settings[k] for k in ("seed",) if k in settings}
            if "preset" in settings:
                inputs["preset"] = settings["preset"]
        skipped = props.apply_inputs(opts, inputs)
        if skipped:
            self.report({"WARNING"}, f"Not restored (preset missing?): {', '.join(skipped)}")
        else:
            self.report({"INFO"}, f"Settings of {strip.name} loaded")
        return {"FINISHED"}


class STORYSHADE_OT_show_in_sequencer(bpy.types.Operator):
    """Show this scene's take strips in the workspace's Sequencer (Blender 5: each
    workspace's Sequencer shows its own scene)"""

    bl_idname = "storyshade.show_in_sequencer"
    bl_label = "Show Takes in Sequencer"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return compat.has_sequencer_scene() and context.workspace is not None

    def execute(self, context):
        compat.set_sequencer_scene(context.workspace, context.scene)
        return {"FINISHED"}

"""The `storyshade.cancel` operator: the panel's Cancel button (Esc does the same)."""

from __future__ import annotations

import bpy

from . import runtime


class STORYSHADE_OT_cancel(bpy.types.Operator):
    """Stop the shading run and cancel its job on the server (frames received are kept)"""

    bl_idname = "storyshade.cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return runtime.busy()

    def execute(self, context):
        runtime.current.cancel()  # the modal operator's next tick reports the outcome
        return {"FINISHED"}

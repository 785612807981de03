"""The `storyshade.cancel` operator: the panel's Cancel button (Esc does the same)."""

from __future__ import annotations

import bpy

from ..session import runtime


class STORYSHADE_OT_cancel(bpy.types.Operator):
    """Stop the shading run and cancel its job on the server (frames received are kept)"""

    bl_idname = "storyshade.cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return runtime.busy()

    def execute(self, context):
        # The modal operator's next tick reports the outcome. During Shade Sequence the
        # sequence is cancelled, not only its shot: else the next shot would start.
        seq = runtime.sequence
        if seq is not None and seq.running and seq.current is runtime.current:
            seq.cancel()
        else:
            runtime.current.cancel()
        return {"FINISHED"}

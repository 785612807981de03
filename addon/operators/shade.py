"""The `storyshade.shade` operator: shade the scene's shot into a new take strip; and
`storyshade.reattach`, which follows a job an earlier Blender left running (modal.py
drives both)."""

from __future__ import annotations

import bpy

from ..session.build import build_reattach_session
from ..session.shade import ShadeSession
from .modal import ShadeRun


class STORYSHADE_OT_shade(ShadeRun, bpy.types.Operator):
    """Export depth/normal passes, shade them on the StoryShade server, add a take strip"""

    bl_idname = "storyshade.shade"
    bl_label = "Shade"


class STORYSHADE_OT_reattach(ShadeRun, bpy.types.Operator):
    """Pick up the shot's job that kept running on the server after Blender quit or crashed,
    fetch its frames and place its take strip"""

    bl_idname = "storyshade.reattach"
    bl_label = "Reattach to Running Job"

    def _build(self, context) -> ShadeSession:
        return build_reattach_session(context)

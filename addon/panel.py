"""Sidebar tab "StoryShade" in the 3D viewport."""

from __future__ import annotations

import bpy


class STORYSHADE_PT_main(bpy.types.Panel):
    bl_label = "StoryShade"
    bl_idname = "STORYSHADE_PT_main"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "StoryShade"

    def draw(self, context):
        opts = context.scene.storyshade
        col = self.layout.column()
        col.prop(opts, "preset")
        col.prop(opts, "prompt")
        col.prop(opts, "seed")
        col.operator("storyshade.shade", icon="RENDER_ANIMATION")
        if opts.status:
            col.label(text=opts.status)

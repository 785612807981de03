"""The shot list in the sidebar: the edit's shots (camera markers or scene strips) with
frames, camera, last take and whether Shade Sequence includes them."""

from __future__ import annotations

import bpy

from . import compat, runtime, shots
from .errors import StoryShadeError
from .op_sequence import skipped


def last_take(shot: shots.Shot) -> str:
    scene = bpy.data.scenes.get(shot.scene_name)
    editor = scene.sequence_editor if scene else None
    if editor is None:
        return ""
    ours = sorted(
        s.get("storyshade_take", "")
        for s in compat.strips(editor)
        if s.get("storyshade_shot") == shot.slug and s.get("storyshade_take")
    )
    return ours[-1] if ours else ""


class STORYSHADE_PT_shots(bpy.types.Panel):
    bl_label = "Shots"
    bl_idname = "STORYSHADE_PT_shots"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "StoryShade"
    bl_parent_id = "STORYSHADE_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        try:
            found = shots.find_shots(context.scene)
        except StoryShadeError as exc:
            layout.label(text=exc.problem, icon="ERROR")
            layout.label(text=exc.fix)
            return
        if not found.shots:
            layout.label(text="No shots: bind cameras to markers,")
            layout.label(text="or add scene strips to the Sequencer")
            return
        left_out = skipped(context.scene)
        seq = getattr(runtime, "sequence", None)
        for shot in found.shots:
            row = layout.row(align=True)
            on = shot.name not in left_out
            toggle = row.operator(
                "storyshade.shot_toggle", text="", icon="CHECKBOX_HLT" if on else "CHECKBOX_DEHLT"
            )
            toggle.name = shot.name
            row.label(text=shot.name)
            row.label(text=f"{shot.frame_start}-{shot.frame_end}")
            sub = layout.row()
            sub.enabled = False
            state = ""
            if seq is not None and seq.running and seq.shot is not None:
                state = "shading" if seq.shot.name == shot.name else ""
            take = last_take(shot)
            sub.label(
                text=f"  {shot.camera} · {take or 'no take yet'}" + (f" · {state}" if state else "")
            )
        if seq is not None:
            layout.label(text=seq.headline())
        layout.operator("storyshade.shade_sequence", icon="SEQ_STRIP_DUPLICATE")

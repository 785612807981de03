"""The shot list in the sidebar: the edit's shots (camera markers or scene strips) with
frames, camera, last take and whether Shade Sequence includes them."""

from __future__ import annotations

import bpy

from .. import compat
from ..errors import StoryShadeError
from ..operators.sequence import skipped
from ..session import runtime, shots
from .text_fit import wrapped

NO_SHOTS = (
    "No shots: bind cameras to markers (Marker > Bind Camera to Markers) or add scene "
    "strips to the Sequencer"
)


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

    def draw(self, context):
        layout = self.layout
        try:
            found = shots.find_shots(context.scene)
        except StoryShadeError as exc:
            wrapped(layout, context, exc.problem, "ERROR")
            wrapped(layout, context, f"Fix: {exc.fix}", "BLANK1")
            return
        if not found.shots:
            wrapped(layout, context, NO_SHOTS, "INFO")
            return
        left_out = skipped(context.scene)
        seq = runtime.sequence
        running = seq is not None and seq.running
        for shot in found.shots:
            on = shot.name not in left_out
            col = layout.column(align=True)
            col.active = on  # a shot left out is greyed, its tick box still works
            row = col.row(align=True)
            toggle = row.operator(
                "storyshade.shot_toggle", text="", icon="CHECKBOX_HLT" if on else "CHECKBOX_DEHLT"
            )
            toggle.name = shot.name
            row.label(text=shot.name)
            # Frames, camera and take on their own line, wrapped: beside the name (half the
            # row each) both were cut off at the default sidebar width.
            parts = [f"Frames {shot.frame_start}-{shot.frame_end}", shot.camera]
            parts.append(last_take(shot) or "no take yet")
            if running and seq.shot is not None and seq.shot.name == shot.name:
                parts.append("shading now")
            elif not on:
                parts.append("left out")
            sub = col.column(align=True)
            sub.enabled = False
            wrapped(sub, context, " · ".join(parts), "BLANK1")
        for text in found.notes:  # markers without a camera: say why they are not shots
            wrapped(layout, context, f"{text[0].upper()}{text[1:]}: not a shot", "INFO")
        if seq is not None:
            wrapped(layout, context, seq.headline(), "TIME" if running else "INFO")
        if running:
            layout.operator("storyshade.cancel", text="Cancel Sequence (Esc)", icon="CANCEL")
        else:
            layout.prop(context.scene, "storyshade_seed_policy", expand=True)
            layout.operator("storyshade.shade_sequence", icon="SEQ_STRIP_DUPLICATE")
        row = layout.row(align=True)
        row.operator("storyshade.contact_sheet", icon="IMAGE_DATA")
        row.operator("storyshade.open_review", icon="URL")

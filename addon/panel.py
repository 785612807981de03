"""Sidebar tab "StoryShade" in the 3D viewport and the Sequencer.

Drawing only reads state: the scene's settings, runtime (run in progress, server health)
and the preview icon. Everything that changes state is an operator.
"""

from __future__ import annotations

import textwrap

import bpy

from . import preview, runtime
from .op_take import active_take
from .presets import LAYERS, load


def wrapped(layout, context, text: str, icon: str = "NONE") -> None:
    """Long problem/fix lines as several labels: the sidebar cuts a single label off."""
    width = max(20, int((context.region.width if context.region else 300) / 7))
    for i, line in enumerate(textwrap.wrap(text, width) or [""]):
        layout.label(text=line, icon=icon if i == 0 else "BLANK1" if icon != "NONE" else "NONE")


def _server(layout, context) -> None:
    header, body = layout.panel("storyshade_server", default_closed=False)
    reachable, line, fix = runtime.health.summary()
    header.label(text="Server", icon="CHECKMARK" if reachable else "URL")
    if body is None:
        return
    if runtime.local_server.running and runtime.health.result is None:
        line, fix = "Starting the local server…", "the first start loads torch: up to a minute"
    elif runtime.health.busy:
        line = "Checking…"
    wrapped(body, context, line, "CHECKMARK" if reachable else "ERROR")
    died = runtime.local_server.exited_error()
    if died is not None:
        wrapped(body, context, died.problem, "ERROR")
        fix = died.fix
    if fix:
        wrapped(body, context, fix, "INFO")
    row = body.row(align=True)
    row.operator("storyshade.server_check", icon="FILE_REFRESH")
    if runtime.local_server.running:
        row.operator("storyshade.server_stop", icon="CANCEL")
    else:
        row.operator("storyshade.server_start", icon="PLAY")


def _look(layout, opts) -> None:
    header, body = layout.panel("storyshade_look", default_closed=False)
    header.label(text="Look")
    if body is None:
        return
    infos = load()
    for layer in LAYERS:
        col = body.column(align=True)
        col.prop(opts, layer)
        chosen = next((p for p in infos[layer] if p.name == getattr(opts, layer)), None)
        if chosen is not None and chosen.description:
            col.label(text=chosen.description)
    body.prop(opts, "preset")
    body.prop(opts, "prompt")
    body.prop(opts, "negative_prompt")
    body.prop(opts, "seed")
    col = body.column(align=True)
    col.prop(opts, "use_control_weights")
    sub = col.row(align=True)
    sub.enabled = opts.use_control_weights
    sub.prop(opts, "depth_weight")
    sub.prop(opts, "normal_weight")


def _shot(layout, context, opts) -> None:
    header, body = layout.panel("storyshade_shot", default_closed=False)
    header.label(text="Shot")
    if body is None:
        return
    body.prop(opts, "use_scene_range")
    row = body.row(align=True)
    if opts.use_scene_range:
        row.enabled = False
        row.prop(context.scene, "frame_start")
        row.prop(context.scene, "frame_end")
    else:
        row.prop(opts, "frame_start")
        row.prop(opts, "frame_end")
    body.row().prop(opts, "take_mode", expand=True)


def _run(layout, context, opts) -> None:
    col = layout.column()
    if runtime.busy():
        col.progress(factor=opts.progress, type="BAR", text=opts.status or "Working…")
        col.operator("storyshade.cancel", text="Cancel (Esc)", icon="CANCEL")
    else:
        row = col.row()
        row.scale_y = 1.5
        row.operator("storyshade.shade", icon="RENDER_ANIMATION")
        col.operator("storyshade.reattach", icon="LINKED")
        if opts.status:
            wrapped(col, context, opts.status, "ERROR" if opts.is_error else "INFO")
        if opts.is_error and opts.fix:
            wrapped(col, context, f"Fix: {opts.fix}", "BLANK1")
    if opts.note:
        wrapped(col, context, opts.note, "INFO")
    icon = preview.icon_for(bpy.path.abspath(opts.preview_path) if opts.preview_path else "")
    if icon:
        col.template_icon(icon_value=icon, scale=8.0)


def draw(layout, context) -> None:
    opts = context.scene.storyshade
    layout.use_property_split = False
    _server(layout, context)
    _look(layout, opts)
    _shot(layout, context, opts)
    _run(layout, context, opts)


class STORYSHADE_PT_main(bpy.types.Panel):
    bl_label = "StoryShade"
    bl_idname = "STORYSHADE_PT_main"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "StoryShade"

    def draw(self, context):
        draw(self.layout, context)


class STORYSHADE_PT_sequencer(bpy.types.Panel):
    bl_label = "StoryShade"
    bl_idname = "STORYSHADE_PT_sequencer"
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "StoryShade"

    def draw(self, context):
        draw(self.layout, context)
        strip = active_take(context)
        if strip is None:
            return
        box = self.layout.box()
        box.label(text=f"Take: {strip.name}", icon="SEQUENCE")
        for key in ("preset", "seed", "prompt", "job"):
            value = strip.get(f"storyshade_{key}", "")
            if value != "":
                box.label(text=f"{key.capitalize()}: {value}")
        box.operator("storyshade.take_use_settings", icon="IMPORT")

"""Sidebar tab "StoryShade" in the 3D viewport and the Sequencer.

Drawing only reads state: the scene's settings, runtime (run in progress, server health)
and the preview icon. Everything that changes state is an operator.
"""

from __future__ import annotations

import os

import bpy

from .. import compat
from ..looks.reference_files import FORMATS, MAX_REFERENCES, SUPPORTED
from ..operators.take import active_take
from ..session import runtime
from ..settings import presets, props
from ..settings.presets import LAYERS, load
from ..settings.request_settings import REFUSED
from . import preview, pull, text_fit
from .text_fit import wrapped

UNIT = text_fit.UNIT
PREVIEW_SHARE = 0.4  # of the region's height: the rest of the panel stays in view


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


def _readiness(layout, context, opts) -> None:
    """Under the Quality picker: can the server run these presets now?"""
    answer = runtime.health.readiness_for(",".join(props.preset_names(opts)))
    if answer is None:
        if runtime.health.result is not None and not runtime.health.busy:
            wrapped(layout, context, "Press Check to ask the server about these models", "INFO")
        elif runtime.health.busy:
            layout.label(text="Asking the server…", icon="TIME")
        return
    ok = answer.get("ready", False)
    # Download Models for <quality> first: the list of what is missing can run past the
    # bottom of a 1000-pixel window (seen in Blender 4.3 and 5.2), and the offer with it.
    pull.draw(layout, context, answer)
    wrapped(layout, context, answer.get("summary", ""), "CHECKMARK" if ok else "ERROR")


def _look(layout, context, opts) -> None:
    header, body = layout.panel("storyshade_look", default_closed=False)
    header.label(text="Look")
    if body is None:
        return
    infos = load()
    for layer in LAYERS:
        col = body.column(align=True)
        col.label(text=f"{props.PICKERS[layer]}:")  # above: beside the picker it is cut
        col.prop(opts, layer, text="")
        chosen = next((p for p in infos[layer] if p.name == getattr(opts, layer)), None)
        if chosen is not None and chosen.description:
            wrapped(col, context, chosen.description)
        if layer == "camera":
            _motion_scale(col, context, opts)
        if layer == "quality":
            _readiness(col, context, opts)
    col = body.column(align=True)
    col.label(text="Extra Presets:")
    col.prop(opts, "preset", text="")
    body.prop(opts, "prompt")
    body.prop(opts, "negative_prompt")
    body.prop(opts, "seed")
    col = body.column(align=True)
    col.prop(opts, "use_control_weights")
    sub = col.row(align=True)
    sub.enabled = opts.use_control_weights
    sub.prop(opts, "depth_weight")
    sub.prop(opts, "normal_weight")
    _color_match(body, context, opts, infos)
    draw_references(body, context, opts.references, "Style References")


def _refused(col, context, opts, setting: str, ticked: bool) -> bool:
    """Whether the presets' engine refuses `setting`; if so the control is greyed and, when
    ticked, says why (Shade would stop at it)."""
    engine = presets.layered_settings(props.preset_names(opts)).get("engine", "")
    if engine not in REFUSED[setting].engines:
        return False
    col.active = False
    if ticked:
        wrapped(col, context, f"The '{engine}' engine cannot {REFUSED[setting].cannot}", "ERROR")
    return True


def _motion_scale(layout, context, opts) -> None:
    """Under the Camera/Motion picker: the presets' motion scale, or the user's own."""
    col = layout.column(align=True)
    col.prop(opts, "use_motion_scale")
    if _refused(col, context, opts, "motion_scale", opts.use_motion_scale):
        return
    if opts.use_motion_scale:
        col.prop(opts, "motion_scale", slider=True)
        return
    value = presets.layered_settings(props.preset_names(opts)).get("motion_scale")
    if isinstance(value, int | float):
        wrapped(col, context, f"{value:.2f} from the presets", "BLANK1")
    else:
        wrapped(col, context, "The server's default", "BLANK1")


def _color_match(layout, context, opts, infos) -> None:
    """Colour Match: on/off, its strength and an optional key frame; greyed, with the
    reason, when the chosen quality's engine has no windows to match."""
    col = layout.column(align=True)
    col.prop(opts, "use_color_match")
    if _refused(col, context, opts, "color_match", opts.use_color_match):
        return
    sub = col.column(align=True)
    sub.enabled = opts.use_color_match
    sub.prop(opts, "color_match_strength", slider=True)
    sub.prop(opts, "color_match_image", text="", placeholder="Key frame (empty: first window)")


def _reference_problem(image: str) -> str:
    """What is wrong with a reference's file, seen from the panel (Shade checks its bytes)."""
    if not image.strip():
        return "No image: pick one, or remove the row"
    path = bpy.path.abspath(image)
    if os.path.splitext(path)[1].lower() not in FORMATS:
        return f"Not {SUPPORTED}: {os.path.basename(path)}"
    if not os.path.isfile(path):
        return f"Not found: {path}"
    return ""


def draw_references(layout, context, refs, label: str, owner: str = "", collection=False) -> None:
    """A reference list: one row per image (path, weight, remove), problems named under it;
    `owner` names the look's object or collection (empty: the scene's style references)."""
    col = layout.column(align=True)
    # The label on its own line: beside the Add button, "Style References: none" was cut
    # to "Style References: n..." at the default width (4.3 and 5.2 windows).
    wrapped(col, context, f"{label}: {len(refs)} of {MAX_REFERENCES}" if refs else f"{label}: none")
    add = col.row(align=True)
    add.enabled = len(refs) < MAX_REFERENCES
    op = add.operator("storyshade.reference_add", text="Add Image", icon="ADD")
    op.owner, op.collection = owner, collection
    for i, ref in enumerate(refs):
        # Two rows: beside a weight and an X, a path at the default sidebar width shows
        # only its first folders (seen in the 4.3 and 5.2 windows).
        problem = _reference_problem(ref.image)
        if i:
            col.separator()
        row = col.row(align=True)
        row.alert = bool(problem)
        row.prop(ref, "image", text="")
        row = col.row(align=True)
        row.prop(ref, "weight", slider=True)
        op = row.operator("storyshade.reference_remove", text="", icon="X")
        op.owner, op.collection, op.index = owner, collection, i
        if problem:
            wrapped(col, context, problem, "ERROR")


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
    st = runtime.peek(context.scene)
    col = layout.column()
    seq = runtime.sequence
    if runtime.busy() and seq is not None and seq.running and seq.current is runtime.current:
        # Shade Sequence: which shot the progress below is for (the Shots list is far down).
        wrapped(col, context, seq.headline(), "SEQ_STRIP_DUPLICATE")
    if runtime.busy():
        # The stage above the bar, wrapped: inside the bar a long stage text is cut off.
        if st.progress_known:
            wrapped(col, context, st.text or "Working…")
            col.progress(factor=st.progress, type="BAR", text=f"{st.progress:.0%}")
        else:  # honest about not knowing how far along it is: no bar at all
            wrapped(col, context, st.text or "Working…", "TIME")
        col.operator("storyshade.cancel", text="Cancel (Esc)", icon="CANCEL")
    else:
        row = col.row()
        row.scale_y = 1.5
        row.operator("storyshade.shade", icon="RENDER_ANIMATION")
        col.operator("storyshade.reattach", icon="LINKED")
        error = runtime.shown_error(st)
        if st.text and (error or not st.is_error):  # a cause that is gone is not shown
            wrapped(col, context, st.text, "ERROR" if error else "INFO")
        if error and st.fix:
            wrapped(col, context, f"Fix: {st.fix}", "BLANK1")
    if st.note:
        wrapped(col, context, st.note, "INFO")
    scene = context.scene
    if (
        not runtime.busy()
        and compat.has_sequencer_scene()
        and scene.sequence_editor is not None
        and not compat.sequencer_shows(scene)
        and any(s.get("storyshade_take") for s in compat.all_strips(scene.sequence_editor))
    ):
        col.operator("storyshade.show_in_sequencer", icon="SEQUENCE")


def preview_scale(context) -> float:
    """template_icon's scale (in UI units) that fits the region's width and leaves most
    of its height to the rest of the panel."""
    scale = text_fit.ui_scale(context)
    region = getattr(context, "region", None)
    if region is None or region.width <= 1:
        return 8.0
    across = (region.width - UNIT * scale * text_fit.MARGIN_UNITS) / (UNIT * scale)
    down = region.height * PREVIEW_SHARE / (UNIT * scale)
    return max(2.0, min(across, down))


def _preview(layout, context) -> None:
    path = runtime.peek(context.scene).preview_path
    icon = preview.icon_for(bpy.path.abspath(path) if path else "")
    if not icon:
        return
    header, body = layout.panel("storyshade_preview", default_closed=False)
    header.label(text="Preview")
    if body is not None:
        body.template_icon(icon_value=icon, scale=preview_scale(context))


def _take(layout, context) -> None:
    """The Sequencer's active take: what made it, a button to re-use its settings, and
    Re-shade Frames for a range of it."""
    strip = active_take(context)
    if strip is None:
        return
    header, body = layout.panel("storyshade_take", default_closed=False)
    header.label(text=f"Take: {strip.name}", icon="SEQUENCE")
    if body is None:
        return
    first, last = strip.get("storyshade_frame_start"), strip.get("storyshade_frame_end")
    if first is not None and last is not None:
        wrapped(body, context, f"Frames: {first}-{last}")
    for key in ("preset", "seed", "prompt", "job"):
        value = strip.get(f"storyshade_{key}", "")
        if value != "":
            wrapped(body, context, f"{key.capitalize()}: {value}")
    body.operator("storyshade.take_use_settings", icon="IMPORT")
    opts = context.scene.storyshade
    col = body.column(align=True)
    col.label(text="Re-shade Frames:")
    row = col.row(align=True)
    row.prop(opts, "reshade_start")
    row.prop(opts, "reshade_end")
    col.prop(opts, "reshade_use_sidebar")
    # Which settings the button will use, said before it is pressed.
    if opts.reshade_use_sidebar:
        used = f"With the sidebar's settings: {props.preset_spec(opts) or 'server defaults'}, seed {opts.seed}"
    else:
        used = "With this take's own settings (presets, seed, prompts, looks, references)"
    wrapped(col, context, used, "INFO")
    body.operator("storyshade.reshade_take", icon="FILE_REFRESH")


def draw(layout, context, take_info: bool = False) -> None:
    opts = context.scene.storyshade
    layout.use_property_split = False
    _server(layout, context)
    # Shade, its progress and the preview above the fold, whatever else is open.
    _run(layout, context, opts)
    _preview(layout, context)
    if take_info:
        _take(layout, context)
    _look(layout, context, opts)
    _shot(layout, context, opts)


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
        draw(self.layout, context, take_info=True)

"""Looks in the UI: a StoryShade Look panel in Object and Collection properties, and the
shot's looks in the sidebar (add, rename, select objects, edit prompts)."""

from __future__ import annotations

from pathlib import Path

import bpy

from ..errors import StoryShadeError
from ..looks.bank import list_characters
from ..looks.resolve import REGION_KINDS, look_of, own_look
from ..operators.bank import bank_folder
from ..session import runtime
from .sidebar import draw_references
from .text_fit import wrapped

PLACEHOLDER = "What is it? e.g. a crate"  # longer was cut off at the default width
NO_PROMPT = "No prompt: Shade stops until you describe it"


def _prompt(layout, context, look) -> None:
    """The prompt field, red with a note while the look is on and says nothing (Shade
    would stop at it)."""
    col = layout.column()
    empty = look.enabled and not look.prompt.strip()
    col.alert = empty
    col.prop(look, "prompt", text="", placeholder=PLACEHOLDER)
    if empty:
        wrapped(col, context, NO_PROMPT, "ERROR")


def _draw_look(layout, context, idblock, collection: bool = False) -> None:
    look = idblock.storyshade_look
    layout.active = look.enabled
    _prompt(layout, context, look)
    col = layout.column()
    col.prop(look, "negative")
    col.prop(look, "weight")
    # The tick box carries its own label: as a row heading, "Base Colour" was cut to
    # "Base C..." at the default Properties width.
    col.prop(look, "use_color")
    sub = col.row()
    sub.active = look.use_color
    sub.prop(look, "color", text="Colour")
    refs = layout.column()
    refs.use_property_split = False
    draw_references(refs, context, look.references, "References", idblock.name, collection)
    if look.bank:
        wrapped(refs, context, f"Bank: {look.bank}", "USER")


def _summary(look) -> str:
    """One line under a look in the sidebar: its references and bank character."""
    parts = []
    if look.references:
        n = len(look.references)
        parts.append(f"{n} reference{'s' * (n != 1)}")
    if look.bank:
        parts.append(f"bank: {Path(look.bank).name}")
    return ", ".join(parts)


class STORYSHADE_PT_object_look(bpy.types.Panel):
    bl_label = "StoryShade Look"
    bl_idname = "STORYSHADE_PT_object_look"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "object"

    def draw_header(self, context):
        self.layout.prop(context.object.storyshade_look, "enabled", text="")

    def draw(self, context):
        obj = context.object
        layout = self.layout
        layout.use_property_split = True
        if obj.storyshade_look.enabled:
            _draw_look(layout, context, obj)
            return
        # No look of its own: say what it is shaded with instead of empty, greyed fields
        # (they read as a look with no prompt). Ticking the header brings them back.
        wrapped(layout, context, inherited_note(obj, context.scene), "INFO")


def inherited_note(obj, scene) -> str:
    """What an object without a look of its own is shaded with, and where that comes from."""
    look = look_of(obj, scene)
    if look is None:
        return "No look: shaded by the shot's prompt. Tick the header to describe it."
    parent = obj.parent
    while parent is not None and parent.name != look.name:
        parent = parent.parent
    source = "parent" if parent is not None else "collection"
    prompt = look.prompt.strip() or "(no prompt)"
    prompt = prompt if len(prompt) <= 60 else prompt[:59] + "…"
    return f"Shaded with the look of its {source} '{look.name}': {prompt}"


class STORYSHADE_PT_collection_look(bpy.types.Panel):
    bl_label = "StoryShade Look"
    bl_idname = "STORYSHADE_PT_collection_look"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "collection"

    @classmethod
    def poll(cls, context):
        return getattr(context, "collection", None) is not None

    def draw_header(self, context):
        self.layout.prop(context.collection.storyshade_look, "enabled", text="")

    def draw(self, context):
        self.layout.use_property_split = True
        wrapped(self.layout, context, "For every member without a look of its own", "INFO")
        _draw_look(self.layout, context, context.collection, collection=True)


def shot_looks(scene) -> list[tuple[object, bool, int]]:
    """(object or collection holding a look, is collection, objects shaded with it)."""
    counts: dict[str, int] = {}
    for obj in scene.objects:
        if obj.type in REGION_KINDS:
            look = look_of(obj, scene)
            if look:
                counts[look.name] = counts.get(look.name, 0) + 1
    holders = [(o, False) for o in scene.objects if own_look(o)]
    holders += [(c, True) for c in scene.collection.children_recursive if own_look(c)]
    return [(h, is_coll, counts.get(h.name, 0)) for h, is_coll in holders]


class STORYSHADE_PT_looks(bpy.types.Panel):
    # "Object Looks", not "Looks": the main panel's style section above is called "Look".
    # Open by default: it is the one place in the viewport that shows which objects have
    # looks (a closed one hides looks the next Shade will use), and without looks it is
    # two lines.
    bl_label = "Object Looks"
    bl_idname = "STORYSHADE_PT_looks"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "StoryShade"
    bl_parent_id = "STORYSHADE_PT_main"

    def draw(self, context):
        layout = self.layout
        row = layout.row(align=True)
        row.operator("storyshade.look_add", text="Object", icon="ADD").to_collection = False
        row.operator("storyshade.look_add", text="Collection", icon="ADD").to_collection = True
        looks = shot_looks(context.scene)
        if not looks:
            layout.label(text="No looks: one prompt for the shot")
        for holder, is_coll, count in looks:
            box = layout.box()
            head = box.row(align=True)
            head.prop(
                holder, "name", text="", icon="OUTLINER_COLLECTION" if is_coll else "OBJECT_DATA"
            )
            select = head.operator("storyshade.look_select", text="", icon="RESTRICT_SELECT_OFF")
            select.name = holder.name
            remove = head.operator("storyshade.look_remove", text="", icon="X")
            remove.name, remove.collection = holder.name, is_coll
            _prompt(box, context, holder.storyshade_look)
            summary = _summary(holder.storyshade_look)
            if summary:
                box.label(text=summary, icon="IMAGE_REFERENCE")
            if count == 0:
                box.label(text="No objects of the shot", icon="ERROR")
        _bank(layout, context)


def _bank(layout, context) -> None:
    """Character Bank: save the active look, give the selection a saved character."""
    header, body = layout.panel("storyshade_bank", default_closed=False)
    header.label(text="Character Bank", icon="USER")
    if body is None:
        return
    opts = context.scene.storyshade
    # One button a row: side by side, "Load Character" is cut at the default width.
    col = body.column(align=True)
    col.menu("STORYSHADE_MT_bank", text="Load Character for Selected", icon="IMPORT")
    col.operator("storyshade.bank_save", icon="EXPORT")
    col = body.column(align=True)
    col.label(text="Bank Folder:")  # empty: the preferences' (its path is the placeholder)
    col.prop(opts, "bank_dir", text="", placeholder=str(bank_folder(context)))
    st = runtime.peek(context.scene)
    if st.bank_note:
        wrapped(body, context, st.bank_note, "ERROR" if st.bank_error else "INFO")


class STORYSHADE_MT_bank(bpy.types.Menu):
    """The bank's characters; picking one gives it to the selected objects."""

    bl_idname = "STORYSHADE_MT_bank"
    bl_label = "Characters"

    def draw(self, context):
        layout = self.layout
        try:
            names = list_characters(bank_folder(context))
        except StoryShadeError as exc:
            layout.label(text=exc.problem, icon="ERROR")
            layout.label(text=exc.fix, icon="BLANK1")
            return
        if not names:
            layout.label(text="No characters yet: Save Active Look to Bank adds one", icon="INFO")
        for name in names:
            layout.operator("storyshade.bank_load", text=name, icon="USER").name = name

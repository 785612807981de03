"""The character bank in Blender: save the active look (with its reference images) to the
bank, and give the selected objects a character from it (looks/bank.py holds the files).

Picking is a menu of the bank's folders (ui/looks.py), read when it opens: a dynamic
EnumProperty items callback would crash (4.2) or hang (4.5) the bpy module at exit
(FIELD_NOTES).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import bpy

from ..errors import StoryShadeError
from ..looks.bank import default_folder, list_characters, read_character, save_character
from ..looks.resolve import look_and_holder, own_look
from ..session import runtime
from ..settings import prefs
from ..settings.props import set_references
from ..wire.looks import Look


def bank_folder(context) -> Path:
    """The scene's bank folder, else the preferences', else ~/StoryShade/characters."""
    chosen = context.scene.storyshade.bank_dir.strip() or prefs.value("bank_dir")
    return Path(bpy.path.abspath(chosen)) if chosen.strip() else default_folder()


def _say(context, text: str, error: bool = False) -> None:
    st = runtime.status(context.scene)
    st.bank_note, st.bank_error = text, error


def character_of(holder) -> Look:
    """The holder's look, its images as absolute paths (the bank copies them)."""
    look = own_look(holder)
    refs = tuple((bpy.path.abspath(image), weight) for image, weight in look.references)
    return replace(look, references=refs)


def apply_character(holder, char: Look, folder: Path) -> None:
    """Give an object or collection the character's look (its own, replacing the old)."""
    look = holder.storyshade_look
    look.enabled = True
    look.prompt, look.negative, look.weight = char.prompt, char.negative, char.weight
    look.use_color = char.color is not None
    if char.color is not None:
        look.color = char.color
    set_references(look.references, [{"image": i, "weight": w} for i, w in char.references])
    look.bank = str(folder)


def targets(context) -> list:
    """The looks a pick changes: for each selected object, the look that shades it now (its
    own, its parent's or its collection's), else the object itself."""
    scene = context.scene
    objects = list(context.selected_objects) or [context.active_object]
    out: dict[tuple[str, str], object] = {}
    for obj in filter(None, objects):
        holder = look_and_holder(obj, scene)[1] or obj
        out[(type(holder).__name__, holder.name)] = holder
    return list(out.values())


class STORYSHADE_OT_bank_save(bpy.types.Operator):
    """Save the active object's look and copies of its reference images to the character
    bank, for other shots and .blend files (an earlier save of it is replaced)"""

    bl_idname = "storyshade.bank_save"
    bl_label = "Save Active Look to Bank"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if context.active_object is None:
            cls.poll_message_set("Select an object with a look")
            return False
        return True

    def execute(self, context):
        obj = context.active_object
        holder = look_and_holder(obj, context.scene)[1]
        try:
            if holder is None:
                raise StoryShadeError(
                    f"'{obj.name}' has no look to save", "give it one (Add Look) and describe it"
                )
            folder = save_character(bank_folder(context), character_of(holder))
        except StoryShadeError as exc:
            _say(context, str(exc), error=True)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        holder.storyshade_look.bank = str(folder)
        _say(context, f"Saved '{holder.name}' to the bank: {folder}")
        self.report({"INFO"}, runtime.status(context.scene).bank_note)
        return {"FINISHED"}


class STORYSHADE_OT_bank_load(bpy.types.Operator):
    """Give the selected objects this character's look and reference images"""

    bl_idname = "storyshade.bank_load"
    bl_label = "Load Character for Selected"
    bl_options = {"REGISTER", "UNDO"}

    name: bpy.props.StringProperty(name="Character", description="The character's folder name")

    @classmethod
    def poll(cls, context):
        if not context.selected_objects and context.active_object is None:
            cls.poll_message_set("Select the objects that are this character")
            return False
        return True

    def execute(self, context):
        bank = bank_folder(context)
        try:
            list_characters(bank)  # a missing bank folder is named as such
            folder = bank / self.name
            char = read_character(folder)
        except StoryShadeError as exc:
            _say(context, str(exc), error=True)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        changed = targets(context)
        for holder in changed:
            apply_character(holder, char, folder)
        names = ", ".join(f"'{h.name}'" for h in changed)
        refs = len(char.references)
        _say(
            context, f"{char.name} ({refs} reference{'s' * (refs != 1)}) is now the look of {names}"
        )
        self.report({"INFO"}, runtime.status(context.scene).bank_note)
        return {"FINISHED"}

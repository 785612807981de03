"""Add and remove reference images: the scene's style references, or a look's character
references (the look's object or collection named by `owner`)."""

from __future__ import annotations

import bpy

from ..looks.reference_files import MAX_REFERENCES


def reference_list(context, owner: str, collection: bool):
    """The scene's references (`owner` empty), else the look's on that object/collection."""
    if not owner:
        return context.scene.storyshade.references
    holder = (bpy.data.collections if collection else bpy.data.objects).get(owner)
    return holder.storyshade_look.references if holder is not None else None


class _Owner:
    owner: bpy.props.StringProperty(name="Look", description="The look's object or collection")
    collection: bpy.props.BoolProperty(default=False)


class STORYSHADE_OT_reference_add(_Owner, bpy.types.Operator):
    """Add a reference image (then pick its file): at most 4 per shot"""

    bl_idname = "storyshade.reference_add"
    bl_label = "Add Reference"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        refs = reference_list(context, self.owner, self.collection)
        if refs is None:
            self.report({"ERROR"}, f"no object or collection '{self.owner}'")
            return {"CANCELLED"}
        if len(refs) >= MAX_REFERENCES:
            self.report({"ERROR"}, f"at most {MAX_REFERENCES} reference images per shot")
            return {"CANCELLED"}
        refs.add()
        return {"FINISHED"}


class STORYSHADE_OT_reference_remove(_Owner, bpy.types.Operator):
    """Remove this reference image"""

    bl_idname = "storyshade.reference_remove"
    bl_label = "Remove Reference"
    bl_options = {"REGISTER", "UNDO"}

    index: bpy.props.IntProperty(min=0)

    def execute(self, context):
        refs = reference_list(context, self.owner, self.collection)
        if refs is None or self.index >= len(refs):
            return {"CANCELLED"}
        refs.remove(self.index)
        return {"FINISHED"}

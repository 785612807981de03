"""Operators for per-object looks: give the selection a look, select a look's objects,
remove a look. The look itself lives on the object or collection (addon/looks/props.py)."""

from __future__ import annotations

import bpy

from ..looks.resolve import look_of


class STORYSHADE_OT_look_add(bpy.types.Operator):
    """Give the active object a look of its own (or, with Collection, its collection)"""

    bl_idname = "storyshade.look_add"
    bl_label = "Add Look"
    bl_options = {"REGISTER", "UNDO"}

    to_collection: bpy.props.BoolProperty(
        name="Collection",
        description="Set the look on the active object's collection, for all its members",
        default=False,
    )

    @classmethod
    def poll(cls, context):
        if context.active_object is None:
            cls.poll_message_set("Select the object (e.g. a mannequin part) first")
            return False
        return True

    def execute(self, context):
        obj = context.active_object
        target = obj
        if self.to_collection:
            owners = [c for c in obj.users_collection if c != context.scene.collection]
            if not owners:
                self.report({"ERROR"}, f"'{obj.name}' is in no collection of its own")
                return {"CANCELLED"}
            target = sorted(owners, key=lambda c: c.name)[0]
        look = target.storyshade_look
        look.enabled = True
        if not look.prompt:
            look.prompt = target.name.replace("_", " ").replace(".", " ").strip().lower()
        self.report({"INFO"}, f"'{target.name}' has a look: describe it in its prompt")
        return {"FINISHED"}


class STORYSHADE_OT_look_remove(bpy.types.Operator):
    """Turn a look off (its prompt is kept, so turning it on again restores it)"""

    bl_idname = "storyshade.look_remove"
    bl_label = "Remove Look"
    bl_options = {"REGISTER", "UNDO"}

    name: bpy.props.StringProperty()
    collection: bpy.props.BoolProperty(default=False)

    def execute(self, context):
        pool = bpy.data.collections if self.collection else bpy.data.objects
        target = pool.get(self.name)
        if target is None:
            self.report(
                {"ERROR"}, f"no {'collection' if self.collection else 'object'} '{self.name}'"
            )
            return {"CANCELLED"}
        target.storyshade_look.enabled = False
        return {"FINISHED"}


class STORYSHADE_OT_look_select(bpy.types.Operator):
    """Select every object of the scene shaded with this look"""

    bl_idname = "storyshade.look_select"
    bl_label = "Select Objects"
    bl_options = {"REGISTER", "UNDO"}

    name: bpy.props.StringProperty()

    def execute(self, context):
        scene, layer = context.scene, context.view_layer
        chosen = []
        for obj in scene.objects:
            look = look_of(obj, scene)
            selectable = obj.name in layer.objects and obj.visible_get()
            if selectable:
                obj.select_set(bool(look and look.name == self.name))
                if look and look.name == self.name:
                    chosen.append(obj)
        if chosen:
            layer.objects.active = chosen[0]
        self.report({"INFO"}, f"{len(chosen)} objects with the look '{self.name}'")
        return {"FINISHED"}

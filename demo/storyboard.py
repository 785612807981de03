"""A rough storyboard shot built from primitives: ground, blocks, a mannequin, and a
camera that dollies in while panning. Used by the demo and the end-to-end tests.
`add_looks` tells StoryShade what the mannequin, the crate and the building are."""

from __future__ import annotations

import math

import bpy


def _box(name: str, location, scale) -> bpy.types.Object:
    bpy.ops.mesh.primitive_cube_add(location=location)
    obj = bpy.context.active_object
    obj.name, obj.scale = name, scale
    return obj


def _mannequin(x: float, y: float) -> None:
    """Head, torso, hips, arms and legs: enough silhouette to read as a figure."""
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.14, location=(x, y, 1.62))
    bpy.context.active_object.name = "Head"
    _box("Torso", (x, y, 1.2), (0.2, 0.12, 0.28))
    _box("Hips", (x, y, 0.86), (0.18, 0.11, 0.08))
    for side in (-1, 1):
        bpy.ops.mesh.primitive_cylinder_add(
            radius=0.05, depth=0.62, location=(x + side * 0.27, y, 1.18)
        )
        bpy.context.active_object.name = f"Arm.{side}"
        bpy.ops.mesh.primitive_cylinder_add(
            radius=0.07, depth=0.8, location=(x + side * 0.1, y, 0.4)
        )
        bpy.context.active_object.name = f"Leg.{side}"


def build_storyboard(
    frames: int = 24, width: int = 512, height: int = 288, fps: int = 12
) -> bpy.types.Scene:
    """Reset to an empty scene and build the shot; returns the scene."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    scene.render.fps = fps
    scene.frame_start, scene.frame_end = 1, frames

    bpy.ops.mesh.primitive_plane_add(size=40, location=(0, 0, 0))
    bpy.context.active_object.name = "Ground"
    _box("Building", (-3.0, 4.0, 1.5), (1.2, 1.2, 1.5))
    _box("Crate", (1.6, 1.0, 0.4), (0.4, 0.4, 0.4))
    _box("Wall", (2.5, 5.0, 1.0), (2.0, 0.2, 1.0))
    _mannequin(0.0, 1.5)

    bpy.ops.object.camera_add(location=(0.5, -7.0, 1.6))
    cam = bpy.context.active_object
    cam.name = "ShotCam"
    cam.data.lens = 35
    scene.camera = cam
    # Dolly in while panning left to right.
    for frame, y, yaw in ((1, -7.0, -12.0), (frames, -4.0, 10.0)):
        scene.frame_set(frame)
        cam.location.y = y
        cam.rotation_euler = (math.radians(84), 0.0, math.radians(yaw))
        cam.keyframe_insert("location", index=1)
        cam.keyframe_insert("rotation_euler")
    scene.frame_set(1)
    return scene


MANNEQUIN_PARTS = ("Head", "Torso", "Hips", "Arm.-1", "Arm.1", "Leg.-1", "Leg.1")


def add_looks(scene: bpy.types.Scene) -> None:
    """Per-object looks (needs the add-on registered): the mannequin's parts gathered in a
    collection with one look, and looks on the crate and the building."""
    girl = bpy.data.collections.new("Mannequin")
    scene.collection.children.link(girl)
    for name in MANNEQUIN_PARTS:
        obj = scene.objects[name]
        for coll in list(obj.users_collection):
            coll.objects.unlink(obj)
        girl.objects.link(obj)
    for holder, prompt, color in (
        (girl, "a girl in a red coat, long black hair", (0.78, 0.12, 0.12)),
        (scene.objects["Crate"], "a weathered wooden crate", (0.55, 0.36, 0.18)),
        (scene.objects["Building"], "a red brick town house with white windows", (0.62, 0.3, 0.22)),
    ):
        look = holder.storyshade_look
        look.enabled, look.prompt = True, prompt
        look.use_color, look.color = True, color

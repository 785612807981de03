"""Analytic Blender scenes for the control-image tests, and their export to a shot bundle.

Scenes are tiny (tens of pixels, 1 Cycles sample) and built with the data API in a fresh
empty file, so each is exactly what its name says. Passes are rendered through the
add-on's own export (addon/export/bundle.py) when it is present, so the tests cover the real
Blender → bundle → control image path; otherwise a minimal local exporter stands in.

Conventions: Blender is Z-up; an unrotated camera looks down -Z with +Y up, so a camera at
(0, 0, d) sees the XY plane at distance d.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
import types
from pathlib import Path

import bpy

REPO = Path(__file__).resolve().parents[1]


def new_scene(width: int = 96, height: int = 64, frames: int = 1) -> bpy.types.Scene:
    """An empty file: no world (background stays background), one thread, given size."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.resolution_x = width
    scene.render.resolution_y = height
    scene.render.resolution_percentage = 100
    scene.render.threads_mode = "FIXED"
    scene.render.threads = 1
    scene.frame_start = 1
    scene.frame_end = frames
    scene.world = None
    return scene


def _link(scene: bpy.types.Scene, name: str, data) -> bpy.types.Object:
    obj = bpy.data.objects.new(name, data)
    scene.collection.objects.link(obj)
    return obj


def add_camera(
    scene: bpy.types.Scene,
    location: tuple[float, float, float] = (0.0, 0.0, 5.0),
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0),
    lens: float = 50.0,
) -> bpy.types.Object:
    cam = bpy.data.cameras.new("Camera")
    cam.lens = lens
    cam.sensor_width = 36.0
    cam.clip_start = 0.1
    cam.clip_end = 100.0
    obj = _link(scene, "Camera", cam)
    obj.location = location
    obj.rotation_euler = tuple(math.radians(a) for a in rotation_deg)
    scene.camera = obj
    return obj


def add_plane(
    scene: bpy.types.Scene,
    size: float = 20.0,
    location: tuple[float, float, float] = (0.0, 0.0, 0.0),
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0),
    name: str = "Plane",
) -> bpy.types.Object:
    """A square in its local XY plane; its normal is local +Z."""
    h = size / 2
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([(-h, -h, 0), (h, -h, 0), (h, h, 0), (-h, h, 0)], [], [(0, 1, 2, 3)])
    obj = _link(scene, name, mesh)
    obj.location = location
    obj.rotation_euler = tuple(math.radians(a) for a in rotation_deg)
    return obj


def add_sphere(
    scene: bpy.types.Scene,
    radius: float = 1.0,
    location: tuple[float, float, float] = (0.0, 0.0, 0.0),
    segments: int = 48,
) -> bpy.types.Object:
    """A smooth-shaded UV sphere (interpolated normals, so the normal image is a gradient)."""
    import bmesh  # only importable once bpy is

    mesh = bpy.data.meshes.new("Sphere")
    bm = bmesh.new()
    bmesh.ops.create_uvsphere(bm, u_segments=segments, v_segments=segments // 2, radius=radius)
    bm.to_mesh(mesh)
    bm.free()
    mesh.shade_smooth()
    obj = _link(scene, "Sphere", mesh)
    obj.location = location
    return obj


def add_cube(
    scene: bpy.types.Scene,
    size: float = 1.0,
    location: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> bpy.types.Object:
    import bmesh

    mesh = bpy.data.meshes.new("Cube")
    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=size)
    bm.to_mesh(mesh)
    bm.free()
    obj = _link(scene, "Cube", mesh)
    obj.location = location
    return obj


def keyframe_locations(obj: bpy.types.Object, by_frame: dict[int, tuple[float, float, float]]):
    """Constant-interpolated location keys: the object jumps, it does not glide."""
    for frame, loc in by_frame.items():
        obj.location = loc
        obj.keyframe_insert("location", frame=frame)
    for fcurve in _fcurves(obj):
        for key in fcurve.keyframe_points:
            key.interpolation = "CONSTANT"


def _fcurves(obj: bpy.types.Object):
    action = obj.animation_data.action
    if hasattr(action, "fcurves"):
        return action.fcurves
    # Blender 5.0 layered actions: channelbag per slot
    from bpy_extras import anim_utils

    return anim_utils.action_get_channelbag_for_slot(action, obj.animation_data.action_slot).fcurves


def export(scene: bpy.types.Scene, out_dir: Path) -> Path:
    """Write a shot bundle for the scene's frame range: the add-on's export when it exists."""
    if (REPO / "addon" / "export" / "bundle.py").is_file():
        return _addon_export().export_bundle(scene, Path(out_dir))
    return _export_locally(scene, Path(out_dir))


def _addon_export():
    """addon/export/bundle.py and the modules it imports, without addon/__init__.py.

    The package's __init__ pulls in the UI (operators, panels, the server client); the
    export needs none of it, and these tests should not depend on it.
    """
    name = "_storyshade_addon"
    if name not in sys.modules:
        package = types.ModuleType(name)
        package.__path__ = [str(REPO / "addon")]
        sys.modules[name] = package
    return importlib.import_module(f"{name}.export.bundle")


def _export_locally(scene: bpy.types.Scene, out_dir: Path) -> Path:
    """Stand-in for addon/export/bundle.py: 1-sample Cycles Z + Normal passes to multilayer EXR."""
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
    scene.cycles.device = "CPU"
    scene.render.filter_size = 0.01
    layer = scene.view_layers[0]
    layer.use_pass_z = True
    layer.use_pass_normal = True
    img = scene.render.image_settings
    if hasattr(img, "media_type"):  # 5.0: media type first
        img.media_type = "MULTI_LAYER_IMAGE"
    img.file_format = "OPEN_EXR_MULTILAYER"
    img.color_depth = "32"
    (out_dir / "frames").mkdir(parents=True, exist_ok=True)
    frames = []
    for frame in range(scene.frame_start, scene.frame_end + 1):
        scene.frame_set(frame)
        rel = f"frames/{frame:04d}.exr"
        scene.render.filepath = str(out_dir / rel)
        bpy.ops.render.render(write_still=True, scene=scene.name)
        cam = scene.camera
        frames.append(
            {
                "frame": frame,
                "file": rel,
                "camera": {
                    "matrix_world": [list(row) for row in cam.matrix_world],
                    "type": cam.data.type,
                    "lens": cam.data.lens,
                    "sensor_width": cam.data.sensor_width,
                    "sensor_height": cam.data.sensor_height,
                    "sensor_fit": cam.data.sensor_fit,
                    "clip_start": cam.data.clip_start,
                    "clip_end": cam.data.clip_end,
                },
            }
        )
    shot = {
        "format": "storyshade.shot",
        "version": 1,
        "shot": "test",
        "frame_start": scene.frame_start,
        "frame_end": scene.frame_end,
        "fps": 24.0,
        "resolution": [scene.render.resolution_x, scene.render.resolution_y],
        "frames": frames,
    }
    (out_dir / "shot.json").write_text(json.dumps(shot, indent=1), encoding="utf-8")
    return out_dir


# -- the analytic scenes ---------------------------------------------------------------------


def wall(distance: float = 5.0, yaw_deg: float = 0.0, **size) -> bpy.types.Scene:
    """A camera facing a large wall at `distance`; yaw turns the wall about the vertical
    axis (positive: its normal swings towards camera-right, +X)."""
    scene = new_scene(**size)
    add_camera(scene, (0.0, 0.0, distance))
    add_plane(scene, 40.0, rotation_deg=(0.0, yaw_deg, 0.0), name="Wall")
    return scene


def floor_from_above(tilt_deg: float = 60.0) -> bpy.types.Scene:
    """A floor (z = 0, normal up) seen by a camera pitched down towards it."""
    scene = new_scene()
    add_camera(scene, (0.0, -6.0, 4.0), (tilt_deg, 0.0, 0.0))
    add_plane(scene, 200.0, name="Floor")
    return scene


def sphere(roll_deg: float = 0.0, width: int = 96, height: int = 64) -> bpy.types.Scene:
    """A unit sphere 5 units in front of the camera, against the empty background."""
    scene = new_scene(width, height)
    add_camera(scene, (0.0, 0.0, 5.0), (0.0, 0.0, roll_deg))
    add_sphere(scene)
    return scene


def asymmetric(roll_deg: float = 0.0) -> bpy.types.Scene:
    """Sphere, an off-centre tilted board and a cube: no symmetry a roll could hide behind."""
    scene = new_scene(64, 64)
    add_camera(scene, (0.0, 0.0, 6.0), (0.0, 0.0, roll_deg))
    add_sphere(scene, 0.8, (-0.4, 0.3, 0.0))
    add_plane(scene, 1.2, (1.0, -0.6, 0.5), (35.0, 20.0, 10.0), name="Board")
    add_cube(scene, 0.7, (0.8, 0.9, -0.5)).rotation_euler = (0.3, 0.5, 0.2)
    return scene


def object_enters(frames: int = 5, enter_at: int = 3) -> bpy.types.Scene:
    """A static wall 5 units away; a small cube 2.5 units away jumps into view at `enter_at`."""
    scene = new_scene(frames=frames)
    add_camera(scene, (0.0, 0.0, 5.0))
    add_plane(scene, 40.0, name="Wall")
    cube = add_cube(scene, 0.6, (-30.0, 0.0, 2.5))
    keyframe_locations(cube, {1: (-30.0, 0.0, 2.5), enter_at: (0.3, 0.0, 2.5)})
    return scene

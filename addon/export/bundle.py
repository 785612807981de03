"""Export a shot bundle: Cycles depth + normal passes and the camera for every frame.

With per-object looks (addon/looks/) the Object Index pass is written too, each object's
pass index set to its look's region id for the duration of the export. Object Index over
Cryptomatte: it is an exact integer per pixel at sample 0 (no coverage to decode), costs one
float channel, and Cycles has it in every version we support.

The export is a generator (one frame per step) so the sidebar can drive it from a modal
timer without freezing Blender, while headless runs simply exhaust it. The user's scene
is restored exactly on completion, failure, or cancellation (generator close).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import bpy

from .. import compat
from ..errors import StoryShadeError
from ..looks.resolve import LookOverrides, shot_regions
from ..wire import manifest as shot_json
from ..wire.layout import FORMAT, LOOKS_VERSION, pass_file

UNSAVED = "untitled"  # the .blend's name in shot names until it is saved


def shot_name(scene, blend: str | None = None) -> str:
    """A file-system-safe shot name from the .blend (or `blend`, a file name) and scene
    names."""
    path = blend if blend is not None else bpy.data.filepath
    blend = Path(path).stem if path else UNSAVED
    raw = f"{blend}-{scene.name}" if scene.name != "Scene" else blend
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw).strip("._") or "shot"


def frame_range(scene, frame_start: int | None, frame_end: int | None) -> tuple[int, int]:
    start = scene.frame_start if frame_start is None else frame_start
    end = scene.frame_end if frame_end is None else frame_end
    if end < start:
        raise StoryShadeError(
            f"the frame range {start}-{end} is inverted (end before start)",
            "set the end frame at or after the start frame",
        )
    return start, end


def check_scene(scene) -> None:
    if scene.camera is None:
        raise StoryShadeError(
            f"scene '{scene.name}' has no active camera",
            "add a camera and make it active (Ctrl+Numpad0 in the viewport)",
        )
    if scene.camera.type != "CAMERA":
        raise StoryShadeError(f"the scene camera '{scene.camera.name}' is not a camera object")


def _export_view_layer(scene):
    """The view layer the user works in, if `scene` is the one in the context (a shot of
    an edit can be another scene: then its first view layer)."""
    active = bpy.context.view_layer
    if bpy.context.scene == scene and active and active.name in scene.view_layers:
        return scene.view_layers[active.name]
    return scene.view_layers[0]


@contextmanager
def region_ids(scene, view_layer, ids: dict[str, int]):
    """Object Index pass on, each object's pass index = its region id (0: no look); the
    user's pass indices and pass setting are put back afterwards, also on error or cancel."""
    if not ids:
        yield
        return
    saved = [(obj, obj.pass_index) for obj in scene.objects]
    use_index = view_layer.use_pass_object_index
    try:
        view_layer.use_pass_object_index = True
        for obj in scene.objects:
            obj.pass_index = ids.get(obj.name, 0)
        yield
    finally:
        view_layer.use_pass_object_index = use_index
        for obj, index in saved:
            obj.pass_index = index


@contextmanager
def render_settings(scene, view_layer):
    """Switch to 1-sample Cycles data passes; put every touched setting back afterwards."""
    render, img = scene.render, scene.render.image_settings
    saved: list[tuple[object, str, object]] = []

    def setv(owner, attr: str, value) -> None:
        saved.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, value)

    frame = scene.frame_current
    img_saved = [(img, a, getattr(img, a)) for a in compat.image_settings_attrs(img)]
    other_layers = [(vl, vl.use) for vl in scene.view_layers if vl != view_layer]
    try:
        setv(render, "engine", "CYCLES")
        setv(scene.cycles, "samples", 1)
        setv(scene.cycles, "use_denoising", False)
        setv(scene.cycles, "device", "CPU")
        setv(render, "filter_size", 0.01)
        setv(render, "use_compositing", False)
        setv(render, "use_sequencer", False)
        setv(render, "filepath", render.filepath)
        setv(view_layer, "use", True)
        setv(view_layer, "use_pass_z", True)
        setv(view_layer, "use_pass_normal", True)
        for vl, _ in other_layers:
            vl.use = False
        compat.set_multilayer_exr(img)
        yield
    finally:
        for owner, attr, value in reversed(saved):
            setattr(owner, attr, value)
        for owner, attr, value in img_saved:  # media_type before file_format (5.0)
            setattr(owner, attr, value)
        for vl, use in other_layers:
            vl.use = use
        scene.frame_set(frame)


def camera_record(camera_object) -> dict:
    """Camera of the current frame: world matrix (row-major) and lens data."""
    cam = camera_object.data
    return {
        "matrix_world": [list(row) for row in camera_object.matrix_world],
        "type": cam.type,
        "lens": cam.lens,
        "sensor_width": cam.sensor_width,
        "sensor_height": cam.sensor_height,
        "sensor_fit": cam.sensor_fit,
        "ortho_scale": cam.ortho_scale,
        "shift_x": cam.shift_x,
        "shift_y": cam.shift_y,
        "clip_start": cam.clip_start,
        "clip_end": cam.clip_end,
    }


def _render_frame(scene, view_layer, out_dir: Path, frame: int) -> dict:
    """Render the current frame's passes to its file; its shot.json entry."""
    rel = pass_file(frame)
    scene.render.filepath = str(out_dir / rel)
    try:
        bpy.ops.render.render(write_still=True, scene=scene.name, layer=view_layer.name)
    except RuntimeError as exc:  # Blender reports render/write errors this way
        raise StoryShadeError(
            f"Cycles did not write {out_dir / rel}: {str(exc).strip()}",
            "check that the output folder is writable and has free space",
        ) from None
    if not (out_dir / rel).is_file():
        raise StoryShadeError(f"Cycles did not write {out_dir / rel}", "check disk space")
    return {"frame": frame, "file": rel, "camera": camera_record(scene.camera)}


def iter_export(
    scene,
    out_dir: Path,
    frame_start: int | None = None,
    frame_end: int | None = None,
    looks: LookOverrides | None = None,
    *,
    shot: str | None = None,
    camera: str | None = None,
) -> Iterator[tuple[int, int]]:
    """Render frame by frame, yielding (done, total); writes shot.json after the last frame.
    `looks` (from a looks file) add to and replace the .blend's own looks; `shot` names the
    shot (default: from the file and scene); `camera` (an object name) replaces the scene's
    camera for every frame, as a scene strip's camera override does."""
    check_scene(scene)
    override = bpy.data.objects.get(camera) if camera else None
    if camera and (override is None or override.type != "CAMERA"):
        raise StoryShadeError(f"there is no camera object '{camera}'", "pick a camera")
    start, end = frame_range(scene, frame_start, frame_end)
    regions, ids = shot_regions(scene, looks)  # a bad look fails before any frame renders
    out_dir = Path(out_dir)
    try:
        (out_dir / "frames").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoryShadeError(
            f"cannot write the shot's passes to {out_dir} ({exc.strerror or exc})",
            "free disk space in the temporary folder, or point TMPDIR at a writable folder",
        ) from None
    pct = scene.render.resolution_percentage / 100.0
    resolution = [
        max(1, int(scene.render.resolution_x * pct)),
        max(1, int(scene.render.resolution_y * pct)),
    ]
    frames = []
    total = end - start + 1
    view_layer = _export_view_layer(scene)
    user_camera = scene.camera
    try:
        with render_settings(scene, view_layer), region_ids(scene, view_layer, ids):
            for i, frame in enumerate(range(start, end + 1)):
                scene.frame_set(frame)
                if override is not None:
                    scene.camera = override
                frames.append(_render_frame(scene, view_layer, out_dir, frame))
                yield i + 1, total
    finally:
        if override is not None:
            scene.camera = user_camera
    manifest = {
        "format": FORMAT,
        "version": LOOKS_VERSION if regions else 1,  # servers before looks still read these
        "shot": shot or shot_name(scene),
        "frame_start": start,
        "frame_end": end,
        "fps": scene.render.fps / scene.render.fps_base,
        "resolution": resolution,
        "unit_scale": scene.unit_settings.scale_length,
        "blender_version": bpy.app.version_string,
        "frames": frames,
        **({"regions": regions} if regions else {}),
    }
    shot_json.write(out_dir, manifest)


def export_bundle(
    scene,
    out_dir: Path,
    frame_start: int | None = None,
    frame_end: int | None = None,
    looks: LookOverrides | None = None,
) -> Path:
    """Write the whole bundle synchronously (headless and tests)."""
    for _ in iter_export(scene, out_dir, frame_start, frame_end, looks):
        pass
    return Path(out_dir)

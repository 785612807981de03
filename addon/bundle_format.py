"""The shot bundle as the add-on writes it (the server validates the same schema in
backend/storyshade/bundle.py; a test keeps the two in step)."""

from __future__ import annotations

FORMAT = "storyshade.shot"
VERSION = 3  # 3: held frames (re-shading part of a take); 2: per-object looks; 1: neither
LOOKS_VERSION = 2  # a bundle is written at the lowest version that holds what it carries
TAKE_DIR = "take"


def take_file(frame: int) -> str:
    """Where a held frame's picture (the earlier take's PNG) sits inside the bundle."""
    return f"{TAKE_DIR}/{frame:04d}.png"


MANIFEST = "shot.json"


def frame_file(frame: int) -> str:
    return f"frames/{frame:04d}.exr"


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

"""World-space normal pass → camera-space normals in a ControlNet's colour encoding.

Camera axes are Blender's: x right, y up, z towards the viewer. Two encodings:

- `bae` (control_v11p_sd15_normalbae): R=(1-nx)/2, G=(1+ny)/2, B=(1+nz)/2, background
  (0.5, 0.5, 1.0). A wall facing the camera is (128, 128, 255).
- `midas` (ControlNet 1.0 control_sd15_normal): controlnet-aux's MidasDetector builds
  (dD/dx, dD/dy, a) from the Sobel gradients of inverse depth D, normalises it and writes it
  channel-reversed. dD/dx has the sign of -nx and dD/dy (image y points down) the sign of
  ny, so R=(1+nz)/2, G=(1+ny)/2, B=(1-nx)/2; background (1.0, 0.5, 0.5).
"""

from __future__ import annotations

import numpy as np

CONVENTIONS = ("bae", "midas")
BACKGROUND = {"bae": (0.5, 0.5, 1.0), "midas": (1.0, 0.5, 0.5)}
FACING = np.array([0.0, 0.0, 1.0], np.float32)  # camera-space normal of the background


def to_camera(normal_world: np.ndarray, cam_rotation: np.ndarray) -> np.ndarray:
    """Rotate HxWx3 world normals into camera axes; `cam_rotation` is camera-to-world.

    n_cam = R^T n_world, written for row vectors as n_world @ R. Roll is part of R, so a
    rolled camera rolls the normal image with it.
    """
    cam = normal_world.astype(np.float32) @ cam_rotation.astype(np.float32)
    return normalize(cam)


def normalize(normals: np.ndarray) -> np.ndarray:
    """Unit length; zero vectors (the pass's background) become 'facing the camera'."""
    length = np.linalg.norm(normals, axis=-1, keepdims=True)
    out = np.where(length > 1e-6, normals / np.maximum(length, 1e-6), FACING)
    return out.astype(np.float32)


def encode(normal_cam: np.ndarray, background: np.ndarray, convention: str = "bae") -> np.ndarray:
    """Camera-space normals → float RGB in [0, 1]; background pixels get the exact value."""
    nx, ny, nz = normal_cam[..., 0], normal_cam[..., 1], normal_cam[..., 2]
    if convention == "bae":
        channels = ((1.0 - nx) / 2.0, (1.0 + ny) / 2.0, (1.0 + nz) / 2.0)
    elif convention == "midas":
        channels = ((1.0 + nz) / 2.0, (1.0 + ny) / 2.0, (1.0 - nx) / 2.0)
    else:
        raise ValueError(f"unknown normal convention {convention!r}; use one of {CONVENTIONS}")
    rgb = np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)
    rgb[background] = BACKGROUND[convention]
    return rgb


def decode(rgb: np.ndarray, convention: str = "bae") -> np.ndarray:
    """Encoded image (uint8 or float [0, 1]) → unit camera-space normals (the inverse)."""
    unit = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float32)
    r, g, b = unit[..., 0], unit[..., 1], unit[..., 2]
    if convention == "bae":
        n = np.stack((1.0 - 2.0 * r, 2.0 * g - 1.0, 2.0 * b - 1.0), axis=-1)
    elif convention == "midas":
        n = np.stack((1.0 - 2.0 * b, 2.0 * g - 1.0, 2.0 * r - 1.0), axis=-1)
    else:
        raise ValueError(f"unknown normal convention {convention!r}; use one of {CONVENTIONS}")
    return normalize(n)


def background_u8(convention: str = "bae") -> tuple[int, int, int]:
    """The 8-bit background colour: (128, 128, 255) for bae, (255, 128, 128) for midas."""
    return tuple(int(np.floor(v * 255 + 0.5)) for v in BACKGROUND[convention])  # type: ignore[return-value]

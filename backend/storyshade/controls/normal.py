"""World-space normal pass → camera-space normals in the NormalBAE colour encoding."""

from __future__ import annotations

import numpy as np


def to_camera(normal_world: np.ndarray, cam_rotation: np.ndarray) -> np.ndarray:
    """Rotate HxWx3 world normals into camera axes (x right, y up, z towards the viewer)."""
    return normal_world @ cam_rotation  # row vectors: n_cam = R^T n_world


def encode_bae(normal_cam: np.ndarray, background: np.ndarray) -> np.ndarray:
    """R=(1-nx)/2, G=(1+ny)/2, B=(1+nz)/2 (red flipped); background (0.5, 0.5, 1.0)."""
    rgb = np.empty(normal_cam.shape, dtype=np.float32)
    rgb[..., 0] = (1.0 - normal_cam[..., 0]) / 2.0
    rgb[..., 1] = (1.0 + normal_cam[..., 1]) / 2.0
    rgb[..., 2] = (1.0 + normal_cam[..., 2]) / 2.0
    rgb[background] = (0.5, 0.5, 1.0)
    return np.clip(rgb, 0.0, 1.0)

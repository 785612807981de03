"""Line images from exact geometry: depth jumps, silhouettes and normal creases.

A storyboard scene has no texture, so the lines worth drawing are where geometry breaks:
an object in front of another (depth jump), an object against the sky (silhouette), or
two faces meeting at an angle (crease). These come straight from the passes, with no
model and no noise, and the preview engine inks the same lines.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

DEPTH_JUMP = 0.04  # in normalised inverse depth between neighbouring pixels
CREASE_DEG = 40.0  # angle between neighbouring normals


def geometry_edges(
    depth01: np.ndarray,
    normals: np.ndarray,
    background: np.ndarray,
    *,
    depth_jump: float = DEPTH_JUMP,
    crease_deg: float = CREASE_DEG,
    step: int = 1,
) -> np.ndarray:
    """Boolean HxW edge mask; a discontinuity is drawn on its nearer (foreground) side.

    Depth jumps are measured against the neighbouring slopes, not against zero: inverse
    depth is affine across a plane in a perspective image, so a floor seen at a grazing
    angle (steep but straight) draws no lines while a step does. Pixels `step` apart are
    compared: 1 on exact passes, 2 on resampled images where an edge spans two pixels.
    """
    cos_t = math.cos(math.radians(crease_deg))
    edges = np.zeros(depth01.shape, dtype=bool)
    for axis in (0, 1):
        lo = [slice(None)] * 2
        hi = [slice(None)] * 2
        lo[axis], hi[axis] = slice(None, -step), slice(step, None)
        lo_t, hi_t = tuple(lo), tuple(hi)
        d0, d1 = depth01[lo_t], depth01[hi_t]
        b0, b1 = background[lo_t], background[hi_t]
        both = ~b0 & ~b1
        silhouette = b0 != b1
        delta = (d1 - d0).astype(np.float32)
        bend = np.fmin(
            np.abs(delta - _shift(delta, step, axis)), np.abs(delta - _shift(delta, -step, axis))
        )
        jump = both & (bend > depth_jump)
        crease = both & ((normals[lo_t] * normals[hi_t]).sum(-1) < cos_t)
        edges[lo_t] |= (silhouette & ~b0) | (jump & (d0 >= d1)) | crease
        edges[hi_t] |= (silhouette & ~b1) | (jump & (d1 > d0))
    return edges


def _shift(a: np.ndarray, k: int, axis: int) -> np.ndarray:
    """`a` moved k places along `axis` (positive: towards higher indices), NaN-filled."""
    out = np.full_like(a, np.nan)
    n = a.shape[axis]
    if abs(k) >= n:
        return out
    src = [slice(None)] * a.ndim
    dst = [slice(None)] * a.ndim
    src[axis], dst[axis] = (
        (slice(None, n - k), slice(k, None)) if k > 0 else (slice(-k, None), slice(None, n + k))
    )
    out[tuple(dst)] = a[tuple(src)]
    return out


def resize_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """An edge mask found on the exact render → line strength in [0, 1] at another size.

    Shrinking area-averages and then restores full strength (a 1-pixel line three times
    finer than the target would otherwise fade to a third); enlarging interpolates.
    """
    h, w = mask.shape
    m = mask.astype(np.float32)
    if (w, h) == (width, height):
        return m
    shrink = max(w / width, h / height)
    interp = cv2.INTER_AREA if shrink > 1 else cv2.INTER_LINEAR
    out = cv2.resize(m, (width, height), interpolation=interp)
    return np.clip(out * max(shrink, 1.0), 0.0, 1.0)


def lineart(mask: np.ndarray) -> np.ndarray:
    """Thin, lightly anti-aliased white lines on black, as lineart ControlNets expect.
    `mask` is boolean or line strength in [0, 1] (as from `resize_mask`)."""
    m = mask.astype(np.float32)
    soft = cv2.GaussianBlur(m, (0, 0), 0.6) * 1.6
    return _rgb(np.maximum(m, soft))


def softedge(mask: np.ndarray) -> np.ndarray:
    """Soft ridges (HED/PiDiNet look): a blurred line with its centre at full white."""
    m = mask.astype(np.float32)
    sigma = 1.5
    soft = cv2.GaussianBlur(m, (0, 0), sigma) * (math.sqrt(2 * math.pi) * sigma)
    return _rgb(soft)


def hard(mask: np.ndarray) -> np.ndarray:
    """Binary edges (canny look)."""
    return _rgb((mask >= 0.5).astype(np.float32))


STYLES = {"lineart": lineart, "softedge": softedge, "canny": hard}


def _rgb(unit: np.ndarray) -> np.ndarray:
    u8 = np.floor(np.clip(unit, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    return np.repeat(u8[..., None], 3, axis=-1)

"""Inverse depth, normalised once per shot (never per frame, which flickers)."""

from __future__ import annotations

import numpy as np

from storyshade.bundle import BACKGROUND_DEPTH


def is_background(depth: np.ndarray) -> np.ndarray:
    return depth >= BACKGROUND_DEPTH * 0.5


def robust_range(
    depths: list[np.ndarray], low: float = 1.0, high: float = 99.0
) -> tuple[float, float]:
    """Near/far from percentiles of all non-background depth in the shot."""
    samples = [d[~is_background(d)][::7] for d in depths]
    values = np.concatenate(samples) if samples else np.empty(0)
    if values.size == 0:
        return 0.1, 100.0
    near, far = np.percentile(values, [low, high])
    near = max(float(near), 1e-4)
    far = max(float(far), near * 1.001)
    return near, far


def inverse_depth(depth: np.ndarray, near: float, far: float) -> np.ndarray:
    """(1/z - 1/far) / (1/near - 1/far) clipped to [0, 1]; background 0. Float32 HxW."""
    bg = is_background(depth)
    z = np.where(bg, far, np.maximum(depth, 1e-6))
    d = (1.0 / z - 1.0 / far) / (1.0 / near - 1.0 / far)
    d = np.clip(d, 0.0, 1.0)
    d[bg] = 0.0
    return d.astype(np.float32)

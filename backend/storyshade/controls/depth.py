"""Metric Z → inverse depth, normalised once per shot (never per frame, which flickers).

Depth ControlNets were trained on MiDaS-style relative inverse depth: near is bright, far
is dark. One near/far pair for the whole shot keeps a static wall's grey level fixed while
objects enter, leave or the camera dollies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from storyshade.bundle import BACKGROUND_DEPTH, Bundle
from storyshade.errors import BundleError, StoryShadeError
from storyshade.settings import Settings

DEFAULT_PERCENTILES = (1.0, 99.0)
# The robust far plane sits this fraction of the shot's inverse-depth span beyond the far
# percentile, so the farthest geometry stays ~0.09 (23/255) and only the background is 0:
# otherwise a back wall facing the camera looks exactly like empty background in both
# the depth and the normal image.
FAR_MARGIN = 0.1
MIN_RATIO = 1.1  # far/near of a flat shot is widened to this, so a lone wall sits mid-grey
MAX_SAMPLES = 2_000_000  # percentiles over a strided sample keep long 4K shots cheap


@dataclass(frozen=True)
class DepthRange:
    """The shot's normalisation: how it was chosen, and the resulting near/far in scene units."""

    mode: str
    near: float
    far: float
    percentiles: tuple[float, float] | None = None
    far_margin: float = 0.0

    def to_dict(self) -> dict:
        out: dict = {"depth_range": self.mode, "depth_near": self.near, "depth_far": self.far}
        if self.percentiles:
            out["depth_percentiles"] = list(self.percentiles)
            out["depth_far_margin"] = self.far_margin
        return out


def is_background(depth: np.ndarray) -> np.ndarray:
    """Pixels no geometry covers: Cycles writes exactly 1e10 there."""
    return depth >= BACKGROUND_DEPTH * 0.5


def check_finite(depth: np.ndarray, where: str) -> None:
    """Reject NaN/inf before they reach a percentile or a division (they poison both)."""
    bad = ~np.isfinite(depth)
    if bad.any():
        raise BundleError(
            f"{int(bad.sum())} NaN or infinite depth pixels",
            "check the scene for degenerate geometry or a zero-scale camera, then re-export",
            field=where,
        )


def robust_range(
    depths: list[np.ndarray], percentiles: tuple[float, float] = DEFAULT_PERCENTILES
) -> tuple[float, float] | None:
    """Near/far from percentiles of all non-background depth in the shot (None if empty)."""
    total = sum(d.size for d in depths)
    stride = max(1, total // MAX_SAMPLES)
    samples = [d.ravel()[::stride] for d in depths]
    values = np.concatenate(samples) if samples else np.empty(0, np.float32)
    values = values[~is_background(values) & (values > 0)]
    if values.size == 0:
        return None
    near, far = np.percentile(values, percentiles)
    return float(near), float(far)


def _widen(near: float, far: float) -> tuple[float, float]:
    """A flat shot gets a minimum far/near ratio; the far plane moves out by FAR_MARGIN."""
    near = max(near, 1e-4)
    if far / near < MIN_RATIO:
        mid = (near * far) ** 0.5
        near, far = mid / MIN_RATIO**0.5, mid * MIN_RATIO**0.5
    inv_far = 1.0 / far - FAR_MARGIN * (1.0 / near - 1.0 / far)
    return near, 1.0 / max(inv_far, 1e-9)


def shot_range(settings: Settings, bundle: Bundle, depths: list[np.ndarray]) -> DepthRange:
    """The one near/far used for every frame, by the settings' `depth_range` mode."""
    mode = settings.depth_range
    if mode == "fixed":
        near, far = settings.depth_near, settings.depth_far
        if near is None or far is None:
            raise StoryShadeError(
                "depth_range 'fixed' needs both depth_near and depth_far",
                "set them (scene units) or use depth_range 'robust'",
                field="settings.depth_near" if near is None else "settings.depth_far",
            )
        if far <= near:
            raise StoryShadeError(
                f"depth_far {far} must be greater than depth_near {near}",
                "swap or correct them",
                field="settings.depth_far",
            )
        return DepthRange(mode, float(near), float(far))
    cams = [f.camera for f in bundle.shot.frames]
    clip = (min(c.clip_start for c in cams), max(c.clip_end for c in cams))
    if mode == "clip":
        return DepthRange(mode, *clip)
    found = robust_range(depths, DEFAULT_PERCENTILES)
    near, far = _widen(*found) if found else clip
    return DepthRange(mode, near, far, DEFAULT_PERCENTILES, FAR_MARGIN)


def inverse_depth(depth: np.ndarray, near: float, far: float) -> np.ndarray:
    """(1/z - 1/far) / (1/near - 1/far) clipped to [0, 1]; background exactly 0. Float32 HxW."""
    bg = is_background(depth)
    z = np.where(bg, far, np.maximum(depth, 1e-6)).astype(np.float64)
    d = (1.0 / z - 1.0 / far) / (1.0 / near - 1.0 / far)
    d = np.clip(d, 0.0, 1.0)
    d[bg] = 0.0
    return d.astype(np.float32)


def quantize(unit: np.ndarray, bits: int) -> np.ndarray:
    """[0, 1] float → uint8/uint16, rounding half up (0.5 → 128 in 8 bits)."""
    top = (1 << bits) - 1
    dtype = np.uint8 if bits == 8 else np.uint16
    return np.floor(np.clip(unit, 0.0, 1.0) * top + 0.5).astype(dtype)


def depth_images(depth01: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(HxWx3 uint8 for the model, HxW uint16 for inspection) from normalised inverse depth."""
    u8 = quantize(depth01, 8)
    return np.repeat(u8[..., None], 3, axis=-1), quantize(depth01, 16)

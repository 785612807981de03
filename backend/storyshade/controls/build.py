"""Bundle → per-frame control images at generation size (uint8 RGB)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from storyshade.bundle import Bundle
from storyshade.controls.depth import inverse_depth, is_background, robust_range
from storyshade.controls.normal import encode_bae, to_camera
from storyshade.controls.sizing import cover_resize
from storyshade.progress import Reporter
from storyshade.settings import Settings


@dataclass
class ControlSet:
    """Control frames per role ('depth', 'normal', ...), each a list of HxWx3 uint8 arrays."""

    frames: dict[str, list[np.ndarray]]
    frame_numbers: list[int]
    meta: dict = field(default_factory=dict)


def _to_u8(rgb: np.ndarray) -> np.ndarray:
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def depth_range(
    settings: Settings, bundle: Bundle, depths: list[np.ndarray]
) -> tuple[float, float]:
    if settings.depth_range == "fixed" and settings.depth_near and settings.depth_far:
        return settings.depth_near, settings.depth_far
    if settings.depth_range == "clip":
        cam = bundle.shot.frames[0].camera
        return cam.clip_start, cam.clip_end
    return robust_range(depths)


def build_controls(
    bundle: Bundle, settings: Settings, reporter: Reporter | None = None
) -> ControlSet:
    n = len(bundle)
    passes = []
    for i in range(n):
        passes.append(bundle.read_passes(i))
        if reporter:
            reporter.stage("controls", i + 1, n)
    near, far = depth_range(settings, bundle, [d for d, _ in passes])
    out: dict[str, list[np.ndarray]] = {"depth": [], "normal": []}
    for i, (depth, normal) in enumerate(passes):
        inv = inverse_depth(depth, near, far)
        out["depth"].append(_to_u8(np.repeat(inv[..., None], 3, axis=-1)))
        cam = to_camera(normal, bundle.shot.frames[i].camera.rotation())
        out["normal"].append(_to_u8(encode_bae(cam, is_background(depth))))
    sized = {
        role: [cover_resize(f, settings.width, settings.height) for f in frames]
        for role, frames in out.items()
    }
    return ControlSet(sized, bundle.shot.frame_numbers, {"depth_near": near, "depth_far": far})

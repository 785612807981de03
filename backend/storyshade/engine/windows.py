"""Context windows over the frame axis, and the weights that fuse their overlaps.

The whole model (UNet and every ControlNet) sees one window of at most `length` frames at a
time, so memory depends on the window length, not on the shot length. Overlapping windows
predict noise for the same frames; those predictions are blended with per-frame weights that
sum to one, so a frame covered by one window gets its prediction unchanged.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

Schedule = Literal["static", "shifting"]
Fuse = Literal["pyramid", "flat"]

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def check_context(length: int, overlap: int) -> None:
    """Reject settings that cannot tile a shot (an overlap as long as the window never moves)."""
    if length < 1:
        raise ValueError(f"context length must be at least 1, not {length}")
    if not 0 <= overlap < length:
        raise ValueError(f"context overlap must be at least 0 and below the length ({length})")


def static_windows(num_frames: int, length: int, overlap: int) -> list[range]:
    """Fewest full-length windows with at least `overlap` shared frames, spaced evenly.

    Even spacing spreads the surplus overlap over every seam instead of piling it into the
    last window, and every window keeps the full temporal context the motion module expects.
    """
    check_context(length, overlap)
    if num_frames <= length:
        return [range(0, num_frames)]
    stride = length - overlap
    count = math.ceil((num_frames - overlap) / stride)
    last = num_frames - length
    starts = [round(j * last / (count - 1)) for j in range(count)]
    return [range(s, s + length) for s in starts]


def shifting_windows(num_frames: int, length: int, overlap: int, step: int) -> list[range]:
    """Windows on a grid of stride `length - overlap`, offset differently at every step.

    Moving the seams between steps keeps any one frame from always sitting at a window's
    edge, which hides seams that a fixed tiling can leave. Step 0 starts at frame 0; later
    offsets follow the golden-ratio sequence so they spread over the stride.
    """
    check_context(length, overlap)
    if num_frames <= length:
        return [range(0, num_frames)]
    stride = length - overlap
    offset = int(stride * ((step * _GOLDEN) % 1.0))
    last = num_frames - length
    starts: list[int] = []
    start = offset - stride if offset else 0
    while True:
        clamped = min(max(start, 0), last)
        if not starts or clamped != starts[-1]:
            starts.append(clamped)
        if clamped >= last:
            break
        start += stride
    return [range(s, s + length) for s in starts]


def context_windows(
    num_frames: int, length: int, overlap: int, schedule: Schedule = "static", step: int = 0
) -> list[range]:
    """The windows for one denoising step."""
    if schedule == "static":
        return static_windows(num_frames, length, overlap)
    if schedule == "shifting":
        return shifting_windows(num_frames, length, overlap, step)
    raise ValueError(f"unknown context schedule '{schedule}'")


def window_weights(length: int, fuse: Fuse = "pyramid") -> torch.Tensor:
    """Raw weights inside one window: pyramid trusts a window's middle more than its edges."""
    if fuse == "flat":
        return torch.ones(length, dtype=torch.float64)
    if fuse == "pyramid":
        return torch.tensor([min(i + 1, length - i) for i in range(length)], dtype=torch.float64)
    raise ValueError(f"unknown fuse weighting '{fuse}'")


def fusion_weights(
    windows: list[range], num_frames: int, fuse: Fuse = "pyramid"
) -> list[torch.Tensor]:
    """Per window, each frame's share of the fused prediction; shares sum to one per frame."""
    raw = [window_weights(len(w), fuse) for w in windows]
    total = torch.zeros(num_frames, dtype=torch.float64)
    for window, weights in zip(windows, raw, strict=True):
        total[window.start : window.stop] += weights
    if bool((total == 0).any()):
        missing = torch.nonzero(total == 0).flatten().tolist()
        raise ValueError(f"windows leave frames {missing[:8]} uncovered")
    return [
        (weights / total[window.start : window.stop]).float()
        for window, weights in zip(windows, raw, strict=True)
    ]

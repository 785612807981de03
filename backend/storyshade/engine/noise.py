"""Initial noise that belongs to frames, not to shots.

Frame i's noise comes from (seed, i) alone, so lengthening a shot (or rendering part of it)
keeps the noise, and thus the look, of the frames already in it. One randn over the whole
shot, as stock diffusers draws it, reshuffles every frame whenever the length changes.
"""

from __future__ import annotations

import numpy as np
import torch


def _seed(*parts: int) -> int:
    """A well-mixed 63-bit generator seed from integers (nearby inputs give unrelated seeds)."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31 | int(state[1]) >> 1) & (2**63 - 1)


def frame_noise(seed: int, index: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normal noise for one frame, float32 on the CPU (the same on every device)."""
    generator = torch.Generator("cpu").manual_seed(_seed(seed, index))
    return torch.randn(shape, generator=generator, dtype=torch.float32)


_SHUFFLE = 0x5F5E_1001  # domain tag: shuffle orders never collide with frame seeds
_STEP = 0x5F5E_1002  # domain tag: per-step sampler noise
_HIRES = 0x5F5E_1003  # domain tag: the hires pass's noise


def hires_seed(seed: int) -> int:
    """The seed of a hires second pass: its noise is unrelated to the first pass's."""
    return _seed(seed, _HIRES) % 2**32


def step_generators(seed: int, num_frames: int) -> list[torch.Generator]:
    """One CPU generator per frame for the noise stochastic samplers add at every step.

    Each generator is drawn from once per step, one frame's worth, so frame k's step noise
    depends only on (seed, k, step): a longer shot, or a re-shaded frame range, leaves the
    other frames' per-step noise as it was (one generator for the shot would not).
    """
    return [torch.Generator("cpu").manual_seed(_seed(seed, _STEP, k)) for k in range(num_frames)]


def free_noise_sources(seed: int, num_frames: int, length: int, stride: int) -> list[int]:
    """For each frame, the frame whose fresh noise it uses under FreeNoise rescheduling.

    FreeNoise (Qiu et al. 2023; diffusers' "shuffle_context") gives frames past the first
    window a shuffled copy of earlier noise, `stride` frames at a time, so distant windows
    start from correlated noise and the shot keeps one look. Each block's shuffle is seeded by
    (seed, block start), which keeps the mapping of earlier frames fixed as frames are added.
    """
    sources = list(range(num_frames))
    for start in range(length, num_frames, stride):
        origin = start - length
        generator = torch.Generator("cpu").manual_seed(_seed(seed, _SHUFFLE, start))
        order = torch.randperm(stride, generator=generator).tolist()
        for k in range(min(stride, num_frames - start)):
            sources[start + k] = sources[origin + order[k]]
    return sources


def initial_noise(
    seed: int,
    num_frames: int,
    frame_shape: tuple[int, int, int],
    *,
    free_noise: bool = False,
    length: int = 16,
    stride: int = 12,
) -> torch.Tensor:
    """(1, C, F, h, w) float32 CPU noise, frame i from (seed, i) or FreeNoise's reschedule."""
    sources = (
        free_noise_sources(seed, num_frames, length, stride)
        if free_noise
        else list(range(num_frames))
    )
    cache: dict[int, torch.Tensor] = {}
    frames = []
    for src in sources:
        if src not in cache:
            cache[src] = frame_noise(seed, src, frame_shape)
        frames.append(cache[src])
    return torch.stack(frames, dim=1).unsqueeze(0)

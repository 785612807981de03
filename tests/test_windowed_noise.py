"""Per-step sampler noise belongs to frames: frames 1-16 move the same in a 16- and a 64-frame shot.

Ancestral samplers (euler_a) add fresh noise at every step. Drawn from one generator for the
whole shot, that noise reshuffles whenever the shot's length changes; drawn per frame, frame
k's noise depends only on (seed, k, step), so re-shading a longer (or partial) range keeps
the untouched frames' trajectories.
"""

from __future__ import annotations

import pytest
import torch
from storyshade.engine.noise import step_generators
from storyshade.engine.sampling import WindowedSampler
from storyshade.engine.windowed import encode_text, shot_noise
from storyshade.models.loader import ModelCache, model_key
from storyshade.progress import Reporter
from test_windowed import SIZE, controls_for, tiny_settings


@pytest.fixture(scope="module")
def cache() -> ModelCache:
    return ModelCache(size=1)


def latents_for(pipe, settings, frames: int) -> torch.Tensor:
    controls = controls_for(frames)
    sampler = WindowedSampler(pipe, settings, Reporter())
    noise = shot_noise(settings, frames, (4, SIZE // 2, SIZE // 2))
    with torch.inference_mode():
        text = encode_text(pipe, settings)
        frames_ = [controls.frames[r] for r in ("depth", "normal")]
        return sampler.denoise(noise, text, frames_, [0.8, 0.6])


def test_first_window_moves_identically_in_a_16_and_a_64_frame_shot(tiny_models, cache):
    settings = tiny_settings(
        scheduler="euler_a", context_length=16, context_overlap=0, guidance_scale=1.0, steps=3
    )
    pipe = cache.get(model_key([tiny_models], settings))
    short = latents_for(pipe, settings, 16)
    long = latents_for(pipe, settings, 64)  # windows 0-15, 16-31, 32-47, 48-63
    assert torch.equal(short, long[:, :, :16])

    # The step noise is really there: the deterministic Euler sampler ends elsewhere.
    plain = settings.model_copy(update={"scheduler": "euler"})
    euler = latents_for(cache.get(model_key([tiny_models], plain)), plain, 16)
    assert (euler - short).abs().max() > 1e-2


def test_step_noise_of_a_frame_depends_on_seed_and_frame_only():
    a = [torch.randn(3, generator=g) for g in step_generators(5, 4)]
    b = [torch.randn(3, generator=g) for g in step_generators(5, 9)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=False))
    c = [torch.randn(3, generator=g) for g in step_generators(6, 4)]
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[0], a[1])

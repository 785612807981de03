"""motion_scale in both engines, and the stock engine's frame limit / FreeNoise, on tiny models.

The ends are tested exactly: motion_scale 0 is the per-frame image model (checked against
diffusers' StableDiffusionControlNetPipeline with the checkpoint's own 2D UNet), 1 leaves the
motion modules untouched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from storyshade.engine.animatediff import StockAnimateDiffEngine
from storyshade.engine.motion import motion_modules, scale_motion
from storyshade.engine.pipeline_edits import edited
from storyshade.engine.sampling import WindowedSampler
from storyshade.engine.windowed import encode_text, shot_noise
from storyshade.errors import StoryShadeError
from storyshade.models.loader import ModelCache, model_key
from storyshade.models.tiny import TINY_NAMES
from storyshade.progress import Reporter
from storyshade.settings import Settings
from test_windowed import SIZE, controls_for, tiny_settings

FRAMES = 6


@pytest.fixture(scope="module")
def cache() -> ModelCache:
    return ModelCache(size=2)


def windowed_latents(pipe, settings: Settings, controls, noise) -> torch.Tensor:
    roles = list(settings.controls)
    sampler = WindowedSampler(pipe, settings, Reporter())
    with torch.inference_mode():
        text = encode_text(pipe, settings)
        scales = [settings.controls[r].scale for r in roles]
        return sampler.denoise(noise, text, [controls.frames[r] for r in roles], scales)


def per_frame_latents(models: Path, pipe, settings: Settings, controls, noise) -> torch.Tensor:
    """Each frame alone through diffusers' image ControlNet pipeline and the 2D UNet."""
    from diffusers import StableDiffusionControlNetPipeline, UNet2DConditionModel

    unet2d = UNet2DConditionModel.from_pretrained(
        models / "checkpoints" / TINY_NAMES["checkpoint"], subfolder="unet"
    )
    image_pipe = StableDiffusionControlNetPipeline(
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        unet=unet2d,
        controlnet=pipe.controlnet,
        scheduler=type(pipe.scheduler).from_config(pipe.scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    image_pipe.set_progress_bar_config(disable=True)
    roles = list(settings.controls)
    images = [  # one (F, 3, H, W) batch in [0, 1] per ControlNet
        torch.from_numpy(np.stack(controls.frames[r])).permute(0, 3, 1, 2).float() / 255
        for r in roles
    ]
    n = noise.shape[2]
    out = image_pipe(
        prompt=[settings.prompt] * n,
        negative_prompt=[settings.negative_prompt] * n,
        image=images,
        controlnet_conditioning_scale=[settings.controls[r].scale for r in roles],
        width=settings.width,
        height=settings.height,
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance_scale,
        latents=noise[0].permute(1, 0, 2, 3).contiguous(),
        output_type="latent",
    ).images
    return out.permute(1, 0, 2, 3).unsqueeze(0)  # (1, C, F, h, w) like the video latents


def test_motion_scale_zero_is_the_per_frame_image_model(tiny_models, cache):
    settings = tiny_settings(motion_scale=0.0)
    controls = controls_for(FRAMES)
    pipe = cache.get(model_key([tiny_models], settings))
    noise = shot_noise(settings, FRAMES, (4, SIZE // 2, SIZE // 2))

    zero = windowed_latents(pipe, settings, controls, noise)
    reference = per_frame_latents(tiny_models, pipe, settings, controls, noise)
    # Two kernels (3D vs 2D UNet) agree to ~1e-6 per call; the random tiny UNet has a large
    # gain (latents reach ~40 after two CFG steps), so compare relative to that magnitude.
    scale = reference.abs().max().item()
    torch.testing.assert_close(zero, reference, atol=1e-5 * scale, rtol=0)

    full = windowed_latents(pipe, tiny_settings(), controls, noise)
    assert (full - zero).abs().max() > 0.05 * scale, "the tiny motion modules do mix frames"


def test_motion_scale_one_is_untouched_and_half_is_in_between(tiny_models, cache):
    settings = tiny_settings()
    controls = controls_for(FRAMES)
    pipe = cache.get(model_key([tiny_models], settings))
    noise = shot_noise(settings, FRAMES, (4, SIZE // 2, SIZE // 2))
    plain = windowed_latents(pipe, settings, controls, noise)  # motion_scale 1.0, the default

    with edited() as edits:
        assert scale_motion(edits, pipe.unet, 1.0) == 0
    with edited() as edits:
        assert scale_motion(edits, pipe.unet, 0.5) == len(motion_modules(pipe.unet)) > 0
    assert all("forward" not in m.__dict__ for m in motion_modules(pipe.unet)), "restored"
    again = windowed_latents(pipe, settings, controls, noise)
    assert torch.equal(plain, again), "scaling once leaves the cached pipeline as it was"

    half = windowed_latents(pipe, tiny_settings(motion_scale=0.5), controls, noise)
    zero = windowed_latents(pipe, tiny_settings(motion_scale=0.0), controls, noise)
    d_full, d_zero = (half - plain).abs().max(), (half - zero).abs().max()
    assert d_full > 1e-4 and d_zero > 1e-4


def test_scaled_motion_module_blends_its_residual(tiny_models, cache):
    pipe = cache.get(model_key([tiny_models], tiny_settings()))
    module = motion_modules(pipe.unet)[0]
    channels = module.proj_in.in_features
    x = torch.randn(2 * 4, channels, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        full = module(x, num_frames=4)
        with edited() as edits:
            scale_motion(edits, pipe.unet, 0.25)
            quarter = module(x, num_frames=4)
        with edited() as edits:
            scale_motion(edits, pipe.unet, 0.0)
            none = module(x, num_frames=4)
    torch.testing.assert_close(quarter, x + 0.25 * (full - x))
    assert torch.equal(none, x)


def test_stock_engine_applies_motion_scale(tiny_models, cache):
    """Stock at 0 matches the windowed engine at 0 (one window), and differs from stock at 1."""
    controls = controls_for(FRAMES)
    stock = StockAnimateDiffEngine([tiny_models], cache)
    settings = tiny_settings(engine="animatediff-stock", motion_scale=0.0)
    stock_zero = np.stack([f for _, f in stock.render(controls, settings, Reporter())])
    stock_one = np.stack(
        [
            f
            for _, f in stock.render(
                controls, tiny_settings(engine="animatediff-stock"), Reporter()
            )
        ]
    )
    assert np.abs(stock_zero.astype(int) - stock_one.astype(int)).max() > 2
    pipe = cache.get(model_key([tiny_models], settings))
    assert all("forward" not in m.__dict__ for m in motion_modules(pipe.unet))
    # The stock pipeline draws one randn for the shot; give the windowed engine the same.
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    noise = torch.randn((1, 4, FRAMES, SIZE // 2, SIZE // 2), generator=generator)
    ours = windowed_latents(pipe, tiny_settings(motion_scale=0.0), controls, noise)
    decoded = WindowedSampler(pipe, settings, Reporter()).decode(ours, 8)
    frames = np.stack([f for _, f in decoded])
    assert np.abs(frames.astype(int) - stock_zero.astype(int)).max() <= 1


def test_stock_engine_refuses_long_shots_before_loading(tiny_models, tmp_path):
    """Through the one render path (render.py checks the job before any work)."""
    from conftest import write_synthetic_bundle
    from storyshade.bundle import load_bundle
    from storyshade.render import render_bundle

    fresh = ModelCache(size=1)
    settings = tiny_settings(engine="animatediff-stock")
    bundle = load_bundle(write_synthetic_bundle(tmp_path / "b", frames=33, size=(32, 24)))
    with pytest.raises(StoryShadeError) as err:
        render_bundle(bundle, settings, tmp_path / "out", [tiny_models], fresh)
    assert fresh.loads == 0, "refused before any weights load"
    assert "33 frames" in err.value.problem and "at most 32" in err.value.problem
    assert "free_noise" in err.value.fix and err.value.field == "settings.engine"


def test_stock_engine_runs_long_shots_with_free_noise(tiny_models, cache):
    settings = tiny_settings(
        engine="animatediff-stock",
        free_noise=True,
        context_length=16,
        context_overlap=4,
        steps=1,
        guidance_scale=1.0,
    )
    frames = list(
        StockAnimateDiffEngine([tiny_models], cache).render(controls_for(36), settings, Reporter())
    )
    assert [i for i, _ in frames] == list(range(36))
    pipe = cache.get(model_key([tiny_models], settings))
    assert not pipe.free_noise_enabled, "the cached pipeline is left without FreeNoise"
    from diffusers.models.attention import FreeNoiseTransformerBlock

    assert not any(isinstance(m, FreeNoiseTransformerBlock) for m in pipe.unet.modules())


def test_submit_refuses_a_long_stock_shot_with_a_400(server, tmp_path):
    import httpx
    from test_server_helpers import bundle_zip, post_job

    data = bundle_zip(tmp_path / "b", frames=33)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        resp = post_job(client, data, {"preset": "tiny", "steps": 1, "engine": "animatediff-stock"})
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert "32" in resp.text and "free_noise" in resp.text
    assert "settings.engine" in str(body)

"""The windowed engine on the tiny real models: exactness, events, cancel, OOM fallback."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from oom_inject import fail_like_a_full_gpu
from storyshade.cancel import CancelToken
from storyshade.controls import ControlSet
from storyshade.engine import get_engine
from storyshade.engine.animatediff import StockAnimateDiffEngine
from storyshade.engine.sampling import WindowedSampler
from storyshade.engine.windowed import (
    WindowedAnimateDiffEngine,
    encode_text,
    shot_noise,
)
from storyshade.errors import Cancelled, StoryShadeError
from storyshade.models.loader import ModelCache, model_key
from storyshade.models.tiny import TINY_NAMES
from storyshade.progress import Reporter
from storyshade.settings import Settings, validate_settings

SIZE = 64


@pytest.fixture(scope="module")
def cache() -> ModelCache:
    return ModelCache(size=2)


def tiny_settings(roles: tuple[str, ...] = ("depth", "normal"), **overrides) -> Settings:
    values = {
        "checkpoint": TINY_NAMES["checkpoint"],
        "motion_adapter": TINY_NAMES["motion_adapter"],
        "controls": {
            r: {"model": TINY_NAMES[r], "scale": s} for r, s in zip(roles, (0.8, 0.6), strict=False)
        },
        "prompt": "a lighthouse at dusk",
        "negative_prompt": "blurry",
        "width": SIZE,
        "height": SIZE,
        "steps": 2,
        "seed": 11,
        "preview_every": 0,
        **overrides,
    }
    return Settings(**values)


def controls_for(frames: int, roles: tuple[str, ...] = ("depth", "normal")) -> ControlSet:
    rng = np.random.default_rng(5)
    data = {
        r: [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(frames)]
        for r in roles
    }
    return ControlSet(frames=data, frame_numbers=list(range(1, frames + 1)))


def render(models: Path, cache: ModelCache, controls, settings: Settings, **kw):
    """`controls`: a ControlSet, or control images with their looks (test_looks_engine's
    Looked)."""
    reporter = kw.pop("reporter", None) or Reporter()
    looks = getattr(controls, "looks", ())
    controls = getattr(controls, "controls", controls)
    engine = WindowedAnimateDiffEngine([models], cache)
    out = list(
        engine.render(controls, settings, reporter, looks=looks, cancel=kw.pop("cancel", None))
    )
    assert [i for i, _ in out] == list(range(len(controls.frame_numbers)))
    return np.stack([f for _, f in out])


def stock(pipe, controls: ControlSet, settings: Settings, latents, output_type: str = "np"):
    """The stock pipeline from the same per-frame noise (it would draw one randn otherwise)."""
    from PIL import Image

    roles = list(settings.controls)
    video = [[Image.fromarray(f) for f in controls.frames[r]] for r in roles]
    scales = [settings.controls[r].scale for r in roles]
    return pipe(
        prompt=settings.prompt,
        negative_prompt=settings.negative_prompt,
        num_frames=len(controls.frame_numbers),
        width=settings.width,
        height=settings.height,
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance_scale,
        conditioning_frames=video if len(roles) > 1 else video[0],
        controlnet_conditioning_scale=scales if len(roles) > 1 else scales[0],
        latents=latents,
        generator=torch.Generator("cpu").manual_seed(settings.seed),
        decode_chunk_size=settings.decode_chunk_size,
        output_type=output_type,
    ).frames


@pytest.mark.parametrize("roles", [("depth", "normal"), ("depth",)])
def test_one_window_equals_the_stock_pipeline(tiny_models, cache, roles):
    """With the window covering the shot, the loop is the stock loop, to float tolerance."""
    settings = tiny_settings(roles, context_length=16)
    controls = controls_for(6, roles)
    pipe = cache.get(model_key([tiny_models], settings))
    noise = shot_noise(settings, 6, (4, SIZE // 2, SIZE // 2))  # the tiny VAE scales by 2

    ours = render(tiny_models, cache, controls, settings)
    reference = np.round(np.clip(stock(pipe, controls, settings, noise)[0], 0, 1) * 255)
    assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 1

    sampler = WindowedSampler(pipe, settings, Reporter())
    with torch.inference_mode():
        text = encode_text(pipe, settings)
        scales = [settings.controls[r].scale for r in roles]
        latents = sampler.denoise(noise, text, [controls.frames[r] for r in roles], scales)
    expected = stock(pipe, controls, settings, noise, output_type="latent")
    torch.testing.assert_close(latents, expected, atol=1e-5, rtol=1e-5)


def test_long_shot_streams_window_events_and_previews(tiny_models, cache):
    events: list[dict] = []
    settings = tiny_settings(
        steps=3,
        context_length=8,
        context_overlap=2,
        context_schedule="shifting",
        preview_every=1,
        guidance_scale=1.0,
        decode_chunk_size=5,
    )
    frames = render(
        tiny_models, cache, controls_for(20), settings, reporter=Reporter(events.append)
    )
    assert frames.shape == (20, SIZE, SIZE, 3) and frames.dtype == np.uint8

    denoising = [e for e in events if e.get("stage") == "denoising"]
    assert denoising[-1]["done"] == denoising[-1]["total"] == len(denoising)
    by_step = {s: [e for e in denoising if e["step"] == s] for s in (1, 2, 3)}
    assert all(len(v) == v[0]["windows"] >= 3 for v in by_step.values())
    for step_events in by_step.values():
        covered = set()
        for e in step_events:
            covered.update(range(*e["frames"]))
        assert covered == set(range(20))
    assert len({tuple(tuple(e["frames"]) for e in v) for v in by_step.values()}) > 1  # shifting

    previews = [e for e in events if e["type"] == "preview"]
    assert [p["step"] for p in previews] == [1, 2]  # the last step's frames are the output
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(previews[0]["png_base64"])))
    assert image.size == (len(previews[0]["frames"]) * SIZE // 2, SIZE // 2)
    decoding = [e for e in events if e.get("stage") == "decoding"]
    assert [e["done"] for e in decoding] == [5, 10, 15, 20]


def test_cancel_is_honoured_between_windows(tiny_models, cache):
    settings = tiny_settings(context_length=8, context_overlap=2)
    pipe = cache.get(model_key([tiny_models], settings))
    cancel = CancelToken()
    calls: list[int] = []

    def listener(event: dict) -> None:
        if event.get("stage") == "denoising":
            cancel.cancel()  # as the server does when the user presses Cancel

    handle = pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    try:
        with pytest.raises(Cancelled):
            render(
                tiny_models,
                cache,
                controls_for(20),
                settings,
                reporter=Reporter(listener),
                cancel=cancel,
            )
    finally:
        handle.remove()
    assert len(calls) == 1, "the window in flight finishes; no further window starts"


def test_injected_oom_retries_the_window_with_smaller_chunks(tiny_models, cache):
    settings = tiny_settings(context_length=8, context_overlap=2, decode_chunk_size=4)
    controls = controls_for(12)
    clean = render(tiny_models, cache, controls, settings)

    pipe = cache.get(model_key([tiny_models], settings))
    events: list[dict] = []
    unet_calls: list[int] = []
    vae_calls: list[int] = []
    handles = [
        fail_like_a_full_gpu(pipe.unet, unet_calls),
        fail_like_a_full_gpu(pipe.vae.decoder, vae_calls),
    ]
    try:
        frames = render(tiny_models, cache, controls, settings, reporter=Reporter(events.append))
    finally:
        for h in handles:
            h.remove()
    assert np.abs(frames.astype(int) - clean.astype(int)).max() <= 1

    notes = [e for e in events if e.get("event") == "oom_fallback"]
    assert [n["plan"] for n in notes] == ["smaller chunks", "decode chunk 2"]
    assert notes[0]["where"] == "step 1 window 1" and "retrying" in notes[0]["message"]
    plans = [e["plan"] for e in events if e.get("stage") == "denoising"]
    assert set(plans) == {"smaller chunks"}, "later windows stay on the rung that worked"
    assert len(unet_calls) == 1 + 2 * len(plans), "the retried window runs CFG halves apart"


def test_oom_on_every_rung_offloads_then_fails(tiny_models, cache):
    settings = tiny_settings(steps=1)
    pipe = cache.get(model_key([tiny_models], settings))
    events: list[dict] = []
    calls: list[int] = []
    handle = fail_like_a_full_gpu(pipe.unet, calls, times=100)
    try:
        with pytest.raises(torch.OutOfMemoryError):
            render(tiny_models, cache, controls_for(4), settings, reporter=Reporter(events.append))
    finally:
        handle.remove()
    notes = [e["plan"] for e in events if e.get("event") == "oom_fallback"]
    assert notes == ["smaller chunks", "smallest chunks", "offload"]
    assert pipe.unet.device.type == pipe.controlnet.device.type == "cpu"


def test_slicing_does_not_change_the_frames(tiny_models, cache):
    settings = tiny_settings(context_length=4, context_overlap=1, steps=1)
    controls = controls_for(6)
    plain = render(tiny_models, cache, controls, settings)
    sliced_settings = settings.model_copy(update={"forward_chunk": 100, "attention_slicing": True})
    sliced = render(tiny_models, cache, controls, sliced_settings)
    assert np.abs(plain.astype(int) - sliced.astype(int)).max() <= 1


def test_free_noise_and_flat_fusion_render(tiny_models, cache):
    settings = tiny_settings(
        steps=1, context_length=8, context_overlap=2, free_noise=True, context_fuse="flat"
    )
    frames = render(tiny_models, cache, controls_for(18), settings)
    assert frames.shape == (18, SIZE, SIZE, 3)


def test_window_settings_are_checked_before_any_work(tiny_models, cache):
    engine = WindowedAnimateDiffEngine([tiny_models], cache)
    with pytest.raises(StoryShadeError) as err:  # where settings are made, before any job
        validate_settings({**tiny_settings().model_dump(), "context_overlap": 16})
    assert err.value.field == "settings.context_overlap"
    with pytest.raises(StoryShadeError) as err:
        list(engine.render(controls_for(4), tiny_settings(context_length=48), Reporter()))
    assert err.value.field == "settings.context_length" and "32" in err.value.problem


def test_engine_names(tiny_models, cache):
    assert isinstance(get_engine("animatediff", [tiny_models], cache), WindowedAnimateDiffEngine)
    assert isinstance(get_engine("animatediff-stock", [tiny_models], cache), StockAnimateDiffEngine)
    assert Settings(engine="animatediff-stock").engine == "animatediff-stock"


def test_half_precision_weights_keep_float32_latents(tiny_models, cache):
    settings = tiny_settings(
        steps=1, guidance_scale=1.0, dtype="bfloat16", context_length=4, context_overlap=1
    )
    frames = render(tiny_models, cache, controls_for(6), settings)
    assert frames.shape == (6, SIZE, SIZE, 3) and frames.std() > 0


@pytest.mark.parametrize("scheduler", ["euler_a", "dpmpp_2m"])
def test_other_samplers_step_the_fused_prediction(tiny_models, cache, scheduler):
    events: list[dict] = []
    settings = tiny_settings(
        scheduler=scheduler,
        guidance_scale=1.0,
        context_length=4,
        context_overlap=1,
        preview_every=1,
    )
    frames = render(tiny_models, cache, controls_for(5), settings, reporter=Reporter(events.append))
    assert frames.shape == (5, SIZE, SIZE, 3) and np.isfinite(frames).all()
    assert [e["step"] for e in events if e["type"] == "preview"] == [1]

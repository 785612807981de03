"""The Wan VACE engine on the tiny real Wan set: loading through the loader real checkpoints
use, exactness against diffusers' WanVACEPipeline for a shot in one window, windows over
latent frames, frame counts and sizes the VAE does not take directly, per-frame noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from oom_inject import fail_like_a_full_gpu
from storyshade.cancel import CancelToken
from storyshade.controls import ControlSet
from storyshade.engine.wan_stock import StockWanVaceEngine, stock_call
from storyshade.engine.wan_vace import WanVaceEngine, clip_noise
from storyshade.engine.wan_video import Clip
from storyshade.engines import Shot, check_job
from storyshade.errors import StoryShadeError
from storyshade.models.loader import ModelCache, model_key
from storyshade.models.tiny_wan import TINY_WAN
from storyshade.progress import Reporter
from storyshade.settings import Settings

SIZE = 64


@pytest.fixture(scope="module")
def cache() -> ModelCache:
    return ModelCache(size=1)


def wan_settings(**overrides) -> Settings:
    values = {
        "engine": "wan-vace",
        "checkpoint": TINY_WAN,
        "controls": {
            "depth": {"model": "vace", "scale": 0.8},
            "normal": {"model": "vace", "scale": 0.0},
        },
        "prompt": "a lighthouse at dusk",
        "negative_prompt": "blurry",
        "width": SIZE,
        "height": SIZE,
        "steps": 2,
        "guidance_scale": 5.0,
        "seed": 11,
        "preview_every": 0,
        "wan_window": 9,
        "wan_overlap": 4,
        **overrides,
    }
    return Settings(**values)


def wan_controls(frames: int, width: int = SIZE, height: int = SIZE) -> ControlSet:
    rng = np.random.default_rng(5)
    data = {
        r: [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(frames)]
        for r in ("depth", "normal")
    }
    return ControlSet(frames=data, frame_numbers=list(range(1, frames + 1)))


def render(models: Path, cache: ModelCache, controls, settings: Settings, **kw):
    """`controls`: a ControlSet, or control images with their looks (test_looks_engine's
    Looked)."""
    kw.setdefault("looks", getattr(controls, "looks", ()))
    controls = getattr(controls, "controls", controls)
    engine = WanVaceEngine([models], cache)
    out = list(engine.render(controls, settings, kw.pop("reporter", None) or Reporter(), **kw))
    return engine, out


def test_the_tiny_set_loads_as_a_real_checkpoint(tiny_models, cache):
    from diffusers import WanVACEPipeline, WanVACETransformer3DModel

    folder = tiny_models / "checkpoints" / TINY_WAN
    for part in (
        "model_index.json",
        "transformer",
        "vae",
        "text_encoder",
        "tokenizer",
        "scheduler",
    ):
        assert (folder / part).exists(), part
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size < 2 << 20  # tiny: the suite stays fast
    pipe = cache.get(model_key([tiny_models], wan_settings()))
    assert isinstance(pipe, WanVACEPipeline)
    assert isinstance(pipe.transformer, WanVACETransformer3DModel)
    assert pipe.text_encoder.device.type == "cpu"
    assert len(pipe.tokenizer("a red lighthouse").input_ids) > 3  # its own tokenizer


def test_one_window_equals_the_stock_pipeline(tiny_models, cache):
    """A 9-frame shot in one 9-frame window: our loop is WanVACEPipeline's, exactly."""
    settings = wan_settings(steps=3)
    controls = wan_controls(9)
    _, out = render(tiny_models, cache, controls, settings)
    ours = np.stack([f for _, f in out])
    pipe = cache.get(model_key([tiny_models], settings))
    noise = clip_noise(settings.seed, Clip(0, 9), 0, (16, SIZE // 8, SIZE // 8))
    frames = stock_call(pipe, controls, settings, latents=noise, output_type="np").frames[0]
    reference = np.round(np.clip(frames, 0, 1) * 255).astype(np.uint8)
    assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 1

    expected = stock_call(pipe, controls, settings, latents=noise, output_type="latent").frames
    engine = WanVaceEngine([tiny_models], cache)
    _, latents, _, _ = engine.denoise(controls, settings, Reporter(), {}, CancelToken())
    assert engine.sampler.calls == 3 * 2  # one call per step per CFG branch
    torch.testing.assert_close(latents, expected, atol=1e-5, rtol=1e-5)


def test_windows_over_latent_frames_any_length_and_size(tiny_models, cache):
    """23 frames (not 4k+1) at 72x88 (not multiples of 16) in 9-frame windows: every frame
    comes back once, at the size asked, and every step covers every latent frame."""
    events: list[dict] = []
    settings = wan_settings(width=72, height=88, preview_every=1, steps=3)
    controls = wan_controls(23, 72, 88)
    _, out = render(tiny_models, cache, controls, settings, reporter=Reporter(events.append))
    assert [i for i, _ in out] == list(range(23))
    assert all(f.shape == (88, 72, 3) and f.dtype == np.uint8 for _, f in out)
    denoising = [e for e in events if e.get("stage") == "denoising"]
    latents = Clip(0, 23).latents  # 25 padded frames: 7 latent frames
    assert latents == 7
    for step in (1, 2, 3):
        covered: set[int] = set()
        for e in (e for e in denoising if e["step"] == step):
            covered.update(range(*e["frames"]))
        assert covered == set(range(latents))
    assert denoising[-1]["windows"] >= 2
    previews = [e for e in events if e["type"] == "preview"]
    assert [p["step"] for p in previews] == [1, 2]
    assert all(0 <= f < 25 for p in previews for f in p["frames"])


def test_frame_noise_depends_on_seed_and_frame_only():
    short, long = Clip(0, 9), Clip(0, 33)
    a = clip_noise(7, short, 0, (16, 4, 4))
    b = clip_noise(7, long, 0, (16, 4, 4))
    assert torch.equal(a, b[:, :, : short.latents])
    later = clip_noise(7, Clip(8, 9), 0, (16, 4, 4))  # a clip starting at frame 8
    assert torch.equal(later[:, :, 1:], b[:, :, 3:5])  # latents ending at frames 12, 16
    assert not torch.equal(clip_noise(8, short, 0, (16, 4, 4)), a)


def test_the_stock_engine_renders_a_shot(tiny_models, cache):
    settings = wan_settings(engine="wan-vace-stock")
    out = list(
        StockWanVaceEngine([tiny_models], cache).render(wan_controls(7), settings, Reporter())
    )
    assert [i for i, _ in out] == list(range(7))


def test_the_stock_engine_refuses_what_it_cannot_do(tiny_models, cache):
    both = {"depth": {"model": "x", "scale": 0.8}, "normal": {"model": "x", "scale": 0.5}}
    settings = wan_settings(engine="wan-vace-stock", controls=both, wan_window=81, wan_overlap=16)
    with pytest.raises(StoryShadeError, match="one control video") as err:
        check_job(settings, [tiny_models], Shot(5))
    assert err.value.field == "settings.controls"


# -- out of memory: the ladder (engine/wan_oom.py) ----------------------------------------------
def test_injected_oom_retries_the_window_on_the_next_rung(tiny_models, cache):
    settings = wan_settings()
    controls = wan_controls(23)
    _, clean = render(tiny_models, cache, controls, settings)
    pipe = cache.get(model_key([tiny_models], settings))
    events: list[dict] = []
    handle = fail_like_a_full_gpu(pipe.transformer.blocks[0], [], times=1)
    try:
        _, out = render(tiny_models, cache, controls, settings, reporter=Reporter(events.append))
    finally:
        handle.remove()
    ours, theirs = (np.stack([f for _, f in o]).astype(int) for o in (out, clean))
    assert np.abs(ours - theirs).max() <= 1
    notes = [e for e in events if e.get("event") == "oom_fallback"]
    assert [(n["plan"], n["where"]) for n in notes] == [("VAE off the device", "step 1 window 1")]
    plans = {e["plan"] for e in events if e.get("stage") == "denoising"}
    assert plans == {"VAE off the device"}, "later windows stay on the rung that worked"


def test_oom_on_every_rung_fails_the_job_and_undoes_the_rungs(tiny_models, cache):
    settings = wan_settings(steps=1)
    pipe = cache.get(model_key([tiny_models], settings))
    events: list[dict] = []
    handle = fail_like_a_full_gpu(pipe.transformer.blocks[0], [], times=100)
    try:
        with pytest.raises(torch.OutOfMemoryError):
            render(tiny_models, cache, wan_controls(9), settings, reporter=Reporter(events.append))
    finally:
        handle.remove()
    notes = [e["plan"] for e in events if e.get("event") == "oom_fallback"]
    assert notes == ["VAE off the device", "smaller chunks", "smallest chunks"]
    blocks = [*pipe.transformer.blocks, *pipe.transformer.vace_blocks]
    assert not any("forward" in b.ffn.__dict__ for b in blocks), "the chunked calls are undone"


def test_chunked_feed_forward_gives_the_same_numbers(tiny_models, cache):
    """The rungs' chunks are far larger than the tiny model's tokens, so this runs the
    feed-forward in 5-token chunks: the transformer's output is the same."""
    from storyshade.engine.pipeline_edits import edited
    from storyshade.engine.wan_oom import WanPlan, WanRungs
    from storyshade.engine.wan_sampling import Hints, install_hints, vace_forward

    pipe = cache.get(model_key([tiny_models], wan_settings()))
    model = pipe.transformer
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, model.config.in_channels, 3, 8, 8, generator=g)
    control = torch.randn(1, model.config.vace_in_channels, 3, 8, 8, generator=g)
    text = torch.randn(1, 12, model.config.text_dim, generator=g)
    scale = torch.ones(len(model.config.vace_layers))
    t = torch.tensor([500.0])

    def forward(plan: WanPlan | None) -> torch.Tensor:
        hints = Hints()
        with torch.inference_mode(), edited() as edits:
            install_hints(edits, model, hints)
            if plan is not None:
                WanRungs(edits, model, pipe.vae).apply(plan)
            return vace_forward(model, x, t, text, [(control, scale)], hints)

    calls: list[int] = []
    handle = model.blocks[0].ffn.net[0].register_forward_hook(lambda *_: calls.append(1))
    try:
        whole = forward(None)
        assert len(calls) == 1
        chunked = forward(WanPlan("5 tokens", ff_chunk=5))
    finally:
        handle.remove()
    assert len(calls) == 1 + 10  # 3 x 4 x 4 = 48 tokens: ten calls of 5 or fewer
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)

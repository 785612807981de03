"""Looks, references and colour matching in the Wan VACE engine, on the tiny Wan set.

Looks: a look covering every pixel equals the shot's prompt set to it (over several
windows), a look never visible changes nothing bit for bit, looks cost no extra
transformer call and the shared pipeline gets its processors back. References: VACE's
reference images equal the stock pipeline's for a shot in one window, weight 0 is no
reference. Colour matching: strength 0 is bit for bit off, and it acts between windows."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from storyshade.bundle import Region
from storyshade.engine.base import load_pipeline
from storyshade.engine.wan_regions import WanRegionalProcessor, text_attentions
from storyshade.engine.wan_stock import stock_call
from storyshade.engine.wan_vace import clip_noise
from storyshade.engine.wan_video import REFERENCE_NOISE, Clip
from storyshade.models.loader import ModelCache
from storyshade.progress import Reporter
from test_looks_engine import Looked
from test_wan_engine import SIZE, render, wan_controls, wan_settings

FRAMES = 13  # 4 latent frames: two windows of 3 (9 frames) sharing one
LIGHTHOUSE = "a red lighthouse on a cliff"
LOOK = {"id": 1, "name": "Lighthouse", "prompt": LIGHTHOUSE, "negative": "", "weight": 1.0}
CRATE = {"id": 2, "name": "Crate", "prompt": "a wooden crate", "negative": "plastic"}


@pytest.fixture(scope="module")
def cache() -> ModelCache:
    return ModelCache(size=1)


def with_looks(ids_fn, looks: list[dict]) -> Looked:
    controls = wan_controls(FRAMES)
    controls.regions = [ids_fn(i) for i in range(FRAMES)]
    return Looked(controls, [Region(**look) for look in looks])


def frames(out) -> np.ndarray:
    return np.stack([f for _, f in out])


@pytest.fixture(scope="module")
def plain(tiny_models, cache) -> np.ndarray:
    return frames(render(tiny_models, cache, wan_controls(FRAMES), wan_settings())[1])


def test_a_look_over_every_pixel_equals_that_prompt_for_the_shot(tiny_models, cache):
    """With a style prefix and suffix: the look's text is built inside the style."""
    style = {"prompt_prefix": "ink sketch", "prompt_suffix": "soft light", "negative_prompt": ""}
    everywhere = with_looks(lambda _i: np.ones((SIZE, SIZE), np.uint8), [LOOK])
    looked = frames(
        render(tiny_models, cache, everywhere, wan_settings(prompt="an empty street", **style))[1]
    )
    as_prompt = frames(
        render(tiny_models, cache, wan_controls(FRAMES), wan_settings(prompt=LIGHTHOUSE, **style))[
            1
        ]
    )
    diff = np.abs(looked.astype(int) - as_prompt.astype(int))
    print(f"\n[figures] Wan look over every pixel vs shot prompt: max diff {diff.max()} levels")
    assert diff.max() <= 1


def test_a_look_never_visible_changes_nothing(tiny_models, cache, plain):
    nowhere = with_looks(lambda _i: np.zeros((SIZE, SIZE), np.uint8), [LOOK])
    assert np.array_equal(frames(render(tiny_models, cache, nowhere, wan_settings())[1]), plain)


def left_half(i: int) -> np.ndarray:
    ids = np.zeros((SIZE, SIZE), np.uint8)
    ids[:, : SIZE // 2] = 1
    ids[8:24, 40:56] = 2 if i >= 6 else 0  # a second look enters mid-shot
    return ids


def test_looks_cost_no_extra_call_and_leave_the_pipeline_as_it_was(tiny_models, cache, plain):
    settings = wan_settings()
    _, pipe = load_pipeline([tiny_models], cache, settings, Reporter())
    before = [m.processor for m in text_attentions(pipe.transformer)]
    engine, out = render(tiny_models, cache, with_looks(left_half, [LOOK, CRATE]), settings)
    assert not np.array_equal(frames(out), plain)  # the looks act
    windows = len(engine.sampler.windows(Clip(0, FRAMES).latents, 0))
    assert windows == 2 and engine.sampler.calls == windows * settings.steps * 2
    after = [m.processor for m in text_attentions(pipe.transformer)]
    assert all(a is b for a, b in zip(after, before, strict=True))
    assert not any(isinstance(p, WanRegionalProcessor) for p in after)


@pytest.fixture
def reference(tmp_path) -> str:
    rng = np.random.default_rng(3)
    path = tmp_path / "girl.png"
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(path)
    return str(path)


def test_references_equal_the_stock_pipelines(tiny_models, cache, reference):
    settings = wan_settings(references=[{"image": reference}], steps=2)
    controls = wan_controls(9)
    ours = frames(render(tiny_models, cache, controls, settings)[1])
    _, pipe = load_pipeline([tiny_models], cache, settings, Reporter())
    noise = clip_noise(settings.seed, Clip(0, 9), 1, (16, SIZE // 8, SIZE // 8))
    stock = stock_call(pipe, controls, settings, latents=noise, output_type="np").frames[0]
    stock = np.round(np.clip(stock, 0, 1) * 255).astype(np.uint8)
    assert np.abs(ours.astype(int) - stock.astype(int)).max() <= 1
    none = frames(render(tiny_models, cache, controls, wan_settings(steps=2))[1])
    assert not np.array_equal(ours, none)  # the reference acts
    off = wan_settings(references=[{"image": reference, "weight": 0.0}], steps=2)
    assert np.array_equal(frames(render(tiny_models, cache, controls, off)[1]), none)
    assert REFERENCE_NOISE > 10**9  # reference slots never take a frame's noise


def test_colour_matching_between_windows(tiny_models, cache, plain, reference):
    off = wan_settings(color_match={"strength": 0.0})
    assert np.array_equal(frames(render(tiny_models, cache, wan_controls(FRAMES), off)[1]), plain)
    on = frames(
        render(
            tiny_models, cache, wan_controls(FRAMES), wan_settings(color_match={"strength": 1.0})
        )[1]
    )
    assert not np.array_equal(on, plain)
    image = wan_settings(color_match={"strength": 1.0, "image": reference})
    to_image = frames(render(tiny_models, cache, wan_controls(FRAMES), image)[1])
    assert not np.array_equal(to_image, on)

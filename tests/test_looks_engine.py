"""Per-object looks in the windowed engine on the tiny real models: a look covering every
pixel equals the shot's prompt set to it, a look never visible changes nothing (bit for
bit), looks work across windows with one UNet call per window per step, the shared
pipeline gets its own processors back, and the stock engine refuses looks."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
from storyshade.bundle import Region
from storyshade.controls import ControlSet
from storyshade.engine.cross_attention import CrossAttention
from storyshade.engines import Shot, check_job
from storyshade.errors import StoryShadeError
from storyshade.models.loader import ModelCache
from storyshade.progress import Reporter
from test_windowed import SIZE, controls_for, render, tiny_settings

FRAMES = 6
WINDOWS = {"context_length": 4, "context_overlap": 2}  # three windows over six frames
LIGHTHOUSE = "a red lighthouse on a cliff"


@pytest.fixture(scope="module")
def cache() -> ModelCache:
    return ModelCache(size=2)


class Looked(NamedTuple):
    """Control images with region maps, and the looks (typed, as the engine takes them)."""

    controls: ControlSet
    looks: list[Region]


def with_looks(ids_fn, looks: list[dict], frames: int = FRAMES) -> Looked:
    controls = controls_for(frames)
    controls.regions = [ids_fn(i) for i in range(frames)]
    return Looked(controls, [Region(**look) for look in looks])


def everywhere(_i: int) -> np.ndarray:
    return np.ones((SIZE, SIZE), np.uint8)


def nowhere(_i: int) -> np.ndarray:
    return np.zeros((SIZE, SIZE), np.uint8)


def left_half(i: int) -> np.ndarray:
    ids = np.zeros((SIZE, SIZE), np.uint8)
    ids[:, : SIZE // 2] = 1
    ids[8:24, 40:56] = 2 if i >= 3 else 0  # a second look enters at the fourth frame
    return ids


LOOK = {"id": 1, "name": "Lighthouse", "prompt": LIGHTHOUSE, "negative": "", "weight": 1.0}
CRATE = {"id": 2, "name": "Crate", "prompt": "a wooden crate", "negative": "plastic"}


@pytest.mark.slow
def test_a_look_over_every_pixel_equals_that_prompt_for_the_shot(tiny_models, tmp_path) -> None:
    """With a LoRA and the shifting window schedule: looks compose with both."""
    from storyshade.models.tiny import tiny_unet, write_lora

    root = tmp_path / "models"
    root.mkdir()
    for folder in tiny_models.iterdir():
        (root / folder.name).symlink_to(folder)
    (root / "lora").mkdir(exist_ok=True)
    write_lora(tiny_unet(), root / "lora" / "ink.safetensors", seed=1)
    common = {
        **WINDOWS,
        "context_schedule": "shifting",
        "negative_prompt": "",
        "loras": [{"name": "ink", "weight": 0.8}],
    }
    cache = ModelCache(size=1)
    looked = render(
        root,
        cache,
        with_looks(everywhere, [LOOK]),
        tiny_settings(prompt="an empty street", **common),
    )
    plain = render(root, cache, controls_for(FRAMES), tiny_settings(prompt=LIGHTHOUSE, **common))
    diff = np.abs(looked.astype(int) - plain.astype(int))
    print(f"\n[figures] look over every pixel vs shot prompt: max diff {diff.max()} levels")
    assert diff.max() <= 1


@pytest.fixture(scope="module")
def plain(tiny_models, cache) -> np.ndarray:
    """The shot without looks, at the default test settings."""
    return render(tiny_models, cache, controls_for(FRAMES), tiny_settings(**WINDOWS))


def test_a_look_never_visible_changes_nothing(tiny_models, cache, plain) -> None:
    looked = render(tiny_models, cache, with_looks(nowhere, [LOOK]), tiny_settings(**WINDOWS))
    assert np.array_equal(looked, plain)


def test_looks_act_in_one_unet_call_per_window_per_step(tiny_models, cache, plain) -> None:
    """Two looks (one entering mid-shot) over two windows: the frames change, the UNet runs
    once per window per step as without looks, and the shared pipeline gets its own
    attention processors back."""
    from storyshade.engine.base import load_pipeline
    from storyshade.engine.windows import context_windows

    settings = tiny_settings(**WINDOWS)
    _, pipe = load_pipeline([tiny_models], cache, settings, Reporter())
    before = dict(pipe.unet.attn_processors)
    calls = {"unet": 0}
    original = pipe.unet.forward

    def counting(*args, **kwargs):
        calls["unet"] += 1
        return original(*args, **kwargs)

    pipe.unet.forward = counting
    try:
        looked = render(tiny_models, cache, with_looks(left_half, [LOOK, CRATE]), settings)
    finally:
        del pipe.unet.forward
    assert not np.array_equal(looked, plain)  # the looks act
    windows = len(context_windows(FRAMES, 4, 2, settings.context_schedule, 0))
    assert windows == 2 and calls["unet"] == windows * settings.steps
    after = dict(pipe.unet.attn_processors)
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
    assert not any(isinstance(p, CrossAttention) for p in after.values())


def test_the_stock_engine_refuses_looks(tiny_models, cache) -> None:
    settings = tiny_settings(engine="animatediff-stock")
    with pytest.raises(StoryShadeError, match="cannot shade per-object looks") as err:
        check_job(settings, [tiny_models], Shot(4, looks=(LOOK["name"],)))
    assert err.value.field == "settings.engine"
    check_job(tiny_settings(), [tiny_models], Shot(4, looks=(LOOK["name"],)))

"""Speed and memory levers of the Wan engine on the tiny set: diffusers' step caches run
per window and come off the shared pipeline after the job (the next job is bit for bit
a job without them), compile 'auto' runs eager on the CPU and says so, model offload is
a pipeline of its own that computes the same numbers, and the settings' limits hold."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from storyshade.engine.base import load_pipeline
from storyshade.models.loader import ModelCache
from storyshade.progress import Reporter
from storyshade.settings import Settings
from test_wan_engine import render, wan_controls, wan_settings

FRAMES = 13


@pytest.fixture(scope="module")
def cache() -> ModelCache:
    return ModelCache(size=2)


def frames(out) -> np.ndarray:
    return np.stack([f for _, f in out])


def hooks(module) -> list[str]:
    registry = getattr(module, "_diffusers_hook", None)
    return list(registry.hooks) if registry is not None else []


@pytest.mark.parametrize("cache_kind", ["first_block", "taylorseer"])
def test_step_caches_run_and_leave_no_hook_behind(tiny_models, cache, cache_kind):
    plain_settings = wan_settings(steps=4)
    plain = frames(render(tiny_models, cache, wan_controls(FRAMES), plain_settings)[1])
    cached = wan_settings(
        steps=4, wan_cache=cache_kind, wan_cache_threshold=0.3, wan_cache_interval=2
    )
    out = frames(render(tiny_models, cache, wan_controls(FRAMES), cached)[1])
    assert out.shape == plain.shape
    _, pipe = load_pipeline([tiny_models], cache, plain_settings, Reporter())
    assert not any(hooks(m) for m in pipe.transformer.modules())
    again = frames(render(tiny_models, cache, wan_controls(FRAMES), plain_settings)[1])
    assert np.array_equal(again, plain)


def test_compile_auto_runs_eager_on_the_cpu_and_says_so(tiny_models, cache):
    events: list[dict] = []
    settings = wan_settings(compile="auto")
    render(tiny_models, cache, wan_controls(5), settings, reporter=Reporter(events.append))
    assert any(e.get("event") == "compile_skipped" for e in events)


def test_model_offload_is_its_own_pipeline_with_the_same_numbers(tiny_models, cache):
    plain = frames(render(tiny_models, cache, wan_controls(5), wan_settings())[1])
    offloaded = wan_settings(wan_offload="model")
    out = frames(render(tiny_models, cache, wan_controls(5), offloaded)[1])
    assert np.array_equal(out, plain)
    _, a = load_pipeline([tiny_models], cache, wan_settings(), Reporter())
    _, b = load_pipeline([tiny_models], cache, offloaded, Reporter())
    assert a is not b


@pytest.mark.parametrize(
    "bad",
    [
        {"wan_window": 80},
        {"wan_overlap": 6},
        {"wan_overlap": 80, "wan_window": 81},
        {"wan_cache_threshold": 0.9},
        {"wan_cache_interval": 1},
        {"wan_cache": "mag"},
    ],
)
def test_lever_limits(bad):
    with pytest.raises(ValidationError):
        Settings(engine="wan-vace", **bad)


@pytest.mark.parametrize("cache_kind", ["first_block", "taylorseer"])
def test_an_oom_retry_under_a_step_cache_gives_the_frames_of_no_oom(tiny_models, cache, cache_kind):
    """A call that fails midway (after the first block) leaves the cache half written; the
    retry must not read it: the job's frames are those of the same job without the OOM."""
    from oom_inject import fail_like_a_full_gpu
    from storyshade.models.loader import model_key

    settings = wan_settings(
        steps=4, wan_cache=cache_kind, wan_cache_threshold=0.3, wan_cache_interval=2
    )
    clean = frames(render(tiny_models, cache, wan_controls(FRAMES), settings)[1])
    pipe = cache.get(model_key([tiny_models], settings))
    events: list[dict] = []
    handle = fail_like_a_full_gpu(pipe.transformer.blocks[1], [], times=1)
    try:
        out = render(
            tiny_models, cache, wan_controls(FRAMES), settings, reporter=Reporter(events.append)
        )
    finally:
        handle.remove()
    assert [e["plan"] for e in events if e.get("event") == "oom_fallback"] == ["VAE off the device"]
    assert np.abs(frames(out[1]).astype(int) - clean.astype(int)).max() <= 1

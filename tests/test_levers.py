"""Speed levers (issue #17 item 7) on the tiny models: the motion-UNet step cache and
torch.compile, with their refusals and the compile fallback.

The step cache's refresh forward replicates diffusers' UNetMotionModel.forward, so it is
checked bit for bit against the model itself; its shallow steps are counted on the real
deep blocks. Compile runs inductor for real (gcc on the CPU): slow, so marked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from storyshade.engine.compiled import ModelCalls
from storyshade.engine.levers import check_compile
from storyshade.engine.sampling import WindowedSampler
from storyshade.engine.step_cache import deep_forward
from storyshade.engine.windowed import encode_text, shot_noise
from storyshade.errors import StoryShadeError
from storyshade.models.loader import ModelCache, model_key
from storyshade.presets import resolve
from storyshade.progress import Reporter
from storyshade.settings import Settings
from test_engine_controls import write_live_controlnets
from test_windowed import SIZE, controls_for, tiny_settings

FRAMES = 6
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_live_controlnets(tiny_models, tmp_path_factory.mktemp("levers") / "models")


@pytest.fixture(scope="module")
def pipe(models: Path):
    return ModelCache().get(model_key([models], tiny_settings()))


def latent_size(pipe) -> int:
    return SIZE // 2 ** (len(pipe.vae.config.block_out_channels) - 1)


def denoised(pipe, settings: Settings, compile_: bool = False, reporter=None):
    """(latents, sampler) of the windowed sampler on FRAMES frames of fixed controls."""
    reporter = reporter or Reporter()
    roles = list(settings.controls)
    controls = controls_for(FRAMES)
    sampler = WindowedSampler(pipe, settings, reporter)
    sampler.calls = ModelCalls(pipe, compile_, reporter)
    h = latent_size(pipe)
    latents_shape = (pipe.unet.config.in_channels, h, h)
    with torch.inference_mode():
        text = encode_text(pipe, settings)
        noise = shot_noise(settings, FRAMES, latents_shape)
        specs = [settings.controls[r].scale for r in roles]
        out = sampler.denoise(noise, text, [controls.frames[r] for r in roles], specs)
    return out, sampler


WINDOWS = {"context_length": 4, "context_overlap": 2}  # two windows over 6 frames


def test_refresh_forward_is_the_unets_own_forward(pipe):
    """A refresh step computes exactly `unet(...)`, ControlNet residuals included."""
    unet, net = pipe.unet, pipe.controlnet.nets[0]
    gen, h = torch.Generator().manual_seed(1), latent_size(pipe)
    x = torch.randn(2, 4, 3, h, h, generator=gen)
    flat = x.transpose(1, 2).reshape(6, 4, h, h)
    text = torch.randn(6, 77, unet.config.cross_attention_dim, generator=gen)
    t = torch.tensor(500)
    with torch.inference_mode():
        cond = torch.rand(6, 3, SIZE, SIZE, generator=gen)
        down, mid = net(
            flat, t, encoder_hidden_states=text, controlnet_cond=cond, return_dict=False
        )
        ours, feature = deep_forward(unet, x, t, text, down, mid)
        theirs = unet(
            x,
            t,
            encoder_hidden_states=text,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
        ).sample
    assert torch.equal(ours, theirs)
    assert feature.shape[0] == 6  # rows x frames, at the last up block's input


BASE = {"steps": 2, **WINDOWS}


@pytest.fixture(scope="module")
def plain(pipe) -> torch.Tensor:
    """The levers-off latents (2 steps x 2 windows), shared by the step cache tests."""
    return denoised(pipe, tiny_settings(**BASE))[0]


def test_step_cache_interval_1_is_off_and_bit_identical(pipe, plain):
    one, sampler = denoised(pipe, tiny_settings(**BASE, step_cache=1))
    assert sampler.step_cache is None and torch.equal(plain, one)


def test_step_cache_2_runs_the_deep_blocks_on_half_the_steps(pipe, plain):
    calls = []
    hook = pipe.unet.down_blocks[-1].register_forward_hook(lambda *a: calls.append(1))
    try:
        cached, sampler = denoised(pipe, tiny_settings(**BASE, step_cache=2))
    finally:
        hook.remove()
    assert len(calls) == 2  # step 1 of 2, both windows; off: 2 steps x 2 windows = 4
    assert (sampler.step_cache.deep_calls, sampler.step_cache.shallow_calls) == (2, 2)
    assert not torch.equal(plain, cached)
    assert (plain - cached).abs().max() < 0.5 * plain.abs().max()  # close, not identical


def test_bad_lever_settings_are_refused_naming_the_setting(monkeypatch):
    cases = [
        ({"steps": 2, "step_cache": 3}, "settings.step_cache", "at most 2"),
        ({"engine": "animatediff-stock", "step_cache": 2}, "settings.step_cache", "stock"),
        ({"engine": "preview", "compile": "on"}, "settings.compile", "'preview'"),
        ({"engine": "animatediff-stock", "compile": "on"}, "settings.compile", "stock"),
    ]
    for overrides, field, words in cases:
        with pytest.raises(StoryShadeError) as err:
            resolve("tiny", overrides)
        assert err.value.field == field and words in str(err.value), overrides
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    settings = resolve("tiny", {"compile": "on", "device": "cpu"})
    with pytest.raises(StoryShadeError) as err:
        check_compile(settings)
    assert err.value.field == "settings.compile" and "no-such-compiler-here" in str(err.value)
    check_compile(resolve("tiny", {"compile": "auto", "device": "cpu"}))  # auto: eager here


def test_start_after_end_is_refused():
    with pytest.raises(StoryShadeError) as err:
        resolve("tiny", {"controls": {"depth": {"model": "x", "start": 0.6, "end": 0.4}}})
    assert err.value.field == "settings.controls.depth.end"


@pytest.mark.slow
def test_compiled_matches_eager_and_a_second_job_reuses_the_graphs(pipe):
    from torch._dynamo.utils import counters

    settings = tiny_settings(steps=2, **WINDOWS)
    eager, _ = denoised(pipe, settings)
    first, _ = denoised(pipe, settings, compile_=True)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > 0
    second, _ = denoised(pipe, settings, compile_=True)
    assert counters["stats"]["unique_graphs"] == graphs  # nothing compiled again
    assert torch.equal(first, second)
    diff = (first - eager).abs().max().item()
    assert diff < 1e-3, diff  # measured 1.3e-4 (inductor reorders float32 sums)
    print(f"compiled vs eager: max abs latent difference {diff:.2e}")


FAILING_COMPILER = '#!/bin/sh\ncase "$1" in --version|-v) exec /usr/bin/g++ "$@";; esac\nexit 1\n'

JOB = """
import json, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_windowed import controls_for, tiny_settings
from storyshade.engine.windowed import WindowedAnimateDiffEngine
from storyshade.models.loader import ModelCache
from storyshade.progress import Reporter
events = []
engine = WindowedAnimateDiffEngine([Path({models!r})], ModelCache())
settings = tiny_settings(steps=2, compile="on", device="cpu")
frames = list(engine.render(controls_for(4), settings, Reporter(events.append)))
print(json.dumps({{"frames": len(frames), "notes": [e for e in events if e["type"] == "note"]}}))
"""


@pytest.mark.slow
def test_a_compile_failure_at_run_time_falls_back_to_eager(models, tmp_path):
    """A C++ compiler that exists but fails: inductor really fails, the job goes on."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("g++", "c++"):
        (bin_dir / name).write_text(FAILING_COMPILER)
        (bin_dir / name).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
        "PYTHONPATH": str(REPO / "backend"),
    }
    env.pop("CXX", None)
    script = JOB.format(tests=str(REPO / "tests"), models=str(models))
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["frames"] == 4
    notes = [n for n in result["notes"] if n.get("event") == "compile_fallback"]
    assert len(notes) == 1 and "settings.compile" in notes[0]["message"]


def test_standard_uses_only_the_levers_that_keep_the_pictures():
    from storyshade.engine.levers import wanted

    standard = resolve("standard")
    assert (standard.compile, standard.step_cache) == ("auto", 1)
    compile_, note = wanted(standard, "cpu")
    assert not compile_ and "eager on 'cpu'" in note

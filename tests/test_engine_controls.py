"""ControlNet timing (start/end) and guess mode in the windowed engine, on tiny real models.

A ControlNet outside its span is not run at all; inside it, the numbers are diffusers'
(control_guidance_start/end, guess_mode) to float tolerance, and the full span is
bit-identical to MultiControlNetModel's own forward.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from storyshade.engine.sampling import ControlSpec, WindowedSampler
from storyshade.engine.windowed import encode_text, shot_noise
from storyshade.errors import StoryShadeError
from storyshade.models.loader import ModelCache, model_key
from storyshade.models.tiny import TINY_NAMES
from storyshade.presets import resolve
from storyshade.progress import Reporter
from storyshade.settings import Settings
from test_windowed import SIZE, controls_for, render, tiny_settings

FRAMES = 6
LATENT = (4, SIZE // 2, SIZE // 2)


@pytest.fixture(scope="module")
def cache() -> ModelCache:
    return ModelCache(size=3)


def write_live_controlnets(src: Path, dest: Path) -> Path:
    """A copy of the tiny set whose ControlNets steer: diffusers zero-initialises their output
    convolutions and the last layer of their image embedding, so freshly made ControlNets
    add exactly nothing (and ignore the image): they could not tell a ControlNet that ran
    from one that did not, nor one control image from another."""
    import shutil

    from diffusers import ControlNetModel

    shutil.copytree(src, dest)
    for k, role in enumerate(("depth", "normal")):
        path = dest / "controlnet" / TINY_NAMES[role]
        net = ControlNetModel.from_pretrained(path)
        gen = torch.Generator().manual_seed(100 + k)
        with torch.no_grad():
            zeroed = [
                *net.controlnet_down_blocks,
                net.controlnet_mid_block,
                net.controlnet_cond_embedding.conv_out,
            ]
            for block in zeroed:
                block.weight.copy_(torch.randn(block.weight.shape, generator=gen) * 0.5)
        net.save_pretrained(path, safe_serialization=True)
    return dest


@pytest.fixture(scope="session")
def live_models(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_live_controlnets(tiny_models, tmp_path_factory.mktemp("live") / "models")


def spec_settings(depth: dict, normal: dict | None = None, **kw) -> Settings:
    controls = {"depth": {"model": TINY_NAMES["depth"], "scale": 0.8, **depth}}
    if normal is not None:
        controls["normal"] = {"model": TINY_NAMES["normal"], "scale": 0.6, **normal}
    return tiny_settings(controls=controls, **kw)


def count_calls(module: torch.nn.Module) -> tuple[list[int], object]:
    calls: list[int] = []
    return calls, module.register_forward_hook(lambda *_: calls.append(1))


def test_full_span_is_bit_identical_to_multicontrolnet(live_models, cache):
    """start 0 / end 1: one guided prediction equals MultiControlNetModel + UNet, bit for bit."""
    settings = spec_settings({"start": 0.0, "end": 1.0}, {})
    controls = controls_for(FRAMES)
    pipe = cache.get(model_key([live_models], settings))
    sampler = WindowedSampler(pipe, settings, Reporter())
    sampler.scheduler.set_timesteps(2)
    t = sampler.scheduler.timesteps[0]
    latents = shot_noise(settings, FRAMES, LATENT)
    frames = [controls.frames[r] for r in ("depth", "normal")]
    specs = [ControlSpec(0.8), ControlSpec(0.6)]
    with torch.inference_mode():
        text = encode_text(pipe, settings)
        ours = sampler.predict(
            latents, t, text, frames, specs, range(FRAMES), sampler.fallback.plan
        )
        # What the engine did before per-control timing: one MultiControlNetModel call.
        x = torch.cat([latents] * 2)
        embeds = text.repeat_interleave(FRAMES, dim=0)
        flat = x.transpose(1, 2).reshape(2 * FRAMES, 4, *LATENT[1:])
        images = [
            torch.cat([torch.from_numpy(np.stack(f)).permute(0, 3, 1, 2).float() / 255] * 2)
            for f in frames
        ]
        down, mid = pipe.controlnet(
            flat,
            t,
            embeds,
            controlnet_cond=images,
            conditioning_scale=[0.8, 0.6],
            return_dict=False,
        )
        pred = pipe.unet(
            x,
            t,
            encoder_hidden_states=embeds,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
        ).sample
        uncond, cond = pred.chunk(2)
        reference = uncond + settings.guidance_scale * (cond - uncond)
    assert torch.equal(ours, reference)


def test_end_zero_is_no_controlnet_and_never_runs_it(live_models, cache):
    controls = controls_for(FRAMES)
    off = spec_settings({"end": 0.0}, {})
    pipe = cache.get(model_key([live_models], off))
    calls, handle = count_calls(pipe.controlnet.nets[0])
    normal_calls, normal_handle = count_calls(pipe.controlnet.nets[1])
    try:
        with_off = render(live_models, cache, controls, off)
    finally:
        handle.remove()
        normal_handle.remove()
    assert calls == [] and len(normal_calls) == 2, "depth never runs; normal runs each step"

    normal_only = tiny_settings(controls={"normal": {"model": TINY_NAMES["normal"], "scale": 0.6}})
    assert np.array_equal(with_off, render(live_models, cache, controls, normal_only))
    full = render(live_models, cache, controls, spec_settings({}, {}))
    assert np.abs(full.astype(int) - with_off.astype(int)).max() > 2, "depth matters when on"


def test_partial_span_matches_diffusers_control_guidance(live_models, cache):
    """4 steps, depth on for steps 2-3 only (start 0.25, end 0.75): diffusers' own numbers."""
    settings = spec_settings({"start": 0.25, "end": 0.75}, {}, steps=4)
    controls = controls_for(FRAMES)
    pipe = cache.get(model_key([live_models], settings))
    noise = shot_noise(settings, FRAMES, LATENT)
    calls, handle = count_calls(pipe.controlnet.nets[0])
    try:
        sampler = WindowedSampler(pipe, settings, Reporter())
        specs = [ControlSpec(0.8, 0.25, 0.75), ControlSpec(0.6)]
        with torch.inference_mode():
            text = encode_text(pipe, settings)
            ours = sampler.denoise(
                noise, text, [controls.frames["depth"], controls.frames["normal"]], specs
            )
    finally:
        handle.remove()
    assert len(calls) == 2
    expected = diffusers_latents(
        pipe, settings, controls, noise, start=[0.25, 0.0], end=[0.75, 1.0]
    )
    scale = expected.abs().max().item()
    torch.testing.assert_close(ours, expected, atol=1e-5 * scale, rtol=0)


def diffusers_latents(pipe, settings, controls, noise, **kw):
    from PIL import Image

    roles = list(settings.controls)
    video = [[Image.fromarray(f) for f in controls.frames[r]] for r in roles]
    single = len(roles) == 1
    scales = [settings.controls[r].scale for r in roles]
    start, end = kw.pop("start", None), kw.pop("end", None)
    return pipe(
        prompt=settings.prompt,
        negative_prompt=settings.negative_prompt,
        num_frames=len(controls.frame_numbers),
        width=settings.width,
        height=settings.height,
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance_scale,
        conditioning_frames=video[0] if single else video,
        controlnet_conditioning_scale=scales[0] if single else scales,
        control_guidance_start=start if start is not None else 0.0,
        control_guidance_end=end if end is not None else 1.0,
        latents=noise,
        output_type="latent",
        **kw,
    ).frames


def test_guess_mode_without_cfg_matches_diffusers(live_models, cache):
    settings = spec_settings({"guess_mode": True}, {"guess_mode": True}, guidance_scale=1.0)
    controls = controls_for(FRAMES)
    pipe = cache.get(model_key([live_models], settings))
    noise = shot_noise(settings, FRAMES, LATENT)
    sampler = WindowedSampler(pipe, settings, Reporter())
    specs = [ControlSpec(0.8, guess_mode=True), ControlSpec(0.6, guess_mode=True)]
    with torch.inference_mode():
        text = encode_text(pipe, settings)
        ours = sampler.denoise(
            noise, text, [controls.frames["depth"], controls.frames["normal"]], specs
        )
    expected = diffusers_latents(pipe, settings, controls, noise, guess_mode=True)
    scale = expected.abs().max().item()
    torch.testing.assert_close(ours, expected, atol=1e-5 * scale, rtol=0)
    plain = render(live_models, cache, controls, spec_settings({}, {}, guidance_scale=1.0))
    guessed = render(live_models, cache, controls, settings)
    assert np.abs(plain.astype(int) - guessed.astype(int)).max() > 2


def test_guess_mode_with_cfg_steers_only_the_conditional_branch(live_models, cache):
    settings = spec_settings({"guess_mode": True})
    controls = controls_for(FRAMES)
    pipe = cache.get(model_key([live_models], settings))
    sampler = WindowedSampler(pipe, settings, Reporter())
    sampler.scheduler.set_timesteps(2)
    t = sampler.scheduler.timesteps[0]
    x = torch.cat([shot_noise(settings, FRAMES, LATENT)] * 2)
    image = torch.from_numpy(np.stack(controls.frames["depth"])).permute(0, 3, 1, 2).float() / 255
    plan = sampler.fallback.plan
    with torch.inference_mode():
        text = encode_text(pipe, settings)
        outs = {
            s: sampler._forward(x, t, text, {0: image}, [ControlSpec(s, guess_mode=True)], plan)
            for s in (0.5, 1.5)
        }
        bare = sampler._forward(x, t, text, {}, [], plan)
    assert torch.equal(outs[0.5][:1], bare[:1]) and torch.equal(outs[1.5][:1], bare[:1])
    assert (outs[0.5][1:] - outs[1.5][1:]).abs().max() > 1e-3
    split = [  # the OOM ladder's CFG split computes the same two halves
        sampler._forward(
            x[k : k + 1],
            t,
            text[k : k + 1],
            {0: image},
            [ControlSpec(1.5, guess_mode=True)],
            plan,
            (b,),
        )
        for k, b in enumerate(("uncond", "cond"))
    ]
    torch.testing.assert_close(torch.cat(split), outs[1.5], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("control", "where"),
    [
        ({"start": 0.8, "end": 0.2}, "settings.controls.depth.end"),
        ({"start": 1.5}, "settings.controls.depth.start"),
        ({"end": -0.1}, "settings.controls.depth.end"),
        ({"guess_mode": "sometimes"}, "settings.controls.depth.guess_mode"),
    ],
)
def test_bad_spans_are_refused_naming_the_setting(control, where):
    """The server and the CLI resolve settings through `presets.resolve`: a 400 / exit 2."""
    overrides = {"controls": {"depth": {"model": "control_v11f1p_sd15_depth", **control}}}
    with pytest.raises(StoryShadeError) as err:
        resolve(None, overrides)
    assert err.value.field == where and err.value.status == 400
    if "end" in control and "start" in control:
        assert "before start" in err.value.problem


def test_stock_engine_passes_spans_to_diffusers(live_models, cache):
    from storyshade.engine.animatediff import StockAnimateDiffEngine
    from storyshade.engines import Shot, check_job

    controls = controls_for(FRAMES)
    stock = StockAnimateDiffEngine([live_models], cache)

    def run(**depth) -> np.ndarray:
        s = spec_settings(depth, {}, engine="animatediff-stock")
        return np.stack([f for _, f in stock.render(controls, s, Reporter())])

    off, on = run(end=0.0), run()
    assert np.abs(off.astype(int) - on.astype(int)).max() > 2
    normal_only = tiny_settings(
        engine="animatediff-stock",
        controls={"normal": {"model": TINY_NAMES["normal"], "scale": 0.6}},
    )
    assert np.array_equal(
        off, np.stack([f for _, f in stock.render(controls, normal_only, Reporter())])
    )
    with pytest.raises(StoryShadeError) as err:  # refused before the job's work starts
        check_job(
            spec_settings({"guess_mode": True}, {}, engine="animatediff-stock"),
            [live_models],
            Shot(FRAMES),
        )
    assert "guess_mode" in err.value.field

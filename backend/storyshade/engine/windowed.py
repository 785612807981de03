"""The default engine: whole-model sliding context windows over ControlNet-AnimateDiff.

Stock diffusers (even with FreeNoise) runs ControlNets and spatial layers on every frame at
once, so a 256-frame shot needs 256 frames of activations. Here the UNet and ControlNets see
one window at a time (see engine/sampling.py), initial noise is per frame (engine/noise.py),
decoding is chunked, and an out-of-memory error shrinks the work instead of ending the job.
Memory is then set by the context length, not by the shot length.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from storyshade.bundle import Region
from storyshade.cancel import CancelToken
from storyshade.controls import ControlSet
from storyshade.controls.sizing import resize
from storyshade.engines import Capabilities, Shot
from storyshade.errors import StoryShadeError
from storyshade.models.loader import ModelCache, ModelKey
from storyshade.progress import Reporter
from storyshade.settings import ROLES, Settings, hires_size
from storyshade.wire.states import Stage

if TYPE_CHECKING:  # the engine's machinery (torch, diffusers) loads when a job starts
    from storyshade.engine.chunking import Plan
    from storyshade.engine.sampling import ControlSpec, WindowedSampler


def control_spec(settings: Settings, role: str) -> ControlSpec:
    from storyshade.engine.sampling import ControlSpec

    c = settings.controls[role]
    return ControlSpec(scale=c.scale, start=c.start, end=c.end, guess_mode=c.guess_mode)


def base_plan(settings: Settings) -> Plan:
    """The slicing the user asked for; the OOM ladder only ever slices further."""
    from storyshade.engine.chunking import Plan

    return Plan(
        name="as configured",
        temporal_chunk=settings.forward_chunk,
        ff_chunk=settings.forward_chunk,
        attention_slice=1 if settings.attention_slicing else 0,
    )


def check_windows(settings: Settings, unet: Any) -> None:
    """Fail before any work on windows the motion module cannot take."""
    from storyshade.engine.windows import check_context

    try:
        check_context(settings.context_length, settings.context_overlap)
    except ValueError as exc:
        raise StoryShadeError(
            str(exc),
            "make context_overlap smaller than context_length",
            field="settings.context_overlap",
        ) from None
    limit = getattr(unet.config, "motion_max_seq_length", None)
    if limit and settings.context_length > limit:
        raise StoryShadeError(
            f"context_length {settings.context_length} exceeds the motion adapter's "
            f"{limit}-frame limit",
            f"set context_length to {limit} or less (16 is what AnimateDiff was trained on)",
            field="settings.context_length",
        )


def shot_noise(settings: Settings, num_frames: int, latent_shape: tuple[int, int, int]) -> Any:
    """Per-frame initial noise for the shot, FreeNoise-rescheduled when asked."""
    from storyshade.engine.noise import initial_noise

    return initial_noise(
        settings.seed,
        num_frames,
        latent_shape,
        free_noise=settings.free_noise,
        length=settings.context_length,
        stride=settings.context_length - settings.context_overlap,
    )


def encode_text(pipe: Any, settings: Settings, reporter: Reporter | None = None) -> Any:
    """[negative, positive] prompt embeddings with CFG, else [positive] (one row each), the
    prompt inside the style and read whole (engine/text.py)."""
    import torch

    from storyshade.engine.text import encode_pair

    cfg = settings.guidance_scale > 1
    positive, negative = encode_pair(
        pipe, settings.full_prompt, settings.negative_prompt, cfg, reporter
    )
    return torch.cat([negative, positive]) if cfg else positive


def encode_held(pipe: Any, held: Mapping[int, np.ndarray]) -> dict[int, Any]:
    """Clean latents (C, h, w) of held frames: the VAE encoder's mean (no sampling, so a
    re-shade is repeatable), scaled as the UNet's latents are."""
    import torch

    out: dict[int, Any] = {}
    scale = pipe.vae.config.scaling_factor
    for k, rgb in held.items():
        image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
        image = (image.float() / 127.5 - 1).to(pipe.vae.device, pipe.vae.dtype)
        out[k] = (pipe.vae.encode(image).latent_dist.mean[0] * scale).float()
    return out


def hires_pass(
    sampler: WindowedSampler,
    pipe: Any,
    settings: Settings,
    latents: Any,
    text: Any,
    frames: list,
    specs: list[ControlSpec],
    held: Mapping[int, np.ndarray] | None,
) -> Any:
    """The second pass: the first pass's latents upscaled in latent space, noised back to
    `strength` and denoised again with the same windows, the controls resized to the new
    size and the looks' masks at the new layer sizes.

    Latent space rather than pixels: no decode and re-encode of every frame (two VAE passes
    per frame), and only latents, which are small, are ever held for the whole shot; the
    re-noising at `strength` restores the detail a plain upscale blurs."""
    import torch

    from storyshade.engine.noise import hires_seed

    assert settings.hires is not None
    width, height = hires_size(settings.width, settings.height, settings.hires.scale)
    factor = settings.width // latents.shape[-1]
    size = (height // factor, width // factor)
    flat = latents[0].transpose(0, 1)  # frames as the batch: (F, C, h, w)
    up = torch.nn.functional.interpolate(flat, size=size, mode="bicubic", align_corners=False)
    init = up.transpose(0, 1).unsqueeze(0)
    seed = hires_seed(settings.seed)
    second = settings.model_copy(update={"seed": seed})
    noise = shot_noise(second, latents.shape[2], (latents.shape[1], *size))
    sampler.settings = second
    sampler.control_size = (height, width)
    if sampler.regions is not None:
        sampler.regions.resize(size)
    clean = None
    if held:
        bigger = {k: resize(v, width, height) for k, v in held.items()}
        clean = encode_held(pipe, bigger)
    return sampler.denoise(
        noise,
        text,
        frames,
        specs,
        clean,
        init=init,
        strength=settings.hires.strength,
        stage=Stage.REFINING,
    )


class WindowedAnimateDiffEngine:
    name = "animatediff"
    capabilities = Capabilities(
        summary="windowed ControlNet-AnimateDiff: any length in the memory of one window",
        reads=frozenset(
            {
                "text",
                "sampling",
                "checkpoint",
                "motion",
                "controls",
                "controlnet_models",
                "loras",
                "references",
                "ip_adapter",
                "color_match",
                "scheduler",
                "guess_mode",
                "frame_windows",
                "window_fuse",
                "window_schedule",
                "decode_chunks",
                "free_noise",
                "slicing",
                "channels_last",
                "compile",
                "step_cache",
                "latent_preview",
                "normal_image",
                "dtype",
                "device",
                "hires",
            }
        ),
        looks=True,
        look_references=True,
        held_frames=True,
        control_roles=frozenset(ROLES),
    )

    @staticmethod
    def check(settings: Settings, roots: list[Path], shot: Shot | None) -> None:
        """compile 'on' where it cannot work here; a reference naming a look the shot
        does not have."""
        from storyshade.engine.levers import check_compile

        check_compile(settings)
        if shot is not None:
            from storyshade.engine.references import check_reference_looks

            check_reference_looks(settings, shot.looks)

    def __init__(
        self,
        roots: list[Path],
        cache: ModelCache,
        models: ModelKey | None = None,
        embeddings: Any = None,
    ) -> None:
        self.roots = roots
        self.cache = cache
        self.models = models  # the job's, resolved at submit
        self.embeddings = embeddings  # the stage cache's EmbeddingCache (cache.py), if any

    def render(
        self,
        controls: ControlSet,
        settings: Settings,
        reporter: Reporter,
        held: Mapping[int, np.ndarray] | None = None,
        *,
        looks: Sequence[Region] = (),
        cancel: CancelToken | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        import torch

        from storyshade.engine.base import load_pipeline
        from storyshade.engine.color_match import color_matcher
        from storyshade.engine.compiled import ModelCalls
        from storyshade.engine.levers import wanted
        from storyshade.engine.references import encode_references
        from storyshade.engine.regions import RegionState, encode_looks
        from storyshade.engine.sampling import WindowedSampler

        cancel = cancel or CancelToken()
        key, pipe = load_pipeline(self.roots, self.cache, settings, reporter, self.models, cancel)
        check_windows(settings, pipe.unet)
        roles = [role for role, _ in key.controlnets]
        frames = [controls.frames[role] for role in roles]
        for role, seq in zip(roles, frames, strict=True):
            if seq and seq[0].shape[:2] != (settings.height, settings.width):
                raise StoryShadeError(
                    f"{role} control frames are {seq[0].shape[1]}x{seq[0].shape[0]}, "
                    f"not the generation size {settings.width}x{settings.height}",
                    "build controls with the same settings",
                    field="controls",
                )
        num_frames = len(controls.frame_numbers)
        factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        latent_shape = (
            pipe.unet.config.in_channels,
            settings.height // factor,
            settings.width // factor,
        )
        sampler = WindowedSampler(pipe, settings, reporter, base_plan(settings), cancel=cancel)
        compile_, why_not = wanted(settings, str(pipe.unet.device))
        if why_not:
            reporter.note(why_not, event="compile_skipped")
        sampler.calls = ModelCalls(pipe, compile_, reporter)
        looks = looks if controls.regions else ()
        with torch.inference_mode():  # not held across `yield`: it is thread-wide state
            text = encode_text(pipe, settings, reporter)
            noise = shot_noise(settings, num_frames, latent_shape)
            specs = [control_spec(settings, role) for role in roles]
            if looks:
                cond, uncond = encode_looks(pipe, settings, looks, reporter)
                sampler.regions = RegionState(
                    controls.regions, looks, cond, uncond, latent_shape[1:]
                )
            sampler.references = encode_references(
                pipe,
                settings,
                self.roots,
                reporter,
                looks,
                sampler.regions,
                self.embeddings,
                cancel=cancel,
            )
            clean = encode_held(pipe, held) if held else None
            sampler.color_match = color_matcher(pipe, settings, sampler.scheduler)
            # denoise() makes (and undoes) every change to the shared pipeline
            latents = sampler.denoise(noise, text, frames, specs, clean)
            if settings.hires:
                latents = hires_pass(sampler, pipe, settings, latents, text, frames, specs, held)
        yield from sampler.decode(latents, settings.decode_chunk_size, skip=held or ())

"""The Wan 2.1 VACE engine: windowed, any length, the same shots, looks, references and
re-shades as the AnimateDiff engine.

A shot is one clip on the Wan VAE's latent grid (engine/wan_video.py). Its control images
(controls/build.py, the same shot-wide images the AnimateDiff engine uses) become VACE's
control video, one VACE pass per control role (engine/wan_sampling.py), encoded once
chunk by chunk; the transformer denoises in sliding windows over latent frames; the
latents are decoded chunk by chunk and each frame is yielded as soon as it exists.

Re-shading frames A-B (held frames, index → the take's picture): the clip is A-B plus up
to `RESHADE_MARGIN` frames on each side, its first frame on the shot's 4-frame grid. The
held frames inside it go to VACE as the video to keep (mask 0), the frames to shade as
the control video (mask 1); only A-B come back, so the frames outside are never
rewritten. Nothing outside the clip is encoded, denoised or decoded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from storyshade.bundle import Region
from storyshade.cancel import CancelToken
from storyshade.controls import ControlSet
from storyshade.engine.wan_checks import WanModels
from storyshade.engine.wan_video import (
    REFERENCE_NOISE,
    TIME,
    Clip,
    pad_image,
    padded_size,
)
from storyshade.engines import Capabilities, Shot
from storyshade.models.loader import ModelCache, ModelKey
from storyshade.progress import Reporter
from storyshade.settings import ROLES, Settings
from storyshade.wire.states import Stage

RESHADE_MARGIN = 16  # held frames of context on each side of a re-shaded range


def plan_clip(num_frames: int, held: Mapping[int, Any]) -> Clip | None:
    """The clip to render: the whole shot, or the re-shaded range with held context
    around it (its start on the shot's 4-frame grid); None when every frame is held."""
    if not held:
        return Clip(0, num_frames)
    todo = [i for i in range(num_frames) if i not in held]
    if not todo:
        return None
    start = max(0, todo[0] - RESHADE_MARGIN)
    start -= start % TIME
    stop = min(num_frames, todo[-1] + 1 + RESHADE_MARGIN)
    return Clip(start, stop - start)


def wan_config(settings: Settings) -> Any:
    from storyshade.engine.wan_sampling import WanSamplerConfig

    return WanSamplerConfig(
        steps=settings.steps,
        guidance_scale=settings.guidance_scale,
        window=(settings.wan_window - 1) // TIME + 1,
        overlap=settings.wan_overlap // TIME,
        schedule=settings.context_schedule,
        fuse=settings.context_fuse,
        preview_every=settings.preview_every,
        cache=settings.wan_cache,
    )


def clip_noise(seed: int, clip: Clip, references: int, shape: tuple[int, int, int]) -> Any:
    """(1, C, R + K, h, w): each latent frame's noise from (seed, the shot frame it ends
    at); the reference slots' from keys no frame has."""
    import torch

    from storyshade.engine.noise import frame_noise

    keys = [REFERENCE_NOISE + r for r in range(references)]
    keys += [clip.noise_key(j) for j in range(clip.latents)]
    return torch.stack([frame_noise(seed, k, shape) for k in keys], dim=1).unsqueeze(0)


def clip_frames(
    clip: Clip, pick: Callable[[int], np.ndarray | None], size: tuple[int, int]
) -> Callable[[range], Any]:
    """A chunk provider for encode_clip: clip frame i is `pick(shot frame)` (padded to
    `size`), or zeros (VACE's blank) where `pick` gives None."""
    import torch

    from storyshade.engine.wan_video import to_video

    width, height = size

    def frames(chunk: range) -> Any:
        out = []
        for i in chunk:
            image = pick(clip.source(i))
            if image is None:
                out.append(torch.zeros(1, 3, 1, height, width))
            else:
                out.append(to_video([pad_image(np.asarray(image), width, height)]))
        return torch.cat(out, dim=2)

    return frames


def vace_conditioning(
    pipe: Any,
    controls: ControlSet,
    settings: Settings,
    clip: Clip,
    held: Mapping[int, np.ndarray],
    size: tuple[int, int],
    references: Any,
    cancel: CancelToken,
    reporter: Reporter,
) -> list[Any]:
    """Each control role's VACE conditioning over the clip, with its scale and span:
    [keep video latents, control video latents, per-latent mask], the reference slots
    first. Held frames are the video to keep; the other frames show the control."""
    import torch

    from storyshade.engine.wan_sampling import VaceControl
    from storyshade.engine.wan_video import encode_clip

    vae = pipe.vae
    count = clip.padded
    keep = encode_clip(vae, clip_frames(clip, held.get, size), count, cancel.check).cpu()
    width, height = size
    mask = torch.ones(1, 64, clip.latents, height // 8, width // 8)
    for j in range(clip.latents):
        if all(clip.source(i) in held for i in clip.latent_frames(j)):
            mask[:, :, j] = 0.0
    out = []
    roles = [r for r, c in settings.controls.items() if c.scale > 0 and c.start < c.end]
    for k, role in enumerate(roles):  # a role that never steers is not encoded at all
        spec = settings.controls[role]
        seq = controls.frames[role]

        def pick(src: int, seq: Sequence[np.ndarray] = seq) -> np.ndarray | None:
            return None if src in held else seq[src]

        shown = encode_clip(vae, clip_frames(clip, pick, size), count, cancel.check).cpu()
        latents = torch.cat([keep, shown, mask], dim=1)
        if references is not None:
            latents = torch.cat([references, latents], dim=2)
        out.append(VaceControl(latents, spec.scale, spec.start, spec.end))
        reporter.stage(Stage.CONTROLS, k + 1, len(roles), encoded=role)
    return out


class WanVaceEngine(WanModels):
    name = "wan-vace"
    capabilities = Capabilities(
        summary="Wan 2.1 VACE, windowed over latent frames: any length in one window's memory",
        reads=frozenset(
            {
                "text",
                "sampling",
                "checkpoint",
                "controls",
                "loras",
                "references",
                "color_match",
                "latent_windows",
                "window_schedule",
                "window_fuse",
                "flow_sampling",
                "wan_cache",
                "offload",
                "decode_chunks",
                "channels_last",
                "compile",
                "latent_preview",
                "normal_image",
                "dtype",
                "device",
            }
        ),
        # VACE has no ControlNets: a control's `model` names no file here (docs/engine.md)
        ignores=frozenset({"controlnet_models"}),
        looks=True,
        look_references=False,  # VACE reads references over the whole frame
        held_frames=True,
        control_roles=frozenset(ROLES),
    )

    @staticmethod
    def check(settings: Settings, roots: list[Path], shot: Shot | None) -> None:
        """References (no strength), the shortest shot, compile 'on' where it cannot."""
        from storyshade.engine.levers import check_compile
        from storyshade.engine.wan_checks import check_wan

        check_wan(settings, shot)
        check_compile(settings)

    def __init__(
        self,
        roots: list[Path],
        cache: ModelCache,
        models: ModelKey | None = None,
        embeddings: Any = None,
    ) -> None:
        del embeddings  # VACE encodes its reference images with its own VAE, per job
        self.roots = roots
        self.cache = cache
        self.models = models  # the job's, resolved at submit
        self.sampler: Any = None  # the last job's WanSampler (tests read its counters)

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
        held = held or {}
        cancel = cancel or CancelToken()
        done = self.denoise(controls, settings, reporter, held, cancel, looks)
        if done is None:
            return
        pipe, latents, clip, offload = done
        yield from decode(pipe, latents, clip, held, settings, reporter, cancel, offload)

    def denoise(
        self,
        controls: ControlSet,
        settings: Settings,
        reporter: Reporter,
        held: Mapping[int, np.ndarray],
        cancel: CancelToken,
        looks: Sequence[Region] = (),
    ) -> tuple[Any, Any, Clip, str] | None:
        """(pipeline, the clip's denoised video latents, the clip, offload), or None when
        every frame is held."""
        import torch

        from storyshade.engine.base import load_pipeline
        from storyshade.engine.pipeline_edits import edited
        from storyshade.engine.wan_levers import install_cache, install_compile, on_device
        from storyshade.engine.wan_references import flow_color_matcher, reference_latents
        from storyshade.engine.wan_regions import WanRegionState, install_wan_regions
        from storyshade.engine.wan_sampling import WanSampler
        from storyshade.engine.wan_text import encode_texts, job_texts

        n = len(controls.frame_numbers)
        key, pipe = load_pipeline(self.roots, self.cache, settings, reporter, self.models, cancel)
        clip = plan_clip(n, held)
        if clip is None:
            return None
        device = torch.device(key.device)
        offload = getattr(key, "offload", "none")
        size = padded_size(settings.width, settings.height)
        looks = looks if controls.regions else ()
        transformer = pipe.transformer
        with torch.inference_mode():  # not held across `yield`: it is thread-wide state
            texts = encode_texts(
                pipe, job_texts(settings, looks), device, transformer.dtype, reporter
            )
            cancel.check()
            cfg = settings.guidance_scale > 1
            step = 2 if cfg else 1
            cond, uncond = texts[0], texts[1] if cfg else None
            with edited() as edits:
                on_device(edits, pipe.vae, device, offload)
                refs = reference_latents(pipe, settings, size)
                vace = vace_conditioning(
                    pipe, controls, settings, clip, held, size, refs, cancel, reporter
                )
                color = flow_color_matcher(pipe, settings, size)
            r = 0 if refs is None else refs.shape[2]
            shape = (transformer.config.in_channels, size[1] // 8, size[0] // 8)
            noise = clip_noise(settings.seed, clip, r, shape)
            sampler = WanSampler(pipe, wan_config(settings), reporter, device, cancel=cancel)
            sampler.references = r
            sampler.frame_offset = clip.start
            sampler.color_match = color
            if looks:
                look_cond = list(texts[2::step])  # per look (1, 512, dim), as RegionState keeps
                look_uncond = list(texts[3::step]) if cfg else None
                sampler.regions = WanRegionState(
                    controls.regions,
                    looks,
                    look_cond,
                    look_uncond,
                    clip,
                    size,
                    transformer.condition_embedder.text_embedder,
                )

            def edit(edits: Any) -> None:  # every change to the shared pipeline, undone after
                on_device(edits, transformer, device, offload)
                install_wan_regions(edits, transformer, sampler.regions)
                install_cache(edits, transformer, settings)
                install_compile(edits, transformer, settings, key.device, reporter)

            sampler.edit = edit
            self.sampler = sampler
            latents = sampler.denoise(noise, (cond, uncond), vace)
        return pipe, latents[:, :, r:], clip, offload


def decode(
    pipe: Any,
    latents: Any,
    clip: Clip,
    held: Mapping[int, np.ndarray],
    settings: Settings,
    reporter: Reporter,
    cancel: CancelToken,
    offload: str = "none",
) -> Iterator[tuple[int, np.ndarray]]:
    """The clip's frames, shot index and uint8 RGB at the generation size, as each latent
    frame is decoded; padding frames and held frames are not given."""
    import torch

    from storyshade.engine.pipeline_edits import edited
    from storyshade.engine.wan_levers import on_device
    from storyshade.engine.wan_video import decode_clip, to_uint8

    vae = pipe.vae
    device = latents.device
    total = sum(1 for i in range(clip.frames) if clip.start + i not in held)
    done = 0
    chunk = max(1, settings.decode_chunk_size // TIME)
    with edited() as edits:  # a generator: undone when it ends or is closed
        on_device(edits, vae, device, offload)
        if settings.channels_last and device.type == "cuda":
            edits.memory_format(vae, torch.channels_last_3d)
        for i, frame in decode_clip(vae, latents, chunk, cancel.check):
            if i >= clip.frames:
                break
            shot = clip.start + i
            if shot in held:
                continue
            done += 1
            reporter.stage(Stage.DECODING, done, total)
            yield shot, to_uint8(frame)[: settings.height, : settings.width]

"""The reference engine: the stock diffusers AnimateDiffControlNetPipeline, one call per shot.

Memory grows with frame count here (see the windowed engine for long shots); it is kept
as the reference the windowed engine is checked against. Without `free_noise` the motion
modules see the whole shot at once, so a shot longer than the motion adapter's positional
table (32 frames for v2/v3, 24 for v1) cannot run: it is refused before any model loads.
With `free_noise`, diffusers' FreeNoise windows the temporal attention with the job's
`context_length` and stride `context_length - context_overlap`. Prompts are encoded as
diffusers ships it: 77 tokens at most (75 of text), the rest cut off; a job's events say
when that happens (the windowed engine reads long prompts whole: engine/text.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from storyshade.bundle import Region
from storyshade.cancel import CancelToken
from storyshade.controls import ControlSet
from storyshade.engines import Capabilities, Shot
from storyshade.errors import StoryShadeError
from storyshade.models.loader import ModelCache, ModelKey, model_key
from storyshade.progress import Reporter
from storyshade.settings import ROLES, Settings
from storyshade.wire.states import Stage


def motion_frame_limit(motion_adapter: Path) -> int:
    """Frames the adapter's motion modules take at once, read from its files (no loading)."""
    from storyshade.models.arch import adapter_arch

    return adapter_arch(motion_adapter).max_seq_length or 32


def check_stock_shot(settings: Settings, num_frames: int, roots: list[Path]) -> None:
    """Refuse a shot the stock pipeline cannot run, naming the limit and the ways out.

    Cheap (configs and safetensors headers only), so the server calls it at submit.
    """
    if settings.free_noise:
        return
    limit = motion_frame_limit(model_key(roots, settings).motion_adapter)
    if num_frames > limit:
        raise StoryShadeError(
            f"the shot has {num_frames} frames but engine 'animatediff-stock' without "
            f"free_noise runs at most {limit} (motion adapter '{settings.motion_adapter}' "
            f"takes {limit} frames at once)",
            "set free_noise = true (FreeNoise windows of context_length frames), use engine "
            f"'animatediff' (windowed, any length), or shade at most {limit} frames at a time",
            field="settings.engine",
        )


def check_guess_mode(settings: Settings) -> None:
    """diffusers 0.42's AnimateDiff ControlNet pipeline takes one guess_mode for all
    ControlNets, and with CFG it crashes on a batch mismatch."""
    guess = [r for r, c in settings.controls.items() if c.guess_mode]
    if guess and (len(guess) < len(settings.controls) or settings.guidance_scale > 1):
        raise StoryShadeError(
            "engine 'animatediff-stock' runs guess_mode only on every ControlNet at once "
            "and without CFG (guidance_scale <= 1)",
            "use engine 'animatediff' (per-control guess mode, with CFG)",
            field=f"settings.controls.{guess[0]}.guess_mode",
        )


def disable_free_noise(pipe: Any) -> None:
    """diffusers' `disable_free_noise`, minus its bug: 0.42 walks `unet.mid_block` even when
    it has no motion modules (v3 adapters) and raises AttributeError."""
    pipe._free_noise_context_length = None
    unet = pipe.unet
    for block in [*unet.down_blocks, unet.mid_block, *unet.up_blocks]:
        if hasattr(block, "motion_modules"):
            pipe._disable_free_noise_in_block(block)


def say_truncated(pipe: Any, settings: Settings, reporter: Reporter) -> None:
    """A note event for each text diffusers' encode_prompt will cut at 77 tokens."""
    from storyshade.engine.text import chunk_size, overflow

    texts = {"the prompt": settings.full_prompt}
    if settings.guidance_scale > 1:
        texts["the negative prompt"] = settings.negative_prompt
    for name, text in texts.items():
        dropped = overflow(pipe, text)
        if dropped:
            reporter.note(
                f"{name} is {dropped} tokens longer than the {chunk_size(pipe.tokenizer)} "
                "the stock engine reads (diffusers as shipped): its end is not used; "
                "engine 'animatediff' reads it whole",
                event="prompt_truncated",
                text=name,
                dropped=dropped,
            )


class StockAnimateDiffEngine:
    name = "animatediff-stock"
    capabilities = Capabilities(
        summary="diffusers' AnimateDiffControlNetPipeline as shipped: the reference",
        reads=frozenset(
            {
                "text",
                "sampling",
                "checkpoint",
                "motion",
                "controls",
                "controlnet_models",
                "loras",
                "scheduler",
                "guess_mode",
                "frame_windows",
                "window_fuse",
                "decode_chunks",
                "free_noise",
                "normal_image",
                "dtype",
                "device",
            }
        ),
        # diffusers' pipeline has no channels-last switch and no latent previews; the
        # reference runs as shipped (docs/engine.md lists both as leaving the frames alone)
        ignores=frozenset({"channels_last", "latent_preview"}),
        control_roles=frozenset(ROLES),
        any_length=False,
    )

    @staticmethod
    def check(settings: Settings, roots: list[Path], shot: Shot | None) -> None:
        """Its guess mode and its longest shot (the motion adapter's, without FreeNoise)."""
        check_guess_mode(settings)
        if shot is not None:
            check_stock_shot(settings, shot.frames, roots)

    def __init__(
        self,
        roots: list[Path],
        cache: ModelCache,
        models: ModelKey | None = None,
        embeddings: Any = None,
    ) -> None:
        del embeddings  # no references here
        self.roots = roots
        self.cache = cache
        self.models = models  # the job's, resolved at submit

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
        from PIL import Image

        from storyshade.engine.base import load_pipeline
        from storyshade.engine.motion import scale_motion
        from storyshade.engine.pipeline_edits import edited
        from storyshade.engine.windowed import check_windows

        del looks  # refused before any work (the registry: no looks capability)
        n = len(controls.frame_numbers)
        cancel = cancel or CancelToken()
        key, pipe = load_pipeline(self.roots, self.cache, settings, reporter, self.models, cancel)
        check_windows(settings, pipe.unet)
        say_truncated(pipe, settings, reporter)
        roles = [role for role, _ in key.controlnets]
        conditioning = [[Image.fromarray(f) for f in controls.frames[r]] for r in roles]
        specs = [settings.controls[r] for r in roles]
        # diffusers refuses an empty span (start == end); a zero scale is the same numbers.
        empty = [c.start >= c.end for c in specs]
        scales = [0.0 if e else c.scale for c, e in zip(specs, empty, strict=True)]
        starts = [0.0 if e else c.start for c, e in zip(specs, empty, strict=True)]
        ends = [1.0 if e else c.end for c, e in zip(specs, empty, strict=True)]

        def on_step(_pipe, step: int, _t, kwargs):  # diffusers' step-end callback
            reporter.stage(Stage.DENOISING, step + 1, settings.steps)
            cancel.check()  # raises out of the pipeline call: the next step never starts
            return kwargs

        single = len(roles) == 1
        free_noise = settings.free_noise and n > settings.context_length
        generator = torch.Generator("cpu").manual_seed(settings.seed)
        with edited() as edits:  # the cached pipeline serves other jobs: all undone after
            if free_noise:
                pipe.enable_free_noise(
                    context_length=settings.context_length,
                    context_stride=settings.context_length - settings.context_overlap,
                    weighting_scheme=settings.context_fuse,
                )
                edits.callback(lambda: disable_free_noise(pipe))
            scale_motion(edits, pipe.unet, settings.motion_scale)
            result = pipe(
                prompt=settings.full_prompt,
                negative_prompt=settings.negative_prompt or None,
                num_frames=n,
                width=settings.width,
                height=settings.height,
                num_inference_steps=settings.steps,
                guidance_scale=settings.guidance_scale,
                conditioning_frames=conditioning[0] if single else conditioning,
                controlnet_conditioning_scale=scales[0] if single else scales,
                control_guidance_start=starts[0] if single else starts,
                control_guidance_end=ends[0] if single else ends,
                guess_mode=specs[0].guess_mode,
                generator=generator,
                decode_chunk_size=settings.decode_chunk_size,
                output_type="np",
                callback_on_step_end=on_step,
            )
        frames = result.frames[0]
        for i in range(n):
            yield i, np.round(np.clip(frames[i], 0, 1) * 255).astype(np.uint8)

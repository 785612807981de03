"""The reference Wan engine: diffusers' WanVACEPipeline as shipped, one call per shot.

The shot's control frames (the one role that steers) are its `video`, the role's scale
its `conditioning_scale`, the shot's references its `reference_images`. Its frame count
is padded to 4k+1 by repeating the last frame (the pipeline would round it down and drop
frames), and the extra frames are not returned. Memory grows with the shot's length:
the windowed engine 'wan-vace' is the one for long shots; this one is what it is
checked against.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from storyshade.bundle import Region
from storyshade.cancel import CancelToken
from storyshade.controls import ControlSet
from storyshade.engine.wan_checks import WanModels, stock_roles
from storyshade.engines import Capabilities, Shot
from storyshade.models.loader import ModelCache, ModelKey
from storyshade.progress import Reporter
from storyshade.settings import ROLES, Settings
from storyshade.wire.states import Stage


def stock_call(pipe: Any, controls: ControlSet, settings: Settings, **extra: Any) -> Any:
    """WanVACEPipeline's call for the shot (tests pass `latents` or `output_type`)."""
    from PIL import Image

    from storyshade.engine.wan_references import used_references
    from storyshade.engine.wan_video import padded_frames
    from storyshade.references import load_image

    n = len(controls.frame_numbers)
    count = padded_frames(n)
    roles = stock_roles(settings)
    video = None
    scale = 0.0
    if roles:
        seq = controls.frames[roles[0]]
        video = [Image.fromarray(np.asarray(seq[min(i, n - 1)])) for i in range(count)]
        scale = settings.controls[roles[0]].scale
    else:  # no control steers: a blank control video at scale 0, as the pipeline's default
        video = None
    refs = [load_image(p, i) for i, p in used_references(settings)]
    return pipe(
        prompt=settings.full_prompt,
        negative_prompt=settings.negative_prompt,
        video=video,
        reference_images=refs or None,
        conditioning_scale=scale,
        height=settings.height,
        width=settings.width,
        num_frames=count,
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance_scale,
        max_sequence_length=512,
        **extra,
    )


class StockWanVaceEngine(WanModels):
    name = "wan-vace-stock"
    capabilities = Capabilities(
        summary="diffusers' WanVACEPipeline as shipped: the reference",
        reads=frozenset(
            {
                "text",
                "sampling",
                "checkpoint",
                "controls",
                "loras",
                "references",
                "flow_sampling",
                "normal_image",
                "dtype",
                "device",
            }
        ),
        # the pipeline as shipped has no channels-last switch, no latent previews and no
        # decode chunks; VACE has no ControlNets (docs/engine.md)
        ignores=frozenset(
            {"controlnet_models", "channels_last", "latent_preview", "decode_chunks"}
        ),
        control_roles=frozenset(ROLES),
        any_length=False,
    )

    @staticmethod
    def check(settings: Settings, roots: list[Path], shot: Shot | None) -> None:
        """One control video over the whole schedule, a size in 16s, the shortest shot."""
        from storyshade.engine.wan_checks import check_stock_wan

        check_stock_wan(settings, shot)

    def __init__(
        self,
        roots: list[Path],
        cache: ModelCache,
        models: ModelKey | None = None,
        embeddings: Any = None,
    ) -> None:
        del embeddings
        self.roots = roots
        self.cache = cache
        self.models = models

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

        del looks  # refused before any work (the registry: no looks capability)
        n = len(controls.frame_numbers)
        cancel = cancel or CancelToken()
        _key, pipe = load_pipeline(self.roots, self.cache, settings, reporter, self.models, cancel)

        def on_step(_pipe: Any, step: int, _t: Any, kwargs: dict) -> dict:
            reporter.stage(Stage.DENOISING, step + 1, settings.steps)
            cancel.check()
            return kwargs

        result = stock_call(
            pipe,
            controls,
            settings,
            generator=torch.Generator("cpu").manual_seed(settings.seed),
            output_type="np",
            callback_on_step_end=on_step,
        )
        frames = result.frames[0]
        for i in range(n):
            yield i, np.round(np.clip(frames[i], 0, 1) * 255).astype(np.uint8)

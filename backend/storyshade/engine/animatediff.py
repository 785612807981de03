"""First engine: the stock diffusers AnimateDiffControlNetPipeline, one call per shot.

Memory grows with frame count here (see the windowed engine for long shots); it is kept
as the reference the windowed engine is checked against.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from storyshade.controls import ControlSet
from storyshade.engine.base import load_pipeline
from storyshade.models.loader import ModelCache
from storyshade.progress import Reporter
from storyshade.settings import Settings


class StockAnimateDiffEngine:
    name = "animatediff-stock"

    def __init__(self, roots: list[Path], cache: ModelCache) -> None:
        self.roots = roots
        self.cache = cache

    def render(
        self, controls: ControlSet, settings: Settings, reporter: Reporter
    ) -> Iterator[tuple[int, np.ndarray]]:
        import torch
        from PIL import Image

        key, pipe = load_pipeline(self.roots, self.cache, settings, reporter)
        roles = [role for role, _ in key.controlnets]
        conditioning = [[Image.fromarray(f) for f in controls.frames[r]] for r in roles]
        scales = [settings.controls[r].scale for r in roles]
        n = len(controls.frame_numbers)

        def on_step(_pipe, step: int, _t, kwargs):  # diffusers' step-end callback
            reporter.stage("denoising", step + 1, settings.steps)
            return kwargs

        generator = torch.Generator("cpu").manual_seed(settings.seed)
        result = pipe(
            prompt=settings.prompt,
            negative_prompt=settings.negative_prompt or None,
            num_frames=n,
            width=settings.width,
            height=settings.height,
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance_scale,
            conditioning_frames=conditioning if len(roles) > 1 else conditioning[0],
            controlnet_conditioning_scale=scales if len(roles) > 1 else scales[0],
            generator=generator,
            decode_chunk_size=settings.decode_chunk_size,
            output_type="np",
            callback_on_step_end=on_step,
        )
        frames = result.frames[0]
        for i in range(n):
            yield i, np.round(np.clip(frames[i], 0, 1) * 255).astype(np.uint8)

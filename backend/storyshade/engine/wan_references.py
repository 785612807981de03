"""Reference images and colour matching for the Wan VACE engine.

References: VACE's own reference images. Each image is fitted (aspect kept, white
margins, as WanVACEPipeline pads it) into the generation frame, encoded by the VAE as a
one-frame clip, and placed as a latent "slot" before the video's latents; its VACE
conditioning is the image's latent with a zero mask, and the slot's own prediction is
thrown away at the end. The model reads the slot through self-attention over every
token of the frame, so a reference acts on the whole shot: a reference tied to one look
cannot be kept inside that look's pixels here, and is refused at submit
(engine/wan_checks.py) rather than spread over the frame. VACE gives a reference no
strength either, so a weight other than the default (or 0, which drops it) is refused.

Colour matching: engine/color_match.py's AdaIN on each window's predicted clean latents,
at every step, for flow matching: x0 = x - sigma * v, and back v = (x - x0') / sigma.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from storyshade.engine.color_match import channel_stats
from storyshade.engine.wan_video import encode_clip, pad_image, to_video
from storyshade.settings import Settings


def used_references(settings: Settings) -> list[tuple[int, str]]:
    """(index, image) of the references that act (weight 0 drops one, as for AnimateDiff)."""
    return [(i, r.image) for i, r in enumerate(settings.references) if r.weight != 0]


def reference_latents(pipe: Any, settings: Settings, size: tuple[int, int]) -> torch.Tensor | None:
    """(1, 96, R, h, w) VACE conditioning of the references (in WanVACEPipeline's slot
    order: the last image first), or None without references."""
    from storyshade.references import load_image

    images = [load_image(path, i) for i, path in used_references(settings)]
    if not images:
        return None
    width, height = size
    _, _, canvases = pipe.preprocess_conditions(
        None, None, images, 1, height, width, 1, torch.float32, pipe.vae.device
    )
    slots = []
    for canvas in canvases[0]:
        latent = encode_clip(pipe.vae, lambda _r, c=canvas: c[None, :, None], 1)
        slots.insert(0, torch.cat([latent, torch.zeros_like(latent)], dim=1))
    refs = torch.cat(slots, dim=2)  # (1, 32, R, h, w)
    mask = refs.new_zeros(1, 64, *refs.shape[2:])
    return torch.cat([refs, mask], dim=1).cpu()


class FlowColorMatcher:
    """AdaIN of each window's clean-latent estimate towards the first window's (per step)
    or an image's statistics, for flow-matching samplers."""

    def __init__(
        self, strength: float, target: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> None:
        self.strength = strength
        self.fixed = target
        self.target = target

    def window(self, pred: torch.Tensor, x: torch.Tensor, w: int, sigma: float) -> torch.Tensor:
        x = x.float()
        x0 = x - sigma * pred
        mean, std = channel_stats(x0)
        if self.fixed is None and w == 0:
            self.target = (mean, std)
            return pred
        assert self.target is not None
        ref_mean, ref_std = self.target
        matched = (x0 - mean) / std * ref_std + ref_mean
        x0 = x0 + self.strength * (matched - x0)
        return (x - x0) / max(sigma, 1e-6)


def flow_color_matcher(
    pipe: Any, settings: Settings, size: tuple[int, int]
) -> FlowColorMatcher | None:
    """The job's matcher, or None when colour matching is off (strength 0 included)."""
    from storyshade.controls.sizing import cover_resize
    from storyshade.references import load_image

    cm = settings.color_match
    if cm is None or cm.strength == 0:
        return None
    target = None
    if cm.image is not None:
        rgb = np.asarray(load_image(str(Path(cm.image)), field="settings.color_match.image"))
        rgb = pad_image(cover_resize(rgb, settings.width, settings.height), *size)
        latent = encode_clip(pipe.vae, lambda _r: to_video([rgb]), 1)
        target = tuple(t.to(pipe.transformer.device) for t in channel_stats(latent))
    return FlowColorMatcher(cm.strength, target)

"""motion_scale: how much the motion modules' temporal mixing is allowed to change frames.

Each AnimateDiff motion module returns `x + f(x)`, where `f` mixes frames along time. The
scale multiplies that residual: 0 leaves every frame to the spatial UNet alone (the motion
module is skipped, so the result is exactly the per-frame image model), 1 is AnimateDiff as
trained, in between damps the motion, above 1 exaggerates it.

The module's own `forward` is shadowed on the instance (a PipelineEdits change, undone when
the job's block ends) rather than wrapping the module: its structure (`transformer_blocks`,
which FreeNoise and the chunking plans reach into) stays untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from storyshade.engine.pipeline_edits import PipelineEdits

if TYPE_CHECKING:  # torch is imported by whoever hands us a model
    import torch
    from torch import nn


def motion_modules(unet: nn.Module) -> list[nn.Module]:
    """Every AnimateDiff temporal transformer in `unet` (down, mid and up blocks)."""
    from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

    return [m for m in unet.modules() if isinstance(m, AnimateDiffTransformer3D)]


def _scaled(original: Callable[..., torch.Tensor], scale: float) -> Callable[..., torch.Tensor]:
    def forward(hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if scale == 0.0:
            return hidden_states  # no temporal mixing at all, and no cost
        out = original(hidden_states, *args, **kwargs)
        return hidden_states + scale * (out - hidden_states)

    return forward


def scale_motion(edits: PipelineEdits, unet: nn.Module, scale: float) -> int:
    """Scale every motion module's residual by `scale` until `edits` are undone.

    Returns how many modules were scaled. At 1.0 nothing is touched, so the output is
    bit-identical to the unscaled model.
    """
    if scale == 1.0:
        return 0
    modules = motion_modules(unet)
    for module in modules:
        edits.forward(module, _scaled(module.forward, scale))
    return len(modules)

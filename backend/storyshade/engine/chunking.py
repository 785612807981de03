"""Chunked inference inside a window: the same numbers, computed a slice at a time.

Within one window the largest activations are the feed-forward layers (tokens x 4 x 2 x
channels for GEGLU) and attention. Every one of these is independent across some axis:
temporal blocks (after their GroupNorm) across spatial positions, spatial feed-forward
across tokens, spatial attention across frames. Running them in slices of that axis caps
peak memory without changing the result. `slice_models(edits, models, plan)` swaps slicing
wrappers in for one window, as PipelineEdits changes, so the original modules come back
when the window's block ends: the same loaded pipeline serves later jobs and the stock
engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from storyshade.engine.pipeline_edits import PipelineEdits


@dataclass(frozen=True)
class Plan:
    """How to run one window. 0 means "unsliced" for every chunk size."""

    name: str = "full"
    cfg_split: bool = False  # run the unconditional and conditional halves one after another
    temporal_chunk: int = 0  # spatial positions per slice in motion-module transformer blocks
    ff_chunk: int = 0  # tokens per slice in spatial feed-forward layers
    attention_slice: int = 0  # frames per slice in spatial attention
    offload: bool = False  # keep only the model that is running on the accelerator

    @property
    def slices(self) -> bool:
        return bool(self.temporal_chunk or self.ff_chunk or self.attention_slice)


class Split(nn.Module):
    """Runs `module` on slices of its input along `dim` and concatenates the results.

    Slices the first positional tensor (or `hidden_states=`) and any other tensor keyword
    whose size along `dim` matches it; everything else passes through unchanged.
    """

    def __init__(self, module: nn.Module, size: int, dim: int) -> None:
        super().__init__()
        self.module = module
        self.size = size
        self.dim = dim

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        if args:
            main, rest = args[0], args[1:]
            key = None
        else:
            main, rest, key = kwargs.pop("hidden_states"), (), "hidden_states"
        total = main.shape[self.dim]
        if total <= self.size:
            return self._call(main, rest, key, kwargs)
        split = {
            k: v
            for k, v in kwargs.items()
            if torch.is_tensor(v) and v.dim() > self.dim and v.shape[self.dim] == total
        }
        outputs = []
        for start in range(0, total, self.size):
            part = {
                k: v.narrow(self.dim, start, min(self.size, total - start))
                for k, v in split.items()
            }
            piece = main.narrow(self.dim, start, min(self.size, total - start))
            outputs.append(self._call(piece, rest, key, {**kwargs, **part}))
        return torch.cat(outputs, dim=self.dim)

    def _call(self, main: torch.Tensor, rest: tuple, key: str | None, kwargs: dict) -> torch.Tensor:
        if key is None:
            return self.module(main, *rest, **kwargs)
        return self.module(*rest, **{key: main}, **kwargs)


def _targets(model: nn.Module, plan: Plan) -> list[tuple[nn.Module, str, int, int]]:
    """(parent, attribute, slice size, dim) for every module the plan slices."""
    from diffusers.models.attention import BasicTransformerBlock
    from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

    found: list[tuple[nn.Module, str, int, int]] = []
    temporal: set[int] = set()
    for module in model.modules():
        if isinstance(module, AnimateDiffTransformer3D):
            for i, block in enumerate(module.transformer_blocks):
                temporal.add(id(block))
                if plan.temporal_chunk:
                    # (batch * height * width, frames, channels): positions are independent.
                    found.append((module.transformer_blocks, str(i), plan.temporal_chunk, 0))
    for module in model.modules():
        if not isinstance(module, BasicTransformerBlock) or id(module) in temporal:
            continue
        if plan.ff_chunk:
            found.append((module, "ff", plan.ff_chunk, 1))  # (frames, tokens, channels)
        if plan.attention_slice:
            for name in ("attn1", "attn2"):
                attn = getattr(module, name, None)
                # a processor whose rows map to frames by position (per-object looks) sees
                # the whole batch; cross-attention over 77 tokens is small anyway
                if attn is not None and not getattr(attn.processor, "whole_batch", False):
                    found.append((module, name, plan.attention_slice, 0))
    return found


def slice_models(edits: PipelineEdits, models: list[nn.Module], plan: Plan) -> int:
    """Apply the plan's slicing to `models` until `edits` are undone; how many wrappers."""
    count = 0
    if plan.slices:
        for model in models:
            for parent, attr, size, dim in _targets(model, plan):
                edits.child(parent, attr, Split(parent._modules[attr], size, dim))
                count += 1
    return count

"""step_cache: DeepCache for the motion UNet (diffusers' caches do not cover UNetMotionModel).

Between neighbouring steps the deep blocks' output changes little. Every `interval` steps
(a refresh step) the UNet runs whole and the input of its last up block (the output of all
the deeper blocks, at full latent resolution) is kept per window; on the steps between,
only the shallow path runs: conv_in, the first down block, the last up block and conv_out,
with the kept deep features in place of everything deeper. The ControlNets run only their
matching shallow part too (conv_in, hint embedding, first down block, zero convs), since
the UNet consumes nothing deeper on those steps.

Memory: one kept feature per window and CFG layout, on the CPU in the model's dtype, of
(rows x frames, channels of the last up block's input, latent h, latent w). For SD1.5 at
512x512 with CFG that is 640 x 64 x 64 x 2 bytes x 2 rows = 10.5 MB per window frame in
fp16 (21 MB in fp32): it grows with shot length (~13 MB per frame with 16/4 windows), so
the lever costs host memory, not accelerator memory.

The forwards below replicate diffusers 0.42's UNetMotionModel/ControlNetModel.forward for
what the windowed sampler passes (no attention mask, no added conditions, no class
embeddings); a refresh step computes exactly what `unet(...)` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


def _embedding(model: nn.Module, t: torch.Tensor, batch: int, dtype: torch.dtype) -> Any:
    timesteps = t[None] if t.dim() == 0 else t
    timesteps = timesteps.to(model.device).expand(batch)
    return model.time_embedding(model.time_proj(timesteps).to(dtype=dtype), None)


def _down(block: nn.Module, sample: Any, emb: Any, text: Any, n: int | None) -> Any:
    frames = {} if n is None else {"num_frames": n}
    if getattr(block, "has_cross_attention", False):
        return block(hidden_states=sample, temb=emb, encoder_hidden_states=text, **frames)
    return block(hidden_states=sample, temb=emb, **frames)


def _up(block: nn.Module, sample: Any, emb: Any, skip: tuple, text: Any, n: int, size: Any) -> Any:
    kwargs = {"res_hidden_states_tuple": skip, "upsample_size": size, "num_frames": n}
    if getattr(block, "has_cross_attention", False):
        kwargs["encoder_hidden_states"] = text
    return block(hidden_states=sample, temb=emb, **kwargs)


def _unet_in(unet: nn.Module, x: Any, t: Any, text: Any) -> tuple[Any, Any, int, int]:
    b, _, n = x.shape[:3]
    emb = _embedding(unet, t, b, unet.dtype).repeat_interleave(n, dim=0)
    sample = x.permute(0, 2, 1, 3, 4).reshape((b * n, -1, *x.shape[3:]))
    return unet.conv_in(sample), emb, b, n


def _unet_out(unet: nn.Module, sample: Any, n: int) -> Any:
    if unet.conv_norm_out:
        sample = unet.conv_act(unet.conv_norm_out(sample))
    sample = unet.conv_out(sample)
    return sample[None, :].reshape((-1, n, *sample.shape[1:])).permute(0, 2, 1, 3, 4)


def deep_forward(
    unet: nn.Module, x: Any, t: Any, text: Any, down_add: Any, mid_add: Any
) -> tuple[Any, Any]:
    """The whole UNet (as `unet(...).sample`) and the input of its last up block."""
    sample, emb, _, n = _unet_in(unet, x, t, text)
    odd = any(s % 2**unet.num_upsamplers for s in x.shape[-2:])
    res = (sample,)
    for block in unet.down_blocks:
        sample, more = _down(block, sample, emb, text, n)
        res += more
    if down_add is not None:
        res = tuple(r + a for r, a in zip(res, down_add, strict=False))
    if unet.mid_block is not None:
        frames = {"num_frames": n} if hasattr(unet.mid_block, "motion_modules") else {}
        sample = unet.mid_block(sample, emb, encoder_hidden_states=text, **frames)
    if mid_add is not None:
        sample = sample + mid_add
    feature = sample
    last = len(unet.up_blocks) - 1
    for i, block in enumerate(unet.up_blocks):
        k = len(block.resnets)
        skip, res = res[-k:], res[:-k]
        size = res[-1].shape[2:] if odd and i < last else None
        if i == last:
            feature = sample
        sample = _up(block, sample, emb, skip, text, n, size)
    return _unet_out(unet, sample, n), feature


def shallow_forward(unet: nn.Module, x: Any, t: Any, text: Any, down_add: Any, feature: Any) -> Any:
    """The UNet's output with `feature` standing in for everything below the first level."""
    sample, emb, _, n = _unet_in(unet, x, t, text)
    _, more = _down(unet.down_blocks[0], sample, emb, text, n)
    k = len(unet.up_blocks[-1].resnets)
    skip = (sample, *more)[:k]
    if down_add is not None:
        skip = tuple(r + a for r, a in zip(skip, down_add, strict=True))
    out = _up(unet.up_blocks[-1], feature, emb, skip, text, n, None)
    return _unet_out(unet, out, n)


def shallow_control(
    net: nn.Module,
    k: int,
    flat: Any,
    t: Any,
    text: Any,
    cond: Any,
    scale: float,
    guess_mode: bool,
) -> list[Any]:
    """ControlNet's first `k` residuals (those the shallow UNet path adds), as its forward
    computes them: conv_in + hint embedding, the first down block, the zero convs, scaled."""
    if net.config.controlnet_conditioning_channel_order == "bgr":
        cond = torch.flip(cond, dims=[1])
    emb = _embedding(net, t, flat.shape[0], flat.dtype)
    sample = net.conv_in(flat) + net.controlnet_cond_embedding(cond)
    _, more = _down(net.down_blocks[0], sample, emb, text, None)
    res = [
        block(r) for r, block in zip((sample, *more)[:k], net.controlnet_down_blocks, strict=False)
    ]
    if guess_mode and not net.config.global_pool_conditions:
        total = len(net.controlnet_down_blocks)
        scales = torch.logspace(-1, 0, total + 1, device=flat.device) * scale
        res = [r * s for r, s in zip(res, scales, strict=False)]
    else:
        res = [r * scale for r in res]
    if net.config.global_pool_conditions:
        res = [torch.mean(r, dim=(2, 3), keepdim=True) for r in res]
    return res


@dataclass
class StepCache:
    """One denoising pass's kept deep features, by window and CFG rows.

    `deep_calls`/`shallow_calls` count UNet forwards of each kind (the tests and the
    benchmark read them)."""

    interval: int
    step: int = 0
    features: dict[tuple, torch.Tensor] = field(default_factory=dict)
    deep_calls: int = 0
    shallow_calls: int = 0

    def start(self, step: int) -> None:
        self.step = step

    @property
    def refresh(self) -> bool:
        return self.step % self.interval == 0

    def shallow_width(self, unet: nn.Module) -> int:
        """How many ControlNet residuals the shallow path adds."""
        return len(unet.up_blocks[-1].resnets)

    def has(self, key: tuple) -> bool:
        return not self.refresh and key in self.features

    def forward(
        self,
        calls: Callable[..., Any],
        unet: nn.Module,
        key: tuple,
        x: Any,
        t: Any,
        text: Any,
        down: Any,
        mid: Any,
    ) -> Any:
        """A shallow forward when this step reuses `key`'s features, else a full one that
        keeps them (a window or row layout not seen at the last refresh runs in full)."""
        if self.has(key):
            self.shallow_calls += 1
            feature = self.features[key].to(x.device, non_blocking=True)
            return calls("shallow", unet, x, t, text, down, feature)
        self.deep_calls += 1
        out, feature = calls("deep", unet, x, t, text, down, mid)
        self.features[key] = feature.to("cpu", copy=True)
        return out

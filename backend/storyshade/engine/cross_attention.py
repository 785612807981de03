"""One processor on each spatial cross-attention layer a job changes, and the chain of
steps it applies: how the queries attend to the text (the shot's prompt, or each look's
inside its mask: engine/regions.py), then what is added to that (each reference image's
tokens: engine/references.py), then the layer's output projection.

Looks and references are separate features that meet in the same attention call; here
they compose in one explicit order instead of one processor wrapping the other and reading
its attributes. Where no step acts at a layer (no look visible in this window, no
reference there), the layer's original processor runs, bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from storyshade.engine.pipeline_edits import PipelineEdits
from storyshade.errors import StoryShadeError


class Text(Protocol):
    """How the queries attend to the text, replacing the plain attention where it acts."""

    def acts(self, tokens: int, device: torch.device, dtype: torch.dtype) -> bool: ...

    def attend(
        self, attn: Any, query: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> torch.Tensor:
        """(rows, L, C) before the output projection."""
        ...


class Extra(Protocol):
    """Something added to the text attention's output before the output projection."""

    def acts(self, tokens: int, device: torch.device, dtype: torch.dtype) -> bool: ...

    def add(self, attn: Any, query: torch.Tensor) -> torch.Tensor:
        """(rows, L, C), `query` being attn.to_q(hidden_states)."""
        ...


def plain_text(
    attn: Any,
    query: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None,
) -> torch.Tensor:
    """(rows, L, C): every query attends to its row's text, as diffusers' processor does."""
    rows, length, channels = query.shape
    heads, d = attn.heads, channels // attn.heads
    key = attn.to_k(encoder_hidden_states)
    value = attn.to_v(encoder_hidden_states)
    if attention_mask is not None:
        attention_mask = attn.prepare_attention_mask(attention_mask, key.shape[1], rows)
        attention_mask = attention_mask.view(rows, heads, -1, attention_mask.shape[-1])

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.view(rows, -1, heads, d).transpose(1, 2)

    out = F.scaled_dot_product_attention(
        split(query), split(key), split(value), attn_mask=attention_mask, dropout_p=0.0
    )
    return out.transpose(1, 2).reshape(rows, length, channels)


class CrossAttention:
    """The chain on one layer: `text` (or the plain attention where it does not act), then
    every acting `extras` step added, then the output projection."""

    whole_batch = True  # rows map to CFG branches and frames by position: never sliced

    def __init__(self, original: Any, text: Text | None, extras: Sequence[Extra] = ()) -> None:
        self.original = original
        self.text = text
        self.extras = list(extras)

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        original = (attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if encoder_hidden_states is None or hidden_states.ndim != 3:
            return self.original(*original)
        where = (hidden_states.shape[1], hidden_states.device, hidden_states.dtype)
        text = self.text if self.text is not None and self.text.acts(*where) else None
        extras = [e for e in self.extras if e.acts(*where)]
        if text is None and not extras:  # nothing acts here: bit for bit as loaded
            return self.original(*original)
        query = attn.to_q(hidden_states)
        if text is not None:
            out = text.attend(attn, query, encoder_hidden_states)
        else:
            out = plain_text(attn, query, encoder_hidden_states, attention_mask)
        for extra in extras:
            out = out + extra.add(attn, query)
        out = attn.to_out[1](attn.to_out[0](out))
        return out / attn.rescale_output_factor


def cross_attentions(model: nn.Module) -> Iterator[Any]:
    """The spatial cross-attention modules (`.attentions.*.attn2`); the motion modules'
    attn2 is temporal self-attention and is left alone."""
    from diffusers.models.attention_processor import Attention

    for name, module in model.named_modules():
        if (
            isinstance(module, Attention)
            and name.endswith("attn2")
            and ".attentions." in f".{name}"
        ):
            yield module


def check_plain(module: Any) -> None:
    """The chain computes SD1.5's plain cross-attention; refuse any other kind."""
    plain = (
        module.spatial_norm is None
        and module.group_norm is None
        and not module.norm_cross
        and not module.residual_connection
        and module.norm_q is None
        and module.norm_k is None
    )
    if not plain:
        raise StoryShadeError(
            "this model's cross-attention is not the SD1.5 kind that per-object looks and "
            "references support",
            "shade without looks and references, or use an SD1.5-class checkpoint",
            field="regions",
        )


def unet_cross_attentions(unet: nn.Module) -> list[Any]:
    """The UNet's spatial cross-attention layers in order (a reference adapter's per-layer
    weights follow this order), each checked to be the plain kind."""
    modules = list(cross_attentions(unet))
    for module in modules:
        check_plain(module)
    return modules


def install_cross_attention(
    edits: PipelineEdits,
    unet: nn.Module,
    controlnets: Sequence[nn.Module],
    text: Text | None,
    layer_extras: Any = None,
) -> int:
    """Put the chain on the UNet's spatial cross-attention (the looks' `text`, and
    `layer_extras(i)`'s steps on layer i: the references) and, with looks, on the
    ControlNets' (looks only: references steer the UNet), until `edits` are undone; how
    many layers. With neither, nothing. Every module is checked before any is changed."""
    if text is None and layer_extras is None:
        return 0
    unet_layers = unet_cross_attentions(unet)
    net_layers = [m for net in controlnets for m in cross_attentions(net)] if text else []
    for module in net_layers:
        check_plain(module)
    for i, module in enumerate(unet_layers):
        extras = layer_extras(i) if layer_extras is not None else []
        edits.processor(module, CrossAttention(module.processor, text, extras))
    for module in net_layers:
        edits.processor(module, CrossAttention(module.processor, text))
    return len(unet_layers) + len(net_layers)

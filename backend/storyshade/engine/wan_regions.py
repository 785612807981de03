"""Per-object looks in Wan's text cross-attention: engine/regions.py on Wan's token grid.

Every text cross-attention (`attn2` of each WanTransformerBlock, and of each VACE block,
which reads the text too) computes its queries once and attends them to the shot's text
and to each look's, blended per token by the look's mask (regions.py's `Blend`: the
same coefficients, summing to 1 at every token). A Wan token is one latent frame (4
frames, the first latent 1) by 16x16 pixels (8 by the VAE, 2 by the patch), so a look's
mask on the grid is its share of those pixels over those frames: the exact id maps are
area-averaged per frame with regions.py's one-cell feather, then averaged over the frames
a latent holds. Reference slots (engine/wan_references.py) carry no look.

One transformer call per window per CFG branch serves every look; where no look shows in
a window, Wan's own processor runs, bit for bit. The looks' texts are projected by the
transformer's own text embedder (as the shot's is inside the model), once per job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from storyshade.bundle import Region
from storyshade.engine.pipeline_edits import PipelineEdits
from storyshade.engine.regions import RegionState, _latent_masks
from storyshade.engine.wan_video import CELL, Clip, pad_image


class WanRegionState(RegionState):
    """RegionState whose masks live on Wan's (latent frame, token row, token column) grid.

    `set_window(latents)` takes the window's latent frame indices (clip grid; -1 for a
    reference slot); `look_masks(tokens)` gives each look's share of every token."""

    def __init__(
        self,
        id_maps: Sequence[np.ndarray],
        looks: Sequence[Region],
        cond: Sequence[torch.Tensor],
        uncond: Sequence[torch.Tensor] | None,
        clip: Clip,
        size: tuple[int, int],
        embedder: Any,
    ) -> None:
        width, height = size  # padded generation size (multiples of 16)
        super().__init__(id_maps, looks, cond, uncond, (height // CELL, width // CELL))
        self.clip = clip
        self.size = size
        self.embedder = embedder  # the transformer's text projection
        self._projected: dict[tuple, torch.Tensor] = {}
        self._latent_cache: dict[int, np.ndarray] = {}
        self._grid: torch.Tensor | None = None
        self._key: tuple = ()

    def _latent(self, j: int) -> np.ndarray:
        """(R, gh, gw): each look's share of latent j's tokens."""
        if j not in self._latent_cache:
            if len(self._latent_cache) > 256:
                self._latent_cache.clear()
            width, height = self.size
            frames = [self.clip.source(i) for i in self.clip.latent_frames(j)]
            maps = [
                _latent_masks(
                    pad_image(np.asarray(self.id_maps[f]), width, height),
                    self.region_ids,
                    self.latent_size,
                )
                for f in frames
            ]
            self._latent_cache[j] = np.mean(maps, axis=0, dtype=np.float32)
        return self._latent_cache[j]

    def set_window(self, window: Sequence[int]) -> None:  # type: ignore[override]
        key = tuple(window)
        if key == self._key:
            return
        self._key = key
        self.window = range(0)  # regions.py's RegionState keys by this; ours by _key
        gh, gw = self.latent_size
        empty = np.zeros((len(self.region_ids), gh, gw), np.float32)
        grid = np.stack([self._latent(j) if j >= 0 else empty for j in window])  # (n, R, h, w)
        self._grid = torch.from_numpy(grid).transpose(0, 1).flatten(1)  # (R, n*h*w)
        self._by_size = {}

    def look_masks(self, tokens: int) -> torch.Tensor:
        assert self._grid is not None, "set_window before the model call"
        if self._grid.shape[1] != tokens:
            raise ValueError(
                f"a text attention sees {tokens} tokens, the masks cover {self._grid.shape[1]}"
            )
        return self._grid

    def projected(self, k: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Look k's text for the branch under way, through the transformer's embedder."""
        branch = self.rows[0]
        key = (k, branch, device, dtype)
        if key not in self._projected:
            raw = (self.cond if branch == "cond" else self.uncond)[k]  # (1, tokens, dim)
            with torch.inference_mode():
                self._projected[key] = self.embedder(raw.to(device, dtype))
        return self._projected[key]


class WanRegionalProcessor:
    """Wan's cross-attention with the shot's text and each look's, blended by the masks."""

    def __init__(self, original: Any, state: WanRegionState) -> None:
        self.original = original
        self.state = state

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: Any = None,
    ) -> torch.Tensor:
        from diffusers.models.attention_dispatch import dispatch_attention_fn

        blend = None
        if encoder_hidden_states is not None and attn.add_k_proj is None:
            blend = self.state.masks(
                hidden_states.shape[1], hidden_states.device, hidden_states.dtype
            )
        if blend is None:
            return self.original(
                attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb
            )
        query = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1))
        out = torch.zeros(
            *hidden_states.shape[:2],
            query.shape[2] * query.shape[3],
            device=hidden_states.device,
            dtype=query.dtype,
        )

        def add(text: torch.Tensor, where: torch.Tensor, coef: torch.Tensor) -> None:
            key = attn.norm_k(attn.to_k(text)).unflatten(2, (attn.heads, -1))
            value = attn.to_v(text).unflatten(2, (attn.heads, -1))
            part = dispatch_attention_fn(
                query[:, where], key, value, attn_mask=None, dropout_p=0.0, is_causal=False
            )
            out[:, where] += coef * part.flatten(2, 3).type_as(query)

        if blend.shot[0].numel():
            add(encoder_hidden_states, *blend.shot)
        for k, where, coef in blend.looks:
            add(self.state.projected(k, hidden_states.device, hidden_states.dtype), where, coef)
        return attn.to_out[1](attn.to_out[0](out))


def text_attentions(transformer: Any) -> list[Any]:
    """Every text cross-attention: the blocks' and the VACE blocks' `attn2`."""
    return [b.attn2 for b in (*transformer.blocks, *getattr(transformer, "vace_blocks", ()))]


def install_wan_regions(
    edits: PipelineEdits, transformer: Any, state: WanRegionState | None
) -> int:
    """The regional processors on every text attention until `edits` are undone."""
    if state is None:
        return 0
    modules = text_attentions(transformer)
    for module in modules:
        edits.processor(module, WanRegionalProcessor(module.processor, state))
    return len(modules)

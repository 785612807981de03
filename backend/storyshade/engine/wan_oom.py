"""Out-of-memory fallback for the Wan loop: a window that hits the memory ceiling is
retried on the next rung, and the job stays there (the events say each move).

Each rung computes the same numbers with a smaller peak, as AnimateDiff's ladder does
(engine/oom.py):
1. "VAE off the device": the VAE waits in CPU memory while the transformer works (it is
   needed again only to decode, and comes back for that).
2. "smaller chunks", 3. "smallest chunks": every block's feed-forward (the largest
   activation: tokens x ffn_dim, 2 GB a call for the 14B at 720p) runs over that many
   tokens at a time; it acts on each token alone, so the result is the same.
A failed call can leave a step cache (`wan_cache`) half written, so the sampler starts
every window's cache again before the retry (engine/wan_sampling.py's `_on_fallback`).
Group offload (`wan_offload = "group"`) is chosen when the model loads, so it is not a
rung: when the last rung fails too, the job fails with the out-of-memory error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from storyshade.engine.pipeline_edits import PipelineEdits


@dataclass(frozen=True)
class WanPlan:
    name: str
    vae_off: bool = False
    ff_chunk: int = 0  # tokens per feed-forward call; 0: all at once


LADDER = [
    WanPlan("as set"),
    WanPlan("VAE off the device", vae_off=True),
    WanPlan("smaller chunks", vae_off=True, ff_chunk=4096),
    WanPlan("smallest chunks", vae_off=True, ff_chunk=1024),
]


def chunked(original: Callable[..., Any], size: Callable[[], int]) -> Callable[..., Any]:
    """A feed-forward `forward` that runs `size()` tokens (dim 1) at a time."""

    def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        n = size()
        if not n or x.shape[1] <= n:
            return original(x, *args, **kwargs)
        return torch.cat([original(part, *args, **kwargs) for part in x.split(n, dim=1)], 1)

    return forward


class WanRungs:
    """Puts a rung's changes in place within one denoise's edits (each once; undone with
    the rest of the job's edits, the VAE back on its device before decoding)."""

    def __init__(self, edits: PipelineEdits, transformer: Any, vae: Any) -> None:
        self.edits, self.transformer, self.vae = edits, transformer, vae
        self.ff_chunk = 0
        self.vae_moved = self.ffn_wrapped = False

    def apply(self, plan: WanPlan) -> None:
        if plan.vae_off and not self.vae_moved and self.vae is not None:
            device = next(self.vae.parameters()).device
            if device.type != "cpu":
                self.vae.to("cpu")
                self.edits.callback(lambda: self.vae.to(device))
            self.vae_moved = True
        if plan.ff_chunk and not self.ffn_wrapped:
            for block in [*self.transformer.blocks, *self.transformer.vace_blocks]:
                self.edits.forward(block.ffn, chunked(block.ffn.forward, lambda: self.ff_chunk))
            self.ffn_wrapped = True
        self.ff_chunk = plan.ff_chunk

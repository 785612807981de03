"""Reference images inside the model: IP-Adapter tokens as extra keys and values.

Each reference image is encoded once per job (CLIP vision encoder, then the adapter's
image projection) into a few tokens of the text's width, kept in the stage cache
(cache.EmbeddingCache) for later jobs with the same image and model files. In every
spatial cross-attention layer of the UNet the queries then attend, besides the text, to
each reference's tokens through the adapter's `to_k_ip`/`to_v_ip` for that layer, and the
results are added:

    out = attention(q, text) + sum_r weight_r * attention(q, reference_r)

Unconditional rows (CFG) attend to the adapter's projection of a blank embedding, as in
diffusers. Frames of a CFG branch share their reference tokens, so they are folded into
the query length: the cost per reference is one attention over 4 (base) or 16 (plus)
tokens per layer, whatever the window length, in the same single UNet call per window.

Composition with per-object looks (engine/regions.py): each layer's processor is one chain
(engine/cross_attention.py) that attends the queries to the text (the looks' blend, where
looks show) and then adds `ReferenceLayer.add`, so a reference reaches every pixel with or
without looks. A reference on a look acts inside that look's per-frame mask (positions and
coefficients: the same form as a look's `Blend`). diffusers' IP-Adapter masks cannot do
that: one static mask per image for all frames and both CFG branches.

Weight 0 (or no reference) installs nothing: the frames are bit for bit those without.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from storyshade.bundle import Region
from storyshade.cancel import CancelToken
from storyshade.engine.cross_attention import unet_cross_attentions
from storyshade.errors import ModelError, StoryShadeError
from storyshade.progress import Reporter
from storyshade.references import file_hash, load_image
from storyshade.settings import Settings

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def preprocess(image: Any, size: int) -> torch.Tensor:
    """(3, size, size) float32: CLIPImageProcessor's defaults (shortest side to `size`,
    bicubic, centre crop, CLIP mean/std)."""
    from PIL import Image

    w, h = image.size
    scale = size / min(w, h)
    rw, rh = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((rw, rh), Image.Resampling.BICUBIC)
    left, top = (rw - size) // 2, (rh - size) // 2
    image = image.crop((left, top, left + size, top + size))
    arr = np.asarray(image, dtype=np.float32) / 255.0
    arr = (arr - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1)


@dataclass
class LoadedReferences:
    """An IP-Adapter and its image encoder on the pipeline's device (their files: `paths`)."""

    adapter: Any  # models.ip_adapter.IPAdapterWeights
    encoder: Any
    paths: tuple[Path, Path]
    blank: torch.Tensor | None = None

    @property
    def plus(self) -> bool:
        return self.adapter.arch.variant == "plus"

    def _encode(self, pixels: torch.Tensor) -> torch.Tensor:
        dtype = self.encoder.dtype
        pixels = pixels.to(self.encoder.device, dtype)
        if self.plus:
            out = self.encoder(pixels, output_hidden_states=True).hidden_states[-2]
        else:
            out = self.encoder(pixels).image_embeds
        proj = self.adapter.image_proj
        return proj(out.to(next(proj.parameters()).dtype))

    def tokens(self, image: Any) -> torch.Tensor:
        """(1, T, cross) tokens of one image."""
        size = self.encoder.config.image_size
        return self._encode(preprocess(image, size)[None])

    def blank_tokens(self) -> torch.Tensor:
        """(1, T, cross): what unconditional rows see (diffusers: a zero embedding for base,
        the encoding of a black image's hidden states for plus)."""
        if self.blank is None:
            size = self.encoder.config.image_size
            if self.plus:
                self.blank = self._encode(torch.zeros(1, 3, size, size))
            else:
                width = self.adapter.arch.embed_dim
                proj = self.adapter.image_proj
                p = next(proj.parameters())
                self.blank = proj(torch.zeros(1, width, device=p.device, dtype=p.dtype))
        return self.blank


def loaded_references(pipe: Any, adapter: Path, encoder: Path) -> LoadedReferences:
    """The adapter and encoder for the cached pipeline (loaded once, kept beside it)."""
    from storyshade.models.ip_adapter import load_image_encoder, load_ip_adapter

    resident = pipe.__dict__.setdefault("_storyshade_references", {})
    stamp = tuple((p, p.stat().st_mtime_ns) for p in (adapter, encoder))
    if stamp not in resident:
        resident.clear()  # one adapter at a time beside a pipeline
        device, dtype = pipe.unet.device, pipe.unet.dtype
        resident[stamp] = LoadedReferences(
            load_ip_adapter(adapter, device, dtype),
            load_image_encoder(encoder, device, dtype),
            (adapter, encoder),
        )
    return resident[stamp]


class ReferenceState:
    """What the processors read: each reference's tokens per CFG branch, weights, the look
    each acts inside (None: the whole frame), the adapter's per-layer key/value weights,
    and the rows of the call under way (the sampler sets `rows` before every UNet call)."""

    def __init__(
        self,
        cond: Sequence[torch.Tensor],
        uncond: torch.Tensor,
        weights: Sequence[float],
        kv: Sequence[tuple[torch.Tensor, torch.Tensor]],
        looks: Sequence[int | None] | None = None,
        regions: Any = None,
    ) -> None:
        self.cond = list(cond)  # per reference (1, T, cross)
        self.uncond = uncond  # (1, T, cross)
        self.weights = list(weights)
        self.kv = list(kv)
        self.looks = list(looks) if looks is not None else [None] * len(self.cond)
        self.regions = regions  # RegionState: per-frame look masks (engine/regions.py)
        self.rows: tuple[str, ...] = ("cond",)
        self._parts: dict[tuple, list] = {}

    def tokens(self, r: int) -> torch.Tensor:
        """(B, T, cross): reference r's tokens for each CFG branch of the call."""
        return torch.cat([self.cond[r] if b == "cond" else self.uncond for b in self.rows])

    def parts(self, tokens: int, device: torch.device, dtype: torch.dtype) -> list[tuple]:
        """(r, where, coef) per reference that acts in this window at a layer with `tokens`
        cells: where/coef None for the whole frame, else the positions (frames, then cells)
        inside the reference's look and the look's share of each."""
        window = self.regions.window if self.regions is not None else None
        key = (tokens, window, device, dtype)
        if key not in self._parts:
            out = []
            for r, look in enumerate(self.looks):
                if look is None:
                    out.append((r, None, None))
                    continue
                mask = self.regions.look_masks(tokens)[look]
                where = mask.nonzero().squeeze(1)
                if where.numel():
                    out.append((r, where.to(device), mask[where].to(device, dtype)[:, None]))
            if len(self._parts) > 64:
                self._parts.clear()
            self._parts[key] = out
        return self._parts[key]


class ReferenceLayer:
    """The reference images' tokens on one UNet cross-attention layer (its adapter weights
    are the layer's own), added after the text attention."""

    def __init__(self, state: ReferenceState, layer: int) -> None:
        self.state = state
        self.layer = layer

    def acts(self, tokens: int, device: torch.device, dtype: torch.dtype) -> bool:
        """Whether a reference acts at a layer with `tokens` cells in this window."""
        return bool(self.state.parts(tokens, device, dtype))

    def add(self, attn: Any, query: torch.Tensor) -> torch.Tensor:
        """(rows, L, C) to add before `to_out`: sum_r weight_r * mask_r * attention(query,
        ref_r), mask_r being 1 for a whole-frame reference and its look's per-frame mask
        at this layer's resolution otherwise (the Extra step of engine/cross_attention.py,
        called where `acts`).

        `query` is `attn.to_q(hidden_states)` (rows = branches * frames)."""
        state = self.state
        rows, length, channels = query.shape
        parts = state.parts(length, query.device, query.dtype)
        branches = len(state.rows)
        n = rows // branches
        heads = attn.heads
        d = channels // heads
        # (B*n, L, C) -> (B, heads, n*L, d): frames of a branch share the reference tokens
        q = query.view(branches, n, length, heads, d).permute(0, 3, 1, 2, 4)
        q = q.reshape(branches, heads, n * length, d)
        k_w, v_w = state.kv[self.layer]
        out = torch.zeros_like(q)
        for r, where, coef in parts:
            tokens = state.tokens(r).to(query.device, query.dtype)
            key = F.linear(tokens, k_w).view(branches, -1, heads, d).transpose(1, 2)
            value = F.linear(tokens, v_w).view(branches, -1, heads, d).transpose(1, 2)
            weight = state.weights[r]
            if where is None:
                out += weight * F.scaled_dot_product_attention(q, key, value, dropout_p=0.0)
            else:
                part = F.scaled_dot_product_attention(q[:, :, where], key, value, dropout_p=0.0)
                out[:, :, where] += (weight * coef) * part
        out = out.view(branches, heads, n, length, d).permute(0, 2, 3, 1, 4)
        return out.reshape(rows, length, channels)


def check_fits(modules: Sequence[Any], adapter: Any, checkpoint: str) -> None:
    """The adapter has one key/value pair per cross-attention layer, of the layer's shape."""
    shapes = [tuple(m.to_k.weight.shape) for m in modules]
    have = [tuple(k.shape) for k, _ in adapter.kv]
    if shapes != have:
        raise ModelError(
            f"IP-Adapter {adapter.arch.path} has {len(have)} cross-attention layers "
            f"{have} but checkpoint '{checkpoint}' has {len(shapes)} {shapes}",
            "use an IP-Adapter trained for this checkpoint's architecture (SD1.5)",
            field="settings.ip_adapter",
        )


def encode_references(
    pipe: Any,
    settings: Settings,
    roots: list[Path],
    reporter: Reporter,
    looks: Sequence[Region] = (),
    regions: Any = None,
    store: Any = None,
    cancel: CancelToken | None = None,
) -> ReferenceState | None:
    """Each reference's tokens, or None when there is nothing to add (no references, or
    every weight 0). An image is encoded once per job, and not at all when `store` (the
    stage cache's EmbeddingCache) has it from an earlier job; each hit is a note event
    (cache "hit", reused "embeddings"), each encoding one with cache "miss". A reference
    on a look (`look`: its name) acts inside that look's per-frame masks from `regions`.
    A cancelled `cancel` stops before the next image."""
    from storyshade.models.loader import reference_files

    used = [(i, r) for i, r in enumerate(settings.references) if r.weight != 0]
    if not used:
        return None
    names = {look.name: k for k, look in enumerate(looks)}
    places: list[int | None] = []
    for i, ref in used:
        if ref.look is not None and ref.look not in names:
            raise unknown_look(ref.look, i, list(names))
        places.append(names[ref.look] if ref.look is not None else None)
    adapter_path, encoder_path = reference_files(roots, settings)
    refs = loaded_references(pipe, adapter_path, encoder_path)
    check_fits(unet_cross_attentions(pipe.unet), refs.adapter, settings.checkpoint)
    cond = []
    job: dict[str, torch.Tensor] = {}  # one encoding per image per job, even without a store
    p = next(refs.adapter.image_proj.parameters())
    cancel = cancel or CancelToken()
    for i, ref in used:
        cancel.check()
        try:
            digest = file_hash(ref.image)
        except OSError:
            load_image(ref.image, i)  # names the file and the problem
            raise
        tokens = job.get(digest)
        key = store.key(digest, refs.paths, p.device, p.dtype) if store is not None else ""
        if tokens is None and store is not None:
            tokens = store.get(key)
            if tokens is not None:
                reporter.note(
                    f"reference {i}: image embeddings reused from the stage cache",
                    stage="references",
                    cache="hit",
                    reused="embeddings",
                    key=key[:16],
                )
        if tokens is None:
            tokens = refs.tokens(load_image(ref.image, i))
            reporter.note(f"reference {i}: image encoded", stage="references", cache="miss")
            if store is not None:
                store.put(key, tokens)
        job[digest] = tokens
        cond.append(tokens)
    weights = [r.weight for _, r in used]
    return ReferenceState(cond, refs.blank_tokens(), weights, refs.adapter.kv, places, regions)


def unknown_look(name: str, index: int, names: Sequence[str]) -> StoryShadeError:
    have = ", ".join(sorted(names)) if names else "none: the shot has no looks"
    return StoryShadeError(
        f"reference {index} names look '{name}', which the shot does not have (looks: {have})",
        "name a look of the shot (an object or collection with a StoryShade look), or drop "
        "'look' to apply the reference to the whole frame",
        field=f"settings.references.{index}.look",
    )


def check_reference_looks(settings: Settings, look_names: Sequence[str]) -> None:
    """At submit: every reference's look is one of the bundle's looks."""
    for i, ref in enumerate(settings.references):
        if ref.look is not None and ref.look not in look_names:
            raise unknown_look(ref.look, i, look_names)

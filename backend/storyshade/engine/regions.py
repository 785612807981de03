"""Per-object looks inside the model: regional cross-attention in one pass.

Every spatial cross-attention layer (`.attentions.*.attn2`, in the UNet and the
ControlNets) computes its queries once, attends them to the shot's text and to each look's
text, and blends the results per pixel by the look's mask at that layer's resolution:

    out = shot + sum_r weight_r * mask_r * (look_r - shot)

so one UNet call per window per step serves every look, and a look's cost is one
cross-attention over its text's tokens per layer (77 per 75-token chunk: small next to
self-attention over h*w tokens). A look's text is its prompt inside the shot's style
(`Settings.styled`, as the shot's prompt is built) and its negative follows the shot's
(`look_texts`); each is read whole (engine/text.py), and looks' texts may differ in length. Masks come from the exact region id maps of the Object Index pass: area-averaged
down to each layer's size (a small object still weighs in) with a one-cell feather, sliced
per window with the frames. Rows follow diffusers' batch order (CFG branch * frames +
frame): conditional rows attend to each look's prompt, unconditional rows to its negative.

Why not diffusers' IP-Adapter masks: they are one static mask per image for every frame
and both CFG branches, resized by guessing the layer's aspect; these move with the objects.
Where no look is visible in a window the original processor runs, bit for bit. When the
original is a reference-image processor (engine/references.py), its `residual` (the
reference tokens' attention) is added to the blend, so references and looks compose.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from storyshade.engine.pipeline_edits import PipelineEdits
from storyshade.engine.text import encode_pair
from storyshade.errors import StoryShadeError
from storyshade.progress import Reporter
from storyshade.settings import Settings, join_prompt


def _latent_masks(ids: np.ndarray, region_ids: Sequence[int], size: tuple[int, int]) -> np.ndarray:
    """(R, h, w) float32: each region's share of every latent cell, feathered one cell."""
    import cv2

    h, w = size
    masks = np.empty((len(region_ids), h, w), np.float32)
    for k, region in enumerate(region_ids):
        share = cv2.resize((ids == region).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
        masks[k] = cv2.blur(share, (3, 3), borderType=cv2.BORDER_REPLICATE)  # the feather
    return masks


class Blend:
    """Where (query positions over a window's frames and cells) each text is attended to,
    and with which coefficient: the shot's text where looks cover less than all, each look's
    text on its own pixels. Coefficients sum to 1 at every position."""

    def __init__(
        self,
        shot: tuple[torch.Tensor, torch.Tensor],
        looks: list[tuple[int, torch.Tensor, torch.Tensor]],
    ) -> None:
        self.shot = shot
        self.looks = looks

    def to(self, device: torch.device, dtype: torch.dtype) -> Blend:
        def move(where: torch.Tensor, coef: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return where.to(device), coef.to(device, dtype)[:, None]

        return Blend(move(*self.shot), [(k, *move(where, coef)) for k, where, coef in self.looks])


class RegionState:
    """What the processors read: looks' text, per-frame masks, and the rows of the call
    under way (set by the sampler before every model call)."""

    def __init__(
        self,
        id_maps: Sequence[np.ndarray],
        looks: Sequence[dict],
        cond: Sequence[torch.Tensor],
        uncond: Sequence[torch.Tensor] | None,
        latent_size: tuple[int, int],
    ) -> None:
        self.id_maps = id_maps
        self.region_ids = [look["id"] for look in looks]
        self.weights = [float(look.get("weight", 1.0)) for look in looks]
        self.cond = list(cond)  # per look (1, tokens, dim): its prompt
        self.uncond = list(uncond) if uncond is not None else None  # its negative, with CFG
        self.latent_size = latent_size
        self.window = range(0)
        self.rows: tuple[str, ...] = ("cond",)
        self._masks: torch.Tensor | None = None  # (n, R, h, w) for the window
        self._by_size: dict[tuple, Blend | None] = {}
        self._look_masks: dict[int, torch.Tensor] = {}  # by layer size, for the window

    def resize(self, latent_size: tuple[int, int]) -> None:
        """A new latent size (a hires pass): the masks are made again at the next window."""
        self.latent_size = latent_size
        self.window = range(0)

    def set_window(self, window: range) -> None:
        if window == self.window:
            return
        self.window = window
        maps = [_latent_masks(self.id_maps[i], self.region_ids, self.latent_size) for i in window]
        self._masks = torch.from_numpy(np.stack(maps))
        self._by_size = {}
        self._look_masks = {}

    def masks(self, tokens: int, device: torch.device, dtype: torch.dtype) -> Blend | None:
        """How the layer whose feature map has `tokens` cells blends this window's frames:
        None where no look shows."""
        key = (tokens, device, dtype)
        if key not in self._by_size:
            found = self._at(tokens)
            self._by_size[key] = found.to(device, dtype) if found is not None else None
        return self._by_size[key]

    def look_masks(self, tokens: int) -> torch.Tensor:
        """(R, n*h*w) float32: each look's share of every position (frames, then cells) of
        the layer whose feature map has `tokens` cells, for the current window."""
        assert self._masks is not None, "set_window before the model call"
        if tokens not in self._look_masks:
            h, w = self.latent_size
            while h * w > tokens:  # the UNet halves (rounding up) at each level
                h, w = (h + 1) // 2, (w + 1) // 2
            if h * w != tokens:
                raise StoryShadeError(
                    f"a cross-attention layer has {tokens} positions, not a halving of the "
                    f"{self.latent_size} latent",
                    "per-object looks need an SD1.5-class UNet",
                    field="regions",
                )
            masks = F.interpolate(self._masks, size=(h, w), mode="area")  # (n, R, h, w)
            self._look_masks[tokens] = masks.transpose(0, 1).flatten(1)
        return self._look_masks[tokens]

    def _at(self, tokens: int) -> Blend | None:
        masks = self.look_masks(tokens)
        parts = []
        for k in range(masks.shape[0]):
            where = masks[k].nonzero().squeeze(1)
            if where.numel():
                parts.append((k, where, masks[k, where] * self.weights[k]))
        if not parts:
            return None
        shot = 1.0 - sum(masks[k] * self.weights[k] for k, _, _ in parts)
        where = shot.nonzero().squeeze(1)
        return Blend((where, shot[where]), parts)

    def text(self, k: int) -> torch.Tensor:
        """Look k's text per CFG branch of the call (B, tokens, dim): its prompt for the
        conditional branch, its negative for the unconditional one."""
        return torch.cat([self.cond[k] if r == "cond" else self.uncond[k] for r in self.rows])


class RegionalAttnProcessor:
    """Cross-attention with the shot's text and each look's, blended by the looks' masks.

    Every frame of a CFG branch attends to the same text, so the frames are folded into
    the query length; each text is attended to only by the positions it shades, so the
    cost stays near one attention however many looks there are."""

    whole_batch = True  # rows map to frames by position: never sliced (engine/chunking.py)

    def __init__(self, original: Any, state: RegionState) -> None:
        self.original = original
        self.state = state

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        blend = None
        if encoder_hidden_states is not None and hidden_states.ndim == 3:
            blend = self.state.masks(
                hidden_states.shape[1], hidden_states.device, hidden_states.dtype
            )
        if blend is None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        rows, tokens, _ = hidden_states.shape
        branches = len(self.state.rows)
        n = rows // branches
        heads = attn.heads
        flat_query = attn.to_q(hidden_states)
        channels = flat_query.shape[-1]
        head_dim = channels // heads
        # (B*n, L, C) -> (B, heads, n*L, d): frames of a branch share their keys
        query = flat_query.view(branches, n, tokens, heads, head_dim).permute(0, 3, 1, 2, 4)
        query = query.reshape(branches, heads, n * tokens, head_dim)
        out = torch.zeros_like(query)

        def add(text: torch.Tensor, where: torch.Tensor, coef: torch.Tensor) -> None:
            """Attend the positions `where` to `text`; add the result times `coef`."""
            text = text.to(hidden_states.device, hidden_states.dtype)
            key = attn.to_k(text).view(branches, -1, heads, head_dim).transpose(1, 2)
            value = attn.to_v(text).view(branches, -1, heads, head_dim).transpose(1, 2)
            part = F.scaled_dot_product_attention(query[:, :, where], key, value, dropout_p=0.0)
            out[:, :, where] += coef * part

        if blend.shot[0].numel():
            add(encoder_hidden_states[::n], *blend.shot)  # a branch's rows hold one text
        for k, where, coef in blend.looks:
            add(self.state.text(k), where, coef)
        out = out.view(branches, heads, n, tokens, head_dim).permute(0, 2, 3, 1, 4)
        out = out.reshape(rows, tokens, channels)
        residual = getattr(self.original, "residual", None)  # reference images, if any
        if residual is not None:
            out = out + residual(attn, flat_query)
        out = attn.to_out[1](attn.to_out[0](out))
        return out / attn.rescale_output_factor


def _cross_attentions(model: nn.Module) -> Iterator[Any]:
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


def _check_plain(module: Any) -> None:
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
            "this model's cross-attention is not the SD1.5 kind that per-object looks support",
            "shade without looks, or use an SD1.5-class checkpoint",
            field="regions",
        )


def install_regions(
    edits: PipelineEdits, models: Sequence[nn.Module], state: RegionState | None
) -> int:
    """Put the regional processors on `models` until `edits` are undone; how many. With no
    state (no looks), nothing. Every module is checked before any is changed."""
    if state is None:
        return 0
    modules = [m for model in models for m in _cross_attentions(model)]
    for module in modules:
        _check_plain(module)
    for module in modules:
        edits.processor(module, RegionalAttnProcessor(module.processor, state))
    return len(modules)


def look_texts(settings: Settings, look: dict) -> tuple[str, str]:
    """A look's (prompt, negative) as the model reads them: its prompt inside the shot's
    style, exactly as the shot's prompt is built; the shot's negative (the style's, with
    the user's words) followed by the look's own."""
    return settings.styled(look["prompt"]), join_prompt(
        settings.negative_prompt, look.get("negative") or ""
    )


def encode_looks(
    pipe: Any, settings: Settings, looks: Sequence[dict], reporter: Reporter | None = None
) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """Each look's (1, tokens, dim) prompt embeddings and, with CFG, its negative's (as many
    tokens as its prompt's), from `look_texts`, read whole (engine/text.py)."""
    cfg = settings.guidance_scale > 1
    cond, uncond = [], []
    for look in looks:
        text, negative = look_texts(settings, look)
        name = f"look '{look.get('name', look['id'])}'"
        names = (f"the prompt of {name}", f"the negative prompt of {name}")
        positive, neg = encode_pair(pipe, text, negative, cfg, reporter, names)
        cond.append(positive)
        if cfg:
            uncond.append(neg)
    return cond, (uncond if cfg else None)


def check_looks_engine(engine: str, has_looks: bool) -> None:
    """Looks need our own sampling loop; the stock pipeline would silently ignore them."""
    if has_looks and engine != "animatediff" and engine != "preview":
        raise StoryShadeError(
            f"engine '{engine}' cannot shade per-object looks (the shot has some)",
            "use engine 'animatediff' (the windowed engine) or 'preview', or export without looks",
            field="settings.engine",
        )

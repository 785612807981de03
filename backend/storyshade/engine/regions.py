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
Where no look is visible in a window the original processor runs, bit for bit. The blend
is the Text step of the chain in engine/cross_attention.py, which adds the reference
images' attention (engine/references.py) after it: references and looks compose there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from storyshade.bundle import Region
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
        looks: Sequence[Region],
        cond: Sequence[torch.Tensor],
        uncond: Sequence[torch.Tensor] | None,
        latent_size: tuple[int, int],
    ) -> None:
        self.id_maps = id_maps
        self.region_ids = [look.id for look in looks]
        self.weights = [float(look.weight) for look in looks]
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

    def acts(self, tokens: int, device: torch.device, dtype: torch.dtype) -> bool:
        """Whether any look shows at a layer with `tokens` cells in this window."""
        return self.masks(tokens, device, dtype) is not None

    def attend(
        self, attn: Any, query: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> torch.Tensor:
        """(rows, L, C): each position attends to the shot's text and to each look's whose
        mask covers it, blended by the masks (the Text step of engine/cross_attention.py).

        Every frame of a CFG branch attends to the same text, so the frames are folded into
        the query length; each text is attended to only by the positions it shades, so the
        cost stays near one attention however many looks there are."""
        rows, tokens, channels = query.shape
        blend = self.masks(tokens, query.device, query.dtype)
        assert blend is not None, "attend only where acts()"
        branches = len(self.rows)
        n = rows // branches
        heads = attn.heads
        head_dim = channels // heads
        # (B*n, L, C) -> (B, heads, n*L, d): frames of a branch share their keys
        folded = query.view(branches, n, tokens, heads, head_dim).permute(0, 3, 1, 2, 4)
        folded = folded.reshape(branches, heads, n * tokens, head_dim)
        out = torch.zeros_like(folded)

        def add(text: torch.Tensor, where: torch.Tensor, coef: torch.Tensor) -> None:
            """Attend the positions `where` to `text`; add the result times `coef`."""
            text = text.to(query.device, query.dtype)
            key = attn.to_k(text).view(branches, -1, heads, head_dim).transpose(1, 2)
            value = attn.to_v(text).view(branches, -1, heads, head_dim).transpose(1, 2)
            part = F.scaled_dot_product_attention(folded[:, :, where], key, value, dropout_p=0.0)
            out[:, :, where] += coef * part

        if blend.shot[0].numel():
            add(encoder_hidden_states[::n], *blend.shot)  # a branch's rows hold one text
        for k, where, coef in blend.looks:
            add(self.text(k), where, coef)
        out = out.view(branches, heads, n, tokens, head_dim).permute(0, 2, 3, 1, 4)
        return out.reshape(rows, tokens, channels)

    def text(self, k: int) -> torch.Tensor:
        """Look k's text per CFG branch of the call (B, tokens, dim): its prompt for the
        conditional branch, its negative for the unconditional one."""
        return torch.cat([self.cond[k] if r == "cond" else self.uncond[k] for r in self.rows])


def look_texts(settings: Settings, look: Region) -> tuple[str, str]:
    """A look's (prompt, negative) as the model reads them: its prompt inside the shot's
    style, exactly as the shot's prompt is built; the shot's negative (the style's, with
    the user's words) followed by the look's own."""
    return settings.styled(look.prompt), join_prompt(settings.negative_prompt, look.negative)


def encode_looks(
    pipe: Any, settings: Settings, looks: Sequence[Region], reporter: Reporter | None = None
) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """Each look's (1, tokens, dim) prompt embeddings and, with CFG, its negative's (as many
    tokens as its prompt's), from `look_texts`, read whole (engine/text.py)."""
    cfg = settings.guidance_scale > 1
    cond, uncond = [], []
    for look in looks:
        text, negative = look_texts(settings, look)
        name = f"look '{look.name}'"
        names = (f"the prompt of {name}", f"the negative prompt of {name}")
        positive, neg = encode_pair(pipe, text, negative, cfg, reporter, names)
        cond.append(positive)
        if cfg:
            uncond.append(neg)
    return cond, (uncond if cfg else None)

"""IP-Adapters (image references) and the CLIP vision encoders they need.

Facts are read from safetensors headers and config.json without loading weights, so the
compatibility checks (an SDXL adapter on SD1.5, a plus adapter beside the wrong image
encoder) name both files before anything is loaded. Loading builds our own small modules
(engine/references.py applies them); no diffusers IP-Adapter loader is involved.

An IP-Adapter file (h94/IP-Adapter layout) holds `image_proj.*`, which turns an image
embedding into a few tokens of the text's width, and `ip_adapter.{1,3,5,...}.to_k_ip/to_v_ip`,
one key/value projection pair per spatial cross-attention layer of the UNet, numbered in
diffusers' `attn_processors` order (down blocks, up blocks, then the mid block).

- base (`ip-adapter_sd15`): `image_proj.proj` + `image_proj.norm` project the encoder's
  pooled, projected `image_embeds` (its `projection_dim`) into 4 tokens;
- plus (`ip-adapter-plus_sd15`): a perceiver resampler (`image_proj.latents`, `proj_in`,
  `layers.*`, `proj_out`, `norm_out`) reads the encoder's penultimate hidden states (its
  `hidden_size`) into 16 tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storyshade.errors import ModelError
from storyshade.models.arch import family, read_config
from storyshade.models.header import Shapes, shapes

PROJ = "image_proj."
IP = "ip_adapter."
ENCODER_CLASSES = {"CLIPVisionModelWithProjection", "CLIPVisionModel"}


@dataclass(frozen=True)
class IPAdapterArch:
    path: Path
    variant: str  # base | plus | an unsupported kind (full-face, faceid, unknown)
    cross_attention_dim: int | None
    embed_dim: int | None  # encoder output width it projects (projection_dim or hidden_size)
    tokens: int
    layers: tuple[tuple[int, int], ...]  # per layer in order: (index, query width)

    @property
    def family(self) -> str:
        return family(self.cross_attention_dim)

    @property
    def supported(self) -> bool:
        return self.variant in ("base", "plus")

    @property
    def encoder_input(self) -> str:
        """Which encoder width this adapter reads."""
        return "hidden_size" if self.variant == "plus" else "projection_dim"

    def describe(self) -> str:
        return (
            f"IP-Adapter {self.variant}, {self.family} (cross-attention "
            f"{self.cross_attention_dim}), {self.tokens} tokens from image embeddings of "
            f"width {self.embed_dim}"
        )


@dataclass(frozen=True)
class EncoderArch:
    path: Path
    hidden_size: int
    projection_dim: int | None
    image_size: int

    def describe(self) -> str:
        return (
            f"CLIP vision encoder, hidden size {self.hidden_size}, projection "
            f"{self.projection_dim}, {self.image_size} px"
        )

    def width(self, which: str) -> int | None:
        return self.hidden_size if which == "hidden_size" else self.projection_dim


def is_ip_adapter(keys: Shapes | list[str]) -> bool:
    return any(k.startswith(PROJ) for k in keys) and any(k.startswith(IP) for k in keys)


def _variant(table: Shapes) -> str:
    if f"{PROJ}proj.weight" in table and f"{PROJ}norm.weight" in table:
        return "base"
    if f"{PROJ}latents" in table and f"{PROJ}proj_in.weight" in table:
        return "plus"
    if f"{PROJ}proj.0.weight" in table:
        return "full-face"
    if any("lora" in k for k in table) or any("perceiver_resampler" in k for k in table):
        return "faceid"
    return "unknown"


def ip_adapter_arch(path: Path) -> IPAdapterArch:
    table = shapes(path)
    if not is_ip_adapter(table):
        raise ModelError(
            f"{path} is not an IP-Adapter (no image_proj / ip_adapter tensors)",
            "name an IP-Adapter .safetensors file (e.g. ip-adapter_sd15.safetensors)",
            field="settings.ip_adapter",
        )
    variant = _variant(table)
    layers = []
    cross = None
    for key, shape in table.items():
        m = re.fullmatch(r"ip_adapter\.(\d+)\.to_k_ip\.weight", key)
        if m and len(shape) == 2:
            layers.append((int(m[1]), shape[0]))
            cross = cross or shape[1]
    layers.sort()
    tokens = 0
    embed = None
    if variant == "base":
        width = table[f"{PROJ}norm.weight"][0]
        tokens = table[f"{PROJ}proj.weight"][0] // width
        embed = table[f"{PROJ}proj.weight"][1]
    elif variant == "plus":
        tokens = table[f"{PROJ}latents"][1]
        embed = table[f"{PROJ}proj_in.weight"][1]
    return IPAdapterArch(path, variant, cross, embed, tokens, tuple(layers))


def encoder_arch(path: Path) -> EncoderArch:
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ModelError(
            f"image encoder {path} is not a folder with config.json",
            "use the CLIP vision encoder folder the IP-Adapter was trained with "
            "(h94/IP-Adapter: models/image_encoder, config.json + model.safetensors)",
            field="settings.image_encoder",
        )
    config = read_config(path / "config.json")
    vision = config.get("vision_config") if config.get("model_type") == "clip" else config
    try:
        return EncoderArch(
            path,
            int(vision["hidden_size"]),
            int(config.get("projection_dim") or vision.get("projection_dim") or 0) or None,
            int(vision.get("image_size", 224)),
        )
    except (KeyError, TypeError, ValueError):
        raise ModelError(
            f"{path / 'config.json'} is not a CLIP vision encoder config",
            "use the CLIP vision encoder folder the IP-Adapter was trained with",
            field="settings.image_encoder",
        ) from None


def is_encoder_config(config: dict[str, Any]) -> bool:
    return (
        bool(ENCODER_CLASSES & set(config.get("architectures") or ()))
        or config.get("model_type") == "clip_vision_model"
    )


def expected_layers(unet_config: dict[str, Any]) -> list[int] | None:
    """Query widths of a diffusers UNet config's spatial cross-attention layers, in
    attn_processors order (down, up, mid); None where the config does not say."""
    blocks = list(unet_config.get("block_out_channels") or ())
    downs = unet_config.get("down_block_types") or ()
    ups = unet_config.get("up_block_types") or ()
    per = unet_config.get("layers_per_block", 2)
    tlayers = unet_config.get("transformer_layers_per_block", 1)
    if not blocks or not isinstance(per, int) or tlayers != 1 or len(downs) != len(blocks):
        return None
    out: list[int] = []
    for kind, width in zip(downs, blocks, strict=True):
        if "CrossAttn" in kind:
            out += [width] * per
    for kind, width in zip(ups, reversed(blocks), strict=False):
        if "CrossAttn" in kind:
            out += [width] * (per + 1)
    mid = unet_config.get("mid_block_type", "UNetMidBlock2DCrossAttn")
    if mid and "CrossAttn" in mid:
        out.append(blocks[-1])
    return out


def problems(
    adapter_path: Path, encoder_path: Path, checkpoint: Path, ckpt_cross: int | None
) -> list[ModelError]:
    """Every mismatch between an IP-Adapter, its image encoder and the checkpoint."""
    out: list[ModelError] = []
    ip = ip_adapter_arch(adapter_path)
    if not ip.supported:
        return [
            ModelError(
                f"IP-Adapter {adapter_path} is a {ip.variant} variant; StoryShade supports the "
                "SD1.5 base and plus IP-Adapters",
                "use ip-adapter_sd15.safetensors or ip-adapter-plus_sd15.safetensors",
                field="settings.ip_adapter",
            )
        ]
    if ip.cross_attention_dim != ckpt_cross:
        out.append(
            ModelError(
                f"IP-Adapter {adapter_path} is for {ip.family} (cross-attention "
                f"{ip.cross_attention_dim}) but checkpoint {checkpoint} is {family(ckpt_cross)} "
                f"(cross-attention {ckpt_cross}); they cannot be combined",
                f"use a {family(ckpt_cross)} IP-Adapter (for SD1.5: ip-adapter_sd15 or "
                "ip-adapter-plus_sd15)",
                field="settings.ip_adapter",
            )
        )
    elif checkpoint.is_dir() and (checkpoint / "unet" / "config.json").is_file():
        widths = expected_layers(read_config(checkpoint / "unet" / "config.json"))
        have = [w for _, w in ip.layers]
        if widths is not None and widths != have:
            out.append(
                ModelError(
                    f"IP-Adapter {adapter_path} has {len(have)} cross-attention layers "
                    f"(widths {have}) but checkpoint {checkpoint}'s UNet has {len(widths)} "
                    f"(widths {widths})",
                    "use an IP-Adapter trained for this checkpoint's architecture",
                    field="settings.ip_adapter",
                )
            )
    enc = encoder_arch(encoder_path)
    width = enc.width(ip.encoder_input)
    if width != ip.embed_dim:
        out.append(
            ModelError(
                f"IP-Adapter {adapter_path} ({ip.variant}) reads image embeddings of width "
                f"{ip.embed_dim} (the encoder's {ip.encoder_input}) but image encoder "
                f"{encoder_path} gives {width} ({enc.describe()})",
                "use the image encoder the adapter was trained with (SD1.5 adapters: "
                "h94/IP-Adapter models/image_encoder, ViT-H/14)",
                field="settings.image_encoder",
            )
        )
    return out


def check_adapter_file(path: Path) -> None:
    if path.suffix != ".safetensors":
        from storyshade.models.safety import pickle_error

        raise pickle_error(path, field="settings.ip_adapter")


# --- loading into our own modules -----------------------------------------------------


def _modules() -> tuple[type, type]:
    import torch
    from torch import nn

    class ImageProjection(nn.Module):
        """base: pooled image embedding → `tokens` tokens of the text's width."""

        def __init__(self, embed: int, cross: int, tokens: int) -> None:
            super().__init__()
            self.tokens = tokens
            self.proj = nn.Linear(embed, tokens * cross)
            self.norm = nn.LayerNorm(cross)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.norm(self.proj(x).reshape(x.shape[0], self.tokens, -1))

    class PerceiverAttention(nn.Module):
        def __init__(self, dim: int, inner: int, head_dim: int = 64) -> None:
            super().__init__()
            self.heads = inner // head_dim
            self.norm1 = nn.LayerNorm(dim)
            self.norm2 = nn.LayerNorm(dim)
            self.to_q = nn.Linear(dim, inner, bias=False)
            self.to_kv = nn.Linear(dim, inner * 2, bias=False)
            self.to_out = nn.Linear(inner, dim, bias=False)

        def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
            x = self.norm1(x)
            latents = self.norm2(latents)
            b = x.shape[0]
            q = self.to_q(latents)
            k, v = self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1)

            def heads(t: torch.Tensor) -> torch.Tensor:
                return t.view(b, -1, self.heads, t.shape[-1] // self.heads).transpose(1, 2)

            out = torch.nn.functional.scaled_dot_product_attention(heads(q), heads(k), heads(v))
            return self.to_out(out.transpose(1, 2).reshape(b, -1, q.shape[-1]))

    class Resampler(nn.Module):
        """plus: a perceiver resampler over the encoder's penultimate hidden states."""

        def __init__(
            self, embed: int, dim: int, cross: int, tokens: int, inner: int, ff: int, depth: int
        ) -> None:
            super().__init__()
            self.latents = nn.Parameter(torch.zeros(1, tokens, dim))
            self.proj_in = nn.Linear(embed, dim)
            self.proj_out = nn.Linear(dim, cross)
            self.norm_out = nn.LayerNorm(cross)
            self.layers = nn.ModuleList(
                nn.ModuleList(
                    [
                        PerceiverAttention(dim, inner),
                        nn.Sequential(
                            nn.LayerNorm(dim),
                            nn.Linear(dim, ff, bias=False),
                            nn.GELU(),
                            nn.Linear(ff, dim, bias=False),
                        ),
                    ]
                )
                for _ in range(depth)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            latents = self.latents.repeat(x.shape[0], 1, 1)
            x = self.proj_in(x)
            for attn, ff in self.layers:
                latents = attn(x, latents) + latents
                latents = ff(latents) + latents
            return self.norm_out(self.proj_out(latents))

    return ImageProjection, Resampler


@dataclass
class IPAdapterWeights:
    arch: IPAdapterArch
    image_proj: Any  # nn.Module: image embeddings → (B, tokens, cross)
    kv: list[tuple[Any, Any]]  # per spatial cross-attention layer: (to_k_ip, to_v_ip) weights


def load_ip_adapter(path: Path, device: Any, dtype: Any) -> IPAdapterWeights:
    """The adapter's projection module and per-layer key/value weights, on `device`."""
    from safetensors.torch import load_file

    arch = ip_adapter_arch(path)
    state = load_file(str(path))
    proj_state = {k.removeprefix(PROJ): v for k, v in state.items() if k.startswith(PROJ)}
    image_projection, resampler = _modules()
    try:
        if arch.variant == "base":
            module = image_projection(arch.embed_dim, arch.cross_attention_dim, arch.tokens)
        else:
            depth = len({k.split(".")[1] for k in proj_state if k.startswith("layers.")})
            dim = proj_state["latents"].shape[2]
            module = resampler(
                arch.embed_dim,
                dim,
                proj_state["proj_out.weight"].shape[0],
                arch.tokens,
                proj_state["layers.0.0.to_q.weight"].shape[0],
                proj_state["layers.0.1.1.weight"].shape[0],
                depth,
            )
        module.load_state_dict(proj_state, strict=True)
    except (KeyError, RuntimeError) as exc:
        raise ModelError(
            f"IP-Adapter {path} has an image projection StoryShade cannot read "
            f"({str(exc).splitlines()[0][:200]})",
            "use ip-adapter_sd15.safetensors or ip-adapter-plus_sd15.safetensors",
            field="settings.ip_adapter",
        ) from None
    module = module.to(device, dtype).eval()
    kv = []
    for index, _ in arch.layers:
        try:
            k = state[f"{IP}{index}.to_k_ip.weight"]
            v = state[f"{IP}{index}.to_v_ip.weight"]
        except KeyError:
            raise ModelError(
                f"IP-Adapter {path} lacks to_v_ip for layer {index}",
                "re-download the adapter",
                field="settings.ip_adapter",
            ) from None
        kv.append((k.to(device, dtype), v.to(device, dtype)))
    return IPAdapterWeights(arch, module, kv)


def load_image_encoder(path: Path, device: Any, dtype: Any) -> Any:
    from transformers import CLIPVisionModelWithProjection

    try:
        model = CLIPVisionModelWithProjection.from_pretrained(
            path, local_files_only=True, use_safetensors=True, torch_dtype=dtype
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(
            f"could not load image encoder {path} ({str(exc).splitlines()[0][:200]})",
            "use the CLIP vision encoder folder (config.json + model.safetensors)",
            field="settings.image_encoder",
        ) from None
    return model.to(device).eval()

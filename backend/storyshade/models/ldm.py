"""Diffusers → original (LDM/CompVis) key layout, the inverse of diffusers' single-file import.

Only used to write tiny single-file checkpoints, so that the single-file loading path is
tested with real files instead of mocks. Covers SD1.5-style UNets, ControlNets, VAEs and
CLIP text encoders of any width and depth.
"""

from __future__ import annotations

import re
from typing import Any

_RESNET = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
_FIXED = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
    "controlnet_cond_embedding.conv_in": "input_hint_block.0",
    "controlnet_cond_embedding.conv_out": "input_hint_block.14",
    "controlnet_mid_block": "middle_block_out.0",
}


def _resnet(rest: str) -> str:
    for new, old in _RESNET:
        if rest.startswith(new + "."):
            return old + rest[len(new) :]
    return rest


def _unet_key(key: str, per_level: int, up_attn: set[int]) -> str:
    """One diffusers UNet/ControlNet key in LDM naming; `per_level` is layers_per_block + 1."""
    head, _, leaf = key.rpartition(".")
    if head in _FIXED:
        return f"{_FIXED[head]}.{leaf}"
    if m := re.fullmatch(r"controlnet_cond_embedding\.blocks\.(\d+)\.(.+)", key):
        return f"input_hint_block.{2 * (int(m[1]) + 1)}.{m[2]}"
    if m := re.fullmatch(r"controlnet_down_blocks\.(\d+)\.(.+)", key):
        return f"zero_convs.{m[1]}.0.{m[2]}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        index = per_level * int(m[1]) + int(m[3]) + 1
        part, rest = ("0", _resnet(m[4])) if m[2] == "resnets" else ("1", m[4])
        return f"input_blocks.{index}.{part}.{rest}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{per_level * (int(m[1]) + 1)}.0.op.{m[2]}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        index = per_level * int(m[1]) + int(m[3])
        part, rest = ("0", _resnet(m[4])) if m[2] == "resnets" else ("1", m[4])
        return f"output_blocks.{index}.{part}.{rest}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        block = int(m[1])
        slot = 2 if block in up_attn else 1
        return f"output_blocks.{per_level * block + per_level - 1}.{slot}.conv.{m[2]}"
    raise KeyError(f"no LDM name for UNet key {key}")


def unet_to_ldm(
    state: dict[str, Any], layers_per_block: int, prefix: str = "model.diffusion_model."
) -> dict[str, Any]:
    """A diffusers UNet2DConditionModel or ControlNetModel state dict in LDM naming."""
    up_attn = {int(k.split(".")[1]) for k in state if re.match(r"up_blocks\.\d+\.attentions", k)}
    # ControlNets have `layers_per_block` resnets per level; output levels have one more.
    per_level = layers_per_block + 1
    return {prefix + _unet_key(k, per_level, up_attn): v for k, v in state.items()}


def _vae_key(key: str, levels: int) -> str:
    key = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(.+)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}"
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.+)", key):
        return f"encoder.down.{m[1]}.downsample.{m[2]}"
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(.+)", key):
        return f"decoder.up.{levels - 1 - int(m[1])}.block.{m[2]}"
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)", key):
        return f"decoder.up.{levels - 1 - int(m[1])}.upsample.{m[2]}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
        rest = m[2].replace("group_norm", "norm").replace("to_out.0", "proj_out")
        rest = re.sub(r"^to_([qkv])\.", r"\1.", rest)
        return f"{m[1]}.mid.attn_1.{rest}"
    return key


def vae_to_ldm(state: dict[str, Any], levels: int) -> dict[str, Any]:
    """A diffusers AutoencoderKL state dict in LDM naming (attention as 1x1 convolutions)."""
    out = {}
    for key, value in state.items():
        name = "first_stage_model." + _vae_key(key, levels)
        if ".mid.attn_1." in name and name.endswith("weight") and value.ndim == 2:
            value = value[:, :, None, None]
        out[name] = value
    return out


def clip_to_ldm(state: dict[str, Any]) -> dict[str, Any]:
    """CLIP text encoder keys as SD1.5 files hold them (transformers 5.6+ drops `text_model.`)."""
    out = {}
    for key, value in state.items():
        if not key.startswith(("text_model.", "text_projection")):
            key = "text_model." + key
        out["cond_stage_model.transformer." + key] = value
    return out

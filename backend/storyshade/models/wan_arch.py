"""Wan checkpoints and LoRAs: what they are, read from configs and safetensors headers.

As models/arch.py does for SD1.5 files, nothing here loads weights, so `models list`,
`models check` and submit can tell a Wan VACE checkpoint from a Wan T2V one (no VACE
blocks), a 1.3B LoRA from a 14B one, and an SD1.5 file from a Wan file, before anything
is loaded, naming both files of a mismatch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from storyshade.errors import ModelError
from storyshade.models.arch import lora_arch, read_config
from storyshade.models.header import Shapes, shapes
from storyshade.models.safety import is_pickle, pickle_error, pickle_only_folder

WAN_PARTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
WEIGHTED_PARTS = ("transformer", "vae", "text_encoder")
SIZES = {1536: "1.3B", 5120: "14B", 3072: "5B"}  # transformer width -> published size
VACE_REPOS = {
    "1.3B": "Wan-AI/Wan2.1-VACE-1.3B-diffusers",
    "14B": "Wan-AI/Wan2.1-VACE-14B-diffusers",
}
FIELD = "settings.checkpoint"


def is_wan_folder(path: Path) -> bool:
    """A diffusers Wan pipeline folder (a transformer, not a UNet)."""
    return (
        path.is_dir() and (path / "model_index.json").is_file() and (path / "transformer").is_dir()
    )


def size_name(width: int | None) -> str:
    if width is None:
        return "unknown size"
    return SIZES.get(width, f"width {width}")


@dataclass(frozen=True)
class WanArch:
    """What must agree between a Wan checkpoint, its LoRAs and the engine."""

    path: Path
    transformer_class: str
    width: int | None
    layers: int | None
    vace_layers: tuple[int, ...]
    text_dim: int | None
    patch: tuple[int, ...]

    @property
    def vace(self) -> bool:
        return bool(self.vace_layers)

    @property
    def size(self) -> str:
        return size_name(self.width)

    def describe(self) -> str:
        kind = (
            f"Wan VACE, {len(self.vace_layers)} VACE blocks"
            if self.vace
            else f"Wan text-to-video ({self.transformer_class}, no VACE blocks)"
        )
        return f"{kind}, {self.size}, {self.layers} layers"


def wan_arch(path: Path) -> WanArch:
    """A Wan folder's transformer facts (its config.json only)."""
    config = read_config(path / "transformer" / "config.json")
    heads, head_dim = config.get("num_attention_heads"), config.get("attention_head_dim")
    width = heads * head_dim if isinstance(heads, int) and isinstance(head_dim, int) else None
    return WanArch(
        path,
        str(config.get("_class_name", "")),
        width,
        config.get("num_layers"),
        tuple(config.get("vace_layers") or ()),
        config.get("text_dim"),
        tuple(config.get("patch_size") or (1, 2, 2)),
    )


def check_wan_checkpoint(path: Path) -> None:
    """A complete Wan diffusers folder in safetensors; anything else refused, named."""
    if path.is_file():
        if is_pickle(path):
            raise pickle_error(path, field=FIELD)
        raise ModelError(
            f"{path} is a single file; engine 'wan-vace' loads Wan checkpoints in diffusers "
            "layout (model_index.json, transformer/, vae/, text_encoder/, tokenizer/, scheduler/)",
            f"download the diffusers folder ({VACE_REPOS['1.3B']}) into checkpoints/",
            field=FIELD,
        )
    if not is_wan_folder(path):
        raise ModelError(
            f"checkpoint {path} is not a Wan checkpoint (no transformer/ folder: an SD1.5 "
            "UNet checkpoint?)",
            "name a Wan VACE checkpoint for engine 'wan-vace' (e.g. Wan2.1-VACE-1.3B-diffusers), "
            "or use engine 'animatediff' for SD1.5 checkpoints",
            field=FIELD,
        )
    missing = [p for p in WAN_PARTS if not (path / p).is_dir()]
    if missing:
        raise ModelError(
            f"Wan checkpoint {path} is missing {', '.join(missing)}",
            "copy the complete diffusers folder (model_index.json and all sub-folders)",
            field=FIELD,
        )
    for part in WEIGHTED_PARTS:
        if not list((path / part).glob("*.safetensors")):
            if pickle_only_folder(path / part):
                raise pickle_error(path / part, field=FIELD)
            raise ModelError(
                f"{path / part} has no .safetensors weights",
                "copy the complete diffusers folder including its .safetensors files",
                field=FIELD,
            )


def check_vace(path: Path) -> WanArch:
    """The checkpoint's facts, refusing a Wan checkpoint without VACE blocks."""
    arch = wan_arch(path)
    if not arch.vace:
        raise ModelError(
            f"checkpoint {path} is {arch.describe()}: engine 'wan-vace' steers with depth "
            "through VACE blocks, which it does not have",
            f"use a Wan VACE checkpoint ({VACE_REPOS['1.3B']} or {VACE_REPOS['14B']})",
            field=FIELD,
        )
    return arch


_WAN_LORA_Q = re.compile(
    r"blocks[._](\d+)[._](attn1[._]to[._]q|self[._]attn[._]q)[._]"
    r"(lora_A|lora[._]down|lora_down)\.weight$"
)
_UNET_KEY = re.compile(r"(down|up|mid)[._]blocks?|input_blocks|output_blocks|motion_modules")


def is_wan_lora(table: Shapes) -> bool:
    """LoRA keys on Wan transformer blocks (diffusers, original or kohya naming)."""
    return any(_WAN_LORA_Q.search(k) for k in table) and not any(_UNET_KEY.search(k) for k in table)


def wan_lora_width(path: Path) -> int | None:
    """The transformer width a Wan LoRA was trained on (in-features of self-attention q)."""
    for key, shape in shapes(path).items():
        if _WAN_LORA_Q.search(key) and len(shape) == 2:
            return shape[1]
    return None


def lora_problems(
    name: str, path: Path, checkpoint: Path, arch: WanArch, field: str
) -> list[ModelError]:
    """A LoRA that cannot go on this Wan checkpoint: SD1.5 kind, or another model size."""
    table = shapes(path)
    if not is_wan_lora(table):
        sd = lora_arch(path)
        what = "a motion LoRA" if sd.motion else "an SD1.5-family LoRA"
        return [
            ModelError(
                f"LoRA '{name}' {path} is {what}, not a Wan LoRA, but checkpoint "
                f"{checkpoint} is {arch.describe()}",
                "use a LoRA trained on Wan 2.1 of the checkpoint's size, or engine 'animatediff'",
                field=field,
            )
        ]
    width = wan_lora_width(path)
    if arch.width is not None and width is not None and width != arch.width:
        return [
            ModelError(
                f"LoRA '{name}' {path} was trained on Wan {size_name(width)} (width {width}) "
                f"but checkpoint {checkpoint} is Wan {arch.size} (width {arch.width})",
                f"use a LoRA made for Wan {arch.size}, or the Wan {size_name(width)} checkpoint",
                field=field,
            )
        ]
    return []


def classify_wan_file(table: Shapes) -> tuple[str, str] | None:
    """(kind, note) for a single Wan file (`models list`), or None when it is not one."""
    if is_wan_lora(table):
        width = next((s[1] for k, s in table.items() if _WAN_LORA_Q.search(k) and len(s) == 2), 0)
        return "lora", f"Wan LoRA ({size_name(width)})"
    if any(re.match(r"(model\.diffusion_model\.)?vace_blocks\.", k) for k in table):
        return "unsupported", "Wan VACE transformer as one file: use the diffusers folder"
    if any(re.match(r"(model\.diffusion_model\.)?blocks\.\d+\.self_attn\.", k) for k in table):
        return "unsupported", "Wan transformer as one file: use the diffusers folder"
    return None

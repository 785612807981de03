"""Architecture facts about a model file, read from its config.json or safetensors header.

Nothing here loads weights: these facts are what the compatibility checks compare, and
what `models list` shows, so they must stay cheap for multi-gigabyte files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storyshade.errors import ModelError
from storyshade.models.header import Shapes, shapes

FAMILIES = {768: "SD1.5", 1024: "SD2", 2048: "SDXL"}
SD15_BLOCKS = (320, 640, 1280, 1280)
LDM_UNET = "model.diffusion_model."
LDM_CONTROLNET = "control_model."


def family(cross_attention_dim: int | None) -> str:
    if cross_attention_dim is None:
        return "unknown"
    return FAMILIES.get(cross_attention_dim, "non-standard")


@dataclass(frozen=True)
class UNetArch:
    """What must agree between a checkpoint's UNet and the ControlNets/adapters beside it."""

    path: Path
    cross_attention_dim: int | None
    block_out_channels: tuple[int, ...]
    text_hidden_size: int | None = None

    @property
    def family(self) -> str:
        return family(self.cross_attention_dim)

    def describe(self) -> str:
        return f"{self.family}, cross-attention {self.cross_attention_dim}"


@dataclass(frozen=True)
class AdapterArch:
    path: Path
    block_out_channels: tuple[int, ...]
    mid_block: bool
    max_seq_length: int | None
    sparse: bool
    config: dict[str, Any]

    @property
    def version(self) -> str:
        """AnimateDiff generation: v1 (24 frames), v2 (mid block), v3 (no mid block)."""
        if self.sparse:
            return "sparsectrl"
        if self.max_seq_length == 24:
            return "v1"
        return "v2" if self.mid_block else "v3"

    @property
    def family(self) -> str:
        if len(self.block_out_channels) == 3:
            return "SDXL"
        return "SD1.5" if self.block_out_channels == SD15_BLOCKS else "non-standard"

    def describe(self) -> str:
        frames = self.max_seq_length or 32
        return f"AnimateDiff {self.version}, {self.family}, up to {frames} frames per window"


@dataclass(frozen=True)
class LoraArch:
    path: Path
    motion: bool
    cross_attention_dim: int | None
    targets_mid_block: bool
    down_widths: dict[int, int]  # down block index → channels its attention LoRAs expect

    def describe(self) -> str:
        if self.motion:
            return "motion LoRA" + (
                " (needs a mid-block adapter: v2)" if self.targets_mid_block else ""
            )
        return f"style LoRA, {family(self.cross_attention_dim)}"


def read_config(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path} ({exc})", "re-copy the model folder") from None


def _cross(value: Any) -> int | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return int(value) if value is not None else None


def _cross_from_keys(table: Shapes, prefix: str = "") -> int | None:
    for key, shape in table.items():
        if key.startswith(prefix) and "attn2.to_k" in key and key.endswith("weight"):
            return shape[1] if len(shape) > 1 else None
    return None


def _ldm_blocks(table: Shapes, prefix: str) -> tuple[int, ...]:
    """Channels per UNet level, from LDM `input_blocks.N` keys (a level ends at its `op`)."""
    indices = sorted(
        {
            int(m[1])
            for k in table
            if (m := re.match(re.escape(prefix) + r"input_blocks\.(\d+)\.", k))
        }
    )
    levels: list[int] = []
    current: int | None = None
    for i in indices[1:]:
        if f"{prefix}input_blocks.{i}.0.op.weight" in table:
            if current is not None:
                levels.append(current)
            current = None
            continue
        shape = table.get(f"{prefix}input_blocks.{i}.0.out_layers.3.weight")
        if shape:
            current = shape[0]
    if current is not None:
        levels.append(current)
    return tuple(levels)


def _diffusers_blocks(table: Shapes, prefix: str = "") -> tuple[int, ...]:
    widths = {}
    for key, shape in table.items():
        m = re.match(re.escape(prefix) + r"down_blocks\.(\d+)\.resnets\.0\.conv1\.weight$", key)
        if m:
            widths[int(m[1])] = shape[0]
    return tuple(widths[i] for i in sorted(widths))


def checkpoint_arch(path: Path) -> UNetArch:
    """A checkpoint's UNet facts: diffusers folder (configs) or single file (header)."""
    if path.is_dir():
        unet = read_config(path / "unet" / "config.json")
        text = path / "text_encoder" / "config.json"
        hidden = read_config(text).get("hidden_size") if text.is_file() else None
        return UNetArch(
            path,
            _cross(unet.get("cross_attention_dim")),
            tuple(unet.get("block_out_channels", ())),
            hidden,
        )
    table = shapes(path)
    text = table.get("cond_stage_model.transformer.text_model.final_layer_norm.weight")
    return UNetArch(
        path, _cross_from_keys(table, LDM_UNET), _ldm_blocks(table, LDM_UNET), text and text[0]
    )


def controlnet_arch(path: Path) -> UNetArch:
    if path.is_dir():
        config = read_config(path / "config.json")
        return UNetArch(
            path,
            _cross(config.get("cross_attention_dim")),
            tuple(config.get("block_out_channels", ())),
        )
    table = shapes(path)
    if any(k.startswith("controlnet_down_blocks") for k in table):  # diffusers-layout file
        return UNetArch(path, _cross_from_keys(table), _diffusers_blocks(table))
    prefix = LDM_CONTROLNET if any(k.startswith(LDM_CONTROLNET) for k in table) else ""
    return UNetArch(path, _cross_from_keys(table, prefix), _ldm_blocks(table, prefix))


def _adapter_from_keys(path: Path, table: Shapes) -> AdapterArch:
    widths: dict[int, int] = {}
    layers: set[int] = set()
    mid_layers: set[int] = set()
    blocks: set[int] = set()
    seq = None
    for key, shape in table.items():
        if m := re.match(r"down_blocks\.(\d+)\.motion_modules\.(\d+)\.", key):
            layers.add(int(m[2]))
            if key.endswith("proj_in.weight"):
                widths[int(m[1])] = shape[0]
            if t := re.search(r"transformer_blocks\.(\d+)\.", key):
                blocks.add(int(t[1]))
        if m := re.match(r"mid_block\.motion_modules\.(\d+)\.", key):
            mid_layers.add(int(m[1]))
        if key.endswith("pos_encoder.pe"):
            seq = shape[1]
    config = {
        "block_out_channels": tuple(widths[i] for i in sorted(widths)),
        "motion_layers_per_block": max(len(layers), 1),
        "motion_transformer_layers_per_block": max(len(blocks), 1),
        "use_motion_mid_block": bool(mid_layers),
        "motion_mid_block_layers_per_block": max(len(mid_layers), 1),
        "motion_max_seq_length": seq or 32,
    }
    sparse = any("controlnet_cond_embedding" in k for k in table)
    return AdapterArch(path, config["block_out_channels"], bool(mid_layers), seq, sparse, config)


def adapter_arch(path: Path) -> AdapterArch:
    """Motion adapter facts; a single file's config is inferred from its tensor shapes."""
    sidecar = path.with_suffix(".config") / "config.json" if path.is_file() else None
    config_file = path / "config.json" if path.is_dir() else sidecar
    if config_file is not None and config_file.is_file():
        config = read_config(config_file)
        return AdapterArch(
            path,
            tuple(config.get("block_out_channels", SD15_BLOCKS)),
            bool(config.get("use_motion_mid_block", True)),
            config.get("motion_max_seq_length", 32),
            config.get("conv_in_channels") is not None
            or config.get("_class_name") == "SparseControlNetModel",
            config,
        )
    return _adapter_from_keys(path, shapes(path))


def lora_arch(path: Path) -> LoraArch:
    table = shapes(path)
    down_keys = [k for k in table if re.search(r"(lora_A|lora\.down|lora_down|down)\.weight$", k)]
    motion = any("motion_modules" in k or "motion.modules" in k for k in table)
    cross = None
    widths: dict[int, int] = {}
    for key in down_keys:
        shape = table[key]
        if len(shape) < 2:
            continue
        spatial = "motion_modules" not in key and "motion.modules" not in key
        if spatial and "attn2" in key and "to_k" in key and cross is None:
            cross = shape[1]
        m = re.search(r"down.blocks[._](\d+)[._]motion.modules[._]\d+.*attn1[._]to.q", key)
        if m:
            widths[int(m[1])] = shape[1]
    mid = any(re.search(r"mid.block[._]motion.modules", k) for k in table)
    return LoraArch(path, motion, cross, mid, widths)


FEW_STEP_LIGHTNING = re.compile(r"lightning\D{0,3}(\d+)\s*[-_ ]?step", re.IGNORECASE)
FEW_STEP_LCM = re.compile(r"(^|[^a-z])(animate)?lcm([^a-z]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class FewStep:
    """A step-distilled model: AnimateDiff-Lightning (N steps) or AnimateLCM."""

    kind: str  # "lightning" | "lcm"
    steps: int | None = None


def few_step(name: str) -> FewStep | None:
    """Distilled models are recognised by their published names (file or repo)."""
    if m := FEW_STEP_LIGHTNING.search(name):
        return FewStep("lightning", int(m[1]))
    if FEW_STEP_LCM.search(name):
        return FewStep("lcm")
    return None

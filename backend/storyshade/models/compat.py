"""Compatibility checks between the files a job combines, before any weights are loaded.

Mismatches that diffusers reports as `mat1 and mat2 shapes cannot be multiplied` or as
missing/unexpected keys, deep inside a load or the first denoising step, are found here
from configs and safetensors headers, and reported with both files named.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from storyshade.errors import ModelError
from storyshade.models.arch import (
    adapter_arch,
    checkpoint_arch,
    controlnet_arch,
    family,
    few_step,
    lora_arch,
)
from storyshade.settings import Settings


@dataclass(frozen=True)
class Combination:
    """The resolved files of one job (the identity part of a ModelKey plus LoRA files)."""

    checkpoint: Path
    motion_adapter: Path
    controlnets: tuple[tuple[str, Path], ...]
    loras: tuple[tuple[str, Path, bool], ...] = ()  # (name, file, is motion LoRA)


def _fix_family(fam: str, kind: str) -> str:
    return f"use a {fam} {kind}" if not fam.startswith(("non-standard", "unknown")) else ""


def problems(combo: Combination, settings: Settings) -> list[ModelError]:
    """Every mismatch, each naming both files; an empty list means the set can be loaded."""
    out: list[ModelError] = []
    ckpt = checkpoint_arch(combo.checkpoint)
    for role, path in combo.controlnets:
        cn = controlnet_arch(path)
        if cn.cross_attention_dim != ckpt.cross_attention_dim:
            out.append(
                ModelError(
                    f"ControlNet '{role}' {path} is {cn.describe()} but checkpoint "
                    f"{combo.checkpoint} is {ckpt.describe()}; they cannot be combined",
                    _fix_family(ckpt.family, "ControlNet") or "use a matching ControlNet",
                    field=f"settings.controls.{role}",
                )
            )
        elif cn.block_out_channels != ckpt.block_out_channels:
            out.append(
                ModelError(
                    f"ControlNet '{role}' {path} has UNet channels {list(cn.block_out_channels)} "
                    f"but checkpoint {combo.checkpoint} has {list(ckpt.block_out_channels)}",
                    "use a ControlNet made for this checkpoint's architecture",
                    field=f"settings.controls.{role}",
                )
            )
    out += _adapter_problems(combo, settings, ckpt)
    out += _lora_problems(combo, ckpt)
    out += _few_step_problems(combo, settings)
    return out


def _adapter_problems(combo: Combination, settings: Settings, ckpt) -> list[ModelError]:
    path = combo.motion_adapter
    adapter = adapter_arch(path)
    field = "settings.motion_adapter"
    if adapter.sparse:
        return [
            ModelError(
                f"{path} is a SparseCtrl model, not a motion adapter "
                f"(to pair with checkpoint {combo.checkpoint})",
                "name an AnimateDiff motion adapter (e.g. animatediff-motion-adapter-v1-5-3)",
                field=field,
            )
        ]
    if adapter.block_out_channels != ckpt.block_out_channels:
        return [
            ModelError(
                f"motion adapter {path} ({adapter.describe()}, UNet channels "
                f"{list(adapter.block_out_channels)}) does not fit checkpoint {combo.checkpoint} "
                f"({ckpt.describe()}, channels {list(ckpt.block_out_channels)})",
                "SD1.5 motion adapters (v1/v2/v3) need an SD1.5 checkpoint; the SDXL adapter "
                "needs SDXL",
                field=field,
            )
        ]
    if adapter.family == "SD1.5" and ckpt.cross_attention_dim != 768:
        return [
            ModelError(
                f"motion adapter {path} ({adapter.describe()}) was trained for SD1.5 but "
                f"checkpoint {combo.checkpoint} is {ckpt.describe()}",
                "use an SD1.5 checkpoint with this adapter",
                field=field,
            )
        ]
    limit = adapter.max_seq_length or 32
    if settings.context_length > limit:
        return [
            ModelError(
                f"context_length {settings.context_length} is longer than motion adapter "
                f"{path} ({adapter.version}) handles: at most {limit} frames per window",
                f"set context_length <= {limit} or use a v2/v3 adapter (32 frames)",
                field="settings.context_length",
            )
        ]
    return []


def _lora_problems(combo: Combination, ckpt) -> list[ModelError]:
    out = []
    adapter = adapter_arch(combo.motion_adapter)
    # A LoRA may hold motion and spatial layers (both load the same way), so each part
    # is checked against what it attaches to, whichever list names it.
    for name, path, motion in combo.loras:
        lora = lora_arch(path)
        field = "settings.motion_loras" if motion else "settings.loras"
        if lora.motion:
            if lora.targets_mid_block and not adapter.mid_block:
                out.append(
                    ModelError(
                        f"motion LoRA '{name}' {path} was trained for an adapter with a motion "
                        f"mid-block (v2) but motion adapter {combo.motion_adapter} is "
                        f"{adapter.version} without one",
                        "use animatediff-motion-adapter-v1-5-2 (or a v2-based adapter such as "
                        "AnimateDiff-Lightning) with this LoRA",
                        field=field,
                    )
                )
            widths = adapter.block_out_channels
            bad = {i: w for i, w in lora.down_widths.items() if i >= len(widths) or widths[i] != w}
            if bad:
                out.append(
                    ModelError(
                        f"motion LoRA '{name}' {path} expects motion-module widths "
                        f"{sorted(lora.down_widths.values())} but motion adapter "
                        f"{combo.motion_adapter} has {list(widths)}",
                        "use a motion LoRA made for this adapter family",
                        field=field,
                    )
                )
        if lora.cross_attention_dim and lora.cross_attention_dim != ckpt.cross_attention_dim:
            out.append(
                ModelError(
                    f"LoRA '{name}' {path} is for {family(lora.cross_attention_dim)} "
                    f"(cross-attention {lora.cross_attention_dim}) but checkpoint "
                    f"{combo.checkpoint} is {ckpt.describe()}",
                    _fix_family(ckpt.family, "LoRA") or "use a LoRA trained on this checkpoint",
                    field=field,
                )
            )
    return out


def _few_step_problems(combo: Combination, settings: Settings) -> list[ModelError]:
    """Step-distilled models only work with the sampler settings they were distilled for."""
    candidates = [
        (settings.motion_adapter, combo.motion_adapter),
        (combo.motion_adapter.name, combo.motion_adapter),
        *((name, path) for name, path, _ in combo.loras),
        *((path.name, path) for _, path, _ in combo.loras),
    ]
    kinds: dict[str, tuple] = {}
    for name, path in candidates:
        fs = few_step(name)
        if fs is not None:
            kinds.setdefault(fs.kind, (fs, path))
    out = []
    s = settings
    if "lightning" in kinds:
        fs, path = kinds["lightning"]
        wrong = []
        if s.scheduler != "euler":
            wrong.append(f"scheduler '{s.scheduler}' (needs 'euler', trailing timesteps)")
        if s.guidance_scale > 1.0:
            wrong.append(f"guidance_scale {s.guidance_scale} (needs 1.0: no CFG)")
        if fs.steps and s.steps != fs.steps:
            wrong.append(f"steps {s.steps} (distilled for {fs.steps})")
        if wrong:
            out.append(
                ModelError(
                    f"AnimateDiff-Lightning model {path} does not work with {', '.join(wrong)}",
                    f'use the draft quality preset or set scheduler = "euler", '
                    f"guidance_scale = 1.0, steps = {fs.steps or 4}",
                    field="settings.scheduler",
                )
            )
    if "lcm" in kinds:
        _, path = kinds["lcm"]
        wrong = []
        if s.scheduler != "lcm":
            wrong.append(f"scheduler '{s.scheduler}' (needs 'lcm')")
        if s.guidance_scale > 2.0:
            wrong.append(f"guidance_scale {s.guidance_scale} (needs 1.0-2.0)")
        if s.steps > 12:
            wrong.append(f"steps {s.steps} (4-8 is right)")
        if wrong:
            out.append(
                ModelError(
                    f"AnimateLCM model {path} does not work with {', '.join(wrong)}",
                    'use the draft-lcm quality preset or set scheduler = "lcm", '
                    "guidance_scale = 1.0, steps = 6",
                    field="settings.scheduler",
                )
            )
    elif s.scheduler == "lcm":
        out.append(
            ModelError(
                f"the 'lcm' scheduler needs an LCM-distilled model, but motion adapter "
                f"{combo.motion_adapter} and the LoRAs are not",
                "use the draft-lcm quality preset, or another scheduler",
                field="settings.scheduler",
            )
        )
    return out


def check(combo: Combination, settings: Settings) -> None:
    """Raise the first mismatch (all of them are listed by `storyshade models check`)."""
    found = problems(combo, settings)
    if found:
        raise found[0]

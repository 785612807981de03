"""Style and motion LoRAs on a cached pipeline, through peft, without reloading it.

A LoRA file is injected once (`load_lora_weights`, adapter layers beside the base
weights); after that a strength change or a style switch is `set_adapters`, which only
changes scalars, so the panel can move a slider without a reload. Adapters that no job
uses for a while are deleted so that memory stays bounded.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storyshade.errors import ModelError

MAX_RESIDENT = 8


@dataclass(frozen=True)
class LoraSpec:
    name: str
    path: Path  # the .safetensors file
    weight: float
    motion: bool = False

    @property
    def adapter(self) -> str:
        """A peft adapter name: unique per file, no dots (peft uses them as module keys)."""
        stem = re.sub(r"[^0-9A-Za-z_-]", "_", self.name)
        return f"{'motion' if self.motion else 'style'}__{stem}"


def lora_file(path: Path) -> Path:
    """A LoRA given as a folder (a hub repo download) holds exactly one .safetensors."""
    if path.is_file():
        return path
    files = sorted(path.glob("*.safetensors"))
    if len(files) != 1:
        raise ModelError(
            f"LoRA folder {path} holds {len(files)} .safetensors files, expected one",
            "keep a single LoRA file in the folder, or name the file itself",
            field="settings.loras",
        )
    return files[0]


def loaded_adapters(pipe: Any) -> set[str]:
    return {name for names in pipe.get_list_adapters().values() for name in names}


def apply_loras(pipe: Any, loras: Sequence[LoraSpec]) -> None:
    """Make exactly `loras` active at their weights; load only files not loaded before.

    Engines need not call this: `ModelCache.get` applies the LoRAs a ModelKey carries.
    """
    from diffusers.utils import logging as dlogging
    from safetensors.torch import load_file

    loaded = loaded_adapters(pipe)
    for spec in loras:
        if spec.adapter in loaded:
            continue
        state = load_file(str(spec.path))
        verbosity = dlogging.get_verbosity()
        # A UNet-only LoRA makes diffusers log "no text-encoder keys" on every load.
        dlogging.set_verbosity_error()
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                pipe.load_lora_weights(state, adapter_name=spec.adapter)
        except (ValueError, RuntimeError, KeyError) as exc:
            raise ModelError(
                f"LoRA '{spec.name}' {spec.path} does not fit the loaded models "
                f"({str(exc).splitlines()[0]})",
                "use a LoRA trained for this checkpoint family / motion adapter",
                field="settings.motion_loras" if spec.motion else "settings.loras",
            ) from None
        finally:
            dlogging.set_verbosity(verbosity)
        loaded.add(spec.adapter)
    active = [s for s in loras if s.weight != 0]
    if active:
        pipe.enable_lora()
        pipe.set_adapters([s.adapter for s in active], [s.weight for s in active])
    elif loaded:
        pipe.disable_lora()
    _evict(pipe, loaded, [s.adapter for s in loras])


def _evict(pipe: Any, loaded: set[str], used: list[str]) -> None:
    """Delete the least recently used adapters beyond MAX_RESIDENT."""
    order = [n for n in getattr(pipe, "_storyshade_lora_lru", []) if n in loaded]
    order = [n for n in order if n not in used] + used
    order = [n for n in loaded if n not in order] + order
    while len(order) > MAX_RESIDENT and order[0] not in used:
        pipe.delete_adapters(order.pop(0))
    pipe._storyshade_lora_lru = order

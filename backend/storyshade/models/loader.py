"""Load the parts of a ControlNet-AnimateDiff pipeline from local folders.

This is the one path real models and the tiny test models both go through. Loaded
pipelines stay resident between jobs, keyed by the model files they were built from.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storyshade.errors import ModelError
from storyshade.models.locate import check_checkpoint, find
from storyshade.settings import Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@dataclass(frozen=True)
class ModelKey:
    checkpoint: Path
    motion_adapter: Path
    controlnets: tuple[tuple[str, Path], ...]
    device: str
    dtype: str


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(requested: str, device: str) -> Any:
    import torch

    if requested == "auto":
        return torch.float16 if device in ("cuda", "mps") else torch.float32
    return getattr(torch, requested)


def model_key(roots: list[Path], settings: Settings) -> ModelKey:
    """Resolve every model the settings name to a path, failing early with what is missing."""
    ckpt = find(roots, "checkpoint", settings.checkpoint)
    check_checkpoint(ckpt)
    motion = find(roots, "motion_adapter", settings.motion_adapter)
    controls = tuple(
        (role, find(roots, "controlnet", ctl.model)) for role, ctl in settings.controls.items()
    )
    device = pick_device(settings.device)
    return ModelKey(ckpt, motion, controls, device, str(pick_dtype(settings.dtype, device)))


def _load(key: ModelKey) -> Any:
    import torch
    from diffusers import (
        AnimateDiffControlNetPipeline,
        AutoencoderKL,
        ControlNetModel,
        DDIMScheduler,
        MotionAdapter,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTokenizer

    dtype = getattr(torch, key.dtype.removeprefix("torch."))
    common = {"local_files_only": True, "torch_dtype": dtype, "use_safetensors": True}
    try:
        unet = UNet2DConditionModel.from_pretrained(key.checkpoint, subfolder="unet", **common)
        vae = AutoencoderKL.from_pretrained(key.checkpoint, subfolder="vae", **common)
        text_encoder = CLIPTextModel.from_pretrained(
            key.checkpoint, subfolder="text_encoder", **common
        )
        tokenizer = CLIPTokenizer.from_pretrained(
            key.checkpoint, subfolder="tokenizer", local_files_only=True
        )
        scheduler = DDIMScheduler.from_pretrained(key.checkpoint, subfolder="scheduler")
        adapter = MotionAdapter.from_pretrained(key.motion_adapter, **common)
        controlnets = [ControlNetModel.from_pretrained(p, **common) for _, p in key.controlnets]
        pipe = AnimateDiffControlNetPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            motion_adapter=adapter,
            controlnet=controlnets if len(controlnets) > 1 else controlnets[0],
            scheduler=scheduler,
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(
            f"could not load models ({str(exc).splitlines()[0]})",
            "check that checkpoint, motion adapter and ControlNets are SD1.5-family models "
            "(`storyshade models check`)",
            field="models",
        ) from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(key.device)


class ModelCache:
    """Keeps up to `size` loaded pipelines; the least recently used is dropped first."""

    def __init__(self, size: int = 1) -> None:
        self.size = size
        self._items: OrderedDict[ModelKey, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, key: ModelKey) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            while len(self._items) >= self.size:
                self._items.popitem(last=False)
            pipe = _load(key)
            self.loads += 1
            self._items[key] = pipe
            return pipe

"""Load the parts of a ControlNet-AnimateDiff pipeline from local files.

This is the one path real models and the tiny test models both go through. Loaded
pipelines stay resident between jobs, keyed by the model files they were built from.

Engines call `ModelCache.get(model_key(roots, settings))` and use the pipeline or its
components (`.unet`, `.controlnet`, `.vae`, `.text_encoder`, `.tokenizer`, `.scheduler`).
The key also carries the job's LoRAs (with strengths) and sampler, which are not part of
its identity: `get` applies them to the cached pipeline in place (`configure`), so a new
strength or style costs no reload. Engines that build a pipeline another way call
`configure(pipe, key)` themselves.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storyshade.engines import engine_class
from storyshade.errors import ModelError, StoryShadeError
from storyshade.models import compat
from storyshade.models.locate import check_checkpoint, check_folder_weights, find
from storyshade.models.lora import LoraSpec, apply_loras, lora_file
from storyshade.models.offline import offline_by_default
from storyshade.models.scheduler import apply_scheduler
from storyshade.settings import Settings

offline_by_default()  # rendering never fetches (models/offline.py)


@dataclass(frozen=True)
class ModelKey:
    checkpoint: Path
    motion_adapter: Path
    controlnets: tuple[tuple[str, Path], ...]
    device: str
    dtype: str
    # Single-file checkpoints only: the diffusers config folder and tokenizer used.
    checkpoint_config: Path | None = None
    tokenizer: Path | None = None
    # Per-job adjustments, applied in place by ModelCache.get; not part of the identity.
    loras: tuple[LoraSpec, ...] = field(default=(), compare=False)
    scheduler: str = field(default="ddim", compare=False)
    # With reference images: the IP-Adapter and image encoder files (loaded beside the
    # pipeline by engine/references.py, not part of it).
    references: tuple[Path, Path] | None = field(default=None, compare=False)


def reference_files(
    roots: list[Path], settings: Settings, checkpoint: Path | None = None
) -> tuple[Path, Path]:
    """The IP-Adapter and image encoder the settings name, checked against each other and
    the checkpoint (errors name both files)."""
    from storyshade.models import ip_adapter

    ckpt = checkpoint or find(roots, "checkpoint", settings.checkpoint)
    adapter = find(roots, "ip_adapter", settings.ip_adapter)
    ip_adapter.check_adapter_file(adapter)
    encoder = find(roots, "image_encoder", settings.image_encoder)
    check_folder_weights(encoder, "image_encoder")
    found = ip_adapter.problems(
        adapter, encoder, ckpt, compat.checkpoint_arch(ckpt).cross_attention_dim
    )
    if found:
        raise found[0]
    return adapter, encoder


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


@functools.cache
def local_devices() -> tuple[str, ...]:
    """The devices this machine has, as `settings.device` names them ('auto' first)."""
    import torch

    found = ["auto", "cpu"]
    if torch.cuda.is_available():
        found += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        found.append("mps")
    return tuple(found)


def check_device(requested: str, have: Sequence[str] | None) -> None:
    """A device the machine that renders has (None: not known here, e.g. Ray workers)."""
    if have is not None and requested not in have:
        raise StoryShadeError(
            f"device '{requested[:40]}' is not on this server (it has: "
            f"{', '.join(d for d in have if d != 'auto')})",
            "set device to 'auto' (the best one it has) or one of those",
            field="settings.device",
        )


def pick_dtype(requested: str, device: str) -> Any:
    import torch

    if requested == "auto":
        return torch.float16 if device in ("cuda", "mps") else torch.float32
    return getattr(torch, requested)


def lora_specs(roots: list[Path], settings: Settings) -> tuple[LoraSpec, ...]:
    specs = [
        LoraSpec(lo.name, lora_file(find(roots, "lora", lo.name)), lo.weight, motion)
        for motion, items in ((False, settings.loras), (True, settings.motion_loras))
        for lo in items
    ]
    return tuple(specs)


def model_key(roots: list[Path], settings: Settings) -> ModelKey:
    """Resolve every model the settings name, then check they fit together, before loading.

    Raises ModelError naming what is missing, refused (pickle) or mismatched.
    """
    own = getattr(engine_class(settings.engine), "resolve_models", None)
    if own is not None:  # a model family that resolves its own (the Wan engines)
        return own(roots, settings)
    ckpt = find(roots, "checkpoint", settings.checkpoint)
    check_checkpoint(ckpt)
    motion = find(roots, "motion_adapter", settings.motion_adapter)
    check_folder_weights(motion, "motion_adapter")
    controls = tuple(
        (role, find(roots, "controlnet", ctl.model)) for role, ctl in settings.controls.items()
    )
    for _, path in controls:
        check_folder_weights(path, "controlnet")
    loras = lora_specs(roots, settings)
    combo = compat.Combination(
        ckpt, motion, controls, tuple((s.name, s.path, s.motion) for s in loras)
    )
    compat.check(combo, settings)
    references = reference_files(roots, settings, ckpt) if settings.references else None
    config = tokenizer = None
    if ckpt.is_file():
        from storyshade.models.single_file import checkpoint_config, find_tokenizer

        config = checkpoint_config(ckpt)
        tokenizer = find_tokenizer(config, roots)
    device = pick_device(settings.device)
    return ModelKey(
        ckpt,
        motion,
        controls,
        device,
        str(pick_dtype(settings.dtype, device)),
        config,
        tokenizer,
        loras,
        settings.scheduler,
        references,
    )


def _checkpoint_parts(key: ModelKey, dtype: Any) -> dict[str, Any]:
    if key.checkpoint.is_file():
        from storyshade.models.single_file import load_checkpoint

        assert key.checkpoint_config and key.tokenizer
        return load_checkpoint(key.checkpoint, key.checkpoint_config, key.tokenizer, dtype)
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    common = {"local_files_only": True, "torch_dtype": dtype, "use_safetensors": True}
    path = key.checkpoint
    return {
        "unet": UNet2DConditionModel.from_pretrained(path, subfolder="unet", **common),
        "vae": AutoencoderKL.from_pretrained(path, subfolder="vae", **common),
        "text_encoder": CLIPTextModel.from_pretrained(path, subfolder="text_encoder", **common),
        "tokenizer": CLIPTokenizer.from_pretrained(
            path, subfolder="tokenizer", local_files_only=True
        ),
        "scheduler": DDIMScheduler.from_pretrained(path, subfolder="scheduler"),
    }


def _load(key: ModelKey) -> Any:
    if hasattr(key, "load"):  # a key that knows its own pipeline (models/wan_loader.py)
        return key.load()
    import torch
    from diffusers import AnimateDiffControlNetPipeline, ControlNetModel, MotionAdapter

    from storyshade.models import single_file

    dtype = getattr(torch, key.dtype.removeprefix("torch."))
    common = {"local_files_only": True, "torch_dtype": dtype, "use_safetensors": True}
    try:
        parts = _checkpoint_parts(key, dtype)
        if key.motion_adapter.is_file():
            adapter = single_file.load_motion_adapter(key.motion_adapter, dtype)
        else:
            adapter = MotionAdapter.from_pretrained(key.motion_adapter, **common)
        controlnets = [
            single_file.load_controlnet(p, dtype)
            if p.is_file()
            else ControlNetModel.from_pretrained(p, **common)
            for _, p in key.controlnets
        ]
        pipe = AnimateDiffControlNetPipeline(
            vae=parts["vae"],
            text_encoder=parts["text_encoder"],
            tokenizer=parts["tokenizer"],
            unet=parts["unet"],
            motion_adapter=adapter,
            controlnet=controlnets if len(controlnets) > 1 else controlnets[0],
            scheduler=parts["scheduler"],
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(
            f"could not load models ({str(exc).splitlines()[0]})",
            "run `storyshade models check` for what is missing or mismatched",
            field="models",
        ) from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(key.device)


def configure(pipe: Any, key: ModelKey) -> Any:
    """Apply the key's sampler and LoRA strengths to a loaded pipeline, without reloading."""
    if hasattr(key, "configure"):  # a key that knows its own pipeline (models/wan_loader.py)
        return key.configure(pipe)
    apply_scheduler(pipe, key.scheduler)
    apply_loras(pipe, key.loras)
    return pipe


class ModelCache:
    """Keeps up to `size` loaded pipelines; the least recently used is dropped first."""

    def __init__(self, size: int = 1) -> None:
        self.size = size
        self._items: OrderedDict[ModelKey, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, key: ModelKey) -> Any:
        """The pipeline for `key`'s files, configured with its LoRAs and sampler."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return configure(self._items[key], key)
            while len(self._items) >= self.size:
                self._items.popitem(last=False)
            pipe = _load(key)
            self.loads += 1
            self._items[key] = pipe
            return configure(pipe, key)

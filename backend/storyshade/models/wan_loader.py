"""Load a Wan VACE pipeline from a diffusers folder: the one path real and tiny checkpoints take.

`model_key` (models/loader.py) hands Wan settings here, so submit resolves and checks a
Wan job's files exactly as it does an AnimateDiff job's, and `ModelCache` keeps the loaded
pipeline between jobs (it calls the key's `load` and `configure`). What is loaded where:

- the transformer and the VAE on the job's device; the VAE in float32 (Wan's decoder
  drifts in half precision, as diffusers recommends), the transformer in the job's dtype
  (`auto`: bfloat16 on CUDA, Wan's training precision; float32 elsewhere);
- the UMT5 text encoder in CPU memory: it runs once per job (engine/wan_text.py moves it
  to the device for that and back), so it never sits beside the transformer while
  denoising;
- the sampler and LoRA strengths are per job, applied in place (`configure`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storyshade.errors import ModelError
from storyshade.models.lora import LoraSpec, apply_loras, lora_file
from storyshade.settings import Settings

WAN_ENGINES = ("wan-vace", "wan-vace-stock")


def is_wan(settings: Settings) -> bool:
    return settings.engine in WAN_ENGINES


def wan_dtype(requested: str, device: str) -> str:
    """`auto`: bfloat16 on CUDA (float16 overflows in Wan's attention), float32 elsewhere."""
    if requested != "auto":
        return f"torch.{requested}"
    return "torch.bfloat16" if device.startswith("cuda") else "torch.float32"


@dataclass(frozen=True)
class WanModelKey:
    """The files of a Wan job and where they load; LoRA strengths and the sampler are
    per job (not part of the identity), applied in place by `configure`."""

    checkpoint: Path
    device: str
    dtype: str
    offload: str = "none"  # engine/wan_levers.py: where the transformer lives between uses
    loras: tuple[LoraSpec, ...] = field(default=(), compare=False)
    scheduler: tuple[str, float] = field(default=("unipc", 3.0), compare=False)

    def weight_paths(self) -> list[Path]:
        return [self.checkpoint]

    def load(self) -> Any:
        return load_wan(self)

    def configure(self, pipe: Any) -> Any:
        apply_flow_scheduler(pipe, *self.scheduler)
        apply_loras(pipe, self.loras)
        return pipe


def wan_model_key(roots: list[Path], settings: Settings) -> WanModelKey:
    """Resolve and check a Wan job's checkpoint and LoRAs before anything loads; a
    mismatch names both files (models/wan_arch.py)."""
    from storyshade.models.loader import pick_device
    from storyshade.models.locate import find
    from storyshade.models.wan_arch import check_vace, check_wan_checkpoint, lora_problems

    ckpt = find(roots, "checkpoint", settings.checkpoint)
    check_wan_checkpoint(ckpt)
    arch = check_vace(ckpt)
    loras = []
    for i, lo in enumerate(settings.loras):
        path = lora_file(find(roots, "lora", lo.name))
        found = lora_problems(lo.name, path, ckpt, arch, f"settings.loras.{i}.name")
        if found:
            raise found[0]
        loras.append(LoraSpec(lo.name, path, lo.weight))
    device = pick_device(settings.device)
    return WanModelKey(
        ckpt,
        device,
        wan_dtype(settings.dtype, device),
        settings.wan_offload,
        tuple(loras),
        (settings.wan_scheduler, settings.wan_shift),
    )


def make_flow_scheduler(name: str, shift: float, config: Any) -> Any:
    """UniPC or Euler over flow-matching sigmas with `shift`, from the checkpoint's config."""
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    train = int(dict(config).get("num_train_timesteps", 1000))
    if name == "euler":
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=train, shift=shift)
    return UniPCMultistepScheduler.from_config(
        config,
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=shift,
        num_train_timesteps=train,
    )


def apply_flow_scheduler(pipe: Any, name: str, shift: float) -> None:
    """The job's sampler on the cached pipeline (a config change, never a reload)."""
    if getattr(pipe, "_storyshade_scheduler", None) == (name, shift):
        return
    base = getattr(pipe, "_storyshade_scheduler_config", None) or pipe.scheduler.config
    pipe._storyshade_scheduler_config = base
    pipe.scheduler = make_flow_scheduler(name, shift, base)
    pipe._storyshade_scheduler = (name, shift)


def load_wan(key: WanModelKey) -> Any:
    import torch
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanVACEPipeline,
        WanVACETransformer3DModel,
    )
    from transformers import AutoTokenizer, UMT5EncoderModel

    dtype = getattr(torch, key.dtype.removeprefix("torch."))
    path = key.checkpoint
    common = {"local_files_only": True, "use_safetensors": True}
    try:
        transformer = WanVACETransformer3DModel.from_pretrained(
            path, subfolder="transformer", torch_dtype=dtype, **common
        )
        vae = AutoencoderKLWan.from_pretrained(
            path, subfolder="vae", torch_dtype=torch.float32, **common
        )
        text_encoder = UMT5EncoderModel.from_pretrained(
            path, subfolder="text_encoder", torch_dtype=dtype, **common
        )
        tokenizer = AutoTokenizer.from_pretrained(
            path, subfolder="tokenizer", local_files_only=True
        )
        scheduler = UniPCMultistepScheduler.from_pretrained(path, subfolder="scheduler")
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(
            f"could not load the Wan checkpoint {path} ({str(exc).splitlines()[0]})",
            "run `storyshade models check` for what is missing or mismatched",
            field="models",
        ) from None
    pipe = WanVACEPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=scheduler,
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    if key.offload == "group" and key.device != "cpu":
        transformer.enable_group_offload(
            onload_device=key.device,
            offload_device="cpu",
            offload_type="block_level",
            num_blocks_per_group=1,
        )
    elif key.offload != "model":  # model offload: each part visits the device to work
        transformer.to(key.device)
    if key.offload != "model":
        vae.to(key.device)
    return pipe

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

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storyshade.errors import ModelError
from storyshade.models.lora import LoraSpec, apply_loras, lora_file
from storyshade.settings import Settings


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


def wan_model_key(roots: list[Path], settings: Settings, device: str) -> WanModelKey:
    """Resolve and check a Wan job's checkpoint and LoRAs before anything loads (to run on
    `device`); a mismatch names both files (models/wan_arch.py)."""
    from storyshade.models.locate import find
    from storyshade.models.wan_arch import check_wan_checkpoint

    ckpt = find(roots, "checkpoint", settings.checkpoint)
    check_wan_checkpoint(ckpt)
    loras = [
        LoraSpec(lo.name, lora_file(find(roots, "lora", lo.name)), lo.weight)
        for lo in settings.loras
    ]
    found = wan_problems(settings, ckpt, [(s.name, s.path) for s in loras])
    if found:
        raise found[0]
    return WanModelKey(
        ckpt,
        device,
        wan_dtype(settings.dtype, device),
        settings.wan_offload,
        tuple(loras),
        (settings.wan_scheduler, settings.wan_shift),
    )


FEW_STEP = re.compile(r"causvid|lightx2v|step[_-]?distill|fastwan", re.IGNORECASE)


def few_step_problems(settings: Settings, loras: list[tuple[str, Path]]) -> list[ModelError]:
    """A few-step distillation LoRA (CausVid, lightx2v) works only without CFG, in few steps."""
    distilled = [(n, p) for n, p in loras if FEW_STEP.search(n) or FEW_STEP.search(p.name)]
    if not distilled:
        return []
    wrong = []
    if settings.guidance_scale > 1:
        wrong.append(f"guidance_scale {settings.guidance_scale} (needs 1.0: no CFG)")
    if settings.steps > 12:
        wrong.append(f"steps {settings.steps} (distilled for 4-8)")
    if not wrong:
        return []
    name, path = distilled[0]
    return [
        ModelError(
            f"few-step LoRA '{name}' {path} does not work with {', '.join(wrong)}",
            "use the wan-fast quality preset, or set guidance_scale = 1.0 and steps = 6",
            field="settings.loras",
        )
    ]


def wan_problems(
    settings: Settings, checkpoint: Path, loras: list[tuple[str, Path]]
) -> list[ModelError]:
    """Every mismatch of a Wan job's files, each naming both files (nothing loaded)."""
    from storyshade.models.wan_arch import check_vace, lora_problems

    try:
        arch = check_vace(checkpoint)
    except ModelError as exc:
        return [exc]
    out = []
    for i, (name, path) in enumerate(loras):
        out += lora_problems(name, path, checkpoint, arch, f"settings.loras.{i}.name")
    return out + few_step_problems(settings, loras)


def check_wan_preset(
    roots: list[Path],
    settings: Settings,
    report: Any,
    needs: list[Any],
    where_to_get: Callable[..., str],
) -> Any:
    """`models check` for a Wan preset (models/check.py's report and needs): the
    checkpoint and LoRAs present and fitting, and no setting of the other engine family."""
    from storyshade.engines import check_settings
    from storyshade.errors import StoryShadeError
    from storyshade.models.locate import find
    from storyshade.models.wan_arch import check_wan_checkpoint

    try:  # settings of the other engine family (a camera preset's motion LoRA, say)
        check_settings(settings)
    except StoryShadeError as exc:
        report.problems.append(exc)
    for need in needs:
        report.needs.append(need)
        try:
            path = find(roots, need.kind, need.name)
            if need.kind == "checkpoint":
                check_wan_checkpoint(path)
            else:
                path = lora_file(path)
            need.path = path
        except ModelError as exc:
            need.problem = exc.problem
            found = "not found" in exc.problem
            need.fix = where_to_get(roots, need.kind, need.name) if found else exc.fix
    if all(n.path and not n.problem for n in report.needs):
        ckpt = report.needs[0].path
        loras = [(n.name, n.path) for n in report.needs[1:]]
        report.problems += wan_problems(settings, ckpt, loras)
    return report


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
        # leaf level: the engine calls the transformer's parts itself (engine/wan_sampling.py),
        # so the offload hooks must sit on the parts, not on the whole model's forward
        transformer.enable_group_offload(
            onload_device=key.device,
            offload_device="cpu",
            offload_type="leaf_level",
            use_stream=True,
        )
    elif key.offload != "model":  # model offload: each part visits the device to work
        transformer.to(key.device)
    if key.offload != "model":
        vae.to(key.device)
    return pipe

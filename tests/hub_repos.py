"""Repositories for the hub stand-in (tests/hubstandin.py), laid out like the real ones under
their real ids, holding the tiny models (`storyshade models tiny`) instead of real weights.

Like the real repositories they carry what a pull must leave behind: fp16 and non-EMA copies
beside the plain fp32 weights, pickle (.bin) twins, a root single-file checkpoint, README and
image files, a safety checker. Some hold only what a failure test needs: only pickles
(lineart), no such file (ip-adapter_sd15), a gated one (the zoom-in LoRA).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
MOTION = "guoyww/animatediff-motion-adapter-v1-5-3"
DEPTH = "lllyasviel/control_v11f1p_sd15_depth"
NORMAL = "lllyasviel/control_v11p_sd15_normalbae"
LINEART = "lllyasviel/control_v11p_sd15_lineart"
LIGHTNING = "ByteDance/AnimateDiff-Lightning"
ZOOM = "guoyww/animatediff-motion-lora-zoom-in"
IP = "h94/IP-Adapter"
WAN = "Wan-AI/Wan2.1-VACE-1.3B-diffusers"

# What a pull of each must fetch (fp16 where the repository has it), by local name.
SD15_FILES = {
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "tokenizer/merges.txt",
    "tokenizer/tokenizer.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
}
WAN_FILES = {
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model-00001-of-00002.safetensors",
    "text_encoder/model-00002-of-00002.safetensors",
    "text_encoder/model.safetensors.index.json",
    "tokenizer/special_tokens_map.json",
    "tokenizer/spiece.model",
    "tokenizer/tokenizer.json",
    "tokenizer/tokenizer_config.json",
    "transformer/config.json",
    "transformer/diffusion_pytorch_model-00001-of-00002.safetensors",
    "transformer/diffusion_pytorch_model-00002-of-00002.safetensors",
    "transformer/diffusion_pytorch_model.safetensors.index.json",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
}


def half(src: Path, dest: Path) -> None:
    """The fp16 copy of a safetensors file, as repositories publish it beside the fp32 one."""
    from safetensors.torch import load_file, save_file

    state = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(src)).items()}
    save_file(state, str(dest), metadata={"format": "pt"})


def _tensors(dest: Path, names: list[str], seed: int) -> None:
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file({n: torch.randn(8, 8, generator=gen) for n in names}, str(dest))


def _write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")


def _variants(folder: Path, stem: str, non_ema: bool = False) -> None:
    plain = folder / f"{stem}.safetensors"
    half(plain, folder / f"{stem}.fp16.safetensors")
    _write(
        folder / ("pytorch_model.bin" if stem == "model" else f"{stem}.bin"), b"PK\x03\x04pickle"
    )
    if non_ema:
        shutil.copy(plain, folder / f"{stem}.non_ema.safetensors")


def _reshard(folder: Path, stem: str) -> None:
    """`stem`.safetensors as two shards and their index, as large checkpoints ship."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / f"{stem}.safetensors"))
    (folder / f"{stem}.safetensors").unlink()
    names = sorted(state)
    index = {"metadata": {"total_size": 0}, "weight_map": {}}
    for shard, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :]), 1):
        file = f"{stem}-0000{shard}-of-00002.safetensors"
        save_file({k: state[k] for k in part}, str(folder / file), metadata={"format": "pt"})
        index["weight_map"] |= dict.fromkeys(part, file)
        index["metadata"]["total_size"] += sum(state[k].nbytes for k in part)
    _write(folder / f"{stem}.safetensors.index.json", json.dumps(index))


def write_repos(root: Path, tiny: Path) -> Path:
    """Every stand-in repository under `root`, from a tiny models set at `tiny`."""
    from storyshade.models.tiny import tiny_adapter, write_motion_file

    sd = root / SD15
    shutil.copytree(tiny / "checkpoints" / "tiny-sd15", sd)
    _variants(sd / "unet", "diffusion_pytorch_model", non_ema=True)
    _variants(sd / "vae", "diffusion_pytorch_model")
    _variants(sd / "text_encoder", "model")
    shutil.copy(
        sd / "unet" / "diffusion_pytorch_model.safetensors", sd / "v1-5-pruned-emaonly.safetensors"
    )
    _write(sd / "v1-5-pruned.ckpt", b"PK\x03\x04pickle checkpoint")
    _write(sd / "README.md", "# Stable Diffusion v1-5 (stand-in)\n")
    _write(sd / "safety_checker" / "config.json", "{}")
    _tensors(sd / "safety_checker" / "model.safetensors", ["w"], 1)
    _write(sd / "feature_extractor" / "preprocessor_config.json", "{}")

    motion = root / MOTION
    shutil.copytree(tiny / "motion" / "tiny-motion-v3", motion)
    _write(motion / "diffusion_pytorch_model.bin", b"PK\x03\x04pickle")  # no fp16 copy here
    _write(motion / "README.md", "motion adapter v3\n")

    for repo, name in ((DEPTH, "tiny-controlnet-depth"), (NORMAL, "tiny-controlnet-normal")):
        folder = root / repo
        shutil.copytree(tiny / "controlnet" / name, folder)
        _variants(folder, "diffusion_pytorch_model")
        _write(folder / "diffusion_pytorch_model.fp16.bin", b"PK\x03\x04pickle")
        _write(folder / "images" / "input.png", b"\x89PNG\r\n\x1a\nnot really")
        _write(folder / "README.md", "controlnet\n")

    lineart = root / LINEART
    shutil.copy(
        tiny / "controlnet" / "tiny-controlnet-depth" / "config.json", _mk(lineart) / "config.json"
    )
    _write(lineart / "diffusion_pytorch_model.bin", b"PK\x03\x04pickle only")

    light = root / LIGHTNING
    write_motion_file(
        tiny_adapter("v3"),
        _mk(light) / "animatediff_lightning_4step_diffusers.safetensors",
        original=False,
    )
    write_motion_file(tiny_adapter("v3"), light / "animatediff_lightning_4step_comfyui.safetensors")
    _write(light / "README.md", "lightning\n")

    zoom = root / ZOOM
    _tensors(
        zoom / "diffusion_pytorch_model.safetensors", ["lora.down.weight", "lora.up.weight"], 3
    )
    _write(zoom / "README.md", "zoom-in LoRA\n")

    ip = root / IP
    shutil.copytree(tiny / "image_encoder" / "tiny-image-encoder", ip / "models" / "image_encoder")
    _write(ip / "models" / "image_encoder" / "pytorch_model.bin", b"PK\x03\x04pickle")
    shutil.copy(
        tiny / "ip_adapter" / "tiny-ip-adapter-plus.safetensors",
        ip / "models" / "ip-adapter-plus_sd15.safetensors",
    )

    # The tiny Wan VACE set (a real, loadable one) laid out as the real repository is: its
    # transformer and text encoder in two shards with their index, a sentencepiece tokenizer
    # file beside tokenizer.json, and the extras a pull must leave behind.
    wan = root / WAN
    shutil.copytree(tiny / "checkpoints" / "tiny-wan-vace", wan)
    _reshard(wan / "transformer", "diffusion_pytorch_model")
    _reshard(wan / "text_encoder", "model")
    _write(wan / "tokenizer" / "special_tokens_map.json", "{}")
    _write(wan / "tokenizer" / "spiece.model", b"\x0a\x0bsentencepiece")
    _write(wan / "README.md", "Wan VACE\n")
    _write(wan / "assets" / "logo.png", b"\x89PNG\r\n\x1a\n")
    _write(wan / ".gitattributes", "*.safetensors filter=lfs\n")
    return root


def _mk(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


if __name__ == "__main__":  # from a Python without torch: `python hub_repos.py ROOT TINY`
    import sys

    write_repos(Path(sys.argv[1]), Path(sys.argv[2]))

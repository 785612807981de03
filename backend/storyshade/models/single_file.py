"""Load single-file .safetensors models (original LDM layout) with no hub access.

diffusers converts single files only when given a local diffusers config folder. For each
file the config comes from, in order: a sidecar folder `<file stem>.config/` beside it (any
architecture), else the shipped SD1.5 configs (`storyshade/configs/`). The SD1.5 CLIP
tokenizer is not shipped (1.5 MB); it comes from the sidecar, an SD1.5 diffusers folder
under the model roots, or the Hugging Face cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storyshade.errors import ModelError
from storyshade.models.arch import adapter_arch, checkpoint_arch, controlnet_arch, read_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CLIP_REPOS = ("models--openai--clip-vit-large-patch14",)


def sidecar(path: Path) -> Path:
    return path.with_suffix(".config")


def checkpoint_config(path: Path) -> Path:
    """The diffusers config folder a single-file checkpoint is converted with."""
    side = sidecar(path)
    if (side / "model_index.json").is_file():
        return side
    arch = checkpoint_arch(path)
    if arch.family == "SD1.5":
        return CONFIGS / "sd15"
    raise ModelError(
        f"single-file checkpoint {path} is {arch.describe()}; StoryShade ships the "
        "configuration for SD1.5 single files only",
        f"use the diffusers folder of this model, or put its diffusers config folder "
        f"(model_index.json and component configs) beside the file as {side}",
        field="checkpoint",
    )


def controlnet_config(path: Path) -> Path:
    side = sidecar(path)
    if (side / "config.json").is_file():
        return side
    arch = controlnet_arch(path)
    if arch.family == "SD1.5":
        return CONFIGS / "sd15-controlnet"
    raise ModelError(
        f"single-file ControlNet {path} is {arch.describe()}; only SD1.5 ControlNet "
        "configuration is shipped",
        f"use the diffusers folder of this ControlNet or put its config.json in {side}/",
        field="controlnet",
    )


def _text_width(folder: Path) -> int | None:
    config = folder / "text_encoder" / "config.json"
    return read_config(config).get("hidden_size") if config.is_file() else None


def find_tokenizer(config_dir: Path, roots: list[Path]) -> Path:
    """A CLIP tokenizer folder that matches the checkpoint's text encoder width."""
    from storyshade.models.discover import discover, hf_cache_dir, snapshot

    own = config_dir / "tokenizer"
    if (own / "vocab.json").is_file():
        return own
    width = _text_width(config_dir)
    for found in discover(roots):
        folder = found.path
        if found.kind != "checkpoint" or not folder.is_dir() or found.refused:
            continue
        if (folder / "tokenizer" / "vocab.json").is_file() and _text_width(folder) == width:
            return folder / "tokenizer"
    if width == 768:
        for repo in CLIP_REPOS:
            snap = snapshot(hf_cache_dir() / repo) if (hf_cache_dir() / repo).is_dir() else None
            if snap and (snap / "vocab.json").is_file():
                return snap
    raise ModelError(
        f"no CLIP tokenizer found for single-file checkpoints using {config_dir}",
        "put any SD1.5 diffusers folder (e.g. stable-diffusion-v1-5, which has tokenizer/"
        "vocab.json and merges.txt) under a models root, or download "
        "openai/clip-vit-large-patch14 into the Hugging Face cache",
        field="checkpoint",
    )


def load_checkpoint(path: Path, config: Path, tokenizer: Path, dtype: Any) -> dict[str, Any]:
    """unet, vae, text_encoder, tokenizer and scheduler from one original-layout file."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(tokenizer), local_files_only=True)
    pipe = StableDiffusionPipeline.from_single_file(
        str(path),
        config=str(config),
        tokenizer=tok,
        safety_checker=None,
        requires_safety_checker=False,
        local_files_only=True,
        torch_dtype=dtype,
    )
    return pipe.components


def load_controlnet(path: Path, dtype: Any) -> Any:
    from diffusers import ControlNetModel

    return ControlNetModel.from_single_file(
        str(path), config=str(controlnet_config(path)), local_files_only=True, torch_dtype=dtype
    )


def load_motion_adapter(path: Path, dtype: Any) -> Any:
    """A motion module file: original AnimateDiff layout or diffusers layout (Lightning)."""
    from diffusers import MotionAdapter
    from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers
    from safetensors.torch import load_file

    config = {k: v for k, v in adapter_arch(path).config.items() if not k.startswith("_")}
    adapter = MotionAdapter.from_config(config)
    state = load_file(str(path))
    if any("temporal_transformer" in k for k in state):
        state = convert_animatediff_checkpoint_to_diffusers(state)
    missing, unexpected = adapter.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(
            f"motion module {path} does not match the adapter layout inferred from it "
            f"({len(missing)} missing, {len(unexpected)} unexpected tensors, e.g. "
            f"{(missing or unexpected)[0]})",
            f"put the adapter's config.json in {sidecar(path)}/ or use its diffusers folder",
            field="motion_adapter",
        )
    return adapter if adapter.dtype == dtype else adapter.to(dtype)

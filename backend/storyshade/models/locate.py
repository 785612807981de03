"""Where models live on disk, and what is missing when they are not there.

Roots come from `--models`, then $STORYSHADE_MODELS (os.pathsep-separated); the add-on's
preference reaches the server as `--models`. The recommended layout of a root is
`checkpoints/`, `motion/`, `controlnet/`, `lora/`, but any layout works: models are
recognised by content (see `discover`), and the Hugging Face cache is searched last.
Nothing here downloads (only `storyshade models pull`, models/pull.py, does, when asked).
"""

from __future__ import annotations

import os
from pathlib import Path

from storyshade.errors import ModelError
from storyshade.models.safety import is_pickle, pickle_error, pickle_only_folder

KIND_DIRS = {
    "checkpoint": "checkpoints",
    "motion_adapter": "motion",
    "controlnet": "controlnet",
    "lora": "lora",
    "ip_adapter": "ip_adapter",
    "image_encoder": "image_encoder",
}
CHECKPOINT_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


def model_roots(explicit: list[str | Path] | None = None) -> list[Path]:
    roots = [Path(p) for p in explicit or []]
    roots += [Path(p) for p in os.environ.get("STORYSHADE_MODELS", "").split(os.pathsep) if p]
    return [r.expanduser() for r in roots]


def _safe_name(name: str, kind: str) -> str:
    """A plain name or an `org/name` repo id; never a path that escapes the roots."""
    parts = name.replace("\\", "/").split("/")
    if not name or len(parts) > 2 or any(not p or p.startswith(".") for p in parts) or ".." in name:
        raise ModelError(
            f"'{name}' is not a model name",
            f"name a model inside a models root's {KIND_DIRS[kind]}/ folder "
            "or a Hugging Face repo id (org/name)",
            field=kind,
        )
    return name


def _fast_path(roots: list[Path], kind: str, name: str) -> Path | None:
    """The recommended layout, checked before any scanning."""
    if "/" in name:
        return None
    for root in roots:
        base = root / KIND_DIRS[kind]
        for candidate in (base / name, base / f"{name}.safetensors"):
            if candidate.exists():
                return candidate
    return None


def find(roots: list[Path], kind: str, name: str) -> Path:
    """Path of model `name` of `kind`: first root that has it, then the HF cache."""
    from storyshade.models.discover import discover, search_roots

    _safe_name(name, kind)
    hit = _fast_path(roots, kind, name)
    if hit is not None:
        return hit
    everything = discover(roots)
    found = [f for f in everything if f.kind == kind and f.matches(name)]
    usable = [f for f in found if not f.refused]
    if usable:
        return usable[0].path
    other = next((f for f in everything if f.matches(name) and not f.refused), None)
    if other is not None:
        what = other.note or other.kind.replace("_", " ")
        raise ModelError(
            f"'{name}' ({other.path}) is a {what}, not a {kind.replace('_', ' ')}",
            f"name a {kind.replace('_', ' ')} here (`storyshade models list --kind {kind}`)",
            field=kind,
        )
    refused = next((f for f in everything if f.matches(name) and f.refused), None)
    if refused is not None:  # e.g. NAME.ckpt: say why it is not used, and how to convert
        raise pickle_error(refused.path, field=kind)
    searched = search_roots(roots)
    if not searched:
        raise ModelError(
            f"{kind} '{name}' not found: no models folder is configured",
            "pass --models DIR or set STORYSHADE_MODELS; `storyshade models tiny DIR` writes "
            "a tiny test set",
            field="models",
        )
    where = roots[0] / KIND_DIRS[kind] / name if roots else KIND_DIRS[kind] + "/" + name
    raise ModelError(
        f"{kind} '{name}' not found (searched {', '.join(map(str, searched))})",
        f"put the model at {where}, or download a preset's models with `storyshade models "
        "pull PRESET --models DIR`, or choose another preset (`storyshade models check "
        "PRESET` says what is missing)",
        field=kind,
    )


def check_checkpoint(path: Path) -> None:
    """A diffusers checkpoint folder must be complete and in safetensors; a file must be one."""
    if path.is_file():
        if is_pickle(path) or path.suffix != ".safetensors":
            raise pickle_error(path, field="checkpoint")
        return
    from storyshade.models.wan_arch import is_wan_folder

    if is_wan_folder(path):
        raise ModelError(
            f"checkpoint {path} is a Wan video checkpoint (a transformer, no UNet); the "
            "AnimateDiff engines need an SD1.5-family checkpoint",
            "use engine 'wan-vace' (e.g. --preset wan) with it, or name an SD1.5 checkpoint",
            field="checkpoint",
        )
    missing = [p for p in CHECKPOINT_PARTS if not (path / p).is_dir()]
    if missing:
        raise ModelError(
            f"checkpoint {path} is missing {', '.join(missing)}",
            "copy the complete diffusers folder (model_index.json and all sub-folders)",
            field="checkpoint",
        )
    for part in ("unet", "vae", "text_encoder"):
        if not list((path / part).glob("*.safetensors")):
            if pickle_only_folder(path / part):
                raise pickle_error(path / part, field="checkpoint")
            raise ModelError(
                f"{path / part} has no .safetensors weights",
                "copy the complete diffusers folder including its .safetensors files",
                field="checkpoint",
            )


def check_folder_weights(path: Path, kind: str) -> None:
    """ControlNet/motion adapter folders: safetensors present, pickle refused."""
    if path.is_file():
        if path.suffix != ".safetensors":
            raise pickle_error(path, field=kind)
        return
    if not list(path.glob("*.safetensors")):
        if pickle_only_folder(path):
            raise pickle_error(path, field=kind)
        raise ModelError(
            f"{path} has no .safetensors weights",
            "copy the complete model folder including its .safetensors file",
            field=kind,
        )

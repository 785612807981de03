"""Where models live on disk, and what is missing when they are not there.

A models root holds `checkpoints/<name>/` (diffusers SD1.5 folders), `motion/<name>/`
(MotionAdapter folders), `controlnet/<name>/` and `lora/<name>.safetensors`. Roots come from
`--models`, then $STORYSHADE_MODELS (os.pathsep-separated). Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

from storyshade.errors import ModelError

KIND_DIRS = {
    "checkpoint": "checkpoints",
    "motion_adapter": "motion",
    "controlnet": "controlnet",
    "lora": "lora",
}
CHECKPOINT_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


def model_roots(explicit: list[str | Path] | None = None) -> list[Path]:
    roots = [Path(p) for p in explicit or []]
    roots += [Path(p) for p in os.environ.get("STORYSHADE_MODELS", "").split(os.pathsep) if p]
    return [r.expanduser() for r in roots]


def _safe_name(name: str, kind: str) -> str:
    if not name or "/" in name or "\\" in name or name.startswith(".") or ".." in name:
        raise ModelError(
            f"'{name}' is not a model name",
            f"name a folder inside the models root's {KIND_DIRS[kind]}/ folder",
            field=kind,
        )
    return name


def find(roots: list[Path], kind: str, name: str) -> Path:
    """Path of model `name` of `kind` in the first root that has it."""
    _safe_name(name, kind)
    if not roots:
        raise ModelError(
            "no models folder is configured",
            "pass --models DIR or set STORYSHADE_MODELS; `storyshade models tiny DIR` writes "
            "a tiny test set",
            field="models",
        )
    looked = []
    for root in roots:
        base = root / KIND_DIRS[kind]
        for candidate in (base / name, base / f"{name}.safetensors"):
            looked.append(str(candidate))
            if candidate.exists():
                return candidate
    raise ModelError(
        f"{kind} '{name}' not found (looked in {', '.join(looked)})",
        f"put the model at {roots[0] / KIND_DIRS[kind] / name} or choose another preset",
        field=kind,
    )


def check_checkpoint(path: Path) -> None:
    """A diffusers checkpoint folder must have all five parts; list any that are missing."""
    missing = [p for p in CHECKPOINT_PARTS if not (path / p).is_dir()]
    if missing:
        raise ModelError(
            f"checkpoint {path} is missing {', '.join(missing)}",
            "copy the complete diffusers folder (model_index.json and all sub-folders)",
            field="checkpoint",
        )
    for part in ("unet", "vae", "text_encoder"):
        if not list((path / part).glob("*.safetensors")):
            raise ModelError(
                f"{path / part} has no .safetensors weights",
                "only safetensors are loaded; convert .bin/.ckpt files with diffusers' "
                "save_pretrained(safe_serialization=True)",
                field="checkpoint",
            )

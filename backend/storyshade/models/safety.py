"""Only .safetensors are loaded: pickle files (.ckpt/.pt/.pth/.bin) can run code when loaded.

StoryShade never unpickles anything itself. It names the file and prints a conversion
recipe the user runs once, on a file they trust, with torch's restricted loader.
"""

from __future__ import annotations

from pathlib import Path

from storyshade.errors import ModelError

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")


def is_pickle(path: Path) -> bool:
    return path.suffix.lower() in PICKLE_SUFFIXES


def conversion_recipe(path: Path) -> str:
    """The one-off command that turns a pickle file or folder into safetensors."""
    if path.is_dir():
        return (
            "convert the folder once with diffusers, e.g. "
            f'python -c "from diffusers import DiffusionPipeline as P; '
            f"P.from_pretrained(r'{path}', use_safetensors=False)"
            f".save_pretrained(r'{path}', safe_serialization=True)\" "
            "(use ControlNetModel or MotionAdapter instead of DiffusionPipeline for those "
            "folders), or download the .safetensors variant of the model"
        )
    out = path.with_suffix(".safetensors")
    return (
        "convert it once, only if you trust its source: "
        f'python -c "import torch; from safetensors.torch import save_file; '
        f"sd = torch.load(r'{path}', map_location='cpu', weights_only=True); "
        f"sd = sd.get('state_dict', sd); "
        f"save_file({{k: v.contiguous() for k, v in sd.items() if torch.is_tensor(v)}}, "
        f"r'{out}')\" (weights_only=True refuses embedded code), "
        "or download the .safetensors version"
    )


def pickle_error(path: Path, field: str = "models") -> ModelError:
    what = "has only pickle weights (.bin/.ckpt)" if path.is_dir() else "is a pickle file"
    return ModelError(
        f"{path} {what}; StoryShade loads only .safetensors because pickle files can run "
        "arbitrary code when opened",
        conversion_recipe(path),
        field=field,
    )


def pickle_only_folder(folder: Path) -> bool:
    """A diffusers folder whose weights exist only as pickle files."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    has_safe = any(p.suffix == ".safetensors" for p in files)
    return not has_safe and any(is_pickle(p) for p in files)

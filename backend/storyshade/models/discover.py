"""Find every usable model under the model roots and in the Hugging Face cache, offline.

Three layouts are recognised, by content rather than by folder name:
- diffusers folders (`model_index.json` for checkpoints, `config.json` for ControlNets and
  motion adapters), anywhere a few levels under a root;
- the Hugging Face hub cache (`models--ORG--NAME/snapshots/<hash>/...`), named by repo;
- single `.safetensors` files (checkpoints, motion modules, ControlNets, LoRAs), classified
  from their tensor names.
Pickle files are listed as refused so that `models list` can say how to convert them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from storyshade.errors import ModelError
from storyshade.models.header import shapes
from storyshade.models.ip_adapter import is_encoder_config, is_ip_adapter
from storyshade.models.safety import is_pickle, pickle_only_folder
from storyshade.models.wan_arch import classify_wan_file, is_wan_folder

KINDS = ("checkpoint", "motion_adapter", "controlnet", "lora", "ip_adapter", "image_encoder")
CLASS_KINDS = {
    "ControlNetModel": "controlnet",
    "MotionAdapter": "motion_adapter",
    "SparseControlNetModel": "unsupported",
}
GENERIC_STEMS = {
    "diffusion_pytorch_model",
    "model",
    "pytorch_lora_weights",
    "adapter_model",
}
MAX_DEPTH = 4


@dataclass(frozen=True)
class Found:
    """One model on disk, as a preset names it."""

    kind: str  # checkpoint | motion_adapter | controlnet | lora | unsupported | unknown
    name: str
    path: Path
    layout: str  # diffusers | hf-cache | single-file
    repo_id: str | None = None
    refused: str = ""  # why it cannot be used (pickle), empty when usable
    note: str = ""

    def matches(self, name: str) -> bool:
        wanted = name.lower()
        names = {self.name.lower()}
        if self.repo_id:
            names |= {self.repo_id.lower(), self.repo_id.split("/")[-1].lower()}
        return wanted in names


def hf_cache_dir() -> Path:
    """The hub cache folder the huggingface_hub library itself would use."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path("~/.cache/huggingface").expanduser()
    return Path(home) / "hub"


def search_roots(roots: list[Path], hf_cache: bool = True) -> list[Path]:
    """Explicit roots first (they win on name clashes), then the HF cache if it exists."""
    out = list(roots)
    cache = hf_cache_dir()
    if hf_cache and cache.is_dir() and cache not in out:
        out.append(cache)
    return out


def classify_file(path: Path) -> tuple[str, str]:
    """(kind, note) of a single .safetensors file, from its tensor names only."""
    keys = list(shapes(path))
    if any(k.startswith("model.diffusion_model.") for k in keys):
        if any(k.startswith("conditioner.embedders") for k in keys):
            return "checkpoint", "SDXL"
        return "checkpoint", ""
    if is_ip_adapter(keys):
        return "ip_adapter", ""
    wan = classify_wan_file(shapes(path))
    if wan is not None:
        return wan
    if any("lora" in k.lower() for k in keys):
        motion = any("motion_modules" in k for k in keys)
        return "lora", "motion LoRA" if motion else "style LoRA"
    if any("motion_modules" in k for k in keys):
        if any("controlnet_cond_embedding" in k for k in keys):
            return "unsupported", "SparseCtrl model (not a motion adapter)"
        return "motion_adapter", ""
    if any(
        k.startswith(("control_model.", "controlnet_")) or "input_hint_block" in k for k in keys
    ):
        return "controlnet", ""
    return "unknown", "not a checkpoint, motion module, ControlNet, LoRA or IP-Adapter"


def snapshot(repo_dir: Path) -> Path | None:
    """The snapshot `refs/main` points at, else the newest one."""
    snaps = repo_dir / "snapshots"
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        target = snaps / ref.read_text(encoding="utf-8").strip()
        if target.is_dir():
            return target
    found = sorted(
        (p for p in snaps.glob("*") if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True
    )
    return found[0] if found else None


def _folder_model(folder: Path, name: str, layout: str, repo: str | None) -> Found | None:
    """A diffusers model folder, or None when `folder` is not one."""

    def refused() -> str:
        return "pickle weights only" if pickle_only_folder(folder) else ""

    if (folder / "model_index.json").is_file() and (folder / "unet").is_dir():
        return Found("checkpoint", name, folder, layout, repo, refused())
    if is_wan_folder(folder):  # a video transformer instead of a UNet (models/wan_arch.py)
        return Found("checkpoint", name, folder, layout, repo, refused(), "Wan")
    config = folder / "config.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
            cls = data.get("_class_name", "")
        except (OSError, ValueError, AttributeError):
            return None
        if is_encoder_config(data):
            return Found("image_encoder", name, folder, layout, repo, refused())
        kind = CLASS_KINDS.get(cls)
        if kind:
            note = "SparseCtrl model (not a motion adapter)" if kind == "unsupported" else ""
            return Found(kind, name, folder, layout, repo, refused(), note)
    return None


def _file_model(path: Path, layout: str, repo: str | None, owner: str) -> Found | None:
    name = owner if path.stem in GENERIC_STEMS else path.stem
    if is_pickle(path):
        return Found("unknown", name, path, layout, repo, "pickle file")
    if path.suffix != ".safetensors":
        return None
    try:
        kind, note = classify_file(path)
    except ModelError as exc:
        return Found("unknown", name, path, layout, repo, note=exc.problem)
    return Found(kind, name, path, layout, repo, note=note)


def _walk(folder: Path, depth: int, layout: str, repo: str | None, out: list[Found]) -> None:
    if depth > MAX_DEPTH or folder.name.startswith(".") or folder.name.endswith(".config"):
        return
    at_snapshot = repo is not None and folder.parent.name == "snapshots"
    owner = repo.split("/")[-1] if at_snapshot and repo else folder.name
    model = _folder_model(folder, owner, layout, repo)
    if model:
        out.append(model)
        return
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("models--") and entry.is_dir():
            snap = snapshot(entry)
            if snap:
                repo_id = entry.name.removeprefix("models--").replace("--", "/", 1)
                _walk(snap, depth + 1, "hf-cache", repo_id, out)
        elif entry.is_dir():
            sub_repo = repo if layout == "hf-cache" else None
            _walk(entry, depth + 1, layout, sub_repo, out)
        elif entry.is_file():
            found = _file_model(entry, layout, repo, owner)
            if found:
                out.append(found)


def discover(roots: list[Path], hf_cache: bool = True) -> list[Found]:
    """Every model under `roots` (then the HF cache), in search order."""
    out: list[Found] = []
    for root in search_roots(roots, hf_cache):
        if root.is_dir():
            _walk(root, 0, "local", None, out)
    return [_finish_layout(f) for f in out]


def _finish_layout(found: Found) -> Found:
    if found.layout != "local":
        return found
    layout = "diffusers" if found.path.is_dir() else "single-file"
    return Found(
        found.kind, found.name, found.path, layout, found.repo_id, found.refused, found.note
    )

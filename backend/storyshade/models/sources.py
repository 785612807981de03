"""Where each model a preset can name comes from, and which of its repository's files it needs.

One entry per model, as data: the repository, the kind (which folder of a models root it
lands in, see `locate.KIND_DIRS`) and what to take from the repository:

- `pipeline`: `model_index.json` and the named sub-folders of a diffusers pipeline
  (never the single-file checkpoints at the root of repositories like SD1.5's);
- `folder`: one diffusers model folder (its config and weights), at the root or below;
- `file`: one `.safetensors` file.

Which weights of a folder are taken (one variant, `.safetensors` only) is decided by
`models/select.py` from the repository's file list; `storyshade models pull` reads this
table, `models check` names the entry of a missing model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from storyshade.models.locate import CHECKPOINT_PARTS, KIND_DIRS

HUB = "https://huggingface.co"
WAN_PARTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")


def hub_url() -> str:
    """The hub pull talks to: $HF_ENDPOINT (a mirror, a test stand-in) or huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or HUB).rstrip("/")


@dataclass(frozen=True)
class Source:
    name: str  # the model name presets use
    repo: str
    kind: str  # a key of locate.KIND_DIRS
    layout: str  # pipeline | folder | file
    parts: tuple[str, ...] = ()  # pipeline: the sub-folders taken
    path: str = ""  # folder: the sub-folder ("" = the root); file: the file in the repo
    revision: str = "main"
    note: str = ""

    def url(self) -> str:
        return f"{hub_url()}/{self.repo}"

    def dest(self, root: Path) -> Path:
        """Where the model lands: a folder, or `<name>.safetensors` for a single file, at
        the path discovery's fast lookup tries first."""
        base = root / KIND_DIRS[self.kind]
        return base / (f"{self.name}.safetensors" if self.layout == "file" else self.name)

    def what(self) -> str:
        """The files taken, in words (for downloading by hand)."""
        if self.layout == "file":
            return self.path
        where = f"{self.path}/" if self.path else "the repository root"
        if self.layout == "folder":
            return f"{where}: config .json files and the .safetensors weights"
        return (
            f"model_index.json and the folders {', '.join(self.parts)}: their .json/.txt "
            "files and .safetensors weights"
        )


def pipeline(name: str, repo: str, parts: tuple[str, ...], note: str = "") -> Source:
    return Source(name, repo, "checkpoint", "pipeline", parts=parts, note=note)


def folder(name: str, repo: str, kind: str, path: str = "", note: str = "") -> Source:
    return Source(name, repo, kind, "folder", path=path, note=note)


def file(name: str, repo: str, kind: str, path: str, note: str = "") -> Source:
    return Source(name, repo, kind, "file", path=path, note=note)


_LIGHTNING = "ByteDance/AnimateDiff-Lightning"
_IP = "h94/IP-Adapter"

# One line per model: adding a repository is adding a line.
_ENTRIES = [
    pipeline("stable-diffusion-v1-5", "stable-diffusion-v1-5/stable-diffusion-v1-5", CHECKPOINT_PARTS),
    pipeline("dreamshaper-8", "Lykon/dreamshaper-8", CHECKPOINT_PARTS),
    pipeline("Wan2.1-VACE-1.3B-diffusers", "Wan-AI/Wan2.1-VACE-1.3B-diffusers", WAN_PARTS),
    pipeline("Wan2.1-VACE-14B-diffusers", "Wan-AI/Wan2.1-VACE-14B-diffusers", WAN_PARTS),
    folder("animatediff-motion-adapter-v1-5", "guoyww/animatediff-motion-adapter-v1-5", "motion_adapter"),
    folder("animatediff-motion-adapter-v1-5-2", "guoyww/animatediff-motion-adapter-v1-5-2", "motion_adapter"),
    folder("animatediff-motion-adapter-v1-5-3", "guoyww/animatediff-motion-adapter-v1-5-3", "motion_adapter"),
    folder("AnimateLCM", "wangfuyun/AnimateLCM", "motion_adapter", note="diffusers motion adapter at the repo root"),
    file("AnimateLCM_sd15_t2v_lora", "wangfuyun/AnimateLCM", "lora", "AnimateLCM_sd15_t2v_lora.safetensors"),
    folder("control_v11f1p_sd15_depth", "lllyasviel/control_v11f1p_sd15_depth", "controlnet"),
    folder("control_v11p_sd15_normalbae", "lllyasviel/control_v11p_sd15_normalbae", "controlnet"),
    folder("control_v11p_sd15_lineart", "lllyasviel/control_v11p_sd15_lineart", "controlnet"),
    folder("control_v11p_sd15_softedge", "lllyasviel/control_v11p_sd15_softedge", "controlnet"),
    folder("control_v11p_sd15_canny", "lllyasviel/control_v11p_sd15_canny", "controlnet"),
    file("ip-adapter_sd15", _IP, "ip_adapter", "models/ip-adapter_sd15.safetensors"),
    file("ip-adapter-plus_sd15", _IP, "ip_adapter", "models/ip-adapter-plus_sd15.safetensors"),
    folder("image_encoder", _IP, "image_encoder", "models/image_encoder", note="the ViT-H/14 CLIP vision encoder of the SD1.5 IP-Adapters"),
    *(
        file(f"animatediff_lightning_{n}step_diffusers", _LIGHTNING, "motion_adapter", f"animatediff_lightning_{n}step_diffusers.safetensors")
        for n in (1, 2, 4, 8)
    ),
    file("Wan21_CausVid_bidirect2_T2V_1_3B_lora_rank32", "Kijai/WanVideo_comfy", "lora", "Wan21_CausVid_bidirect2_T2V_1_3B_lora_rank32.safetensors", note="a few-step (CausVid) distillation LoRA for Wan 2.1 1.3B"),
    *(
        folder(f"animatediff-motion-lora-{move}", f"guoyww/animatediff-motion-lora-{move}", "lora", note="needs the v2 motion adapter")
        for move in ("zoom-in", "zoom-out", "pan-left", "pan-right", "tilt-up", "tilt-down")
    ),
]  # fmt: skip
SOURCES: dict[str, Source] = {s.name: s for s in _ENTRIES}


def source_for(name: str) -> Source | None:
    """The entry for a model name as presets write it: the entry's name, or the repository
    id (or its last part) of a whole-repository entry, in any case."""
    if name in SOURCES:
        return SOURCES[name]
    wanted = name.lower()
    for source in SOURCES.values():
        whole = source.layout == "pipeline" or (source.layout == "folder" and not source.path)
        names = {source.name.lower()}
        if whole:
            names |= {source.repo.lower(), source.repo.split("/")[-1].lower()}
        if wanted in names:
            return source
    return None

"""Where the models the shipped presets name can be downloaded (by the user, never by us).

`models check` prints these for anything missing; StoryShade itself never fetches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from storyshade.models.locate import KIND_DIRS


@dataclass(frozen=True)
class Source:
    repo: str
    file: str | None = None  # one file of a repo holding several; None = the whole repo
    note: str = ""

    def url(self) -> str:
        return f"https://huggingface.co/{self.repo}"

    def command(self, root: Path, kind: str, name: str) -> str:
        """A download command that lands the model where discovery finds it."""
        dest = root / KIND_DIRS[kind]
        if self.file:
            return f"hf download {self.repo} {self.file} --local-dir {dest}"
        return (
            f"hf download {self.repo} --local-dir {dest / name} "
            '--include "*.json" --include "*.txt" --include "*.safetensors"'
        )


_SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
_LIGHTNING = "ByteDance/AnimateDiff-Lightning"
_IP = "h94/IP-Adapter"

SOURCES: dict[str, Source] = {
    "stable-diffusion-v1-5": Source(_SD15),
    "dreamshaper-8": Source("Lykon/dreamshaper-8"),
    "animatediff-motion-adapter-v1-5": Source("guoyww/animatediff-motion-adapter-v1-5"),
    "animatediff-motion-adapter-v1-5-2": Source("guoyww/animatediff-motion-adapter-v1-5-2"),
    "animatediff-motion-adapter-v1-5-3": Source("guoyww/animatediff-motion-adapter-v1-5-3"),
    "AnimateLCM": Source("wangfuyun/AnimateLCM", note="diffusers motion adapter at repo root"),
    "AnimateLCM_sd15_t2v_lora": Source(
        "wangfuyun/AnimateLCM", "AnimateLCM_sd15_t2v_lora.safetensors"
    ),
    "control_v11f1p_sd15_depth": Source("lllyasviel/control_v11f1p_sd15_depth"),
    "control_v11p_sd15_normalbae": Source("lllyasviel/control_v11p_sd15_normalbae"),
    "control_v11p_sd15_lineart": Source("lllyasviel/control_v11p_sd15_lineart"),
    "control_v11p_sd15_softedge": Source("lllyasviel/control_v11p_sd15_softedge"),
    "control_v11p_sd15_canny": Source("lllyasviel/control_v11p_sd15_canny"),
    "ip-adapter_sd15": Source(_IP, "models/ip-adapter_sd15.safetensors"),
    "ip-adapter-plus_sd15": Source(_IP, "models/ip-adapter-plus_sd15.safetensors"),
    "image_encoder": Source(
        _IP,
        "models/image_encoder/config.json models/image_encoder/model.safetensors",
        note="the ViT-H/14 CLIP vision encoder of the SD1.5 IP-Adapters",
    ),
}
_KIJAI = "Kijai/WanVideo_comfy"
SOURCES.update(
    {
        "Wan2.1-VACE-1.3B-diffusers": Source("Wan-AI/Wan2.1-VACE-1.3B-diffusers"),
        "Wan2.1-VACE-14B-diffusers": Source("Wan-AI/Wan2.1-VACE-14B-diffusers"),
        "Wan21_CausVid_bidirect2_T2V_1_3B_lora_rank32": Source(
            _KIJAI,
            "Wan21_CausVid_bidirect2_T2V_1_3B_lora_rank32.safetensors",
            note="a few-step (CausVid) distillation LoRA for Wan 2.1 1.3B",
        ),
    }
)
for _steps in (1, 2, 4, 8):
    _file = f"animatediff_lightning_{_steps}step_diffusers.safetensors"
    SOURCES[_file.removesuffix(".safetensors")] = Source(_LIGHTNING, _file)
for _move in ("zoom-in", "zoom-out", "pan-left", "pan-right", "tilt-up", "tilt-down"):
    SOURCES[f"animatediff-motion-lora-{_move}"] = Source(
        f"guoyww/animatediff-motion-lora-{_move}", note="needs the v2 motion adapter"
    )


def source_for(name: str) -> Source | None:
    return SOURCES.get(name) or next(
        (s for key, s in SOURCES.items() if key.lower() == name.lower()), None
    )

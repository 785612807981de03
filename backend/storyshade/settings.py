"""Job settings: everything a render needs besides the bundle, with its allowed range.

Presets (presets/*.toml) are partial dictionaries of these fields; `presets.resolve`
layers them and the user's overrides, then validates the result here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from storyshade.errors import StoryShadeError


class Control(BaseModel):
    """One ControlNet: which model (a name in the models folder) and how strongly it steers."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    scale: float = Field(default=1.0, ge=0.0, le=2.0)
    # Line roles only (lineart, softedge, canny): what draws the lines; None = the role's
    # default ('geometry' for lineart/softedge, 'canny' for canny). See docs/controls.md.
    detector: (
        Literal["geometry", "canny", "lineart", "lineart_coarse", "lineart_anime", "hed", "pidinet"]
        | None
    ) = None


class Lora(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    weight: float = Field(default=1.0, ge=-4.0, le=4.0)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    engine: Literal["animatediff", "animatediff-stock", "preview"] = "animatediff"
    prompt: str = Field(default="", max_length=2000)
    # Set by style presets; `presets.resolve` folds them into `prompt` (see full_prompt).
    prompt_prefix: str = Field(default="", max_length=1000)
    prompt_suffix: str = Field(default="", max_length=1000)
    negative_prompt: str = Field(default="", max_length=2000)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    steps: int = Field(default=20, ge=1, le=150)
    guidance_scale: float = Field(default=7.5, ge=0.0, le=30.0)
    width: int = Field(default=512, ge=64, le=2048)
    height: int = Field(default=512, ge=64, le=2048)
    checkpoint: str = "stable-diffusion-v1-5"
    motion_adapter: str = "animatediff-motion-adapter-v1-5-3"
    motion_scale: float = Field(default=1.0, ge=0.0, le=2.0)
    scheduler: Literal["ddim", "euler", "euler_a", "dpmpp_2m", "lcm"] = "ddim"
    controls: dict[str, Control] = Field(
        default_factory=lambda: {
            "depth": Control(model="control_v11f1p_sd15_depth", scale=0.8),
            "normal": Control(model="control_v11p_sd15_normalbae", scale=0.6),
        }
    )
    loras: list[Lora] = Field(default_factory=list)
    # Motion LoRAs act on the motion adapter (AnimateDiff v2 LoRAs need the v2 adapter).
    motion_loras: list[Lora] = Field(default_factory=list)
    context_length: int = Field(default=16, ge=2, le=64)
    context_overlap: int = Field(default=4, ge=0, le=32)
    decode_chunk_size: int = Field(default=8, ge=1, le=64)
    # Windowed engine (docs/engine.md): how windows move, fuse and slice.
    context_schedule: Literal["static", "shifting"] = "static"
    context_fuse: Literal["pyramid", "flat"] = "pyramid"
    free_noise: bool = False
    forward_chunk: int = Field(default=0, ge=0, le=1_048_576)
    attention_slicing: bool = False
    channels_last: bool = True
    preview_every: int = Field(default=5, ge=0, le=150)
    depth_range: Literal["robust", "clip", "fixed"] = "robust"
    depth_near: float | None = Field(default=None, gt=0)
    depth_far: float | None = Field(default=None, gt=0)
    normal_convention: Literal["bae", "midas"] = "bae"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    device: str = "auto"

    @property
    def full_prompt(self) -> str:
        """The text the model sees: style prefix, the user's prompt, style suffix."""
        parts = (self.prompt_prefix, self.prompt, self.prompt_suffix)
        return ", ".join(p.strip().strip(",").strip() for p in parts if p.strip())

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"{value} is not a multiple of 8 (the VAE works in 8-pixel cells)")
        return value

    @field_validator("controls")
    @classmethod
    def _known_controls(cls, value: dict[str, Control]) -> dict[str, Control]:
        known = {"depth", "normal", "lineart", "softedge", "canny"}
        for name in value:
            if name not in known:
                raise ValueError(f"unknown control '{name}'; use one of {sorted(known)}")
            if name in ("depth", "normal") and value[name].detector:
                raise ValueError(f"control '{name}' is computed from its pass; drop 'detector'")
        return value


def validate_settings(data: dict) -> Settings:
    """Settings from a merged dict, with the first problem named as `settings.<field>`."""
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise StoryShadeError(
            err["msg"], "correct the value or the preset that sets it", field=f"settings.{where}"
        ) from None

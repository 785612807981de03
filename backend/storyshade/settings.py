"""Job settings: everything a render needs besides the bundle, with its allowed range.

Presets (presets/*.toml) are partial dictionaries of these fields; `presets.resolve`
layers them and the user's overrides, then validates the result here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from storyshade.errors import StoryShadeError
from storyshade.wire.references import MAX_REFERENCES


class Control(BaseModel):
    """One ControlNet: which model, how strongly and over which part of the schedule it steers."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="ControlNet name in the models folder")
    scale: float = Field(
        default=1.0, ge=0.0, le=2.0, description="strength of its residuals (0 = no effect)"
    )
    detector: (
        Literal["geometry", "canny", "lineart", "lineart_coarse", "lineart_anime", "hed", "pidinet"]
        | None
    ) = Field(
        default=None,
        description="line roles only (lineart, softedge, canny): what draws the lines; None = "
        "the role's default ('geometry' for lineart/softedge, 'canny' for canny). "
        "See docs/controls.md",
    )
    start: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="fraction of the schedule before which this ControlNet is not run "
        "(diffusers' control_guidance_start): step i of N runs it when i/N >= start",
    )
    end: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="fraction of the schedule after which it is not run (diffusers' "
        "control_guidance_end): step i of N runs it when (i+1)/N <= end; 0 = never",
    )
    guess_mode: bool = Field(
        default=False,
        description="steer from the control image alone: the ControlNet sees only the "
        "prompt's conditional branch, the unconditional branch gets no residual, and its "
        "residuals fade from 0.1 (shallow) to 1.0 (deep), as in diffusers",
    )

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, value: float, info: ValidationInfo) -> float:
        start = info.data.get("start")
        if start is not None and value < start:
            raise ValueError(f"end {value} is before start {start} (both are 0-1 fractions)")
        return value


class Lora(BaseModel):
    """A LoRA file by name and the strength it is applied with (negative inverts it)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="LoRA name in the models folder's lora/")
    weight: float = Field(default=1.0, ge=-4.0, le=4.0, description="strength")


class Hires(BaseModel):
    """A second pass at a larger size: the first pass's latents upscaled, partly re-noised
    and denoised again with the same windows and the controls at the new size."""

    model_config = ConfigDict(extra="forbid")

    scale: float = Field(
        default=1.5,
        gt=1.0,
        le=2.0,
        description="how much larger the second pass is (each side, rounded to 8 pixels)",
    )
    strength: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="how much of the schedule the second pass runs again: 0.5 re-noises "
        "halfway and runs the last half of the steps; 1 starts from noise",
    )


def hires_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The second pass's size: each side scaled and rounded to the VAE's 8-pixel cell."""
    return max(8, round(width * scale / 8) * 8), max(8, round(height * scale / 8) * 8)


class Reference(BaseModel):
    """A reference image (IP-Adapter) and how strongly it steers (docs/references.md)."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(
        min_length=1,
        max_length=1000,
        description="image file (PNG, JPEG, WebP); relative paths are relative to the bundle "
        "(to the preset file when a preset names it)",
    )
    weight: float = Field(
        default=0.8, ge=0.0, le=2.0, description="strength of the image's tokens (0 = no effect)"
    )
    look: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="a look's name (its object or collection): the reference acts only inside "
        "that look's pixels, in every frame; None = the whole frame",
    )


class ColorMatch(BaseModel):
    """AdaIN colour matching: each context window's latent colour statistics pulled towards
    a reference's, so windows of a long shot, and separate shots, keep one palette
    (engine/color_match.py, docs/references.md)."""

    model_config = ConfigDict(extra="forbid")

    strength: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="how far each window's per-channel mean/std move to the reference's "
        "(0 = not at all, bit for bit; 1 = matched)",
    )
    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="reference frame (PNG, JPEG, WebP), e.g. a frame of another shot, relative "
        "to the bundle; None = the shot's own first window",
    )


class Settings(BaseModel):
    """Every knob of a job. docs/engine.md says which fields each engine reads; fields an
    engine does not read are inert for it (and listed there)."""

    model_config = ConfigDict(extra="forbid")

    engine: Literal["animatediff", "animatediff-stock", "preview"] = Field(
        default="animatediff",
        description="'animatediff' (windowed, any length), 'animatediff-stock' (diffusers' "
        "pipeline, the reference) or 'preview' (no model, cel-shaded draft)",
    )
    prompt: str = Field(default="", max_length=2000, description="what to paint")
    prompt_prefix: str = Field(
        default="",
        max_length=1000,
        description="set by style presets: put before the prompt and every look's prompt",
    )
    prompt_suffix: str = Field(
        default="",
        max_length=1000,
        description="set by style presets: put after the prompt and every look's prompt",
    )
    negative_prompt: str = Field(
        default="", max_length=2000, description="what to steer away from (needs CFG > 1)"
    )
    seed: int = Field(
        default=0,
        ge=0,
        le=2**32 - 1,
        description="noise seed; frame i's noise depends on (seed, i) only (windowed engine)",
    )
    steps: int = Field(default=20, ge=1, le=150, description="denoising steps")
    guidance_scale: float = Field(
        default=7.5, ge=0.0, le=30.0, description="classifier-free guidance; <= 1 turns CFG off"
    )
    width: int = Field(default=512, ge=64, le=2048, description="generation width, pixels")
    height: int = Field(default=512, ge=64, le=2048, description="generation height, pixels")
    checkpoint: str = Field(
        default="stable-diffusion-v1-5", description="SD1.5-class checkpoint name"
    )
    motion_adapter: str = Field(
        default="animatediff-motion-adapter-v1-5-3", description="AnimateDiff motion adapter name"
    )
    motion_scale: float = Field(
        default=1.0,
        ge=0.0,
        le=2.0,
        description="scale of the motion modules' residual: 0 = no temporal mixing (each "
        "frame is the image model alone), 1 = as trained, >1 exaggerates",
    )
    scheduler: Literal["ddim", "euler", "euler_a", "dpmpp_2m", "lcm"] = Field(
        default="ddim", description="sampler; euler_a and lcm add fresh noise every step"
    )
    controls: dict[str, Control] = Field(
        default_factory=lambda: {
            "depth": Control(model="control_v11f1p_sd15_depth", scale=0.8),
            "normal": Control(model="control_v11p_sd15_normalbae", scale=0.6),
        },
        description="ControlNets by role: depth, normal, lineart, softedge, canny",
    )
    hires: Hires | None = Field(
        default=None,
        description="windowed engine: a second pass at `scale` times the size, re-noised to "
        "`strength` (null: one pass)",
    )
    loras: list[Lora] = Field(default_factory=list, description="style LoRAs on the UNet")
    motion_loras: list[Lora] = Field(
        default_factory=list,
        description="LoRAs on the motion adapter (AnimateDiff v2 LoRAs need the v2 adapter)",
    )
    references: list[Reference] = Field(
        default_factory=list,
        max_length=MAX_REFERENCES,
        description="style reference images through an SD1.5 IP-Adapter, applied to every "
        "pixel of every frame (windowed engine; docs/references.md)",
    )
    ip_adapter: str = Field(
        default="ip-adapter_sd15",
        description="IP-Adapter (.safetensors, SD1.5 base or plus) used when references are given",
    )
    image_encoder: str = Field(
        default="image_encoder",
        description="CLIP vision image encoder folder the IP-Adapter was trained with",
    )
    color_match: ColorMatch | None = Field(
        default=None,
        description="windowed engine: match every window's latent colour statistics to the "
        "first window or to an image (AdaIN; null = off)",
    )
    context_length: int = Field(
        default=16,
        ge=2,
        le=64,
        description="frames per context window (at most the motion adapter's limit)",
    )
    context_overlap: int = Field(
        default=4, ge=0, le=32, description="frames shared by neighbouring windows"
    )
    decode_chunk_size: int = Field(
        default=8, ge=1, le=64, description="frames per VAE decode (memory, not numbers)"
    )
    context_schedule: Literal["static", "shifting"] = Field(
        default="static",
        description="windowed engine: fixed windows, or windows that move every step",
    )
    context_fuse: Literal["pyramid", "flat"] = Field(
        default="pyramid", description="how overlapping windows' predictions are blended"
    )
    free_noise: bool = Field(
        default=False,
        description="FreeNoise: frames past the first window reuse shuffled earlier noise "
        "(one look over a long shot); the stock engine needs it for shots over its limit",
    )
    forward_chunk: int = Field(
        default=0,
        ge=0,
        le=1_048_576,
        description="windowed engine: slice size for temporal blocks and feed-forward; "
        "0 = unsliced (memory, not numbers)",
    )
    attention_slicing: bool = Field(
        default=False,
        description="windowed engine: spatial attention one frame at a time (memory, not numbers)",
    )
    channels_last: bool = Field(
        default=True,
        description="on CUDA, channels-last weights (speed, not numbers); ignored elsewhere",
    )
    compile: Literal["off", "auto", "on"] = Field(
        default="off",
        description="windowed engine: torch.compile the UNet and ControlNets (speed, not "
        "numbers: float rounding only). 'on' refuses where it cannot work; 'auto' compiles on "
        "CUDA with Triton and runs eager elsewhere, saying so in the job's events. The first "
        "job per model set pays the compile time; later ones reuse it (docs/engine.md)",
    )
    step_cache: int = Field(
        default=1,
        ge=1,
        le=150,
        description="windowed engine: run the UNet's deep blocks every N steps and reuse "
        "their features in between (DeepCache); 1 = off. Trades quality for speed; at most "
        "`steps`",
    )
    preview_every: int = Field(
        default=5,
        ge=0,
        le=150,
        description="windowed engine: a latent preview event every N steps (0 = off)",
    )
    depth_range: Literal["robust", "clip", "fixed"] = Field(
        default="robust",
        description="how metric depth maps to the depth image: one range per shot from "
        "percentiles, from the camera's clip range, or depth_near/depth_far",
    )
    depth_near: float | None = Field(
        default=None, gt=0, description="near distance for depth_range 'fixed' (scene units)"
    )
    depth_far: float | None = Field(
        default=None, gt=0, description="far distance for depth_range 'fixed' (scene units)"
    )
    normal_convention: Literal["bae", "midas"] = Field(
        default="bae", description="normal image encoding the normal ControlNet was trained on"
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        default="auto", description="weights' precision; auto = float16 on CUDA/MPS, else float32"
    )
    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda', 'cuda:1', 'mps'")

    @property
    def full_prompt(self) -> str:
        """The text the model sees for the shot: its prompt inside the style."""
        return self.styled(self.prompt)

    def styled(self, text: str) -> str:
        """`text` inside the style: prefix, text, suffix. The one place this is built, for
        the shot's prompt and every look's (engine/regions.py)."""
        return join_prompt(self.prompt_prefix, text, self.prompt_suffix)

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

    @field_validator("compile")
    @classmethod
    def _compile_engine(cls, value: str, info: ValidationInfo) -> str:
        engine = info.data.get("engine")
        if value == "on" and engine != "animatediff":
            raise ValueError(
                f"engine '{engine}' cannot be compiled (only 'animatediff' can); "
                "set compile to 'off' or 'auto'"
            )
        return value

    @field_validator("step_cache")
    @classmethod
    def _step_cache_fits(cls, value: int, info: ValidationInfo) -> int:
        steps, engine = info.data.get("steps"), info.data.get("engine")
        if value > 1 and engine == "animatediff-stock":
            raise ValueError("engine 'animatediff-stock' has no step cache; set step_cache to 1")
        if steps is not None and value > steps:
            raise ValueError(
                f"interval {value} is larger than steps {steps}: the deep blocks would run "
                f"once for the whole schedule; set step_cache to at most {steps} (1 = off)"
            )
        return value


def join_prompt(*parts: str) -> str:
    """Texts as one prompt, comma-separated like a hand-written one (empty parts left out)."""
    cleaned = (p.strip().strip(",").strip() for p in parts)
    return ", ".join(p for p in cleaned if p)


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

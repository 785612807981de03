"""Job settings: everything a render needs besides the bundle, with its allowed range.

Presets (presets/*.toml) are partial dictionaries of these fields; `presets.resolve`
layers them and the user's overrides, then validates the result here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from storyshade import engines
from storyshade.declare import CAMERA, QUALITY, RESOLUTION, SHOT, STYLE
from storyshade.declare import Declared as D
from storyshade.errors import StoryShadeError
from storyshade.wire.references import MAX_REFERENCES

PASS_ROLES = ("depth", "normal")  # computed from the bundle's passes
LINE_ROLES = ("lineart", "softedge", "canny")  # drawn by a detector (docs/controls.md)
ROLES = PASS_ROLES + LINE_ROLES


class Control(BaseModel):
    """One ControlNet: which model, how strongly and over which part of the schedule it steers."""

    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, D("generation", "controlnet_models")] = Field(
        min_length=1, description="ControlNet name in the models folder"
    )
    scale: Annotated[float, D("generation", "controls")] = Field(
        default=1.0,
        ge=0.0,
        le=2.0,
        description="strength of the ControlNet's residuals (0 = no effect)",
    )
    detector: Annotated[
        Literal["geometry", "canny", "lineart", "lineart_coarse", "lineart_anime", "hed", "pidinet"]
        | None,
        D("controls", "controls"),
    ] = Field(
        default=None,
        description="line roles only (lineart, softedge, canny): what draws the lines; None = "
        "the role's default ('geometry' for lineart/softedge, 'canny' for canny). "
        "See docs/controls.md",
    )
    start: Annotated[float, D("generation", "controls")] = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="fraction of the schedule before which this ControlNet is not run (diffusers' "
        "control_guidance_start): step i of N runs it when i/N >= start; outside its span "
        "it costs nothing",
    )
    end: Annotated[float, D("generation", "controls")] = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="fraction of the schedule after which it is not run (diffusers' "
        "control_guidance_end): step i of N runs it when (i+1)/N <= end; 0 = never; end = "
        "0.6 lets the model settle the layout, then finish details freely",
    )
    guess_mode: Annotated[bool, D("generation", "guess_mode")] = Field(
        default=False,
        description="steer from the control image alone: the ControlNet sees only the conditional "
        "branch, the unconditional one gets no residual, and its residuals fade from 0.1 "
        "(shallow) to 1.0 (deep), as in diffusers; the stock engine takes it only on "
        "every control at once and without CFG",
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

    engine: Annotated[str, D("controls", SHOT, (QUALITY,))] = Field(
        default=engines.DEFAULT_ENGINE,
        description="'animatediff' (windowed, any length), 'animatediff-stock' (diffusers' "
        "pipeline, the reference), 'preview' (no model, cel-shaded draft), 'wan-vace' (Wan 2.1 "
        "VACE, windowed, any length) or 'wan-vace-stock' (diffusers' WanVACEPipeline); every "
        "engine and what it can do: docs/engine.md",
        json_schema_extra={"enum": engines.names()},
    )
    prompt: Annotated[str, D("generation", "text", flag="--prompt")] = Field(
        default="", max_length=2000, description="what to paint"
    )
    prompt_prefix: Annotated[str, D("generation", "text", (STYLE,))] = Field(
        default="",
        max_length=1000,
        description="set by style presets: put before the prompt and every look's prompt",
    )
    prompt_suffix: Annotated[str, D("generation", "text", (STYLE,))] = Field(
        default="",
        max_length=1000,
        description="set by style presets: put after the prompt and every look's prompt",
    )
    negative_prompt: Annotated[str, D("generation", "text", (STYLE,))] = Field(
        default="", max_length=2000, description="what to steer away from (needs CFG > 1)"
    )
    seed: Annotated[int, D("generation", "sampling", flag="--seed")] = Field(
        default=0,
        ge=0,
        le=2**32 - 1,
        description="noise seed: frame i's initial noise comes from (seed, i) alone, and so does the "
        "fresh noise stochastic samplers (euler_a, lcm) add at every step, so lengthening "
        "a shot or re-shading a range keeps the noise of the frames already in it",
    )
    steps: Annotated[int, D("generation", "sampling", (QUALITY,), flag="--steps")] = Field(
        default=20, ge=1, le=150, description="denoising steps"
    )
    guidance_scale: Annotated[float, D("generation", "sampling", (QUALITY,))] = Field(
        default=7.5, ge=0.0, le=30.0, description="classifier-free guidance; <= 1 turns CFG off"
    )
    width: Annotated[int, D("controls", SHOT, (RESOLUTION, QUALITY))] = Field(
        default=512, ge=64, le=2048, description="generation width, pixels"
    )
    height: Annotated[int, D("controls", SHOT, (RESOLUTION, QUALITY))] = Field(
        default=512, ge=64, le=2048, description="generation height, pixels"
    )
    checkpoint: Annotated[str, D("generation", "checkpoint", (STYLE, QUALITY))] = Field(
        default="stable-diffusion-v1-5", description="SD1.5-class checkpoint name"
    )
    motion_adapter: Annotated[str, D("generation", "motion", (CAMERA, QUALITY))] = Field(
        default="animatediff-motion-adapter-v1-5-3", description="AnimateDiff motion adapter name"
    )
    motion_scale: Annotated[float, D("generation", "motion", (CAMERA, QUALITY))] = Field(
        default=1.0,
        ge=0.0,
        le=2.0,
        description="scale of every motion module's residual (x + s * f(x)): 0 = no temporal mixing "
        "(each frame is the image model's alone), 1 = as trained (bit-identical), in "
        "between calms the motion, above 1 exaggerates it",
    )
    scheduler: Annotated[
        Literal["ddim", "euler", "euler_a", "dpmpp_2m", "lcm"],
        D("generation", "scheduler", (QUALITY,)),
    ] = Field(default="ddim", description="sampler; euler_a and lcm add fresh noise every step")
    controls: Annotated[dict[str, Control], D("controls", "controls", (STYLE, QUALITY))] = Field(
        default_factory=lambda: {
            "depth": Control(model="control_v11f1p_sd15_depth", scale=0.8),
            "normal": Control(model="control_v11p_sd15_normalbae", scale=0.6),
        },
        description="ControlNets by role: depth, normal, lineart, softedge, canny",
    )
    hires: Annotated[Hires | None, D("generation", "hires", (QUALITY,))] = Field(
        default=None,
        description="windowed engine: a second pass at `scale` times the size, re-noised to "
        "`strength` (null: one pass)",
    )
    loras: Annotated[list[Lora], D("generation", "loras", (STYLE, QUALITY))] = Field(
        default_factory=list, description="style LoRAs on the UNet"
    )
    motion_loras: Annotated[list[Lora], D("generation", "motion", (CAMERA, QUALITY))] = Field(
        default_factory=list,
        description="LoRAs on the motion adapter (AnimateDiff v2 LoRAs need the v2 adapter)",
    )
    references: Annotated[
        list[Reference], D("generation", "references", (STYLE, QUALITY), flag="--reference")
    ] = Field(
        default_factory=list,
        max_length=MAX_REFERENCES,
        description="reference images (up to 4, each with a weight 0-2, default 0.8, and optionally "
        "the look it acts in) through an SD1.5 IP-Adapter (docs/references.md)",
    )
    ip_adapter: Annotated[
        str, D("generation", "ip_adapter", (STYLE, QUALITY), only_with="references")
    ] = Field(
        default="ip-adapter_sd15",
        description="IP-Adapter (.safetensors, SD1.5 base or plus) used when references are given",
    )
    image_encoder: Annotated[
        str, D("generation", "ip_adapter", (STYLE, QUALITY), only_with="references")
    ] = Field(
        default="image_encoder",
        description="CLIP vision image encoder folder the IP-Adapter was trained with",
    )
    color_match: Annotated[
        ColorMatch | None, D("generation", "color_match", (STYLE, QUALITY), flag="--color-match")
    ] = Field(
        default=None,
        description="AdaIN colour matching: every window's predicted clean latents take the first "
        "window's (or `image`'s) per-channel mean/std at every step, with `strength` 0-1, "
        "so a long shot, or separate shots, keep one palette (docs/references.md); null = "
        "off",
    )
    context_length: Annotated[int, D("generation", "frame_windows", (QUALITY,))] = Field(
        default=16,
        ge=2,
        le=64,
        description="frames per context window (L): at most the motion adapter's limit (32 for v2/v3, "
        "24 for v1; AnimateDiff was trained on 16); memory scales with L, not with the "
        "shot",
    )
    context_overlap: Annotated[int, D("generation", "frame_windows", (QUALITY,))] = Field(
        default=4,
        ge=0,
        le=32,
        description="frames shared by neighbouring windows (O), below L: more overlap, smoother "
        "seams, more compute (L / (L - O))",
    )
    decode_chunk_size: Annotated[int, D("decode", "decode_chunks", (QUALITY,), effect="speed")] = (
        Field(
            default=8,
            ge=1,
            le=64,
            description="frames per VAE decode; frames are yielded (and saved) as each chunk finishes "
            "(memory, not numbers)",
        )
    )
    context_schedule: Annotated[
        Literal["static", "shifting"], D("generation", "window_schedule", (QUALITY,))
    ] = Field(
        default="static",
        description="'static': the fewest full-length windows with at least O shared frames, spaced "
        "evenly; 'shifting': windows on a stride L-O grid whose offset changes every "
        "step, so no frame always sits at a seam (use it if seams show)",
    )
    context_fuse: Annotated[
        Literal["pyramid", "flat"], D("generation", "window_fuse", (QUALITY,))
    ] = Field(
        default="pyramid",
        description="how overlapping windows' predictions blend: 'pyramid' weights a window's middle "
        "over its edges (1, 2, ..., 2, 1), 'flat' averages",
    )
    free_noise: Annotated[bool, D("generation", "free_noise", (QUALITY,))] = Field(
        default=False,
        description="FreeNoise: frames past the first window start from shuffled copies of earlier "
        "frames' noise, which keeps a long shot to one look; the stock engine needs it "
        "for shots over its limit",
    )
    forward_chunk: Annotated[int, D("generation", "slicing", (QUALITY,), effect="speed")] = Field(
        default=0,
        ge=0,
        le=1_048_576,
        description="slice size for temporal-attention blocks (spatial positions) and spatial "
        "feed-forward (tokens); 0 = unsliced; lowers peak memory inside a window at a "
        "small speed cost, same numbers",
    )
    attention_slicing: Annotated[bool, D("generation", "slicing", (QUALITY,), effect="speed")] = (
        Field(
            default=False,
            description="spatial attention one frame at a time (through SDPA), for cards where even one "
            "window does not fit; same numbers",
        )
    )
    channels_last: Annotated[bool, D("generation", "channels_last", (QUALITY,), effect="speed")] = (
        Field(
            default=True,
            description="on CUDA, the UNet and ControlNets in channels-last layout while denoising and "
            "the VAE while decoding (faster fp16/bf16 convolutions), undone after; speed, not "
            "numbers; ignored elsewhere",
        )
    )
    compile: Annotated[
        Literal["off", "auto", "on"],
        D("generation", "compile", (QUALITY,), effect="speed", neutral=("auto",)),
    ] = Field(
        default="off",
        description="windowed engine: torch.compile the UNet and ControlNets (speed, not "
        "numbers: float rounding only). 'on' refuses where it cannot work; 'auto' compiles on "
        "CUDA with Triton and runs eager elsewhere, saying so in the job's events. The first "
        "job per model set pays the compile time; later ones reuse it (docs/engine.md)",
    )
    step_cache: Annotated[int, D("generation", "step_cache", (QUALITY,))] = Field(
        default=1,
        ge=1,
        le=150,
        description="windowed engine: run the UNet's deep blocks every N steps and reuse "
        "their features in between (DeepCache); 1 = off. Trades quality for speed; at most "
        "`steps`",
    )
    preview_every: Annotated[
        int, D("generation", "latent_preview", (QUALITY,), effect="events")
    ] = Field(
        default=5,
        ge=0,
        le=150,
        description="a cheap latent preview event (4 frames, 1/8 size, no VAE) every N steps; 0 = off",
    )
    depth_range: Annotated[Literal["robust", "clip", "fixed"], D("controls", SHOT, (QUALITY,))] = (
        Field(
            default="robust",
            description="how metric depth maps to the depth image: one range per shot from "
            "percentiles, from the camera's clip range, or depth_near/depth_far",
        )
    )
    depth_near: Annotated[
        float | None, D("controls", SHOT, (QUALITY,), only_with="depth_range")
    ] = Field(
        default=None,
        gt=0,
        validate_default=True,
        description="near distance for depth_range 'fixed' (scene units)",
    )
    depth_far: Annotated[float | None, D("controls", SHOT, (QUALITY,), only_with="depth_range")] = (
        Field(
            default=None,
            gt=0,
            validate_default=True,
            description="far distance for depth_range 'fixed' (scene units), beyond depth_near",
        )
    )
    normal_convention: Annotated[
        Literal["bae", "midas"], D("controls", "normal_image", (QUALITY,))
    ] = Field(
        default="bae", description="normal image encoding the normal ControlNet was trained on"
    )
    dtype: Annotated[
        Literal["auto", "float32", "float16", "bfloat16"], D("generation", "dtype", (QUALITY,))
    ] = Field(
        default="auto",
        description="weights' precision: 'auto' = float16 on CUDA/MPS, float32 on the CPU; latents "
        "and fused predictions stay float32 whatever the weights are",
    )
    device: Annotated[str, D("generation", "device", (QUALITY,), effect="where")] = Field(
        default="auto",
        max_length=40,
        description="'auto', 'cpu', 'cuda', 'cuda:1', 'mps': one the server has (/v1/health)",
    )

    # -- Wan VACE only: their features are read by the Wan engines alone, so the other
    # engines refuse them (engines.check_settings), as the Wan engines refuse AnimateDiff's
    wan_window: Annotated[int, D("generation", "latent_windows", (QUALITY,))] = Field(
        default=81,
        ge=5,
        le=257,
        description="Wan: frames per context window, 4k+1 (81 frames = 21 latent frames, "
        "what Wan 2.1 was trained on)",
    )
    wan_overlap: Annotated[int, D("generation", "latent_windows", (QUALITY,))] = Field(
        default=16,
        ge=0,
        le=252,
        description="Wan: frames shared by neighbouring windows, a multiple of 4 (whole "
        "latent frames)",
    )
    wan_scheduler: Annotated[
        Literal["unipc", "euler"], D("generation", "flow_sampling", (QUALITY,))
    ] = Field(
        default="unipc",
        description="Wan: flow-matching sampler, UniPC (as shipped) or Euler",
    )
    wan_shift: Annotated[float, D("generation", "flow_sampling", (QUALITY,))] = Field(
        default=3.0,
        gt=0.0,
        le=20.0,
        description="Wan: flow shift of the sampler's schedule (3 for 480p, 5 for 720p)",
    )
    wan_cache: Annotated[
        Literal["off", "first_block", "taylorseer"], D("generation", "wan_cache", (QUALITY,))
    ] = Field(
        default="off",
        description="wan-vace: diffusers' step cache on the transformer: first-block cache "
        "or TaylorSeer (speed for quality; docs/engine.md)",
    )
    wan_cache_threshold: Annotated[
        float, D("generation", "wan_cache", (QUALITY,), only_with="wan_cache")
    ] = Field(
        default=0.05,
        ge=0.01,
        le=0.3,
        description="wan-vace: first_block: how much change is tolerated before "
        "the blocks run again (higher = faster, blurrier)",
    )
    wan_cache_interval: Annotated[
        int, D("generation", "wan_cache", (QUALITY,), only_with="wan_cache")
    ] = Field(
        default=4,
        ge=2,
        le=10,
        description="wan-vace: taylorseer: full computation every N steps, predicted between",
    )
    wan_offload: Annotated[
        Literal["none", "model", "group"], D("generation", "offload", (QUALITY,), effect="speed")
    ] = Field(
        default="none",
        description="wan-vace: keep the transformer in CPU memory and move it (model) or "
        "its blocks one group at a time (group) to the GPU: for 8 GB GPUs",
    )

    @field_validator("wan_window")
    @classmethod
    def _wan_window(cls, value: int) -> int:
        if value % 4 != 1:
            raise ValueError(
                f"{value} is not 4k+1 frames (the Wan VAE keeps the first frame and "
                "groups the rest by 4); use e.g. 33, 49 or 81"
            )
        return value

    @field_validator("wan_overlap")
    @classmethod
    def _wan_overlap(cls, value: int, info: ValidationInfo) -> int:
        window = info.data.get("wan_window")
        if value % 4:
            raise ValueError(f"{value} is not a multiple of 4 (whole latent frames)")
        if window is not None and value >= window - 1:
            raise ValueError(f"overlap {value} must be below the window ({window} frames) - 1")
        return value

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

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        if value not in engines.ENGINES:
            raise ValueError(f"unknown engine '{value}'; use one of {engines.names()}")
        return value

    @field_validator("controls")
    @classmethod
    def _known_controls(cls, value: dict[str, Control]) -> dict[str, Control]:
        for name in value:
            if name not in ROLES:
                raise ValueError(f"unknown control '{name}'; use one of {sorted(ROLES)}")
            if name in PASS_ROLES and value[name].detector:
                raise ValueError(f"control '{name}' is computed from its pass; drop 'detector'")
        return value

    @field_validator("step_cache")
    @classmethod
    def _step_cache_fits(cls, value: int, info: ValidationInfo) -> int:
        steps = info.data.get("steps")
        if steps is not None and value > steps:
            raise ValueError(
                f"interval {value} is larger than steps {steps}: the deep blocks would run "
                f"once for the whole schedule; set step_cache to at most {steps} (1 = off)"
            )
        return value

    # Fields the engine reads together, checked together here so a job that cannot run is
    # refused when it is submitted, not when its render starts (tests/test_server_pairs.py).
    @field_validator("context_overlap")
    @classmethod
    def _overlap_in_window(cls, value: int, info: ValidationInfo) -> int:
        length = info.data.get("context_length")
        if length is not None and value >= length:
            raise ValueError(
                f"context_overlap {value} must be smaller than context_length {length} "
                "(windows that share every frame never move)"
            )
        return value

    @field_validator("depth_near", "depth_far")
    @classmethod
    def _fixed_depth(cls, value: float | None, info: ValidationInfo) -> float | None:
        if info.data.get("depth_range") != "fixed":
            return value
        if value is None:
            raise ValueError(
                f"depth_range 'fixed' needs {info.field_name} (scene units), or use "
                "depth_range 'robust'"
            )
        near = info.data.get("depth_near")
        if info.field_name == "depth_far" and near is not None and value <= near:
            raise ValueError(f"depth_far {value} must be greater than depth_near {near}")
        return value


def join_prompt(*parts: str) -> str:
    """Texts as one prompt, comma-separated like a hand-written one (empty parts left out)."""
    cleaned = (p.strip().strip(",").strip() for p in parts)
    return ", ".join(p for p in cleaned if p)


def validate_settings(data: dict) -> Settings:
    """Settings from a merged dict, with the first problem named as `settings.<field>`,
    including a setting the chosen engine would not honour (engines.check_settings)."""
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise StoryShadeError(
            err["msg"], "correct the value or the preset that sets it", field=f"settings.{where}"
        ) from None
    engines.check_settings(settings)
    return settings

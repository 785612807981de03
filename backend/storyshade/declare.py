"""What a setting declares besides its type and limits: where it acts and who reads it.

Every field of `Settings` (and of `Control`) carries one `Declared` in its annotation, so a
setting is written once: the stage cache's keys, the preset layers that may set it, which
engines read it (through the *feature* it serves, matched against each engine's
`Capabilities`), its CLI flag and docs/engine.md's tables are all derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

# The stage whose cache key the field belongs to: control images, generation, decoding.
Stage = Literal["controls", "generation", "decode"]
# What changing it does where it is read: the frames, only speed/memory, only the job's
# events, or only where the work runs.
Effect = Literal["frames", "speed", "events", "where"]
# Every engine reads the shot's own fields (its engine, size, depth mapping).
SHOT = "shot"

STYLE, CAMERA, RESOLUTION, QUALITY = "style", "camera", "resolution", "quality"

# What an engine that lacks a feature cannot do, for the refusal that names the setting.
FEATURES: dict[str, str] = {
    SHOT: "read the shot",
    "text": "read a prompt",
    "sampling": "sample with a seed, steps, guidance and a scheduler",
    "checkpoint": "load an image checkpoint",
    "motion": "use an AnimateDiff motion adapter, its LoRAs or its scale",
    "controls": "steer with control images",
    "controlnet_models": "load ControlNet models",
    "loras": "apply style LoRAs",
    "references": "shade with reference images",
    "ip_adapter": "load an IP-Adapter",
    "color_match": "match colours between windows",
    "scheduler": "use an SD/AnimateDiff sampler (ddim, euler, euler_a, dpmpp_2m, lcm)",
    "guess_mode": "run a ControlNet in guess mode",
    "frame_windows": "shade in context windows of frames (AnimateDiff's)",
    "window_fuse": "blend overlapping windows",
    "window_schedule": "move its windows between steps",
    "latent_windows": "shade in Wan's windows of latent frames",
    "flow_sampling": "use a flow-matching sampler (Wan's)",
    "wan_cache": "cache Wan's transformer blocks between steps",
    "offload": "offload the Wan transformer",
    "decode_chunks": "decode in chunks",
    "free_noise": "reschedule noise with FreeNoise",
    "slicing": "slice its attention or feed-forward",
    "channels_last": "switch to channels-last weights",
    "compile": "compile its models",
    "step_cache": "cache the model's deep features between steps",
    "latent_preview": "emit latent previews",
    "normal_image": "read another normal encoding",
    "dtype": "change its weights' precision",
    "device": "choose a device",
    "hires": "run a hires pass",
}


@dataclass(frozen=True)
class Declared:
    """stage: the stage cache key it belongs to.
    feature: what an engine must read to honour it (an engine's `Capabilities.reads` or
        `.ignores`); a value other than a neutral one on an engine that does neither is
        refused, never silently ignored.
    layers: the preset layers that may set it (empty: only the user, per job).
    effect: what it changes where it is read.
    only_with: another field that must be set (not its default) for this one to act.
    neutral: values, besides the default, that ask nothing of an engine.
    flag: its `storyshade render` option, if it has one.
    """

    stage: Stage
    feature: str
    layers: tuple[str, ...] = ()
    effect: Effect = "frames"
    only_with: str | None = None
    neutral: tuple[Any, ...] = ()
    flag: str | None = None


def declared(model: type[BaseModel], name: str) -> Declared:
    """The declaration on `model`'s field `name` (every field has exactly one)."""
    found = [m for m in model.model_fields[name].metadata if isinstance(m, Declared)]
    if len(found) != 1:
        raise TypeError(f"{model.__name__}.{name} needs exactly one Declared, has {len(found)}")
    return found[0]


def declarations(model: type[BaseModel]) -> dict[str, Declared]:
    return {name: declared(model, name) for name in model.model_fields}


def is_neutral(model: type[BaseModel], name: str, value: Any, data: BaseModel) -> bool:
    """Whether `value` of field `name` asks nothing of an engine that does not read it."""
    decl = declared(model, name)
    field = model.model_fields[name]
    default = field.get_default(call_default_factory=True)
    if _plain(value) == _plain(default) or value in decl.neutral:
        return True
    if decl.only_with is not None:
        other = model.model_fields[decl.only_with].get_default(call_default_factory=True)
        return _plain(getattr(data, decl.only_with)) == _plain(other)
    return False


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value

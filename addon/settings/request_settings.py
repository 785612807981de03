"""The settings JSON a Shade sends: one builder for the sidebar and the headless CLI.

Both start from the same `Choices` (the sidebar's fields; on the command line, the .blend's
sidebar with the flags given over it), so the same scene and flags make the same request.

The user's words are *added* to the presets': the server wraps the prompt in the style's
`prompt_prefix`/`prompt_suffix`, and the negative prompt goes after the presets' own, since
an override that replaced it would drop the style's (`low quality, blurry, ...`) without
the user asking for that. A preset's own `prompt` (the older schema) is joined the same way.
No bpy here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InputError
from . import presets


@dataclass(frozen=True)
class Refused:
    """A sidebar setting the engines in `engines` refuse (they neither read nor ignore
    it: the server would answer 400 after the export), so Shade says so before."""

    engines: tuple[str, ...]
    control: str  # the sidebar's control that sets it
    needs: str  # what it needs, which those engines lack
    cannot: str  # what those engines cannot do, for the panel's note


# As the engines declare it (docs/engine.md); tests/test_addon_request.py holds this to
# the backend's declarations.
REFUSED = {
    "color_match": Refused(
        ("preview", "animatediff-stock", "wan-vace-stock"),
        "Colour Match",
        "context windows",
        "match colours",
    ),
    "motion_scale": Refused(
        ("wan-vace", "wan-vace-stock"), "Motion Scale", "motion modules", "scale motion"
    ),
}


def check_engine(setting: str, engine: str) -> None:
    """Refuse `setting` where the presets' `engine` would (REFUSED)."""
    refused = REFUSED[setting]
    if engine in refused.engines:
        raise InputError(
            f"{refused.control.lower()} needs {refused.needs}, and these presets use the "
            f"'{engine}' engine, which has none",
            f"untick {refused.control}, or pick a quality that uses AnimateDiff",
        )


@dataclass
class Choices:
    """What the user asked for, before it is turned into settings."""

    picks: list[str] = field(default_factory=list)  # the layer pickers' presets, in order
    extra: list[str] = field(default_factory=list)  # more names, each replacing its layer's
    prompt: str = ""
    negative_prompt: str = ""
    seed: int | None = None
    control_weights: dict[str, float] | None = None  # {"depth": w, "normal": w}; None: presets'
    color_match: dict | None = None  # {"strength": s, "image"?: absolute path}; None: off
    motion_scale: float | None = None  # None: the presets'
    references: list[dict] | None = None  # replace the .blend's (the CLI's --reference)
    raw: dict = field(default_factory=dict)  # the CLI's --settings JSON, under the rest


def preset_names(choices: Choices) -> list[str]:
    """The presets in layer order: each extra name replaces its layer's pick (a name the
    add-on does not ship, e.g. a server's own preset, is added after the picks)."""
    if not choices.extra:
        return list(choices.picks)
    replaced = {info.layer for name in choices.extra if (info := presets.find(name))}
    picks = [
        n for n in choices.picks if (info := presets.find(n)) is None or info.layer not in replaced
    ]
    return picks + [n for n in choices.extra if n not in picks]


def build(choices: Choices) -> dict:
    """The settings JSON for the server: preset names plus the user's changes."""
    names = preset_names(choices)
    base = presets.layered_settings(names)
    out: dict = dict(choices.raw)
    if names:
        out["preset"] = ",".join(names)
    if choices.seed is not None:
        out["seed"] = choices.seed
    if choices.prompt.strip():
        out["prompt"] = presets.join_prompt(base.get("prompt", ""), choices.prompt)
    if choices.negative_prompt.strip():
        out["negative_prompt"] = presets.join_prompt(
            base.get("negative_prompt", ""), choices.negative_prompt
        )
    if choices.control_weights:
        # Only controls the presets define: a scale without its model is invalid.
        controls = {
            name: {"scale": round(weight, 3)}
            for name, weight in choices.control_weights.items()
            if name in base.get("controls", {})
        }
        if controls:
            out["controls"] = controls
    if choices.motion_scale is not None:
        check_engine("motion_scale", base.get("engine", ""))
        out["motion_scale"] = round(choices.motion_scale, 3)
    if choices.color_match is not None:
        check_engine("color_match", base.get("engine", ""))
        out["color_match"] = dict(choices.color_match)
    if choices.references is not None:
        out["references"] = choices.references
    return out

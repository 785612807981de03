"""Presets are data: TOML files in presets/<layer>/<name>.toml, layered into Settings.

Layers apply in a fixed order (style, camera, resolution, quality), then the user's
overrides. Naming a preset replaces that layer's default. User preset folders
($STORYSHADE_PRESETS, os.pathsep-separated) are searched before the shipped one, so a user
file overrides a shipped preset of the same name. Every file has one schema: a
`description` string and a `[settings]` table of Settings fields that its layer may set
(see LAYER_FIELDS and docs/presets.md). Errors name the file and the field.
"""

from __future__ import annotations

import os
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from storyshade.declare import declarations
from storyshade.errors import StoryShadeError
from storyshade.settings import Settings, validate_settings
from storyshade.wire.layering import DEFAULTS, LAYERS, merge_layers, parse_names

# Which layer may set which field is declared on the field (declare.Declared.layers).
# Quality trades time for fidelity: steps and sampler, but also a different model set (a
# few-step motion model for drafts, the tiny test set) and engine tuning, so it may set
# nearly everything; the prompt texts belong to styles, the prompt and seed to the user.
LAYER_FIELDS: dict[str, set[str]] = {
    layer: {name for name, decl in declarations(Settings).items() if layer in decl.layers}
    for layer in LAYERS
}
MAX_MOTION_LORAS = 2


class PresetWarning(UserWarning):
    """A preset combination that works but is probably not what was meant."""


@dataclass(frozen=True)
class Preset:
    name: str
    layer: str
    description: str
    settings: dict[str, Any]
    path: Path

    @property
    def shipped(self) -> bool:
        return self.path.parent.parent == shipped_dir()


def shipped_dir() -> Path:
    """The shipped presets: package data when installed (the wheel's
    storyshade/presets_data/, a folder of data files without an __init__.py), the
    repository's presets/ in a checkout."""
    here = Path(__file__).resolve().parent
    installed = here / "presets_data"
    return installed if installed.is_dir() else here.parents[1] / "presets"


def search_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("STORYSHADE_PRESETS", "").split(os.pathsep) if p]
    return [*(d.expanduser() for d in dirs), shipped_dir()]


def _error(path: Path, problem: str, field: str, fix: str) -> StoryShadeError:
    return StoryShadeError(f"{path}: {problem}", fix, field=field)


def load_preset(path: Path) -> Preset:
    """Parse and validate one preset file; errors name the file and the field."""
    layer = path.parent.name
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _error(path, f"not valid TOML ({exc})", "preset", "fix the TOML syntax") from None
    unknown = set(data) - {"description", "settings"}
    if unknown:
        raise _error(
            path,
            f"unknown top-level keys {sorted(unknown)}",
            "preset",
            "a preset has only 'description' and a [settings] table",
        )
    description = data.get("description")
    if not isinstance(description, str) or not description.strip():
        raise _error(path, "missing 'description'", "description", 'add description = "..."')
    settings = data.get("settings")
    if not isinstance(settings, dict):
        raise _error(path, "missing [settings] table", "settings", "add a [settings] table")
    _check_layer_fields(path, layer, settings)
    try:
        Settings.model_validate(settings)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise _error(
            path, err["msg"], f"settings.{where}", "fix that field in the preset file"
        ) from None
    return Preset(path.stem, layer, description.strip(), _beside(path, settings), path)


def _beside(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """A preset's images (references, the colour-match frame) are named relative to the
    preset file (shipped beside it): made absolute here, so they mean the same wherever
    the job's bundle is."""

    def absolute(entry: dict[str, Any]) -> dict[str, Any]:
        image = Path(entry["image"]).expanduser()
        return {**entry, "image": str(image if image.is_absolute() else path.parent / image)}

    out = dict(settings)
    if settings.get("references"):  # validated already: tables with an `image` string
        out["references"] = [absolute(ref) for ref in settings["references"]]
    if (settings.get("color_match") or {}).get("image"):
        out["color_match"] = absolute(settings["color_match"])
    return out


def _check_layer_fields(path: Path, layer: str, settings: dict[str, Any]) -> None:
    allowed = LAYER_FIELDS[layer]
    for key in settings:
        if key in allowed:
            continue
        if key not in Settings.model_fields:
            fix = f"a {layer} preset may set: {', '.join(sorted(allowed))}"
            raise _error(path, f"unknown setting '{key}'", f"settings.{key}", fix)
        if key == "prompt":
            fix = "a style sets prompt_prefix/prompt_suffix; the user's text goes in between"
        elif key == "seed":
            fix = "the seed is the user's, per job"
        else:
            owner = next((k for k in LAYERS if key in LAYER_FIELDS[k]), "the user")
            fix = f"move it to a {owner} preset"
        raise _error(path, f"a {layer} preset cannot set '{key}'", f"settings.{key}", fix)


def scan() -> tuple[dict[str, Preset], dict[str, StoryShadeError]]:
    """Every preset by name, and every broken file by name; user folders win."""
    found: dict[str, Preset] = {}
    broken: dict[str, StoryShadeError] = {}
    for root in search_dirs():
        for layer in LAYERS:
            for path in sorted((root / layer).glob("*.toml")):
                if path.stem in found or path.stem in broken:
                    continue
                try:
                    found[path.stem] = load_preset(path)
                except StoryShadeError as exc:
                    broken[path.stem] = exc
    return found, broken


def all_presets() -> dict[str, Preset]:
    """Every valid preset by name (earlier search folders win); broken files raise."""
    found, broken = scan()
    if broken:
        raise next(iter(broken.values()))
    return found


def choose(spec: str | list[str] | None = None) -> dict[str, Preset]:
    """The preset used for each layer: the defaults, replaced by the named ones."""
    presets, broken = scan()
    chosen_names = dict(DEFAULTS)
    for name in parse_names(spec):
        if name in broken:
            raise broken[name]
        preset = presets.get(name)
        if preset is None:
            raise StoryShadeError(
                f"unknown preset '{name}'",
                f"use one of: {', '.join(sorted(presets))} (`storyshade presets list`)",
                field="preset",
            )
        chosen_names[preset.layer] = name
    chosen = {}
    for layer, name in chosen_names.items():
        if name in broken:
            raise broken[name]
        if name in presets:
            chosen[layer] = presets[name]
    return chosen


def merged_dict(
    spec: str | list[str] | None = None, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    chosen = choose(spec)
    return merge_layers({layer: p.settings for layer, p in chosen.items()}, overrides)


def notes(settings: Settings) -> list[str]:
    """Combinations that work but are probably unintended."""
    out = []
    if len(settings.motion_loras) > MAX_MOTION_LORAS:
        names = ", ".join(lo.name for lo in settings.motion_loras)
        out.append(
            f"{len(settings.motion_loras)} motion LoRAs ({names}): more than "
            f"{MAX_MOTION_LORAS} usually fight each other and smear motion"
        )
    return out


def resolve(
    spec: str | list[str] | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Merge layer defaults, the named presets and overrides into validated Settings.

    The style's prompt prefix/suffix stay fields of their own: the engine puts them around
    the shot's prompt and around every look's (`Settings.styled`), and what is validated
    here is exactly what a job stores.
    """
    merged = merged_dict(spec, overrides)
    settings = validate_settings(merged)
    for note in notes(settings):
        warnings.warn(note, PresetWarning, stacklevel=2)
    return settings

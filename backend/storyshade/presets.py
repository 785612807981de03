"""Presets are data: TOML files in presets/<layer>/<name>.toml, layered into Settings.

Layers apply in a fixed order (style, camera, resolution, quality), then the user's
overrides. Naming a preset replaces that layer's default. A user preset folder
($STORYSHADE_PRESETS) is searched before the shipped one, so it overrides by name.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from storyshade.errors import StoryShadeError
from storyshade.settings import Settings, validate_settings

LAYERS = ("style", "camera", "resolution", "quality")
DEFAULTS = {
    "style": "anime-cel",
    "camera": "static",
    "resolution": "512x512",
    "quality": "standard",
}


@dataclass(frozen=True)
class Preset:
    name: str
    layer: str
    description: str
    settings: dict[str, Any]
    path: Path


def shipped_dir() -> Path:
    """The presets/ folder: beside the source in a checkout, package data when installed."""
    repo = Path(__file__).resolve().parents[2] / "presets"
    if repo.is_dir():
        return repo
    from importlib.resources import files

    return Path(str(files("storyshade.presets_data")))


def search_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("STORYSHADE_PRESETS", "").split(os.pathsep) if p]
    return [*dirs, shipped_dir()]


def load_preset(path: Path) -> Preset:
    """Parse one preset file; errors name the file and the field."""
    layer = path.parent.name
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise StoryShadeError(f"{path} is not valid TOML ({exc})", field="preset") from None
    unknown = set(data) - {"description", "settings"}
    if unknown:
        raise StoryShadeError(
            f"{path}: unknown top-level keys {sorted(unknown)}",
            "a preset has only 'description' and a [settings] table",
            field="preset",
        )
    settings = data.get("settings", {})
    try:
        Settings.model_validate(settings)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise StoryShadeError(
            f"{path}: {err['msg']}", "fix that field in the preset file", field=f"settings.{where}"
        ) from None
    return Preset(path.stem, layer, str(data.get("description", "")), settings, path)


def all_presets() -> dict[str, Preset]:
    """Every preset by name; earlier search folders win (user over shipped)."""
    found: dict[str, Preset] = {}
    for root in search_dirs():
        for layer in LAYERS:
            for path in sorted((root / layer).glob("*.toml")):
                found.setdefault(path.stem, load_preset(path))
    return found


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_names(spec: str | list[str] | None) -> list[str]:
    if spec is None:
        return []
    items = spec.split(",") if isinstance(spec, str) else spec
    return [s.strip() for s in items if s.strip()]


def resolve(
    spec: str | list[str] | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Merge layer defaults, the named presets and overrides into validated Settings."""
    presets = all_presets()
    chosen = dict(DEFAULTS)
    for name in parse_names(spec):
        preset = presets.get(name)
        if preset is None:
            raise StoryShadeError(
                f"unknown preset '{name}'",
                f"use one of: {', '.join(sorted(presets))} (`storyshade presets list`)",
                field="preset",
            )
        chosen[preset.layer] = name
    merged: dict[str, Any] = {}
    for layer in LAYERS:
        if chosen[layer] in presets:
            merged = _merge(merged, presets[chosen[layer]].settings)
    merged = _merge(merged, overrides or {})
    return validate_settings(merged)

"""How preset layers merge into one settings dict: the same on the server (which applies
them) and in the add-on (which shows what they set and adds the user's prompt to the
style's)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Applied in this order, then the user's overrides; naming a preset replaces its layer's
# default.
LAYERS = ("style", "camera", "resolution", "quality")
DEFAULTS = {
    "style": "anime-cel",
    "camera": "static",
    "resolution": "512x512",
    "quality": "standard",
}
BY_NAME = ("loras", "motion_loras")  # lists whose items merge by their `name`


def _merge_by_name(base: list[Any], top: list[Any]) -> list[Any]:
    """A later layer changes an item's fields or adds an item; an empty list clears."""
    if not top:
        return []
    if not all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in [*base, *top]):
        return top  # malformed: the settings validator names the bad entry
    out = {item["name"]: dict(item) for item in base}
    for item in top:
        out[item["name"]] = {**out.get(item["name"], {}), **item}
    return list(out.values())


def merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """`top` over `base`: tables merge key by key, LoRA lists by name, the rest replaces."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        elif key in BY_NAME and isinstance(out.get(key), list) and isinstance(value, list):
            out[key] = _merge_by_name(out[key], value)
        else:
            out[key] = value
    return out


def merge_layers(
    chosen: Mapping[str, Mapping[str, Any]], overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The settings of the chosen preset per layer, merged in layer order, then overrides."""
    merged: dict[str, Any] = {}
    for layer in LAYERS:
        if layer in chosen:
            merged = merge(merged, chosen[layer])
    return merge(merged, overrides or {})


def parse_names(spec: str | list[str] | None) -> list[str]:
    """ "a,b" or ["a", "b"] as a clean list of preset names."""
    if spec is None:
        return []
    items = spec.split(",") if isinstance(spec, str) else spec
    return [s.strip() for s in items if s.strip()]

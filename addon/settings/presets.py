"""The shipped presets, read on the Blender side to fill the sidebar's pickers.

Presets are data files (presets/<layer>/<name>.toml: a `description` line and a
[settings] table) shipped beside addon/ in the extension. The server resolves them by
name; the add-on reads them only to list them, describe them, and to know the style's
prompt so the user's text is *added* to it rather than replacing it. No bpy here.
"""

from __future__ import annotations

import time
import tomllib
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from ..wire.layering import DEFAULTS, LAYERS, merge_layers


@dataclass(frozen=True)
class PresetInfo:
    name: str
    layer: str
    description: str
    settings: dict = field(default_factory=dict)


def presets_dir() -> Path:
    """presets/ sits beside addon/ in the checkout and in the extension zip."""
    return Path(__file__).resolve().parents[2] / "presets"  # addon/settings/presets.py


_cache: dict[Path, tuple[tuple, dict[str, list[PresetInfo]]]] = {}
_checked: dict[Path, float] = {}  # when each root's files were last looked at


def _read(path: Path, layer: str) -> PresetInfo:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return PresetInfo(path.stem, layer, f"unreadable preset file ({exc})")
    settings = data.get("settings")
    return PresetInfo(
        path.stem,
        layer,
        str(data.get("description", "")).strip().splitlines()[0] if data.get("description") else "",
        settings if isinstance(settings, dict) else {},
    )


FRESH_S = 1.0  # the panel draws often: look at the folders at most this often


def load(root: Path | None = None) -> dict[str, list[PresetInfo]]:
    """Presets per layer, sorted by name; re-read only when a file is added or changed
    (looked for at most every FRESH_S seconds: the sidebar asks at each redraw)."""
    root = root or presets_dir()
    cached = _cache.get(root)
    if cached and time.monotonic() - _checked.get(root, 0.0) < FRESH_S:
        return cached[1]
    _checked[root] = time.monotonic()
    paths = {layer: sorted((root / layer).glob("*.toml")) for layer in LAYERS}
    key = tuple((str(p), p.stat().st_mtime_ns) for ps in paths.values() for p in ps if p.exists())
    if cached and cached[0] == key:
        return cached[1]
    out = {layer: [_read(p, layer) for p in ps] for layer, ps in paths.items()}
    _cache[root] = (key, out)
    return out


def find(name: str, root: Path | None = None) -> PresetInfo | None:
    for infos in load(root).values():
        for info in infos:
            if info.name == name:
                return info
    return None


def enum_number(layer: str, name: str) -> int:
    """A stable enum value per preset name, so adding preset files never changes what a
    saved scene has selected (Blender stores dynamic enums by number). The layer's
    default preset is 0, the value a fresh scene starts with."""
    if DEFAULTS.get(layer) == name:
        return 0
    return (zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFE) + 1


def layered_settings(names: list[str], root: Path | None = None) -> dict:
    """What the named presets set, merged in layer order as the server does it."""
    chosen: dict[str, PresetInfo] = {}
    for name in names:
        info = find(name, root)
        if info is not None:
            chosen[info.layer] = info
    return merge_layers({layer: info.settings for layer, info in chosen.items()})


def join_prompt(base: str, addition: str) -> str:
    """The user's words after the preset's, comma-separated like a hand-written prompt."""
    base, addition = base.strip().rstrip(","), addition.strip()
    if not addition:
        return base
    return f"{base}, {addition}" if base else addition

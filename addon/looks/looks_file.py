"""Looks from a JSON file (`--looks`), for pipelines:
`{"objects": {"Crate": {"prompt": "...", "color": [0.6, 0.4, 0.2]}}, "collections": {...}}`.

A file's look replaces the .blend's on the same object or collection, its references
included (`"references": ["front.png", {"image": "side.png", "weight": 0.6}]`, paths
relative to the file).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError, StoryShadeError
from ..wire.looks import Look
from .reference_files import check_references
from .resolve import LookOverrides


def _parse_references(where: str, raw: object, base: Path) -> tuple[tuple[str, float], ...]:
    """A look's references from a file: image paths (relative to the file) or
    {"image", "weight"}, checked now by the rules every reference follows
    (reference_files.check_references), the error naming the file's entry."""
    if isinstance(raw, list):
        raw = [{"image": entry} if isinstance(entry, str) else entry for entry in raw]
        if any(isinstance(entry, dict) and "look" in entry for entry in raw):
            raise InputError(
                f"{where}: a reference names a look, but it belongs to the look it is under",
                'remove its "look" key',
            )
    try:
        refs = check_references(raw, [], base)
    except InputError as exc:
        raise InputError(f"{where}: {exc.problem}", exc.fix) from None
    return tuple((ref["image"], ref["weight"]) for ref in refs)


def _parse_look(where: str, name: str, raw: object, base: Path) -> Look:
    if not isinstance(raw, dict):
        raise StoryShadeError(f'{where}[\'{name}\'] must be an object like {{"prompt": "..."}}')
    unknown = set(raw) - {"prompt", "negative", "weight", "color", "references"}
    if unknown:
        raise StoryShadeError(
            f"{where}['{name}'] has unknown keys {sorted(unknown)}",
            "a look takes prompt, negative, weight, color and references",
        )
    prompt, negative = raw.get("prompt", ""), raw.get("negative", "")
    weight, color = raw.get("weight", 1.0), raw.get("color")
    if not isinstance(prompt, str) or not prompt.strip():
        raise StoryShadeError(f"{where}['{name}'] needs a non-empty \"prompt\"")
    if not isinstance(negative, str):
        raise StoryShadeError(f"{where}['{name}'].negative must be text")
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise StoryShadeError(f"{where}['{name}'].weight must be a number")
    if color is not None and (
        not isinstance(color, list)
        or len(color) != 3
        or not all(isinstance(c, int | float) and 0 <= c <= 1 for c in color)
    ):
        raise StoryShadeError(f"{where}['{name}'].color must be [r, g, b] with values 0-1")
    refs = _parse_references(f"{where}['{name}']", raw.get("references", []), base)
    look = Look(name, prompt, negative, float(weight), tuple(color) if color else None, refs)  # type: ignore[arg-type]
    for problem in look.problems():
        raise StoryShadeError(f"{where}['{name}'].{problem}")
    return look


def load_looks_file(path: str | Path, scene) -> LookOverrides:
    """Looks from a JSON file; every name must be an object or collection of the scene."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StoryShadeError(f"cannot read the looks file {path} ({exc.strerror})") from None
    except ValueError as exc:
        raise StoryShadeError(f"the looks file {path} is not JSON ({exc})") from None
    if not isinstance(data, dict) or set(data) - {"objects", "collections"}:
        raise StoryShadeError(
            f'the looks file {path} must be {{"objects": {{...}}, "collections": {{...}}}}'
        )
    objects_in = {o.name for o in scene.objects}
    collections_in = {c.name for c in scene.collection.children_recursive}
    out = LookOverrides({}, {})
    for key, known, table in (
        ("objects", objects_in, out.objects),
        ("collections", collections_in, out.collections),
    ):
        entries = data.get(key, {})
        if not isinstance(entries, dict):
            raise StoryShadeError(f'"{key}" in {path} must map names to looks')
        for name, raw in entries.items():
            if name not in known:
                raise StoryShadeError(
                    f"the looks file names {key[:-1]} '{name}', which scene '{scene.name}' "
                    "does not have",
                    f"check the spelling; the scene's {key}: {', '.join(sorted(known)) or 'none'}",
                )
            table[name] = _parse_look(key, name, raw, path.parent)
    return out

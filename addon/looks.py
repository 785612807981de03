"""Per-object looks: tell each grey box what it is.

A look (prompt, negative prompt, weight, optional base colour) is set on an object or a
collection. An object without its own look takes its parent's (up the parent chain), then
its collections' (each collection, then the collections holding it): a mannequin of twenty
parts is one character. Objects with the same look share one region id in the Object Index
pass that export writes; pixels of objects without a look are id 0 (the shot's prompt).

Looks can also come from a JSON file (`--looks`), for pipelines:
`{"objects": {"Crate": {"prompt": "...", "color": [0.6, 0.4, 0.2]}}, "collections": {...}}`.
A file's look replaces the .blend's on the same object or collection, its references
included (`"references": ["front.png", {"image": "side.png", "weight": 0.6}]`, paths
relative to the file).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import bpy

from .errors import InputError, StoryShadeError
from .reference_files import check_references
from .references import StoryShadeReference
from .wire.looks import MAX_LOOKS, WEIGHT_MAX, WEIGHT_MIN, Look

REGION_KINDS = ("MESH", "CURVE", "SURFACE", "META", "FONT", "CURVES", "POINTCLOUD", "VOLUME")


class StoryShadeLook(bpy.types.PropertyGroup):
    """What an object or collection is (Object/Collection properties > StoryShade Look).
    Data only: under the bpy module a PropertyGroup with Python methods crashes at exit."""

    enabled: bpy.props.BoolProperty(
        name="Look",
        description="Give this object (or every object in this collection) its own prompt",
        default=False,
    )
    prompt: bpy.props.StringProperty(
        name="Prompt", description="What this is, e.g. 'a girl in a red coat'", default=""
    )
    negative: bpy.props.StringProperty(
        name="Negative", description="What this must not look like (optional)", default=""
    )
    weight: bpy.props.FloatProperty(
        name="Weight",
        description="How strongly the look's prompt steers its pixels (1 = as the shot's)",
        default=1.0,
        min=WEIGHT_MIN,
        max=WEIGHT_MAX,
    )
    use_color: bpy.props.BoolProperty(
        name="Base Colour", description="Paint it in this colour in preview drafts", default=False
    )
    color: bpy.props.FloatVectorProperty(
        name="Colour", subtype="COLOR", size=3, min=0.0, max=1.0, default=(0.8, 0.8, 0.8)
    )
    references: bpy.props.CollectionProperty(
        type=StoryShadeReference,
        description="Images of this character (front view, turnaround): they steer only its "
        "pixels, in every frame",
    )
    bank: bpy.props.StringProperty(
        name="Bank Character",
        description="The character bank folder this look was saved to or loaded from",
        subtype="DIR_PATH",
        default="",
    )


@dataclass
class LookOverrides:
    """Looks from a file (or a take), by object and collection name. `only`: these are
    all the looks (a take's, re-shaded as it was); else they add to the .blend's."""

    objects: dict[str, Look]
    collections: dict[str, Look]
    only: bool = False


def take_looks(regions: list[dict], scene) -> LookOverrides:
    """The looks a take was shaded with (its regions table), on the scene's objects and
    collections of those names, and no others."""
    out = LookOverrides({}, {}, only=True)
    objects = {o.name for o in scene.objects}
    for region in regions:
        if not isinstance(region, dict) or not region.get("name"):
            continue
        color = region.get("color")
        look = Look(
            str(region["name"]),
            str(region.get("prompt", "")),
            str(region.get("negative", "")),
            float(region.get("weight", 1.0)),
            tuple(color) if isinstance(color, list) and len(color) == 3 else None,  # type: ignore[arg-type]
        )
        table = out.objects if look.name in objects else out.collections
        table[look.name] = look
    return out


def _from_props(name: str, props) -> Look | None:
    if props is None or not props.enabled:
        return None
    color = tuple(props.color) if props.use_color else None
    refs = tuple((r.image, r.weight) for r in props.references)
    return Look(name, props.prompt, props.negative, props.weight, color, refs)  # type: ignore[arg-type]


def own_look(idblock, table: dict[str, Look] | None = None, only: bool = False) -> Look | None:
    """The object's or collection's own look: the file's first, else (unless `only`) the
    .blend's."""
    if table and idblock.name in table:
        return table[idblock.name]
    if only:
        return None
    return _from_props(idblock.name, getattr(idblock, "storyshade_look", None))


def _collection_parents(scene) -> dict[str, list]:
    """Collection name → the collections directly holding it, within this scene."""
    parents: dict[str, list] = {}
    for parent in [scene.collection, *scene.collection.children_recursive]:
        for child in parent.children:
            parents.setdefault(child.name, []).append(parent)
    return parents


def look_of(obj, scene, overrides: LookOverrides | None = None) -> Look | None:
    """The look an object is shaded with: its own, else its parent's (as the parent is
    shaded, collections included), else its collections'."""
    return look_and_holder(obj, scene, overrides)[0]


def look_and_holder(obj, scene, overrides: LookOverrides | None = None) -> tuple:
    """(the look an object is shaded with, the object or collection holding it), or
    (None, None)."""
    objects = overrides.objects if overrides else None
    collections = overrides.collections if overrides else None
    only = bool(overrides and overrides.only)
    look = own_look(obj, objects, only)
    if look:
        return look, obj
    if obj.parent is not None:
        found = look_and_holder(obj.parent, scene, overrides)
        if found[0]:
            return found
    parents = _collection_parents(scene)
    level = sorted(obj.users_collection, key=lambda c: c.name)
    seen: set[str] = set()
    while level:  # breadth first: the nearest collection with a look wins
        for coll in level:
            look = own_look(coll, collections, only) if coll != scene.collection else None
            if look:
                return look, coll
        seen.update(c.name for c in level)
        level = sorted(
            {
                p.name: p for c in level for p in parents.get(c.name, []) if p.name not in seen
            }.values(),
            key=lambda c: c.name,
        )
    return None, None


def looks_in_shot(scene, overrides: LookOverrides | None = None) -> tuple[dict[str, Look], list]:
    """(object name → its look, the shot's looks sorted by name) for the scene's
    renderable objects."""
    by_object: dict[str, Look] = {}
    for obj in scene.objects:
        if obj.type in REGION_KINDS:
            look = look_of(obj, scene, overrides)
            if look:
                by_object[obj.name] = look
    looks = sorted({look.name: look for look in by_object.values()}.values(), key=lambda k: k.name)
    return by_object, looks


def shot_regions(
    scene, overrides: LookOverrides | None = None
) -> tuple[list[dict], dict[str, int]]:
    """(regions table for shot.json, object name → region id) for the scene's renderable
    objects. Objects sharing a look share an id; ids follow the looks' names."""
    by_object, looks = looks_in_shot(scene, overrides)
    if len(looks) > MAX_LOOKS:
        raise StoryShadeError(
            f"the shot has {len(looks)} looks; StoryShade takes at most {MAX_LOOKS}",
            "give objects that are the same thing one look (set it on their collection)",
        )
    for look in looks:
        if not look.prompt.strip():
            raise StoryShadeError(
                f"the look on '{look.name}' has no prompt",
                f"describe what '{look.name}' is in its StoryShade Look panel, or turn the look off",
            )
        for problem in look.problems():
            raise StoryShadeError(
                f"the look on '{look.name}': {problem}",
                f"fix it in the StoryShade Look panel of '{look.name}'",
            )
    ids = {look.name: i + 1 for i, look in enumerate(looks)}
    table = [look.region(ids[look.name]) for look in looks]
    return table, {name: ids[look.name] for name, look in by_object.items()}


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

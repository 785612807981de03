"""Per-object looks: tell each grey box what it is.

A look (prompt, negative prompt, weight, optional base colour) is set on an object or a
collection. An object without its own look takes its parent's (up the parent chain), then
its collections' (each collection, then the collections holding it): a mannequin of twenty
parts is one character. Objects with the same look share one region id in the Object Index
pass that export writes; pixels of objects without a look are id 0 (the shot's prompt).

Looks can also come from a JSON file (`--looks`, looks_file.py) or a take (`take_looks`):
`LookOverrides`, over the .blend's or instead of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import StoryShadeError
from ..wire.looks import MAX_LOOKS, Look

REGION_KINDS = ("MESH", "CURVE", "SURFACE", "META", "FONT", "CURVES", "POINTCLOUD", "VOLUME")


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

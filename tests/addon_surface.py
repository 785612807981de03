"""What the add-on shows a user and saves in a .blend, as plain data, and the .blend that
tests/test_addon_saved_blend.py opens: a scene set up through every saved StoryShade
field, written by the add-on as it was before its modules moved into rooms.

Run as a script with an older checkout to write the fixture and that version's surface
(the fixture is committed; write it with the oldest bpy the add-on supports, 4.2, so every
later Blender opens it):

    mkdir /tmp/before && git archive acbf31f addon presets | tar -x -C /tmp/before
    .venv-bpy42/bin/python tests/addon_surface.py /tmp/before tests/data/saved_before_rooms.blend

It writes the .blend and, beside it, a .json of what was saved and of the add-on's surface.

No add-on module is imported here: the classes come from whichever add-on registered them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import bpy

SCENE_FIELDS = {  # StoryShadeSceneSettings: a value other than the default for each
    "style": "watercolor",
    "camera": "calm",
    "resolution": "768x432",
    "quality": "draft",
    "preset": "pan-left",
    "prompt": "a rainy street at dusk",
    "negative_prompt": "text, watermark",
    "seed": 4242,
    "use_scene_range": False,
    "frame_start": 3,
    "frame_end": 9,
    "reshade_start": 4,
    "reshade_end": 6,
    "use_control_weights": True,
    "depth_weight": 1.25,
    "normal_weight": 0.25,
    "bank_dir": "//characters",
    "use_color_match": True,
    "color_match_strength": 0.5,
    "color_match_image": "/srv/shots/key.png",  # absolute: the request names it as is
    "reshade_use_sidebar": True,
    "take_mode": "REPLACE",
}
STYLE_REFERENCES = [("//palette.png", 0.6), ("//mood.jpg", 1.5)]
LOOKS = {  # object or collection name -> what its StoryShade Look panel says
    "Crate": {
        "prompt": "a wooden crate",
        "negative": "plastic",
        "weight": 1.5,
        "use_color": True,
        "color": (0.6, 0.4, 0.2),
        "references": [("//crate.png", 0.9)],
        "bank": "//characters/Crate",
    },
    "Girl": {  # a collection's look
        "prompt": "a girl in a red coat",
        "negative": "",
        "weight": 0.75,
        "use_color": False,
        "color": (0.8, 0.1, 0.1),
        "references": [("//girl-front.png", 0.8), ("//girl-side.png", 0.4)],
        "bank": "",
    },
}
SKIP_SHOTS = "sh020\nsh030"
SEED_POLICY = "PER_SHOT"
TAKE = "sh010_take_001"


def _value(value):
    """A property value as JSON: vectors as rounded lists, floats rounded."""
    if hasattr(value, "__len__") and not isinstance(value, str):
        return [round(float(v), 4) for v in value]
    if isinstance(value, float):
        return round(value, 4)
    return value


def _property(prop) -> dict:
    out = {"type": prop.type, "name": prop.name}
    if prop.type == "ENUM":
        out["items"] = sorted(item.identifier for item in prop.enum_items)
        out["flag"] = bool(prop.is_enum_flag)
    elif prop.type == "POINTER" or prop.type == "COLLECTION":
        out["fixed_type"] = prop.fixed_type.identifier
    elif prop.type in ("INT", "FLOAT"):
        out.update(min=_value(prop.hard_min), max=_value(prop.hard_max))
        out["default"] = _value(
            prop.default_array if getattr(prop, "is_array", False) else prop.default
        )
    elif prop.type in ("STRING", "BOOLEAN"):
        out["default"] = prop.default
    if prop.type == "STRING":
        out["subtype"] = prop.subtype
    return out


def _properties(rna) -> dict:
    return {p.identifier: _property(p) for p in rna.properties if p.identifier != "rna_type"}


CLASS_KEYS = (
    "bl_idname",
    "bl_label",
    "bl_space_type",
    "bl_region_type",
    "bl_category",
    "bl_context",
    "bl_parent_id",
    "bl_options",
)


def surface(classes) -> dict:
    """What a user meets of these registered classes: their ids, labels, where panels
    sit, and every property (the names a .blend or the preferences save) with its type,
    limits and default; and the StoryShade properties on Blender's own data."""
    out: dict = {"classes": {}, "data": {}}
    for cls in classes:
        entry = {"base": cls.__mro__[1].__name__ if cls.__mro__[1] is not object else ""}
        for base in (bpy.types.Operator, bpy.types.Panel, bpy.types.Menu, bpy.types.PropertyGroup):
            if issubclass(cls, base):
                entry["base"] = base.__name__
        if issubclass(cls, bpy.types.AddonPreferences):
            entry["base"] = "AddonPreferences"
        for key in CLASS_KEYS:
            if key in cls.__dict__ or (key == "bl_options" and hasattr(cls, key)):
                value = getattr(cls, key)
                entry[key] = sorted(value) if isinstance(value, set) else value
        if entry["base"] != "Panel" and entry["base"] != "Menu":
            entry["properties"] = _properties(cls.bl_rna)
        key = cls.__name__ if entry["base"] == "AddonPreferences" else entry.get("bl_idname")
        out["classes"][key or cls.__name__] = entry
    for owner in (bpy.types.Scene, bpy.types.Object, bpy.types.Collection):
        for prop in owner.bl_rna.properties:
            if prop.identifier.startswith("storyshade"):
                out["data"][f"{owner.__name__}.{prop.identifier}"] = _property(prop)
    return out


def scene_fields(opts) -> dict:
    return {key: _value(getattr(opts, key)) for key in SCENE_FIELDS}


def look_fields(look) -> dict:
    return {
        "enabled": look.enabled,
        **{k: _value(getattr(look, k)) for k in ("prompt", "negative", "weight", "use_color")},
        "color": _value(look.color),
        "references": [[r.image, _value(r.weight)] for r in look.references],
        "bank": look.bank,
    }


def saved_state(scene) -> dict:
    """Everything StoryShade saved in `scene`, as it reads back."""
    editor = scene.sequence_editor
    strips = editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all
    strip = strips[TAKE]
    return {
        "settings": scene_fields(scene.storyshade),
        "style_references": [[r.image, _value(r.weight)] for r in scene.storyshade.references],
        "skip_shots": scene.storyshade_skip_shots,
        "seed_policy": scene.storyshade_seed_policy,
        "looks": {
            "Crate": look_fields(bpy.data.objects["Crate"].storyshade_look),
            "Girl": look_fields(bpy.data.collections["Girl"].storyshade_look),
        },
        "take": {k: _value(v) for k, v in sorted(strip.items()) if k.startswith("storyshade_")},
    }


def _set_look(look, values: dict) -> None:
    look.enabled = True
    for key in ("prompt", "negative", "weight", "use_color", "color", "bank"):
        setattr(look, key, values[key])
    for image, weight in values["references"]:
        ref = look.references.add()
        ref.image, ref.weight = image, weight


def write(addon, out: Path) -> dict:
    """Set every saved field through `addon` (registered), add a take strip as a Shade
    places it, save the .blend; returns the state as it was saved."""
    from addon import looks, props, take

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.name = "Scene"
    opts = scene.storyshade
    for key, value in SCENE_FIELDS.items():
        setattr(opts, key, value)
    for image, weight in STYLE_REFERENCES:
        ref = opts.references.add()
        ref.image, ref.weight = image, weight
    scene.storyshade_skip_shots = SKIP_SHOTS
    scene.storyshade_seed_policy = SEED_POLICY
    crate = bpy.data.objects.new("Crate", bpy.data.meshes.new("Crate"))
    scene.collection.objects.link(crate)
    girl = bpy.data.collections.new("Girl")
    scene.collection.children.link(girl)
    body = bpy.data.objects.new("Body", bpy.data.meshes.new("Body"))
    girl.objects.link(body)
    _set_look(crate.storyshade_look, LOOKS["Crate"])
    _set_look(girl.storyshade_look, LOOKS["Girl"])
    bpy.ops.wm.save_as_mainfile(filepath=str(out), compress=True)  # the take goes under //
    regions, _ids = looks.shot_regions(scene)
    settings = props.overrides(opts)
    info = {
        "job": "j-0123",
        "settings": settings,
        "server": "http://127.0.0.1:8787",
        "inputs": props.inputs(opts),
        "looks": regions,
    }
    folder = out.parent / "storyshade" / "sh010" / "take_001"  # never written: metadata only
    take.add_take_strip(scene, folder, [3, 4, 5], "sh010", "take_001", info, take.KEEP)
    bpy.ops.wm.save_mainfile(compress=True)
    return saved_state(scene)


def main(argv: list[str]) -> int:
    """argv: an add-on checkout (its root holds addon/), the .blend to write."""
    checkout, out = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    sys.path.insert(0, str(checkout))
    import addon

    addon.register()
    try:
        state = write(addon, out)
        state["surface"] = surface(_classes(addon))
    finally:
        addon.unregister()
    state["bpy"] = bpy.app.version_string
    out.with_suffix(".json").write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    return 0


def _classes(addon) -> list:
    """The pre-rooms add-on's classes: its CLASSES and the looks' property groups."""
    from addon import looks, references

    return [references.StoryShadeReference, looks.StoryShadeLook, *addon.CLASSES]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Per-scene shading options shown in the sidebar, and the settings JSON they make."""

from __future__ import annotations

import bpy

from ..looks.props import StoryShadeReference
from ..takes import take
from . import preset_hooks, presets, request_settings

SERVER_DEFAULT = "SERVER_DEFAULT"  # shown when the layer's default preset file is missing


def preset_items(layer: str) -> list[tuple[str, str, str, int]]:
    """The layer's presets as enum items, read once when the add-on loads.

    Static items, not an items callback: under the bpy module, a Python items callback
    crashes (4.2) or hangs (4.5) the process at exit. `load_preset_pickers()` rebuilds
    them at each register, so new preset files show up when the add-on is enabled again.
    Numbers are stable (see presets.enum_number): a saved scene keeps its pick.
    """
    infos = presets.load()[layer]
    out = [(p.name, p.name, p.description, presets.enum_number(layer, p.name)) for p in infos]
    if not any(number == 0 for *_, number in out):
        out.insert(0, (SERVER_DEFAULT, "(server default)", "The server's default preset", 0))
    out.sort(key=lambda item: (item[3] != 0, item[0]))  # the default first
    return out


def _preset_enum(layer: str, label: str):
    items = preset_items(layer)
    return bpy.props.EnumProperty(
        name=label,
        description=f"{label} preset",
        items=items,
        default=items[0][0],
        update=preset_hooks.changed,
    )


PICKERS = {
    "style": "Style",
    "camera": "Camera/Motion",
    "resolution": "Resolution",
    "quality": "Quality",
}


def load_preset_pickers() -> None:
    """(Re)read the preset files into the pickers; call before registering the class."""
    for layer, label in PICKERS.items():
        StoryShadeSceneSettings.__annotations__[layer] = _preset_enum(layer, label)


class StoryShadeSceneSettings(bpy.types.PropertyGroup):
    # style, camera, resolution, quality: preset pickers added by load_preset_pickers()
    preset: bpy.props.StringProperty(
        name="Extra Presets",
        description="More comma-separated preset names; each replaces its layer's pick",
        default="",
        update=preset_hooks.changed,
    )
    prompt: bpy.props.StringProperty(
        name="Prompt", description="What to show; the style's prompt words are added around it"
    )
    negative_prompt: bpy.props.StringProperty(
        name="Negative", description="Added after the style's negative prompt"
    )
    seed: bpy.props.IntProperty(name="Seed", default=0, min=0)
    use_scene_range: bpy.props.BoolProperty(
        name="Scene Frame Range", description="Shade the scene's frame range", default=True
    )
    frame_start: bpy.props.IntProperty(name="Start", default=1, min=0)
    frame_end: bpy.props.IntProperty(name="End", default=48, min=0)
    reshade_start: bpy.props.IntProperty(
        name="From", default=1, description="First frame of the take to shade again"
    )
    reshade_end: bpy.props.IntProperty(
        name="To", default=1, description="Last frame of the take to shade again"
    )
    use_control_weights: bpy.props.BoolProperty(
        name="Control Weights",
        description="Override how strongly depth and normals steer the picture",
        default=False,
    )
    references: bpy.props.CollectionProperty(
        type=StoryShadeReference,
        description="Style reference images: palette and rendering style for every pixel",
    )
    bank_dir: bpy.props.StringProperty(
        name="Bank Folder",
        description="Character bank for this .blend (empty: the add-on preferences' folder)",
        subtype="DIR_PATH",
        default="",
    )
    depth_weight: bpy.props.FloatProperty(name="Depth", default=0.8, min=0.0, max=2.0)
    normal_weight: bpy.props.FloatProperty(name="Normal", default=0.6, min=0.0, max=2.0)
    use_motion_scale: bpy.props.BoolProperty(
        name="Motion Scale",
        description="Override how much the picture moves from frame to frame (else the "
        "presets' motion scale, e.g. the Camera/Motion preset's)",
        default=False,
    )
    motion_scale: bpy.props.FloatProperty(
        name="Scale",
        description="How strongly the motion modules mix frames: 0 = each frame on its own, "
        "1 = as the motion model was trained, between calms the motion, above 1 exaggerates it",
        default=1.0,
        min=0.0,
        max=2.0,
    )
    use_color_match: bpy.props.BoolProperty(
        name="Colour Match",
        description="Keep one palette along the shot (and across shots, with a key frame): "
        "every context window's colours are pulled towards the first window's, or the key "
        "frame's",
        default=False,
    )
    color_match_strength: bpy.props.FloatProperty(
        name="Strength",
        description="How far the colours move (1 = matched, 0 = not at all)",
        default=1.0,
        min=0.0,
        max=1.0,
    )
    color_match_image: bpy.props.StringProperty(
        name="Key Frame",
        description="A frame whose colours every shot should share, e.g. one of another "
        "shot's takes (empty: the shot's own first window)",
        subtype="FILE_PATH",
        default="",
    )
    reshade_use_sidebar: bpy.props.BoolProperty(
        name="Use the Sidebar's Settings",
        description="Re-shade with the presets, prompt, seed and looks set in the sidebar now, "
        "not those the take was shaded with",
        default=False,
    )
    take_mode: bpy.props.EnumProperty(
        name="Takes",
        items=[
            (take.KEEP, "Keep", "Each run adds a take strip above the shot's earlier takes"),
            (
                take.REPLACE,
                "Replace",
                "Each run's strip replaces the shot's earlier take strips "
                "(their frames stay on disk)",
            ),
        ],
        default=take.KEEP,
    )
    # What a run says (status, progress, errors) is runtime.Status: never saved.


# Functions, not methods: under bpy 4.2 (the PyPI module) a PropertyGroup with Python
# methods crashes the process at exit.
def preset_spec(opts) -> str:
    """The presets as the server's `preset` field: comma-separated names."""
    return ",".join(preset_names(opts))


def preset_names(opts) -> list[str]:
    return request_settings.preset_names(choices(opts))


def frame_range(opts) -> tuple[int | None, int | None]:
    if opts.use_scene_range:
        return None, None
    return opts.frame_start, opts.frame_end


def choices(opts) -> request_settings.Choices:
    """The sidebar's fields as request_settings.Choices (references go separately: the
    .blend's are attached by the session, with its looks')."""
    weights = None
    if opts.use_control_weights:
        weights = {"depth": opts.depth_weight, "normal": opts.normal_weight}
    color_match = None
    if opts.use_color_match:
        color_match = {"strength": round(opts.color_match_strength, 3)}
        if opts.color_match_image.strip():
            color_match["image"] = bpy.path.abspath(opts.color_match_image)
    picked = [getattr(opts, layer) for layer in presets.LAYERS]
    return request_settings.Choices(
        picks=[name for name in picked if name and name != SERVER_DEFAULT],
        extra=[s.strip() for s in opts.preset.split(",") if s.strip()],
        prompt=opts.prompt,
        negative_prompt=opts.negative_prompt,
        seed=opts.seed,
        control_weights=weights,
        color_match=color_match,
        motion_scale=opts.motion_scale if opts.use_motion_scale else None,
    )


def overrides(opts) -> dict:
    """The settings JSON for the server (request_settings.build of the sidebar)."""
    return request_settings.build(choices(opts))


INPUT_KEYS = (
    *presets.LAYERS,
    "preset",
    "prompt",
    "negative_prompt",
    "seed",
    "use_control_weights",
    "depth_weight",
    "normal_weight",
    "use_motion_scale",
    "motion_scale",
    "use_color_match",
    "color_match_strength",
    "color_match_image",
)


def inputs(opts, given: request_settings.Choices | None = None) -> dict:
    """The panel's fields, stored on each take so it can be re-run as it was; `given`:
    the choices actually shaded with (the CLI's flags over the sidebar)."""
    out = {k: getattr(opts, k) for k in INPUT_KEYS}
    if given is not None:
        out["preset"] = ",".join(given.extra)
        out["prompt"], out["negative_prompt"] = given.prompt, given.negative_prompt
        if given.seed is not None:
            out["seed"] = given.seed
    out["references"] = [{"image": r.image, "weight": r.weight} for r in opts.references]
    return out


def apply_inputs(opts, inputs: dict) -> list[str]:
    """Set the panel from a take's stored inputs; returns what could not be restored."""
    skipped = []
    for key, value in inputs.items():
        if key == "references" and isinstance(value, list):
            set_references(opts.references, value)
            continue
        if key not in INPUT_KEYS:
            continue
        try:
            setattr(opts, key, value)
        except (TypeError, ValueError):
            skipped.append(f"{key}={value}")  # e.g. a preset file that was removed
    return skipped


def set_references(collection, refs: list[dict]) -> None:
    """Replace a reference list (the scene's or a look's) with `refs` ({image, weight})."""
    collection.clear()
    for ref in refs:
        item = collection.add()
        item.image = str(ref.get("image", ""))
        item.weight = float(ref.get("weight", 0.8))

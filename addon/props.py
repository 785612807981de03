"""Per-scene shading options shown in the sidebar, and the settings JSON they make."""

from __future__ import annotations

import bpy

from . import presets, take

# Blender keeps only pointers to enum item strings: the lists must outlive the callback.
SERVER_DEFAULT = "SERVER_DEFAULT"  # shown when the layer's default preset file is missing
_items_cache: dict[str, list[tuple[str, str, str, int]]] = {}


def _preset_items(layer: str):
    def items(_self, _context):
        infos = presets.load()[layer]
        out = [(p.name, p.name, p.description, presets.enum_number(layer, p.name)) for p in infos]
        if not any(number == 0 for *_, number in out):
            out.insert(0, (SERVER_DEFAULT, "(server default)", "The server's default preset", 0))
        _items_cache[layer] = out
        return out

    return items


def _preset_enum(layer: str, label: str):
    return bpy.props.EnumProperty(
        name=label, description=f"{label} preset", items=_preset_items(layer)
    )


class StoryShadeSceneSettings(bpy.types.PropertyGroup):
    style: _preset_enum("style", "Style")
    camera: _preset_enum("camera", "Camera/Motion")
    resolution: _preset_enum("resolution", "Resolution")
    quality: _preset_enum("quality", "Quality")
    preset: bpy.props.StringProperty(
        name="Extra Presets",
        description="More comma-separated preset names; each replaces its layer's pick",
        default="",
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
    use_control_weights: bpy.props.BoolProperty(
        name="Control Weights",
        description="Override how strongly depth and normals steer the picture",
        default=False,
    )
    depth_weight: bpy.props.FloatProperty(name="Depth", default=0.8, min=0.0, max=2.0)
    normal_weight: bpy.props.FloatProperty(name="Normal", default=0.6, min=0.0, max=2.0)
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
    # Run-time display, written by the operator on the main thread.
    status: bpy.props.StringProperty(name="Status", default="")
    fix: bpy.props.StringProperty(name="Fix", default="")
    note: bpy.props.StringProperty(name="Note", default="")
    progress: bpy.props.FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0)
    is_error: bpy.props.BoolProperty(default=False)
    preview_path: bpy.props.StringProperty(name="Preview", subtype="FILE_PATH", default="")
    job_id: bpy.props.StringProperty(name="Job", default="")

    def preset_names(self) -> list[str]:
        picked = [getattr(self, layer) for layer in presets.LAYERS]
        extra = [s.strip() for s in self.preset.split(",") if s.strip()]
        return [name for name in picked if name and name != SERVER_DEFAULT] + extra

    def frame_range(self, scene) -> tuple[int | None, int | None]:
        if self.use_scene_range:
            return None, None
        return self.frame_start, self.frame_end

    def overrides(self) -> dict:
        """The settings JSON for the server: preset names plus the user's changes.

        The user's prompt goes as is: the server wraps it in the style's prompt_prefix and
        prompt_suffix. The negative prompt is the presets' one with the user's words added,
        since a plain override would drop the style's. (A style with a `prompt` of its own,
        the older schema, gets the same treatment as the negative prompt.)
        """
        names = self.preset_names()
        base = presets.layered_settings(names)
        out: dict = {"seed": self.seed}
        if names:
            out["preset"] = ",".join(names)
        if self.prompt.strip():
            out["prompt"] = presets.join_prompt(base.get("prompt", ""), self.prompt)
        if self.negative_prompt.strip():
            out["negative_prompt"] = presets.join_prompt(
                base.get("negative_prompt", ""), self.negative_prompt
            )
        if self.use_control_weights:
            # Only controls the presets define: a scale without its model is invalid.
            weights = {"depth": self.depth_weight, "normal": self.normal_weight}
            controls = {
                name: {"scale": round(weights[name], 3)}
                for name in base.get("controls", {})
                if name in weights
            }
            if controls:
                out["controls"] = controls
        return out

    def inputs(self) -> dict:
        """The panel's own fields, stored on each take so it can be re-run as it was."""
        keys = (
            *presets.LAYERS,
            "preset",
            "prompt",
            "negative_prompt",
            "seed",
            "use_control_weights",
            "depth_weight",
            "normal_weight",
        )
        return {k: getattr(self, k) for k in keys}

    def apply_inputs(self, inputs: dict) -> list[str]:
        """Set the panel from a take's stored inputs; returns what could not be restored."""
        skipped = []
        for key, value in inputs.items():
            if not hasattr(self, key) or key in ("status", "fix", "note"):
                continue
            try:
                setattr(self, key, value)
            except (TypeError, ValueError):
                skipped.append(f"{key}={value}")  # e.g. a preset file that was removed
        return skipped

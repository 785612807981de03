"""Per-scene shading options shown in the sidebar."""

from __future__ import annotations

import bpy


class StoryShadeSceneSettings(bpy.types.PropertyGroup):
    preset: bpy.props.StringProperty(
        name="Presets",
        description="Comma-separated preset names, e.g. anime-cel,draft (empty: defaults)",
        default="",
    )
    prompt: bpy.props.StringProperty(name="Prompt", description="Added to the style's prompt")
    seed: bpy.props.IntProperty(name="Seed", default=0, min=0)
    status: bpy.props.StringProperty(name="Status", default="")

    def overrides(self) -> dict:
        out: dict = {"seed": self.seed}
        if self.preset.strip():
            out["preset"] = self.preset.strip()
        if self.prompt.strip():
            out["prompt"] = self.prompt.strip()
        return out

"""Add-on preferences: where the server is, how to reach it, how to start one locally,
and where take frames go."""

from __future__ import annotations

import bpy

from ..identity import ADDON_ID
from ..remote import server_local
from ..remote.client import DEFAULT_URL
from ..takes import take


class StoryShadePreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    server_url: bpy.props.StringProperty(
        name="Server URL", description="Where the StoryShade server listens", default=DEFAULT_URL
    )
    token: bpy.props.StringProperty(
        name="Token", description="Bearer token, if the server asks for one", subtype="PASSWORD"
    )
    server_python: bpy.props.StringProperty(
        name="Server Python",
        description="Python (or `storyshade` command, or virtual environment folder) that has "
        "StoryShade installed; empty: found automatically",
        subtype="FILE_PATH",
    )
    models_dir: bpy.props.StringProperty(
        name="Models Folder",
        description="Models root for a server started from Blender (empty: $STORYSHADE_MODELS)",
        subtype="DIR_PATH",
    )
    output_pattern: bpy.props.StringProperty(
        name="Output Folder",
        description="Where each take's frames go; {shot}, {take}, {scene}, {blend} are filled "
        "in; // is the .blend's folder",
        default=take.DEFAULT_PATTERN,
    )
    bank_dir: bpy.props.StringProperty(
        name="Character Bank",
        description="Folder of saved characters (looks with reference images), shared by every "
        ".blend; empty: ~/StoryShade/characters. A scene can override it in the sidebar",
        subtype="DIR_PATH",
    )

    def draw(self, context):
        col = self.layout.column()
        col.prop(self, "server_url")
        col.prop(self, "token")
        col.separator()
        col.prop(self, "server_python")
        command = server_local.detect_command(self.server_python)
        col.label(
            text=f"Start runs: {' '.join(command)}"
            if command
            else "No StoryShade Python found: set Server Python",
            icon="INFO" if command else "ERROR",
        )
        col.prop(self, "models_dir")
        col.separator()
        col.prop(self, "output_pattern")
        col.prop(self, "bank_dir")


def get(context=None):
    """The preferences, or None when the add-on runs outside the extension system."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    if addon is None:
        return None
    return addon.preferences


def server(context=None) -> tuple[str, str | None]:
    p = get(context)
    if p is None:
        return DEFAULT_URL, None
    return p.server_url.strip() or DEFAULT_URL, p.token or None


def value(name: str, context=None, default: str = "") -> str:
    """One preference as text, with the default when preferences are unavailable."""
    p = get(context)
    return (getattr(p, name, "") or default) if p is not None else default

"""Add-on preferences: where the server is and how to reach it."""

from __future__ import annotations

import bpy

from .client import DEFAULT_URL

# The extension's root package (bl_ext.<repo>.storyshade) owns the preferences.
ADDON_ID = __package__.rpartition(".")[0] or __package__


class StoryShadePreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    server_url: bpy.props.StringProperty(name="Server URL", default=DEFAULT_URL)
    token: bpy.props.StringProperty(name="Token", subtype="PASSWORD", default="")

    def draw(self, context):
        col = self.layout.column()
        col.prop(self, "server_url")
        col.prop(self, "token")


def get(context=None):
    """The preferences, or defaults when the add-on runs outside the extension system."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    if addon is None:
        return None
    return addon.preferences


def server(context=None) -> tuple[str, str | None]:
    p = get(context)
    if p is None:
        return DEFAULT_URL, None
    return p.server_url or DEFAULT_URL, p.token or None

"""StoryShade add-on: export depth/normal passes, shade them on the server, place takes.

Imports only the standard library, bpy, mathutils and numpy (tests enforce this).
"""

from __future__ import annotations

import bpy

from . import cli, operators, panel, prefs, props

CLASSES = (
    prefs.StoryShadePreferences,
    props.StoryShadeSceneSettings,
    operators.STORYSHADE_OT_shade,
    panel.STORYSHADE_PT_main,
)
_cli_handle = None


def register() -> None:
    global _cli_handle
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.storyshade = bpy.props.PointerProperty(type=props.StoryShadeSceneSettings)
    if hasattr(bpy.utils, "register_cli_command"):
        _cli_handle = bpy.utils.register_cli_command("storyshade", cli.main)


def unregister() -> None:
    global _cli_handle
    if _cli_handle is not None:
        bpy.utils.unregister_cli_command(_cli_handle)
        _cli_handle = None
    del bpy.types.Scene.storyshade
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)

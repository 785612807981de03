"""StoryShade add-on: export depth/normal passes, shade them on the server, place takes.

Imports only the standard library, bpy, blf, mathutils and numpy (tests enforce this).
"""

from __future__ import annotations

import atexit

import bpy

from . import (
    cli,
    handlers,
    looks,
    op_bank,
    op_cancel,
    op_looks,
    op_pull,
    op_references,
    op_reshade,
    op_sequence,
    op_server,
    op_take,
    operators,
    panel,
    panel_looks,
    panel_shots,
    prefs,
    preview,
    props,
    runtime,
    sequence,
)

CLASSES = (
    prefs.StoryShadePreferences,
    props.StoryShadeSceneSettings,
    operators.STORYSHADE_OT_shade,
    operators.STORYSHADE_OT_reattach,
    op_cancel.STORYSHADE_OT_cancel,
    op_server.STORYSHADE_OT_server_check,
    op_server.STORYSHADE_OT_server_start,
    op_server.STORYSHADE_OT_server_stop,
    *op_pull.CLASSES,
    op_take.STORYSHADE_OT_take_use_settings,
    op_take.STORYSHADE_OT_show_in_sequencer,
    op_reshade.STORYSHADE_OT_reshade_take,
    op_reshade.STORYSHADE_OT_contact_sheet,
    op_reshade.STORYSHADE_OT_open_review,
    panel.STORYSHADE_PT_main,
    panel.STORYSHADE_PT_sequencer,
    op_looks.STORYSHADE_OT_look_add,
    op_looks.STORYSHADE_OT_look_remove,
    op_looks.STORYSHADE_OT_look_select,
    panel_looks.STORYSHADE_PT_object_look,
    panel_looks.STORYSHADE_PT_collection_look,
    panel_looks.STORYSHADE_PT_looks,
    op_references.STORYSHADE_OT_reference_add,
    op_references.STORYSHADE_OT_reference_remove,
    op_bank.STORYSHADE_OT_bank_save,
    op_bank.STORYSHADE_OT_bank_load,
    op_bank.STORYSHADE_MT_bank,
    op_sequence.STORYSHADE_OT_shot_toggle,
    op_sequence.STORYSHADE_OT_shade_sequence,
    panel_shots.STORYSHADE_PT_shots,
)
_cli_handle = None


def register() -> None:
    global _cli_handle
    props.load_preset_pickers()
    looks.register()
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.storyshade = bpy.props.PointerProperty(type=props.StoryShadeSceneSettings)
    bpy.types.Scene.storyshade_skip_shots = bpy.props.StringProperty(
        name="Shots left out", description="Shots Shade Sequence skips, one per line"
    )
    bpy.types.Scene.storyshade_seed_policy = bpy.props.EnumProperty(
        name="Seeds", items=sequence.SEED_POLICIES, default=sequence.SAME
    )
    preview.register()
    handlers.register()
    # A server started from the panel must not outlive Blender.
    atexit.register(runtime.local_server.stop)
    if hasattr(bpy.utils, "register_cli_command"):
        _cli_handle = bpy.utils.register_cli_command("storyshade", cli.main)


def unregister() -> None:
    global _cli_handle
    if _cli_handle is not None:
        bpy.utils.unregister_cli_command(_cli_handle)
        _cli_handle = None
    if runtime.current is not None:
        runtime.current.abandon()
        runtime.current = None
    atexit.unregister(runtime.local_server.stop)
    runtime.local_server.stop()
    handlers.unregister()
    preview.unregister()
    del bpy.types.Scene.storyshade_seed_policy
    del bpy.types.Scene.storyshade_skip_shots
    del bpy.types.Scene.storyshade
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
    looks.unregister()

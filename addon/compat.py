"""Everything that differs between Blender 4.2, 4.5 and 5.x lives here."""

from __future__ import annotations

import bpy


def version() -> tuple[int, int, int]:
    return tuple(bpy.app.version)  # type: ignore[return-value]


def set_multilayer_exr(image_settings) -> None:
    """32-bit multilayer EXR; 5.0 needs media_type set first, and a single-part file."""
    if hasattr(image_settings, "media_type"):
        image_settings.media_type = "MULTI_LAYER_IMAGE"
    image_settings.file_format = "OPEN_EXR_MULTILAYER"
    image_settings.color_depth = "32"
    image_settings.exr_codec = "ZIP"


def image_settings_attrs(image_settings) -> list[str]:
    """Attributes export changes, in the order they must be restored (media_type first)."""
    names = ["file_format", "color_depth", "exr_codec"]
    if hasattr(image_settings, "media_type"):
        names.insert(0, "media_type")
    return names


def strips(sequence_editor):
    """The strip collection: `strips` from 4.4, `sequences` before (removed in 5.0)."""
    if hasattr(sequence_editor, "strips"):
        return sequence_editor.strips
    return sequence_editor.sequences


def all_strips(sequence_editor):
    if hasattr(sequence_editor, "strips_all"):
        return sequence_editor.strips_all
    return sequence_editor.sequences_all


def has_sequencer_scene() -> bool:
    """Blender 5.0+: each workspace's Sequencer shows its own *sequencer scene*."""
    return version() >= (5, 0, 0) and "sequencer_scene" in bpy.types.WorkSpace.bl_rna.properties


def sequencer_shows(scene) -> bool:
    """Whether some Sequencer can show `scene`'s strips without the user picking it:
    always before 5.0 (the Sequencer shows the window's scene)."""
    if not has_sequencer_scene():
        return True
    return any(ws.sequencer_scene == scene for ws in bpy.data.workspaces)


def show_in_sequencer(scene, workspace=None) -> bool:
    """On 5.x, let a workspace's Sequencer show `scene` if none does: the given (current)
    workspace when its sequencer scene is unset, else unset workspaces that have a
    Sequencer. A sequencer scene the user chose is never changed. True when some
    workspace shows `scene` afterwards."""
    if sequencer_shows(scene):
        return True
    candidates = [workspace] if workspace is not None else []
    candidates += [
        ws
        for ws in bpy.data.workspaces
        if any(a.type == "SEQUENCE_EDITOR" for s in ws.screens for a in s.areas)
    ]
    for ws in candidates:
        if ws.sequencer_scene is None:
            ws.sequencer_scene = scene
            return True
    return False


def set_sequencer_scene(workspace, scene) -> None:
    """The one-click fix when the user's chosen sequencer scene is another one."""
    if has_sequencer_scene():
        workspace.sequencer_scene = scene


def blend_relative_path_options() -> set[str]:
    """Options for a FILE_PATH property that may hold a // path: newer Blenders warn on
    `//` unless the property says it supports it; older ones do not know the flag."""
    if "is_path_supports_blend_relative" in bpy.types.Property.bl_rna.properties:
        return {"PATH_SUPPORTS_BLEND_RELATIVE"}
    return set()  # 4.3 refuses the flag when the class registers

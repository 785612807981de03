"""Everything that differs between Blender 4.2, 4.5 and 5.0 lives here."""

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

"""Who the add-on is to Blender: its module name, which owns the preferences and is what
`blender --addons` enables (the background export starts Blender with it)."""

from __future__ import annotations


def root_package(package: str) -> str:
    """The add-on's module name as Blender knows it: the package above `addon/`
    (`bl_ext.<repo>.storyshade` for an extension, the folder's name for a legacy add-on)."""
    return package.rpartition(".")[0] or package


# This module sits directly in addon/, so its package is `addon`'s full name.
ADDON_ID = root_package(__package__)

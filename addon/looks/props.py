"""What the .blend saves of looks and references: the StoryShade Look of an object or
collection, and a reference image with its weight (on a look, or the scene's style
references in the sidebar's settings).

Data only: under the bpy module a PropertyGroup with Python methods crashes at exit; what
reads them is in resolve.py and references.py.
"""

from __future__ import annotations

import bpy

from ..compat import blend_relative_path_options
from ..wire.looks import WEIGHT_MAX, WEIGHT_MIN


class StoryShadeReference(bpy.types.PropertyGroup):
    """One reference image and its weight."""

    image: bpy.props.StringProperty(
        name="Image",
        description="A PNG, JPEG, WebP or BMP image (// is the .blend's folder)",
        subtype="FILE_PATH",
        options=blend_relative_path_options(),
        default="",
    )
    weight: bpy.props.FloatProperty(
        name="Weight",
        description="How strongly the image steers (0 = not at all; 0.5-1.0 is usual)",
        default=0.8,
        min=0.0,
        max=2.0,
    )


class StoryShadeLook(bpy.types.PropertyGroup):
    """What an object or collection is (Object/Collection properties > StoryShade Look)."""

    enabled: bpy.props.BoolProperty(
        name="Look",
        description="Give this object (or every object in this collection) its own prompt",
        default=False,
    )
    prompt: bpy.props.StringProperty(
        name="Prompt", description="What this is, e.g. 'a girl in a red coat'", default=""
    )
    negative: bpy.props.StringProperty(
        name="Negative", description="What this must not look like (optional)", default=""
    )
    weight: bpy.props.FloatProperty(
        name="Weight",
        description="How strongly the look's prompt steers its pixels (1 = as the shot's)",
        default=1.0,
        min=WEIGHT_MIN,
        max=WEIGHT_MAX,
    )
    use_color: bpy.props.BoolProperty(
        name="Base Colour", description="Paint it in this colour in preview drafts", default=False
    )
    color: bpy.props.FloatVectorProperty(
        name="Colour", subtype="COLOR", size=3, min=0.0, max=1.0, default=(0.8, 0.8, 0.8)
    )
    references: bpy.props.CollectionProperty(
        type=StoryShadeReference,
        description="Images of this character (front view, turnaround): they steer only its "
        "pixels, in every frame",
    )
    bank: bpy.props.StringProperty(
        name="Bank Character",
        description="The character bank folder this look was saved to or loaded from",
        subtype="DIR_PATH",
        default="",
    )

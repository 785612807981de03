"""Reference images stored in the .blend: the scene's style references and each look's
character references, and the `settings.references` list a shot sends.

Style references (Sidebar > StoryShade > Look) steer every pixel; a look's references
(Object/Collection Properties > StoryShade Look) steer only its objects' pixels, sent with
`"look": NAME`. References already in the settings (the CLI's `--reference`, `--settings`, a
take being re-shaded) replace the .blend's; a .blend without references sends none, so
a preset's own references still apply.
"""

from __future__ import annotations

import bpy

from ..errors import InputError
from .reference_files import check_image, check_references


def _entries(refs, where: str, look: str | None = None) -> list[dict]:
    out = []
    for i, (image, weight) in enumerate(refs):
        if not image.strip():
            raise InputError(
                f"{where} reference {i + 1} has no image",
                "pick an image file for it, or remove it with its X",
            )
        entry = {"image": bpy.path.abspath(image), "weight": weight}
        out.append({**entry, "look": look} if look else entry)
    return out


def style_of(scene) -> list[tuple[str, float]]:
    """The scene's style references (Sidebar > StoryShade > Look) as (image, weight)."""
    return [(r.image, r.weight) for r in scene.storyshade.references]


def blend_references(looks: list, style: list[tuple[str, float]]) -> list[dict]:
    """The style references, then the references of the shot's `looks` (looks.Look, those
    shading some object of the shot)."""
    refs = _entries(style, "style")
    for look in looks:
        refs += _entries(look.references, f"look '{look.name}'", look.name)
    return refs


def attach(settings: dict, looks: list, style: list[tuple[str, float]]) -> dict:
    """The settings with checked references: those the settings name (CLI, re-shade), else
    the .blend's; errors name the file and the fix before anything is exported. The
    colour match key frame is checked by the same rules."""
    names = [look.name for look in looks]
    key = (settings.get("color_match") or {}).get("image")
    if key:
        image = str(check_image(key, "colour match key frame"))
        settings = {**settings, "color_match": {**settings["color_match"], "image": image}}
    if "references" in settings:
        return {**settings, "references": check_references(settings["references"], names)}
    refs = blend_references(looks, style)
    return {**settings, "references": check_references(refs, names)} if refs else settings

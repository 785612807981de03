"""Which settings belong to which engine family: AnimateDiff's are refused on the Wan
engines when set away from their defaults, the Wan-only ones (`wan_*`) on the others.

Torch-free and below the models layer, so `models check`, the server's submit and the
engines ask the same rule (engine/wan_checks.py has the rest of a Wan job's checks).
"""

from __future__ import annotations

from storyshade.errors import StoryShadeError
from storyshade.settings import Settings

WAN = ("wan-vace", "wan-vace-stock")
ANIMATEDIFF_ONLY = (
    "motion_adapter",
    "motion_loras",
    "motion_scale",
    "scheduler",
    "context_length",
    "context_overlap",
    "free_noise",
    "forward_chunk",
    "attention_slicing",
    "hires",
    "step_cache",
    "ip_adapter",
    "image_encoder",
)


def _default(name: str) -> object:
    field = Settings.model_fields[name]
    return field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]


def changed(settings: Settings, name: str) -> bool:
    return getattr(settings, name) != _default(name)


def check_engine_settings(settings: Settings) -> None:
    """Settings of the other engine family, set away from their defaults: refused."""
    wan = settings.engine in WAN
    if wan:
        for name in ANIMATEDIFF_ONLY:
            if changed(settings, name):
                raise StoryShadeError(
                    f"engine '{settings.engine}' has no '{name}' (an AnimateDiff setting; the "
                    f"job sets it to {getattr(settings, name)!r})",
                    f"leave {name} at its default ({_default(name)!r}) with the Wan engines, or "
                    "use engine 'animatediff' (camera presets other than 'static' bring "
                    "motion settings)",
                    field=f"settings.{name}",
                )
        for role, control in settings.controls.items():
            if control.guess_mode:
                raise StoryShadeError(
                    f"engine '{settings.engine}' has no guess mode (a ControlNet setting)",
                    "set guess_mode to false",
                    field=f"settings.controls.{role}.guess_mode",
                )
        return
    for name in (n for n in Settings.model_fields if n.startswith("wan_")):
        if changed(settings, name):
            raise StoryShadeError(
                f"engine '{settings.engine}' has no '{name}' (a Wan setting)",
                f"use engine 'wan-vace' (e.g. the wan presets), or drop {name}",
                field=f"settings.{name}",
            )

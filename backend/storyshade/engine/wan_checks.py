"""What a Wan job may ask for beyond its engine's declared capabilities (engines.py refuses
the other family's settings, looks and held frames on the stock engine, references tied
to a look), checked at submit: torch-free, nothing loaded. Every refusal names the setting
and the way out.

- A shot shorter than one 4-frame latent group after its first frame cannot make a Wan
  clip; a VACE reference image has no strength (on or off).
- The stock reference engine (`wan-vace-stock`) runs diffusers' pipeline as shipped: one
  control video over the whole schedule, sizes in multiples of 16.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from storyshade.engines import Shot
from storyshade.errors import StoryShadeError
from storyshade.settings import Reference, Settings

MIN_FRAMES = 5  # the first frame, then one group of 4


def stock_roles(settings: Settings) -> list[str]:
    """The control roles that steer (scale above 0, a span that is not empty)."""
    return [r for r, c in settings.controls.items() if c.scale > 0 and c.start < c.end]


def check_wan_references(references: Sequence[Reference]) -> None:
    default = Reference.model_fields["weight"].default
    for i, ref in enumerate(references):
        if ref.weight not in (0, default):
            raise StoryShadeError(
                f"reference {i} has weight {ref.weight}, but a VACE reference image has no "
                "strength",
                f"leave weight at {default} (on) or 0 (off) with the Wan engines",
                field=f"settings.references.{i}.weight",
            )


def check_wan(settings: Settings, shot: Shot | None) -> None:
    """Both Wan engines: references, and (once the shot is known) its length."""
    check_wan_references(settings.references)
    if shot is not None and shot.frames < MIN_FRAMES:
        raise StoryShadeError(
            f"the shot has {shot.frames} frame(s); Wan makes a first frame, then groups of "
            f"4, so a shot needs at least {MIN_FRAMES}",
            f"export at least {MIN_FRAMES} frames, or use engine 'animatediff'",
            field="frames",
        )


def check_stock_wan(settings: Settings, shot: Shot | None) -> None:
    """What the stock pipeline cannot take, before anything loads."""
    check_wan(settings, shot)
    fix = "use engine 'wan-vace' (the windowed engine)"
    for role, c in settings.controls.items():
        if (c.start, c.end) != (0.0, 1.0) and c.scale > 0:
            raise StoryShadeError(
                f"engine 'wan-vace-stock' applies its control over the whole schedule; "
                f"'{role}' asks for {c.start}-{c.end}",
                f"{fix}, or set start 0 and end 1",
                field=f"settings.controls.{role}.start",
            )
    if len(stock_roles(settings)) > 1:
        raise StoryShadeError(
            f"engine 'wan-vace-stock' takes one control video; the job steers with "
            f"{', '.join(stock_roles(settings))}",
            f"{fix} (it adds several controls' VACE hints), or give one role a scale",
            field="settings.controls",
        )
    if settings.width % 16 or settings.height % 16:
        raise StoryShadeError(
            f"engine 'wan-vace-stock' needs a size in multiples of 16, not "
            f"{settings.width}x{settings.height}",
            f"{fix} (it pads and crops), or choose a size in multiples of 16",
            field="settings.engine",
        )


class WanModels:
    """The Wan engines' models: their own checkpoint layout and checks (models/wan_loader.py),
    which models/loader.py and models/check.py ask the engine class for."""

    @staticmethod
    def resolve_models(roots: list[Path], settings: Settings) -> Any:
        from storyshade.models.loader import pick_device
        from storyshade.models.wan_loader import wan_model_key

        return wan_model_key(roots, settings, pick_device(settings.device))

    @staticmethod
    def check_models(roots: list[Path], settings: Settings, *rest: Any) -> Any:
        from storyshade.models.wan_loader import check_wan_preset

        return check_wan_preset(roots, settings, *rest)

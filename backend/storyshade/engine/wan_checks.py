"""What a Wan job may ask for, checked at submit (torch-free, nothing loaded).

Every refusal names the setting and the way out. The rules, by engine family:

- AnimateDiff-only settings (motion adapter, motion LoRAs, motion scale, its samplers,
  context windows in frames, FreeNoise, slicing, hires, DeepCache, the IP-Adapter) are
  refused on the Wan engines when they differ from their defaults, and the Wan-only
  settings (`wan_*`) on the other engines: a setting is never accepted and ignored.
- A shot shorter than one 4-frame latent group after its first frame cannot make a Wan
  clip; a reference tied to one look cannot be kept inside the look (VACE references act
  through self-attention over the whole frame); a reference has no strength in VACE.
- The stock reference engine (`wan-vace-stock`) runs diffusers' pipeline as shipped: one
  control video, no looks, no held frames, no colour matching, no levers, sizes in
  multiples of 16.
"""

from __future__ import annotations

from collections.abc import Sequence

from storyshade.errors import StoryShadeError
from storyshade.settings import Reference, Settings
from storyshade.wan_settings import WAN, changed, check_engine_settings

LEVERS = ("wan_cache", "wan_offload")
MIN_FRAMES = 5  # the first frame, then one group of 4


def check_stock_settings(settings: Settings) -> None:
    """What the stock pipeline cannot take, before anything loads."""
    field = "settings.engine"
    fix = "use engine 'wan-vace' (the windowed engine)"
    for name in LEVERS:
        if changed(settings, name):
            raise StoryShadeError(
                f"engine 'wan-vace-stock' runs diffusers' pipeline as shipped, without {name}",
                f"{fix}, or leave {name} at its default",
                field=f"settings.{name}",
            )
    if settings.compile != "off":
        raise StoryShadeError(
            "engine 'wan-vace-stock' is not compiled",
            f"{fix}, or set compile to 'off'",
            field="settings.compile",
        )
    if settings.color_match is not None:
        raise StoryShadeError(
            "engine 'wan-vace-stock' cannot match colours between windows",
            f"{fix}, or set color_match to null",
            field="settings.color_match",
        )
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
            field=field,
        )


def stock_roles(settings: Settings) -> list[str]:
    """The control roles that steer (scale above 0, a span that is not empty)."""
    return [r for r, c in settings.controls.items() if c.scale > 0 and c.start < c.end]


def check_wan_references(references: Sequence[Reference]) -> None:
    default = Reference.model_fields["weight"].default
    for i, ref in enumerate(references):
        if ref.look is not None:
            raise StoryShadeError(
                f"reference {i} is tied to look '{ref.look}', but Wan VACE reads reference "
                "images through self-attention over the whole frame: it cannot keep one "
                f"inside look '{ref.look}'",
                "drop 'look' to use the image for the whole shot, or use engine "
                "'animatediff' for per-look references",
                field=f"settings.references.{i}.look",
            )
        if ref.weight not in (0, default):
            raise StoryShadeError(
                f"reference {i} has weight {ref.weight}, but a VACE reference image has no "
                "strength",
                f"leave weight at {default} (on) or 0 (off) with the Wan engines",
                field=f"settings.references.{i}.weight",
            )


def check_wan_job(settings: Settings, frames: int, held: bool, looks: bool) -> None:
    """Everything a Wan job is refused for, from its settings and its bundle's shape
    (frame count, held frames, looks), before any model loads. A no-op for other engines
    beyond refusing Wan-only settings."""
    check_engine_settings(settings)
    if settings.engine not in WAN:
        return
    if settings.engine == "wan-vace-stock":
        check_stock_settings(settings)
    if frames < MIN_FRAMES:
        raise StoryShadeError(
            f"the shot has {frames} frame(s); Wan makes a first frame, then groups of 4, so "
            f"a shot needs at least {MIN_FRAMES}",
            f"export at least {MIN_FRAMES} frames, or use engine 'animatediff'",
            field="frames",
        )
    check_wan_references(settings.references)
    if settings.engine == "wan-vace-stock":
        what = "per-object looks" if looks else "held frames (a re-shade)" if held else ""
        if what:
            raise StoryShadeError(
                f"engine 'wan-vace-stock' cannot shade {what}",
                "use engine 'wan-vace' (the windowed engine)",
                field="settings.engine",
            )

"""`preview`: a cel-shaded draft from the control images alone, no model, in seconds.

It reads only what a ControlNet would see (the 8-bit depth and normal images), so a wrong
encoding shows up at once: light coming from the wrong side means a flipped normal
channel, fog on the near objects means inverted depth. Look: banded lambert from a key
light at the camera's upper left, a cool shadow tone, depth fog towards a sky gradient, and
ink lines where depth jumps or faces crease. Objects whose look has a base colour are
painted in it (lit tones) and a darker, cooler tone of it (shadow), so a draft already
shows which thing is which.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from storyshade.bundle import Region
from storyshade.cancel import CancelToken
from storyshade.controls import ControlSet
from storyshade.controls.lines import geometry_edges
from storyshade.controls.normal import background_u8, decode
from storyshade.engines import Capabilities
from storyshade.progress import Reporter
from storyshade.settings import Settings
from storyshade.wire.states import Stage

LIGHT = np.array([-0.45, 0.6, 0.66], np.float32) / np.linalg.norm([-0.45, 0.6, 0.66])
BANDS = 3  # lit tones above the shadow tone
PAPER = np.array([238, 220, 192], np.float32)  # lit colour
SHADOW = np.array([104, 110, 158], np.float32)  # cel shadow colour
INK = np.array([38, 34, 48], np.float32)
SKY_TOP = np.array([128, 162, 214], np.float32)
SKY_HORIZON = np.array([222, 230, 240], np.float32)
FOG = 0.45  # how far the farthest geometry fades into the horizon colour
# In 8-bit control images a depth jump under ~10 levels is smooth geometry, not an edge.
LINE_DEPTH_JUMP = 10 / 255


def sky(height: int, width: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    return np.broadcast_to(SKY_TOP * (1 - t) + SKY_HORIZON * t, (height, width, 3)).copy()


def _tones(
    shape: tuple[int, int], ids: np.ndarray | None, colors: dict[int, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel lit and shadow colours: the paper tones, or each look's base colour."""
    paper = np.broadcast_to(PAPER, (*shape, 3)).copy()
    shadow = np.broadcast_to(SHADOW, (*shape, 3)).copy()
    if ids is not None:
        for region, rgb in colors.items():
            where = ids == region
            paper[where] = rgb
            shadow[where] = rgb * 0.45 + SHADOW * 0.3
    return paper, shadow


def shade(
    depth_u8: np.ndarray,
    normal_u8: np.ndarray,
    convention: str = "bae",
    ids: np.ndarray | None = None,
    colors: dict[int, np.ndarray] | None = None,
) -> np.ndarray:
    """One HxWx3 uint8 frame from a depth and a normal control image; `ids` (region id map)
    and `colors` (id → RGB 0-255) paint looks in their base colours."""
    depth01 = depth_u8[..., 0].astype(np.float32) / 255.0
    normals = decode(normal_u8, convention)
    background = (depth_u8[..., 0] == 0) & np.all(
        normal_u8 == np.array(background_u8(convention), np.uint8), axis=-1
    )
    lambert = np.clip(normals @ LIGHT, 0.0, 1.0)
    band = np.ceil(lambert * BANDS) / BANDS  # 0 = shadow, then BANDS flat lit tones
    paper, shadow = _tones(lambert.shape, ids, colors or {})
    colour = shadow + (paper - shadow) * (0.25 + 0.75 * band)[..., None]
    colour[lambert <= 0.0] = shadow[lambert <= 0.0]
    h, w = depth01.shape
    horizon = sky(h, w)
    fog = (FOG * (1.0 - depth01) ** 1.5)[..., None]
    colour = colour * (1 - fog) + SKY_HORIZON * fog
    out = np.where(background[..., None], horizon, colour)
    ink = geometry_edges(depth01, normals, background, depth_jump=LINE_DEPTH_JUMP, step=2)
    out[ink] = INK
    return np.floor(np.clip(out, 0, 255) + 0.5).astype(np.uint8)


class PreviewEngine:
    """Engine protocol (engine/base.py): yields each frame as soon as it is shaded."""

    name = "preview"
    capabilities = Capabilities(
        summary="no model: a cel-shaded draft from the depth and normal images, in seconds",
        reads=frozenset(),
        # a draft of the layout: the model's settings are accepted (a quality preset swaps
        # the engine without the user editing the rest) and leave the draft as it is
        ignores=frozenset(
            {
                "text",
                "sampling",
                "checkpoint",
                "motion",
                "controls",
                "controlnet_models",
                "loras",
                "references",
                "ip_adapter",
                "scheduler",
                "guess_mode",
                "frame_windows",
                "window_fuse",
                "latent_windows",
                "flow_sampling",
                "wan_cache",
                "offload",
                "window_schedule",
                "decode_chunks",
                "free_noise",
                "slicing",
                "channels_last",
                "step_cache",
                "latent_preview",
                "normal_image",
                "dtype",
                "device",
                "hires",
            }
        ),
        looks=True,  # a look's base colour paints its object
        held_frames=True,  # frame by frame: a held frame is simply not drawn again
        needs_models=False,
    )

    def __init__(
        self,
        roots: list[Path] | None = None,
        cache: Any = None,
        models: Any = None,
        embeddings: Any = None,
    ) -> None:
        del roots, cache, models, embeddings  # no models

    def render(
        self,
        controls: ControlSet,
        settings: Settings,
        reporter: Reporter,
        held: Mapping[int, np.ndarray] | None = None,
        *,
        looks: Sequence[Region] = (),
        cancel: CancelToken | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        cancel = cancel or CancelToken()
        if settings.references:
            reporter.note(
                "the preview engine draws no model, so reference images change nothing here",
                event="references_unused",
            )
        convention = controls.meta.get("normal_convention", settings.normal_convention)
        colors = {look.id: np.asarray(look.color, np.float32) * 255 for look in looks if look.color}
        n = len(controls.frame_numbers)
        for i in range(n):
            cancel.check()
            if held and i in held:  # frame by frame, no neighbour to join: nothing to do
                continue
            ids = controls.regions[i] if controls.regions else None
            frame = shade(
                controls.frames["depth"][i], controls.frames["normal"][i], convention, ids, colors
            )
            reporter.stage(Stage.SHADING, i + 1, n)
            yield i, frame

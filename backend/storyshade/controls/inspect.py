"""Write a ControlSet to disk exactly as the engine receives it, for people to look at.

Layout: DIR/<role>/NNNN.png (8-bit RGB, scene frame numbers), DIR/depth16/NNNN.png (16-bit
grey, same depth at full precision), DIR/contact_sheet.png and DIR/controls.json (the
depth range, normal convention, size mapping and detectors that made them). A shot with
per-object looks adds DIR/regions/NNNN.png (one flat colour per look, black where no look
applies) and DIR/regions.json, the legend.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from storyshade.bundle import Region
from storyshade.contact_sheet import contact_sheet
from storyshade.controls.build import ControlSet
from storyshade.wire.layout import frame_name

SHEET_ROWS = 12
SHEET_WIDTH = 1600


def write_png(path: Path, image: np.ndarray) -> None:
    """8-bit RGB or 16-bit grey PNG; written beside, then renamed, so readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buf = cv2.imencode(".png", data)
    if not ok:
        raise OSError(f"could not encode {path}")
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buf.tobytes())
    tmp.replace(path)


# Distinct, readable colours for looks without a base colour of their own (by id).
PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195),
]  # fmt: skip


def region_colors(looks: Sequence[Region]) -> dict[int, tuple[int, int, int]]:
    """Display colour per region id: the look's base colour, else the palette's."""
    out: dict[int, tuple[int, int, int]] = {}
    for i, look in enumerate(looks):
        color = look.color
        rgb = tuple(round(c * 255) for c in color) if color else PALETTE[i % len(PALETTE)]
        out[look.id] = rgb  # type: ignore[assignment]
    return out


def paint_regions(ids: np.ndarray, colors: dict[int, tuple[int, int, int]]) -> np.ndarray:
    """An id map as an RGB image: each look's colour, black for no look."""
    lut = np.zeros((256, 3), np.uint8)
    for region, rgb in colors.items():
        lut[region] = rgb
    return lut[ids]


def sheet_rows(count: int, limit: int = SHEET_ROWS) -> list[int]:
    """Indices of at most `limit` frames, evenly spread, first and last included."""
    if count <= limit:
        return list(range(count))
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})


def write_controls(controls: ControlSet, out: Path, looks: Sequence[Region] = ()) -> dict[str, int]:
    """Write every role's frames, the 16-bit depth, the contact sheet and the metadata
    (with `looks`, the shot's, the region maps painted and their legend)."""
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for role, frames in controls.frames.items():
        for frame, image in zip(controls.frame_numbers, frames, strict=True):
            write_png(out / role / frame_name(frame), image)
        counts[role] = len(frames)
    for frame, image in zip(controls.frame_numbers, controls.depth16, strict=True):
        write_png(out / "depth16" / frame_name(frame), image)
    columns = dict(controls.frames)
    if controls.regions:
        colors = region_colors(looks)
        painted = [paint_regions(ids, colors) for ids in controls.regions]
        for frame, image in zip(controls.frame_numbers, painted, strict=True):
            write_png(out / "regions" / frame_name(frame), image)
        counts["regions"] = len(painted)
        legend = {
            str(look.id): {"name": look.name, "prompt": look.prompt, "color": list(colors[look.id])}
            for look in looks
        }
        (out / "regions.json").write_text(json.dumps(legend, indent=1), encoding="utf-8")
        columns["regions"] = painted
    rows = sheet_rows(len(controls.frame_numbers))
    sheet = contact_sheet(
        {role: [frames[i] for i in rows] for role, frames in columns.items()},
        [f"{controls.frame_numbers[i]:04d}" for i in rows],
        SHEET_WIDTH,
    )
    write_png(out / "contact_sheet.png", sheet)
    (out / "controls.json").write_text(json.dumps(controls.meta, indent=1), encoding="utf-8")
    return counts

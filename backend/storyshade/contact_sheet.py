"""One image that shows a shot at a glance: rows of frames, columns of labelled image sets.

Used by `storyshade controls` (depth | normal | line controls) and the demo
(depth | normal | result). Pure numpy + opencv, so it runs anywhere the backend does.

    sheet = contact_sheet(
        {"depth": depth_frames, "normal": normal_frames, "result": shaded},
        labels_per_row=["0001", "0002", "0003"],
        max_width=1600,
    )
    PIL.Image.fromarray(sheet).save("contact_sheet.png")

Every column must hold the same number of images (one per row). Images may be HxWx3 or
HxWx4 uint8, HxW uint8/uint16 (grey) or float in [0, 1]; sizes may differ between
columns. All cells share one height; each column keeps its own aspect. Cells are shrunk
to fit `max_width` and never enlarged past twice their size (nearest neighbour, so small
test renders stay pixel-exact to the eye).
"""

from __future__ import annotations

import cv2
import numpy as np

BACKGROUND = (30, 30, 34)
TEXT = (235, 235, 235)
GAP = 4
HEADER = 22
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.45


def contact_sheet(
    columns: dict[str, list[np.ndarray]],
    labels_per_row: list[str] | None = None,
    max_width: int = 1600,
) -> np.ndarray:
    """HxWx3 uint8 sheet: a header of column names, then one row per index."""
    if not columns:
        raise ValueError("contact_sheet needs at least one column")
    rows = {len(images) for images in columns.values()}
    if len(rows) != 1:
        raise ValueError(f"every column needs the same number of images, got {sorted(rows)}")
    n_rows = rows.pop()
    if labels_per_row is not None and len(labels_per_row) != n_rows:
        raise ValueError(f"{len(labels_per_row)} row labels for {n_rows} rows")
    names = list(columns)
    firsts = [_rgb(columns[name][0]) if n_rows else np.zeros((8, 8, 3), np.uint8) for name in names]
    aspects = [f.shape[1] / f.shape[0] for f in firsts]
    gutter = _gutter(labels_per_row)
    gaps = GAP * (len(names) + 1)
    native = max(f.shape[0] for f in firsts)
    cell_h = int(min(native * 2, (max_width - gutter - gaps) / sum(aspects)))
    cell_h = max(cell_h, 8)
    widths = [max(1, round(cell_h * a)) for a in aspects]
    sheet_w = gutter + sum(widths) + gaps
    sheet_h = HEADER + n_rows * (cell_h + GAP) + GAP
    sheet = np.empty((sheet_h, sheet_w, 3), np.uint8)
    sheet[...] = BACKGROUND
    x = gutter + GAP
    for name, w in zip(names, widths, strict=True):
        _text(sheet, _fit_text(name, w), x, HEADER - 7)
        x += w + GAP
    for r in range(n_rows):
        y = HEADER + r * (cell_h + GAP)
        if labels_per_row is not None:
            _text(sheet, labels_per_row[r], GAP, y + cell_h // 2 + 5)
        x = gutter + GAP
        for name, w in zip(names, widths, strict=True):
            sheet[y : y + cell_h, x : x + w] = _cell(columns[name][r], w, cell_h)
            x += w + GAP
    return sheet


def _rgb(image: np.ndarray) -> np.ndarray:
    """Any supported image → HxWx3 uint8 (16-bit and float scaled to 8 bits)."""
    a = np.asarray(image)
    if a.dtype == np.uint16:
        a = (a.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif a.dtype.kind == "f":
        a = np.floor(np.clip(a, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise ValueError(f"unsupported image dtype {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"unsupported image shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.ascontiguousarray(a[..., :3])


def _cell(image: np.ndarray, w: int, h: int) -> np.ndarray:
    rgb = _rgb(image)
    ih, iw = rgb.shape[:2]
    if (iw, ih) == (w, h):
        return rgb
    interp = cv2.INTER_AREA if w < iw or h < ih else cv2.INTER_NEAREST
    return cv2.resize(rgb, (w, h), interpolation=interp)


def _gutter(labels: list[str] | None) -> int:
    if not labels:
        return 0
    widest = max(cv2.getTextSize(str(s), FONT, FONT_SCALE, 1)[0][0] for s in labels)
    return widest + 2 * GAP


def _fit_text(text: str, width: int) -> str:
    while len(text) > 1 and cv2.getTextSize(text, FONT, FONT_SCALE, 1)[0][0] > width:
        text = text[:-1]
    return text


def _text(sheet: np.ndarray, text: str, x: int, y: int) -> None:
    cv2.putText(sheet, text, (x, y), FONT, FONT_SCALE, TEXT, 1, cv2.LINE_AA)

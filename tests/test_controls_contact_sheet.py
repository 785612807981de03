"""The contact-sheet builder shared by `storyshade controls` and the demo."""

from __future__ import annotations

import numpy as np
import pytest
from storyshade.contact_sheet import BACKGROUND, GAP, HEADER, contact_sheet


def frames(n: int, h: int, w: int, value: int) -> list[np.ndarray]:
    return [np.full((h, w, 3), value, np.uint8) for _ in range(n)]


def test_rows_of_frames_and_labelled_columns_in_order() -> None:
    sheet = contact_sheet(
        {"depth": frames(3, 48, 64, 10), "normal": frames(3, 48, 64, 200)},
        labels_per_row=["0001", "0002", "0003"],
        max_width=2000,
    )
    assert sheet.dtype == np.uint8 and sheet.ndim == 3 and sheet.shape[2] == 3
    # never enlarged past twice: cells are 96 px high, one row per frame plus the header
    assert sheet.shape[0] == HEADER + 3 * (96 + GAP) + GAP
    row = sheet[HEADER + 48]
    cells = row[np.any(row != BACKGROUND, axis=-1)]
    assert {10, 200} <= set(cells[:, 0].tolist())
    first_dark = np.argmax(row[:, 0] == 10)
    first_light = np.argmax(row[:, 0] == 200)
    assert 0 < first_dark < first_light  # depth left of normal, after the label gutter
    assert np.any(sheet[:HEADER] != BACKGROUND)  # column titles are drawn


def test_fits_max_width_and_accepts_grey_16_bit_and_float() -> None:
    sheet = contact_sheet(
        {
            "u16": [np.full((100, 200), 65535, np.uint16)],
            "float": [np.full((100, 200), 0.5, np.float32)],
            "rgba": [np.zeros((100, 200, 4), np.uint8)],
        },
        None,
        max_width=300,
    )
    assert sheet.shape[1] <= 300
    assert sheet.max() == 255


def test_mismatched_columns_are_refused() -> None:
    with pytest.raises(ValueError, match="same number"):
        contact_sheet({"a": frames(2, 8, 8, 0), "b": frames(3, 8, 8, 0)}, None, 800)
    with pytest.raises(ValueError, match="row labels"):
        contact_sheet({"a": frames(2, 8, 8, 0)}, ["only one"], 800)

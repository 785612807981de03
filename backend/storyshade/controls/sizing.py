"""Map between the scene's render size and the model's generation size.

Rule: scale to *cover* the target (aspect kept), then crop the centre. The same rule maps
generated frames back to the render size, so the strip matches the scene's resolution.
"""

from __future__ import annotations

import cv2
import numpy as np


def cover_resize(
    image: np.ndarray, width: int, height: int, *, nearest: bool = False
) -> np.ndarray:
    h, w = image.shape[:2]
    scale = max(width / w, height / h)
    sw, sh = max(width, round(w * scale)), max(height, round(h * scale))
    if nearest:
        interp = cv2.INTER_NEAREST
    else:
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(image, (sw, sh), interpolation=interp)
    x0, y0 = (sw - width) // 2, (sh - height) // 2
    return np.ascontiguousarray(resized[y0 : y0 + height, x0 : x0 + width])

"""Map between the scene's render size and the model's generation size.

Rule (documented in docs/controls.md): the render is scaled to *fit inside* the generation
size with its aspect kept, centred, and the margins are padded with each control's
background value (depth 0, normal "facing the camera", no lines). Mapping a generated frame
back crops that same box and scales it to the render size, so the strip lines up with the
scene pixel for pixel. Padding never loses any part of the storyboard's framing, which a
crop would. `cover_resize` (scale to cover, centre crop) is that inverse for a centred box,
which is why `render.save_frame` already maps back correctly.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PREFERRED_MULTIPLE = 64  # SD1.5 UNet downsamples 8x in the VAE, then 8x more in the UNet
REQUIRED_MULTIPLE = 8  # the VAE's cell; Settings rejects anything else


@dataclass(frozen=True)
class SizeMap:
    """Where the render sits inside the generation frame: box (x, y, w, h) in gen pixels."""

    render: tuple[int, int]
    generation: tuple[int, int]
    box: tuple[int, int, int, int]

    @classmethod
    def fit(cls, render: tuple[int, int], generation: tuple[int, int]) -> SizeMap:
        rw, rh = render
        gw, gh = generation
        scale = min(gw / rw, gh / rh)
        cw = min(gw, max(1, round(rw * scale)))
        ch = min(gh, max(1, round(rh * scale)))
        return cls(render, generation, ((gw - cw) // 2, (gh - ch) // 2, cw, ch))

    @property
    def padded(self) -> bool:
        return self.box[2:] != self.generation

    def to_content(self, image: np.ndarray, *, nearest: bool = False) -> np.ndarray:
        """Render-size image → the box's size (float or uint8, 2-D or HxWxC)."""
        return resize(image, self.box[2], self.box[3], nearest=nearest)

    def place(self, content: np.ndarray, fill: float | tuple[float, ...]) -> np.ndarray:
        """Box-sized image → generation-size canvas, margins set to `fill`."""
        gw, gh = self.generation
        x, y, w, h = self.box
        canvas = np.empty((gh, gw, *content.shape[2:]), dtype=content.dtype)
        canvas[...] = fill
        canvas[y : y + h, x : x + w] = content
        return canvas

    def to_scene(self, image: np.ndarray) -> np.ndarray:
        """Generated frame → render size: crop the box, scale it back (the strip's pixels)."""
        x, y, w, h = self.box
        return resize(np.ascontiguousarray(image[y : y + h, x : x + w]), *self.render)

    def to_dict(self) -> dict:
        return {
            "rule": "fit-pad",
            "render_size": list(self.render),
            "generation_size": list(self.generation),
            "content_box": list(self.box),
        }


def resize(image: np.ndarray, width: int, height: int, *, nearest: bool = False) -> np.ndarray:
    """Area-average when shrinking (no aliasing), bilinear when enlarging (no ringing)."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    if nearest:
        interp = cv2.INTER_NEAREST
    elif width < w or height < h:
        interp = cv2.INTER_AREA
    else:
        interp = cv2.INTER_LINEAR
    out = cv2.resize(image, (width, height), interpolation=interp)
    return out.reshape(height, width, *image.shape[2:])


def suggest_generation_size(
    render: tuple[int, int], pixels: int = 512 * 512, max_pad: float = 0.04
) -> tuple[int, int]:
    """A generation size within 25% of `pixels` in area whose aspect is the render's.

    Multiples of 64 are preferred; when none pads less than `max_pad` of the frame, the
    closest multiple of 8 (the minimum the VAE accepts) is used instead.
    """
    aspect = render[0] / render[1]

    def pad(size: tuple[int, int]) -> float:
        ratio = size[0] / size[1] / aspect
        return 1 - min(ratio, 1 / ratio)

    def score(size: tuple[int, int]) -> float:
        return pad(size) + abs(size[0] * size[1] - pixels) / pixels

    for multiple in (PREFERRED_MULTIPLE, REQUIRED_MULTIPLE):
        steps = range(multiple, 2048 + 1, multiple)
        sizes = [
            (w, h)
            for w in steps
            for h in steps
            if 0.75 * pixels <= w * h <= 1.25 * pixels and pad((w, h)) <= max_pad
        ]
        if sizes:
            return min(sizes, key=score)
    w = round((pixels * aspect) ** 0.5 / 8) * 8
    h = round((pixels / aspect) ** 0.5 / 8) * 8
    return max(8, min(2048, w)), max(8, min(2048, h))


def cover_resize(
    image: np.ndarray, width: int, height: int, *, nearest: bool = False
) -> np.ndarray:
    """Scale to cover (width, height), crop the centre: the inverse of a centred fit-pad."""
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

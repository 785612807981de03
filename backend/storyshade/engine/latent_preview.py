"""Cheap previews: a fixed linear map from SD1.5 latents to RGB, no VAE.

Decoding with the VAE mid-render would cost as much memory and time as a window; a 4x3
matrix gives a recognisable, blurry colour image at 1/8 resolution for almost nothing,
which is what an artist watching a long render needs.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import torch

# Least-squares fit of SD1.5 VAE output colour on its four latent channels (the factors
# ComfyUI and A1111 use for their "latent2rgb" previews).
SD15_LATENT_RGB = torch.tensor(
    [
        [0.3512, 0.2297, 0.3227],
        [0.3250, 0.4974, 0.2350],
        [-0.2829, 0.1762, 0.2721],
        [-0.2120, -0.2616, -0.7177],
    ]
)


def latents_to_rgb(
    latents: torch.Tensor, factors: torch.Tensor = SD15_LATENT_RGB, bias: torch.Tensor | None = None
) -> np.ndarray:
    """(1, C, F, h, w) diffusion latents → (F, h, w, 3) uint8, by a C x 3 linear map
    (SD1.5's by default; another model family passes its own, and its bias)."""
    x = latents[0].detach().float().cpu().permute(1, 2, 3, 0)  # F, h, w, C
    rgb = x @ factors.to(x.dtype)
    if bias is not None:
        rgb = rgb + bias.to(x.dtype)
    return ((rgb + 1.0) * 127.5).clamp(0, 255).round().to(torch.uint8).numpy()


def preview_strip(
    latents: torch.Tensor,
    count: int = 4,
    factors: torch.Tensor = SD15_LATENT_RGB,
    bias: torch.Tensor | None = None,
) -> tuple[list[int], str]:
    """Up to `count` evenly spaced frames side by side, as (frame indices, base64 PNG)."""
    from PIL import Image

    num_frames = latents.shape[2]
    picks = sorted({round(i * (num_frames - 1) / max(count - 1, 1)) for i in range(count)})
    rgb = latents_to_rgb(latents[:, :, picks], factors, bias)
    buffer = io.BytesIO()
    Image.fromarray(np.concatenate(list(rgb), axis=1)).save(buffer, format="PNG")
    return picks, base64.b64encode(buffer.getvalue()).decode("ascii")

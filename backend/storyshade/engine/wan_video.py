"""The Wan VAE's frame grid, and encoding and decoding a clip a chunk at a time.

Wan's VAE is causal in time: it encodes the first frame alone into latent frame 0, then
every 4 frames into one latent frame, each chunk seeing the earlier ones only through a
small cache of the last frames' features; decoding mirrors it (latent 0 → 1 frame, each
later latent → 4 frames). A clip of F = 4k+1 frames is therefore k+1 latent frames, and
latent j (j ≥ 1) holds frames 4j-3..4j.

The choice (docs/engine.md, "Wan VACE"): a shot is one clip on ONE latent grid; windows
slice that grid. The control video is encoded once for the whole clip, chunk after chunk
with the VAE's own cache carried along (`encode_clip`), and the denoised latents are
decoded the same way (`decode_clip`), so:

- the encoding and decoding are exactly diffusers' `vae.encode`/`vae.decode` of the
  whole clip (same operations in the same order), while only one chunk of frames is ever
  in memory: frames are read from disk per chunk and written as they are decoded;
- every window's control latents and noisy latents share one grid, so overlapping
  windows fuse latent for latent; a window that starts at latent a > 0 begins with a
  4-frame latent where the model saw a single frame in training, which the pyramid
  fusion weights least (its prediction counts 1/L at that frame);
- a decoded frame depends only on the latents at or before it (causality), never on
  frames after it, and never on anything outside the clip: a re-shade is its own clip
  around the re-shaded range (engine/wan_vace.py), with the held frames on both sides
  inside it as VACE's "keep" video.

A shot of N frames that is not 4k+1 is padded at its end by repeating its last control
frame; a size that is not a multiple of 16 (VAE 8 x patch 2) is padded right and bottom
by repeating edge pixels; both paddings are cropped from the output, so the user's frames
come back one for one, at the size asked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

TIME = 4  # frames per latent frame after the first
CELL = 16  # pixels per transformer token side: VAE 8 x patch 2
REFERENCE_NOISE = 1 << 40  # domain of the reference slots' noise keys (never a frame index)


def padded_frames(n: int) -> int:
    """The 4k+1 frame count that holds n frames."""
    return max(1, TIME * math.ceil((n - 1) / TIME) + 1)


def latent_count(frames: int) -> int:
    return (padded_frames(frames) - 1) // TIME + 1


def padded_size(width: int, height: int) -> tuple[int, int]:
    return CELL * math.ceil(width / CELL), CELL * math.ceil(height / CELL)


@dataclass(frozen=True)
class Clip:
    """Frames [start, start + frames) of the shot, on their own latent grid."""

    start: int
    frames: int

    @property
    def padded(self) -> int:
        return padded_frames(self.frames)

    @property
    def latents(self) -> int:
        return latent_count(self.frames)

    def latent_frames(self, j: int) -> range:
        """The clip frames (0-based, padded grid) that latent j holds."""
        return range(0, 1) if j == 0 else range(TIME * j - TIME + 1, TIME * j + 1)

    def noise_key(self, j: int) -> int:
        """Latent j's noise comes from (seed, this): the shot frame it ends at. A clip that
        starts at a multiple of 4 keeps the shot's grid, so its latents keep their noise."""
        return self.start + (0 if j == 0 else TIME * j)

    def source(self, i: int) -> int:
        """The shot frame shown at padded clip frame i (the last one repeats)."""
        return self.start + min(i, self.frames - 1)


def pad_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Right and bottom edge-replicated to (width, height); as is when already that size."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    pad = [(0, height - h), (0, width - w)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pad, mode="edge")


def to_video(frames: list[np.ndarray]) -> torch.Tensor:
    """(1, 3, n, H, W) float32 in [-1, 1] from uint8 RGB: diffusers' VideoProcessor values."""
    batch = np.stack(frames).astype(np.float32) / 255.0
    video = torch.from_numpy(batch).permute(3, 0, 1, 2).unsqueeze(0)
    return 2.0 * video - 1.0


def latent_norm(vae, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, 1/std) the pipeline normalises latents with, shaped (1, C, 1, 1, 1)."""
    z = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean, device=device, dtype=torch.float32)
    std = 1.0 / torch.tensor(vae.config.latents_std, device=device, dtype=torch.float32)
    return mean.view(1, z, 1, 1, 1), std.view(1, z, 1, 1, 1)


def encode_clip(
    vae,
    frames: Callable[[range], torch.Tensor],
    count: int,
    check: Callable[[], None] = lambda: None,
) -> torch.Tensor:
    """Normalised latents (1, z, k+1, h, w) float32 of a `count`-frame clip (4k+1), the
    frames fetched chunk by chunk (`frames(range)` → (1, 3, n, H, W) in [-1, 1]): what
    `vae.encode(video).latent_dist.mode()` gives, normalised as WanVACEPipeline does."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import patchify

    dtype = vae.dtype
    vae.clear_cache()
    outs = []
    try:
        for i in range(1 + (count - 1) // TIME):
            check()
            chunk = range(0, 1) if i == 0 else range(1 + TIME * (i - 1), 1 + TIME * i)
            x = frames(chunk).to(vae.device, dtype)
            if vae.config.patch_size is not None:
                x = patchify(x, patch_size=vae.config.patch_size)
            vae._enc_conv_idx = [0]
            with torch.inference_mode():
                outs.append(
                    vae.encoder(x, feat_cache=vae._enc_feat_map, feat_idx=vae._enc_conv_idx)
                )
        with torch.inference_mode():
            h = vae.quant_conv(torch.cat(outs, 2))
    finally:
        vae.clear_cache()
    mean = h[:, : vae.config.z_dim]  # the posterior's mode
    shift, scale = latent_norm(vae, mean.device)
    return ((mean.float() - shift) * scale).to(dtype).float()


def decode_clip(
    vae,
    latents: torch.Tensor,
    chunk: int = 1,
    check: Callable[[], None] = lambda: None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """(clip frame index, (3, H, W) in [-1, 1]) for every frame of normalised `latents`
    (1, z, K, h, w), `chunk` latent frames decoded per call (memory, not numbers): what
    `vae.decode` gives for the whole clip, one latent frame's frames at a time."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

    shift, scale = latent_norm(vae, latents.device)
    z = latents.to(vae.dtype)
    z = z / scale.to(z.dtype) + shift.to(z.dtype)
    with torch.inference_mode():
        x = vae.post_quant_conv(z.to(vae.device))
    vae.clear_cache()
    index = 0
    try:
        for start in range(0, x.shape[2], max(1, chunk)):
            check()
            outs = []
            for i in range(start, min(start + max(1, chunk), x.shape[2])):
                vae._conv_idx = [0]
                kwargs = {"first_chunk": True} if i == 0 else {}
                with torch.inference_mode():
                    outs.append(
                        vae.decoder(
                            x[:, :, i : i + 1],
                            feat_cache=vae._feat_map,
                            feat_idx=vae._conv_idx,
                            **kwargs,
                        )
                    )
            out = torch.cat(outs, 2)
            if vae.config.patch_size is not None:
                out = unpatchify(out, patch_size=vae.config.patch_size)
            out = torch.clamp(out, min=-1.0, max=1.0)
            for k in range(out.shape[2]):
                yield index, out[0, :, k]
                index += 1
    finally:
        vae.clear_cache()


def to_uint8(frame: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] → HxWx3 uint8, as diffusers' postprocess_video rounds."""
    image = (frame.float() / 2 + 0.5).clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)

"""AdaIN colour matching between context windows (and between shots).

Each window is denoised by its own UNet call, so nothing ties the palette of frames 40-56
to that of frames 0-16 except the overlaps' blending, and a long shot's colour drifts;
separate shots, sharing nothing, drift more. Here every window's colour statistics
(per latent channel: mean and standard deviation over the window's frames and pixels) are
pulled towards a reference's, AdaIN style:

    x0' = x0 + strength * ((x0 - mean_w) / std_w * std_ref + mean_ref - x0)

Where it acts, and why:

- On the **predicted clean latents** (x0, from the window's guided noise prediction), at
  **every step**, before the windows are fused. The noisy latents' statistics are mostly
  the noise's, so matching them would match noise, not pictures; matching only the final
  latents would shift colours after the model drew detail for the old ones (a tint laid
  over the frame). Matching x0 at each step lets the remaining steps paint with the
  matched palette: large-scale colour is decided in the first steps, and the last steps
  keep it. The change to x0 is turned back into a noise prediction, so every sampler
  (DDIM, Euler, DPM++, LCM) takes its usual step from it.
- **Per window, not per frame**: a window's statistics span its frames, so colour that
  moves within a window (a red coat entering) stays; only the window's overall drift goes.
- The reference is either the **shot's first window** (default; its own prediction at the
  same step, left as it is: every other window follows it, so errors do not chain from
  window to window) or an **image** (e.g. a frame of another shot), VAE-encoded once at the
  generation size, so separate shots share one palette. A shot within one window has
  nothing to match against its first window: its frames stay as they are.

Off (no `color_match`, or strength 0) installs nothing: the frames are bit for bit those
without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from storyshade.errors import StoryShadeError
from storyshade.settings import ColorMatch, Settings

if TYPE_CHECKING:  # torch only where latents are (the preview engine imports the check)
    import torch

FIELD = "settings.color_match"


def check_color_match_engine(engine: str, color_match: ColorMatch | None) -> None:
    """Only the windowed engine has windows and latents to match: refuse, never ignore."""
    if color_match is not None and engine not in ("animatediff", "wan-vace"):
        raise StoryShadeError(
            f"engine '{engine}' cannot match colours between windows (settings.color_match)",
            "use engine 'animatediff' (the windowed engine), or set color_match to null",
            field=FIELD,
        )


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of (1, C, F, h, w) latents, shaped to broadcast back."""
    dims = (0, 2, 3, 4)
    return x.mean(dim=dims, keepdim=True), x.std(dim=dims, keepdim=True).clamp_min(1e-5)


class ColorMatcher:
    """Adjusts each window's guided noise prediction so that its implied clean latents
    have the reference's per-channel statistics (the sampler calls `window` per window)."""

    def __init__(
        self,
        scheduler: Any,
        strength: float,
        target: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.strength = strength
        self.fixed = target  # (mean, std) of an image; None: the first window, per step
        self.target = target
        self.v_prediction = scheduler.config.get("prediction_type") == "v_prediction"

    def alpha_bar(self, t: torch.Tensor) -> float:
        """The signal share of the current step: samplers that keep latents in sigma
        space (Euler family: initial sigma > 1) index their own sigmas, the others the
        training schedule at t."""
        s = self.scheduler
        if float(getattr(s, "init_noise_sigma", 1.0)) > 1.0:
            sigma = float(s.sigmas[s.step_index])
            return 1.0 / (1.0 + sigma * sigma)
        return float(s.alphas_cumprod[int(t)])

    def window(self, pred: torch.Tensor, x: torch.Tensor, t: torch.Tensor, w: int) -> torch.Tensor:
        """`pred` (1, C, n, h, w) for window number `w` of this step, whose latents are `x`."""
        ab = self.alpha_bar(t)
        a, b = ab**0.5, (1.0 - ab) ** 0.5
        if float(getattr(self.scheduler, "init_noise_sigma", 1.0)) > 1.0:
            x = x * a  # sigma-space latents to the training schedule's scale
        x = x.float()
        if self.v_prediction:
            x0 = a * x - b * pred
        else:
            x0 = (x - b * pred) / a
        mean, std = channel_stats(x0)
        if self.fixed is None and w == 0:
            self.target = (mean, std)  # the first window leads this step
            return pred
        assert self.target is not None
        ref_mean, ref_std = self.target
        matched = (x0 - mean) / std * ref_std + ref_mean
        x0 = x0 + self.strength * (matched - x0)
        if self.v_prediction:
            return (a * x - x0) / b
        return (x - a * x0) / b


def image_stats(pipe: Any, path: str, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel latent mean/std of a reference frame: decoded with the reference
    loader's limits, scaled to cover the generation size, VAE-encoded (its mean)."""
    import torch

    from storyshade.controls.sizing import cover_resize
    from storyshade.references import load_image

    rgb = cover_resize(np.asarray(load_image(path, field=f"{FIELD}.image")), width, height)
    image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
    image = (image.float() / 127.5 - 1).to(pipe.vae.device, pipe.vae.dtype)
    latents = pipe.vae.encode(image).latent_dist.mean * pipe.vae.config.scaling_factor
    return channel_stats(latents.float()[:, :, None])


def color_matcher(pipe: Any, settings: Settings, scheduler: Any) -> ColorMatcher | None:
    """The job's matcher, or None when colour matching is off (strength 0 included)."""
    cm = settings.color_match
    if cm is None or cm.strength == 0:
        return None
    target = None
    if cm.image is not None:
        target = image_stats(pipe, str(Path(cm.image)), settings.width, settings.height)
    return ColorMatcher(scheduler, cm.strength, target)

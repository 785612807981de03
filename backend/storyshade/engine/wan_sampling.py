"""The windowed Wan VACE loop, from diffusers' model classes (no pipeline __call__).

At each step the clip's latent frames are cut into context windows (engine/windows.py,
over LATENT frames); the transformer runs on one window at a time, once per CFG branch,
with that window's slice of every control's VACE latents; the windows' predictions are
fused with engine/windows.py's weights, and one scheduler step moves the whole clip.
Reference slots (VACE reference images, engine/wan_references.py) lead every window and
their predictions are averaged over the windows.

`vace_forward` is WanVACETransformer3DModel.forward, operation for operation, except
that it takes several controls: each runs through the VACE blocks on its own and its
hints are added, scaled, at the VACE layers (as several ControlNets add their
residuals). The hints are added inside the blocks' own calls (`install_hints`), so
diffusers' step caches, which skip whole blocks, skip a block's hint with it. With one
window, one control and no looks this is the stock WanVACEPipeline loop, which the
exactness test checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from storyshade.cancel import CancelToken
from storyshade.engine.latent_preview import preview_strip
from storyshade.engine.oom import Fallback, report_fallback
from storyshade.engine.pipeline_edits import PipelineEdits, edited
from storyshade.engine.wan_oom import LADDER, WanPlan, WanRungs
from storyshade.engine.windows import Fuse, Schedule, context_windows, fusion_weights
from storyshade.progress import Reporter
from storyshade.wire.states import Event, Stage

# ComfyUI's published latent-to-RGB fit for Wan 2.1 latents (normalised, as the model
# sees them): a blurry colour preview without the VAE.
WAN_LATENT_RGB = torch.tensor(
    [
        [-0.1299, -0.1692, 0.2932],
        [0.0671, 0.0406, 0.0442],
        [0.3568, 0.2548, 0.1747],
        [0.0372, 0.2344, 0.1420],
        [0.0313, 0.0189, -0.0328],
        [0.0296, -0.0956, -0.0665],
        [-0.3477, -0.4059, -0.2925],
        [0.0166, 0.1902, 0.1975],
        [-0.0412, 0.0267, -0.1364],
        [-0.1293, 0.0740, 0.1636],
        [0.0680, 0.3019, 0.1128],
        [0.0032, 0.0581, 0.0639],
        [-0.1251, 0.0927, 0.1699],
        [0.0060, -0.0633, 0.0005],
        [0.3477, 0.2275, 0.2950],
        [0.1984, 0.0913, 0.1861],
    ]
)
WAN_LATENT_BIAS = torch.tensor([-0.1835, -0.0868, -0.3360])


@dataclass(frozen=True)
class WanSamplerConfig:
    """The sampler's share of a job's Settings (engine/wan_vace.py's `wan_config`).

    window / overlap: latent frames per context window and shared by neighbours.
    schedule, fuse: engine/windows.py's layouts and weights, as for AnimateDiff.
    cache: diffusers' step cache in use ("off" or its name): windows get their own
    cache context per CFG branch.
    """

    steps: int
    guidance_scale: float
    window: int = 21
    overlap: int = 4
    schedule: Schedule = "static"
    fuse: Fuse = "pyramid"
    preview_every: int = 0
    cache: str = "off"


@dataclass
class VaceControl:
    """One control role's VACE conditioning over the clip (1, 96, R + K, h, w), on the
    CPU, and how it steers: its scale and schedule span (as a ControlNet's)."""

    latents: torch.Tensor
    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0

    def active(self, step: int, steps: int) -> bool:
        """diffusers' ControlNet rule: step i of N runs it when start <= i/N, (i+1)/N <= end."""
        if self.scale == 0:
            return False
        return not (step / steps < self.start or (step + 1) / steps > self.end)


@dataclass
class Hints:
    """The VACE hints of the transformer call under way: per VACE layer, (hint, scale)
    for each control."""

    layers: list[list[tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=list)


def install_hints(edits: PipelineEdits, transformer: Any, hints: Hints) -> None:
    """Each VACE layer's block adds its hints to its own output (until `edits` undo)."""
    for k, i in enumerate(transformer.config.vace_layers):
        block = transformer.blocks[i]
        original = block.forward

        def forward(*args: Any, _k: int = k, _original: Any = original, **kwargs: Any) -> Any:
            out = _original(*args, **kwargs)
            for hint, scale in hints.layers[_k] if hints.layers else ():
                out = out + hint.to(out.device) * scale
            return out

        edits.forward(block, forward)


def vace_forward(
    model: Any,
    hidden_states: torch.Tensor,
    timestep: torch.Tensor,
    text: torch.Tensor,
    controls: Sequence[tuple[torch.Tensor, torch.Tensor]],
    hints: Hints,
) -> torch.Tensor:
    """WanVACETransformer3DModel.forward for any number of controls (each: its VACE
    latents and per-layer scales); `install_hints` must be in place."""
    batch, _, frames, height, width = hidden_states.shape
    p_t, p_h, p_w = model.config.patch_size
    rotary = model.rope(hidden_states)
    hs = model.patch_embedding(hidden_states).flatten(2).transpose(1, 2)
    temb, proj, text, _ = model.condition_embedder(timestep, text, None)
    proj = proj.unflatten(1, (6, -1))
    hints.layers = [[] for _ in model.config.vace_layers]
    for control, scale in controls:
        c = model.vace_patch_embedding(control).flatten(2).transpose(1, 2)
        pad = c.new_zeros(batch, hs.size(1) - c.size(1), c.size(2))
        c = torch.cat([c, pad], dim=1)
        for k, (block, s) in enumerate(zip(model.vace_blocks, torch.unbind(scale), strict=True)):
            hint, c = block(hs, text, c, proj, rotary)
            hints.layers[k].append((hint, s))
        del c
    try:
        for block in model.blocks:
            hs = block(hs, text, proj, rotary)
    finally:
        hints.layers = []
    shift, scale_ = (model.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
    shift, scale_ = shift.to(hs.device), scale_.to(hs.device)
    hs = (model.norm_out(hs.float()) * (1 + scale_) + shift).type_as(hs)
    hs = model.proj_out(hs)
    hs = hs.reshape(batch, frames // p_t, height // p_h, width // p_w, p_t, p_h, p_w, -1)
    hs = hs.permute(0, 7, 1, 4, 2, 5, 3, 6)
    return hs.flatten(6, 7).flatten(4, 5).flatten(2, 3)


class WanSampler:
    """One job's windowed denoising over a loaded WanVACEPipeline's transformer."""

    def __init__(
        self,
        pipe: Any,
        config: WanSamplerConfig,
        reporter: Reporter,
        device: torch.device,
        *,
        cancel: CancelToken | None = None,
    ) -> None:
        self.transformer = pipe.transformer
        self.vae = getattr(pipe, "vae", None)  # off the device on the OOM ladder's rungs
        self.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
        self.device = torch.device(device)
        self.dtype = self.transformer.dtype
        self.config = config
        self.reporter = reporter
        self.cancel = cancel or CancelToken()
        self.hints = Hints()
        self.references = 0  # reference slots leading the latents (VACE reference images)
        self.regions: Any = None  # WanRegionState (engine/wan_regions.py)
        self.color_match: Any = None  # FlowColorMatcher (engine/wan_references.py)
        self.edit: Callable[[PipelineEdits], None] | None = None  # looks, caches, offload
        self.calls = 0  # transformer calls (tests count them)
        self.frame_offset = 0  # the clip's first shot frame (previews name shot frames)
        self.fallback = Fallback(list(LADDER), self._on_fallback)  # engine/wan_oom.py

    def _on_fallback(self, old: WanPlan, new: WanPlan, where: str) -> None:
        if self.config.cache != "off":
            # The failed call may have left its step cache half written (the first block's
            # residual without the rest): the retry would read it. Every window's cache
            # starts again (one full call each), as at the job's first step.
            self.transformer._reset_stateful_cache()
        report_fallback(self.reporter, old, new, where)

    @property
    def cfg(self) -> bool:
        return self.config.guidance_scale > 1

    def windows(self, latents: int, step: int) -> list[range]:
        c = self.config
        return context_windows(latents, c.window, c.overlap, c.schedule, step)

    def _call(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        controls: list[tuple[torch.Tensor, torch.Tensor]],
        branch: str,
        window: range,
    ) -> torch.Tensor:
        self.cancel.check()
        if self.regions is not None:
            self.regions.rows = (branch,)
        self.calls += 1
        if self.config.cache != "off":
            with self.transformer.cache_context(f"{window.start}-{window.stop}-{branch}"):
                return vace_forward(self.transformer, x, t, text, controls, self.hints)
        return vace_forward(self.transformer, x, t, text, controls, self.hints)

    def predict(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        text: tuple[torch.Tensor, torch.Tensor | None],
        controls: Sequence[VaceControl],
        active: Sequence[bool],
        window: range,
    ) -> torch.Tensor:
        """The guided flow prediction for the reference slots and the window's latents."""
        r = self.references
        index = torch.tensor([*range(r), *(r + j for j in window)])
        if self.regions is not None:
            self.regions.set_window([-1] * r + list(window))
        x = latents[:, :, index].to(self.dtype)
        layers = len(self.transformer.config.vace_layers)
        picked = [
            (
                c.latents[:, :, index].to(self.device, self.dtype),
                torch.tensor([c.scale] * layers).to(self.device, self.dtype),
            )
            for c, on in zip(controls, active, strict=True)
            if on
        ]
        timestep = t.expand(x.shape[0])
        cond, uncond = text
        pred = self._call(x, timestep, cond, picked, "cond", window)
        if self.cfg:
            assert uncond is not None
            pred_uncond = self._call(x, timestep, uncond, picked, "uncond", window)
            pred = pred_uncond + self.config.guidance_scale * (pred - pred_uncond)
        return pred

    def _on_rung(
        self, rungs: WanRungs, inputs: tuple, window: range, plan: WanPlan
    ) -> torch.Tensor:
        """`predict` under the OOM ladder's current rung (engine/wan_oom.py)."""
        rungs.apply(plan)
        return self.predict(*inputs, window)

    def denoise(
        self,
        noise: torch.Tensor,
        text: tuple[torch.Tensor, torch.Tensor | None],
        controls: Sequence[VaceControl],
        stage: str = Stage.DENOISING,
    ) -> torch.Tensor:
        """(1, C, R + K, h, w) unit noise → denoised latents (float32, on the device)."""
        cfg = self.config
        r = self.references
        video = noise.shape[2] - r
        self.scheduler.set_timesteps(cfg.steps, device=self.device)
        timesteps = self.scheduler.timesteps
        latents = noise.to(self.device, torch.float32)
        text = (
            text[0].to(self.device, self.dtype),
            None if text[1] is None else text[1].to(self.device, self.dtype),
        )
        schedule = [self.windows(video, i) for i in range(len(timesteps))]
        total, done = sum(len(w) for w in schedule), 0
        with edited() as edits:
            install_hints(edits, self.transformer, self.hints)
            if self.edit is not None:
                self.edit(edits)
            rungs = WanRungs(edits, self.transformer, self.vae)
            for i, t in enumerate(timesteps):
                windows = schedule[i]
                active = [c.active(i, len(timesteps)) for c in controls]
                shares = fusion_weights(windows, video, cfg.fuse)
                fused = torch.zeros_like(latents)
                for w, (window, share) in enumerate(zip(windows, shares, strict=True)):
                    self.cancel.check()
                    inputs = (latents, t, text, controls, active)
                    work = partial(self._on_rung, rungs, inputs, window)
                    pred = self.fallback.run(work, f"step {i + 1} window {w + 1}").float()
                    if self.color_match is not None:
                        x = latents[:, :, r + window.start : r + window.stop]
                        pred[:, :, r:] = self.color_match.window(pred[:, :, r:], x, w, self.sigma())
                    if r:
                        fused[:, :, :r] += pred[:, :, :r] / len(windows)
                    share = share.to(self.device).view(1, 1, -1, 1, 1)
                    fused[:, :, r + window.start : r + window.stop] += pred[:, :, r:] * share
                    del pred
                    done += 1
                    self.reporter.stage(
                        stage,
                        done,
                        total,
                        step=i + 1,
                        steps=len(timesteps),
                        window=w + 1,
                        windows=len(windows),
                        frames=[window.start, window.stop],
                        plan=self.fallback.plan.name,
                    )
                self._maybe_preview(i + 1, len(timesteps), latents, fused)
                latents = self.scheduler.step(fused, t, latents, return_dict=False)[0]
        return latents

    def sigma(self) -> float:
        """The current step's noise level (flow matching: x_t = (1 - s) x0 + s noise)."""
        s = self.scheduler
        index = s.step_index if s.step_index is not None else (s.begin_index or 0)
        return float(s.sigmas[index])

    def _maybe_preview(
        self, step: int, steps: int, latents: torch.Tensor, flow: torch.Tensor
    ) -> None:
        every = self.config.preview_every
        if not every or step % every or step == steps:
            return
        r = self.references
        estimate = latents[:, :, r:] - self.sigma() * flow[:, :, r:]  # the clean latents
        picks, png = preview_strip(estimate, factors=WAN_LATENT_RGB, bias=WAN_LATENT_BIAS)
        self.reporter.emit(
            {
                "type": Event.PREVIEW,
                "step": step,
                "steps": steps,
                "frames": [self.frame_offset + (4 * j if j else 0) for j in picks],
                "png_base64": png,
            }
        )

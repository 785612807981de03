"""The windowed denoising loop, built from diffusers' parts (no pipeline __call__).

At each step the frame axis is cut into context windows; the UNet and every ControlNet run
on one window at a time with that window's control frames (CFG batched inside the window),
and the overlapping noise predictions are fused before one scheduler step over the whole
shot. Only a window's activations are ever alive, so memory is set by the window length.
With a single window covering the shot this is, operation for operation, the stock
AnimateDiffControlNetPipeline loop, which is what the exactness test checks.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers.models import MultiControlNetModel
from torch import nn

from storyshade.cancel import CancelToken
from storyshade.engine.chunking import Plan, slice_models
from storyshade.engine.compiled import ModelCalls
from storyshade.engine.cross_attention import install_cross_attention
from storyshade.engine.latent_preview import preview_strip
from storyshade.engine.motion import scale_motion
from storyshade.engine.noise import step_generators
from storyshade.engine.oom import Fallback, free_cached_memory, ladder, report_fallback
from storyshade.engine.pipeline_edits import PipelineEdits, edited
from storyshade.engine.references import ReferenceLayer
from storyshade.engine.regions import RegionState
from storyshade.engine.step_cache import StepCache
from storyshade.engine.windows import context_windows, fusion_weights
from storyshade.progress import Reporter
from storyshade.settings import Settings
from storyshade.wire.states import Event, Stage


@dataclass(frozen=True)
class ControlSpec:
    """How one ControlNet steers: strength, schedule span (fractions, as diffusers'
    control_guidance_start/end) and guess mode."""

    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0
    guess_mode: bool = False

    @classmethod
    def of(cls, value: ControlSpec | float) -> ControlSpec:
        return value if isinstance(value, ControlSpec) else cls(scale=float(value))

    def active(self, step: int, steps: int) -> bool:
        """diffusers' rule: step i of N runs the ControlNet when start <= i/N, (i+1)/N <= end."""
        return not (step / steps < self.start or (step + 1) / steps > self.end)


@dataclass
class Progress:
    total: int
    steps: int
    done: int = 0


class Placement:
    """Which model sits on the accelerator; with offload, only the one that is running."""

    def __init__(self, device: torch.device, models: list[nn.Module]) -> None:
        self.device = device
        self.models = models
        self.offloaded = False

    def use(self, model: nn.Module, offload: bool) -> None:
        if not offload:
            return
        for other in self.models:
            if other is not model:
                other.to("cpu")
        model.to(self.device)
        self.offloaded = True

    def restore(self) -> None:
        """Put every model back on the device: the cached pipeline is shared with other jobs."""
        if self.offloaded:
            for model in self.models:
                model.to(self.device)
            self.offloaded = False


def control_window(
    frames: Sequence[np.ndarray], window: range, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """(n, 3, H, W) float32 in [0, 1]: the values diffusers' control_video_processor makes;
    resized (bilinear) to `size` (H, W) when given, for a hires pass."""
    batch = np.stack([frames[i] for i in window]).astype(np.float32) / 255.0
    out = torch.from_numpy(batch).permute(0, 3, 1, 2)
    if size is not None and tuple(out.shape[2:]) != tuple(size):
        out = torch.nn.functional.interpolate(out, size=size, mode="bilinear", antialias=True)
    return out


class WindowedSampler:
    """One job's denoising and decoding over parts taken from a loaded diffusers pipeline."""

    def __init__(
        self,
        pipe: Any,
        settings: Settings,
        reporter: Reporter,
        base_plan: Plan | None = None,
        *,
        cancel: CancelToken | None = None,
    ) -> None:
        self.unet = pipe.unet
        self.controlnet = pipe.controlnet
        self.vae = pipe.vae
        self.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
        self.device = self.unet.device
        self.dtype = self.unet.dtype
        self.settings = settings  # the job's; a hires pass swaps in its own seed
        self.reporter = reporter
        self.cancel = cancel or CancelToken()  # checked before each model call and window
        self.multi = isinstance(self.controlnet, MultiControlNetModel)
        self.nets = list(self.controlnet.nets) if self.multi else [self.controlnet]
        self._progress = Progress(0, 0)
        self.placement = Placement(self.device, [self.unet, self.controlnet, self.vae])
        self.fallback = Fallback(ladder(base_plan or Plan()), self._on_fallback)
        self.regions: RegionState | None = None  # per-object looks (engine/regions.py)
        self.control_size: tuple[int, int] | None = None  # (H, W) of a hires pass
        self.references: Any = None  # ReferenceState: reference images (engine/references.py)
        self.step_cache: StepCache | None = None  # per denoise() when settings.step_cache > 1
        self.calls = ModelCalls(pipe, False, reporter)  # compiled ones: engine/compiled.py
        self._window: range = range(0)
        self.color_match: Any = None  # ColorMatcher: AdaIN between windows (engine/color_match.py)

    @property
    def cfg(self) -> bool:
        return self.settings.guidance_scale > 1

    def _on_fallback(self, old: Plan, new: Plan, where: str) -> None:
        report_fallback(self.reporter, old, new, where)

    # -- one window ------------------------------------------------------------------------
    def _forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        images: dict[int, torch.Tensor],
        specs: Sequence[ControlSpec],
        plan: Plan,
        branches: tuple[str, ...] = ("uncond", "cond"),
    ) -> torch.Tensor:
        """UNet + the ControlNets in `images` (index → window frames) on (b, C, n, h, w)
        latents; `branches` names the CFG branch of each of the b rows.

        The cancel token is checked before every model call, so a cancel lands within one
        model call's time."""
        b, channels, n = x.shape[:3]
        cache, key = self.step_cache, (self._window.start, self._window.stop, branches)
        shallow = cache.shallow_width(self.unet) if cache and cache.has(key) else 0
        embeds = text.repeat_interleave(n, dim=0)
        flat = x.transpose(1, 2).reshape(b * n, channels, *x.shape[3:])
        down: list[torch.Tensor] | None = None
        mid: torch.Tensor | None = None
        if images:
            self.placement.use(self.controlnet, plan.offload)
        for j, image in images.items():  # MultiControlNetModel's loop and summation order
            self.cancel.check()
            res = self._control(j, flat, t, embeds, image, specs[j], n, branches, shallow)
            if res is None:
                continue
            if down is None:
                down, mid = res
            else:
                down = [prev + cur for prev, cur in zip(down, res[0], strict=True)]
                mid = None if mid is None else mid + res[1]
        self.cancel.check()
        self.placement.use(self.unet, plan.offload)
        if self.regions:
            self.regions.rows = branches
        if self.references:
            self.references.rows = branches
        if cache:
            return cache.forward(self.calls, self.unet, key, x, t, embeds, down, mid)
        return self.calls("unet", self.unet, x, t, embeds, down, mid)

    def _control(
        self,
        j: int,
        flat: torch.Tensor,
        t: torch.Tensor,
        embeds: torch.Tensor,
        image: torch.Tensor,
        spec: ControlSpec,
        n: int,
        branches: tuple[str, ...],
        shallow: int = 0,
    ) -> tuple[list[torch.Tensor], torch.Tensor | None] | None:
        """ControlNet j's residuals for the rows of `flat`; None if it adds nothing here.
        With `shallow` > 0 (a step-cache step) only its first `shallow` residuals, no mid.

        In guess mode it sees only the conditional branch (the unconditional rows get zero
        residuals), as in diffusers' image ControlNet pipeline."""
        rows = range(len(branches))
        if spec.guess_mode and "uncond" in branches:
            if "cond" not in branches:
                return None
            k = branches.index("cond")
            rows = range(k, k + 1)
        sel = slice(rows.start * n, rows.stop * n)
        if self.regions:
            self.regions.rows = tuple(branches[k] for k in rows)
        cond = torch.cat([image] * len(rows))
        if shallow:
            net = self.nets[j]
            args = (flat[sel], t, embeds[sel], cond, spec.scale, spec.guess_mode)
            down, mid = self.calls("shallow_control", net, shallow, *args), None
        else:
            down, mid = self.calls(
                "control",
                self.nets[j],
                flat[sel],
                t,
                encoder_hidden_states=embeds[sel],
                controlnet_cond=cond,
                conditioning_scale=spec.scale,
                guess_mode=spec.guess_mode,
                return_dict=False,
            )
        if len(rows) == len(branches):
            return list(down), mid

        def pad(r: torch.Tensor | None) -> torch.Tensor | None:
            if r is None:
                return None
            zeros = torch.zeros_like(r)
            return torch.cat([zeros if k not in rows else r for k in range(len(branches))])

        return [pad(d) for d in down], pad(mid)

    def predict(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        controls: list[Sequence[np.ndarray]],
        specs: Sequence[ControlSpec | float],
        window: range,
        plan: Plan,
        active: Sequence[bool] | None = None,
    ) -> torch.Tensor:
        """Guided noise prediction (float32) for the frames of `window`; ControlNets whose
        `active` entry is False are not run at all."""
        specs = [ControlSpec.of(s) for s in specs]
        if self.regions:
            self.regions.set_window(window)
        self._window = window
        x = latents[:, :, window.start : window.stop]
        x = torch.cat([x] * 2) if self.cfg else x
        x = self.scheduler.scale_model_input(x, t).to(self.dtype)
        cn_dtype = self.controlnet.dtype
        images = {
            j: control_window(f, window, self.control_size).to(self.device, cn_dtype)
            for j, f in enumerate(controls)
            if active is None or active[j]
        }
        whole = ("uncond", "cond") if self.cfg else ("cond",)
        parts = (
            [(x, text, whole)]
            if not (plan.cfg_split and self.cfg)
            else [(x[:1], text[:1], ("uncond",)), (x[1:], text[1:], ("cond",))]
        )
        with edited() as edits:  # this window's slicing only
            slice_models(edits, [self.unet, self.controlnet], plan)
            outs = [self._forward(xp, t, tp, images, specs, plan, br) for xp, tp, br in parts]
        pred = (torch.cat(outs) if len(outs) > 1 else outs[0]).float()
        if self.cfg:
            uncond, cond = pred.chunk(2)
            pred = uncond + self.settings.guidance_scale * (cond - uncond)
        return pred

    # -- the loop --------------------------------------------------------------------------
    def _step_kwargs(self, num_frames: int) -> dict[str, Any]:
        params = set(inspect.signature(self.scheduler.step).parameters)
        kwargs: dict[str, Any] = {}
        if "eta" in params:
            kwargs["eta"] = 0.0
        if "generator" in params:  # stochastic samplers: one generator per frame
            kwargs["generator"] = step_generators(self.settings.seed, num_frames)
        return kwargs

    def _scheduler_step(
        self, pred: torch.Tensor, t: torch.Tensor, latents: torch.Tensor, kwargs: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One scheduler step over the shot with frames as the batch axis, so diffusers'
        randn_tensor draws frame k's noise from frame k's generator. The samplers used here
        are elementwise, so deterministic ones compute exactly what they did on (1, C, F, h, w).

        Returns the new latents and the clean-image estimate (for previews)."""

        def frames_first(x: torch.Tensor) -> torch.Tensor:
            return x[0].transpose(0, 1)

        def shot(x: torch.Tensor) -> torch.Tensor:
            return x.transpose(0, 1).unsqueeze(0)

        out = self.scheduler.step(frames_first(pred), t, frames_first(latents), **kwargs)
        estimate = out.prev_sample  # the clean-image estimate where the sampler gives one
        for name in ("pred_original_sample", "denoised"):
            if getattr(out, name, None) is not None:
                estimate = getattr(out, name)
                break
        return shot(out.prev_sample), shot(estimate)

    def denoise(
        self,
        noise: torch.Tensor,
        text: torch.Tensor,
        controls: list[Sequence[np.ndarray]],
        specs: Sequence[ControlSpec | float],
        held: Mapping[int, torch.Tensor] | None = None,
        init: torch.Tensor | None = None,
        strength: float = 1.0,
        stage: str = Stage.DENOISING,
    ) -> torch.Tensor:
        """(1, C, F, h, w) unit noise → denoised latents (float32, on the device).

        With `init` (latents to refine, as a hires pass gives) and `strength` < 1, the
        schedule's first (1 - strength) part is skipped and `init` is noised to the level
        where it resumes (img2img); at least one step always runs.

        `text` holds [negative, positive] embeddings (one row each) with CFG, else [positive].
        `specs` gives each control's scale (a float) or its full ControlSpec.
        `held` maps frame index → clean latents (C, h, w) of a frame kept from an earlier
        take: before every step those frames are set to their clean latents noised to that
        step's level (with the frame's own noise), so the windows that reach them denoise the
        other frames towards a continuation of them (RePaint-style inpainting in time).
        """
        job = self.settings
        specs = [ControlSpec.of(s) for s in specs]
        num_frames = noise.shape[2]
        self.scheduler.set_timesteps(job.steps, device=self.device)
        timesteps = self.scheduler.timesteps
        if init is not None and strength < 1:
            skip = min(len(timesteps) - 1, round(len(timesteps) * (1 - strength)))
            timesteps = timesteps[skip:]
            if hasattr(self.scheduler, "set_begin_index"):
                self.scheduler.set_begin_index(skip)
            latents = self.scheduler.add_noise(
                init.to(self.device, torch.float32), noise.to(self.device), timesteps[:1]
            )
        else:
            latents = noise.to(self.device) * self.scheduler.init_noise_sigma
        text = text.to(self.device, self.dtype)
        step_kwargs = self._step_kwargs(num_frames)
        schedule = [
            context_windows(
                num_frames, job.context_length, job.context_overlap, job.context_schedule, i
            )
            for i in range(len(timesteps))
        ]
        self._progress = Progress(sum(len(w) for w in schedule), len(timesteps))
        self.step_cache = StepCache(job.step_cache) if job.step_cache > 1 else None
        keep = sorted(held or {})
        if keep:
            clean = torch.stack([held[k] for k in keep], dim=1).unsqueeze(0)
            clean = clean.to(self.device, torch.float32)
            own_noise = noise[:, :, keep].to(self.device, torch.float32)
        with edited() as edits:
            self._edit(edits)
            for i, t in enumerate(timesteps):
                if keep:
                    latents[:, :, keep] = self.scheduler.add_noise(clean, own_noise, t[None])
                if self.step_cache:
                    self.step_cache.start(i)
                active = [s.active(i, len(timesteps)) for s in specs]
                fused = self._step(i, t, latents, text, controls, specs, active, schedule[i], stage)
                latents, estimate = self._scheduler_step(fused, t, latents, step_kwargs)
                self._maybe_preview(i + 1, len(timesteps), estimate)
        return latents

    def _edit(self, edits: PipelineEdits) -> None:
        """Every change this job makes to the shared pipeline for a denoising pass, all
        undone when `denoise` ends, however it ends (engine/pipeline_edits.py)."""
        if self.settings.channels_last and self.device.type == "cuda":
            for model in (self.unet, self.controlnet):
                edits.memory_format(model, torch.channels_last)
        refs = self.references
        install_cross_attention(  # looks, then references, in each cross-attention
            edits,
            self.unet,
            [self.controlnet],
            self.regions,
            (lambda layer: [ReferenceLayer(refs, layer)]) if refs is not None else None,
        )
        scale_motion(edits, self.unet, self.settings.motion_scale)
        edits.callback(self.placement.restore)  # offloaded models back on the device

    def _step(
        self,
        i: int,
        t: torch.Tensor,
        latents: torch.Tensor,
        text: torch.Tensor,
        controls: list[Sequence[np.ndarray]],
        specs: list[ControlSpec],
        active: list[bool],
        windows: list[range],
        stage: str = Stage.DENOISING,
    ) -> torch.Tensor:
        """One step's fused noise prediction over the whole shot, window by window."""
        num_frames = latents.shape[2]
        shares = fusion_weights(windows, num_frames, self.settings.context_fuse)
        fused = torch.zeros_like(latents)
        for w, (window, share) in enumerate(zip(windows, shares, strict=True)):
            self.cancel.check()

            def work(plan: Plan, window: range = window) -> torch.Tensor:
                return self.predict(latents, t, text, controls, specs, window, plan, active)

            pred = self.fallback.run(work, f"step {i + 1} window {w + 1}")
            if self.color_match is not None:
                pred = self.color_match.window(
                    pred, latents[:, :, window.start : window.stop], t, w
                )
            share = share.to(self.device).view(1, 1, -1, 1, 1)
            fused[:, :, window.start : window.stop] += pred * share
            del pred
            self._progress.done += 1
            self.reporter.stage(
                stage,
                self._progress.done,
                self._progress.total,
                step=i + 1,
                steps=self._progress.steps,
                window=w + 1,
                windows=len(windows),
                frames=[window.start, window.stop],
                plan=self.fallback.plan.name,
            )
        return fused

    def _maybe_preview(self, step: int, steps: int, estimate: torch.Tensor) -> None:
        every = self.settings.preview_every
        if not every or step % every or step == steps:
            return
        frames, png = preview_strip(estimate)
        self.reporter.emit(
            {
                "type": Event.PREVIEW,
                "step": step,
                "steps": steps,
                "frames": frames,
                "png_base64": png,
            }
        )

    # -- decoding --------------------------------------------------------------------------
    def decode(
        self, latents: torch.Tensor, chunk: int, skip: Collection[int] = ()
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Decode `chunk` frames at a time (halving on OOM) and yield uint8 frames in order,
        leaving out the frame indices in `skip` (held frames: the caller has them); a cancel
        stops before the next chunk."""
        scaled = 1 / self.vae.config.scaling_factor * latents
        flat = scaled.permute(0, 2, 1, 3, 4).reshape(
            latents.shape[2], *scaled.shape[1:2], *scaled.shape[3:]
        )
        order = [k for k in range(latents.shape[2]) if k not in skip]
        with edited() as edits:  # a generator: undone when it ends or is closed
            if self.settings.channels_last and self.device.type == "cuda":
                edits.memory_format(self.vae, torch.channels_last)
            yield from self._decode_all(flat, order, chunk)

    def _decode_all(
        self, flat: torch.Tensor, order: list[int], chunk: int
    ) -> Iterator[tuple[int, np.ndarray]]:
        num_frames = len(order)
        start = 0
        while start < num_frames:
            self.cancel.check()
            size = min(chunk, num_frames - start)
            images = self._decode_chunk(flat[order[start : start + size]])
            if images is None:
                chunk = max(1, chunk // 2)
                self.reporter.note(
                    f"out of memory decoding frames {order[start]}-{order[start + size - 1]}; "
                    f"retrying {chunk} at a time",
                    event="oom_fallback",
                    plan=f"decode chunk {chunk}",
                    where=f"decode frame {order[start]}",
                )
                continue
            video = (images.float() / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).numpy()
            for k in range(size):
                yield order[start + k], np.round(np.clip(video[k], 0, 1) * 255).astype(np.uint8)
            start += size
            self.reporter.stage(Stage.DECODING, start, num_frames)

    def _decode_chunk(self, part: torch.Tensor) -> torch.Tensor | None:
        """The decoded chunk, or None after an OOM that a smaller chunk may avoid."""
        try:
            with torch.inference_mode():
                return self.vae.decode(part.to(self.vae.dtype)).sample
        except torch.OutOfMemoryError:
            if part.shape[0] == 1:
                raise
        free_cached_memory()
        return None

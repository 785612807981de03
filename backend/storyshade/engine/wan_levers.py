"""Speed and memory levers diffusers already has, on the Wan transformer, per job.

- Step caches (`wan_cache`): diffusers' first-block cache (skips the blocks after the
  first when the first block's residual changed by less than `wan_cache_threshold`) and
  TaylorSeer (full computation every `wan_cache_interval` steps, Taylor-extrapolated
  attention outputs in between). Each window and CFG branch keeps its own cache state
  (its own cache context), so windows never reuse each other's features; that state is
  a window's hidden states, so memory grows by about one window's activations per window
  of the shot while a cache is on. MagCache is not offered: it needs magnitude ratios
  calibrated per checkpoint and sampler, which diffusers ships only for Flux.
- torch.compile (`compile`): diffusers' regional compilation (each repeated block
  compiled once and reused by every block), which compiles in seconds instead of minutes.
- Offload (`wan_offload`): "model" keeps the transformer in CPU memory and moves it to the
  GPU only while denoising (the VAE and text encoder likewise only while they work);
  "group" streams the transformer's layers to the GPU as they run, prefetched on a side
  CUDA stream (diffusers' group offload at leaf level), for 8 GB GPUs. Offload is decided when the pipeline loads (it is part of the
  loaded pipeline's identity: models/wan_loader.py).

All of them are installed through the job's undo log: the cached pipeline comes back
as it was loaded.
"""

from __future__ import annotations

from typing import Any

from storyshade.engine.levers import wanted
from storyshade.engine.pipeline_edits import PipelineEdits
from storyshade.progress import Reporter
from storyshade.settings import Settings


def cache_config(settings: Settings, dtype: Any) -> Any:
    """diffusers' config for the job's step cache, or None when off."""
    from diffusers import FirstBlockCacheConfig, TaylorSeerCacheConfig

    if settings.wan_cache == "first_block":
        return FirstBlockCacheConfig(threshold=settings.wan_cache_threshold)
    if settings.wan_cache == "taylorseer":
        return TaylorSeerCacheConfig(
            cache_interval=settings.wan_cache_interval,
            disable_cache_before_step=min(3, max(1, settings.steps // 4)),
            taylor_factors_dtype=dtype,
            # diffusers' default patterns ("^blocks.*attn", matched whole) miss Wan's attn1,
            # attn2: name the main blocks' attention and feed-forward outputs explicitly
            cache_identifiers=[r"blocks\.\d+\.(attn1|attn2|ffn)"],
        )
    return None


def install_cache(edits: PipelineEdits, transformer: Any, settings: Settings) -> bool:
    config = cache_config(settings, transformer.dtype)
    if config is None:
        return False
    transformer.enable_cache(config)
    edits.callback(transformer.disable_cache)
    return True


def install_compile(
    edits: PipelineEdits, transformer: Any, settings: Settings, device: str, reporter: Reporter
) -> bool:
    """Regional compilation of the transformer's repeated blocks for this pass."""
    compile_, why_not = wanted(settings, device)
    if why_not:
        reporter.note(why_not, event="compile_skipped")
    if not compile_:
        return False
    blocks = [*transformer.blocks, *transformer.vace_blocks]
    for block in blocks:
        block.compile(fullgraph=False, dynamic=False)

    def undo() -> None:
        for block in blocks:
            block._compiled_call_impl = None

    edits.callback(undo)
    return True


def on_device(edits: PipelineEdits, module: Any, device: Any, offload: str) -> None:
    """With model offload, `module` visits the device until `edits` are undone."""
    if offload != "model":
        return
    module.to(device)
    edits.callback(lambda: module.to("cpu"))

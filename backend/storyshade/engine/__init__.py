"""Engines by name. Each turns control frames into shaded frames (see base.Engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storyshade.engine.base import Engine
from storyshade.errors import StoryShadeError
from storyshade.models.loader import ModelCache, ModelKey


def get_engine(
    name: str,
    roots: list[Path],
    cache: ModelCache,
    models: ModelKey | None = None,
    embeddings: Any = None,
) -> Engine:
    """`models`: the job's models, resolved at submit (None: the engine resolves them);
    `embeddings`: the stage cache's store of reference embeddings (windowed engine)."""
    if name == "animatediff":
        from storyshade.engine.windowed import WindowedAnimateDiffEngine

        return WindowedAnimateDiffEngine(roots, cache, models, embeddings)
    if name == "animatediff-stock":  # the diffusers pipeline as shipped: the reference
        from storyshade.engine.animatediff import StockAnimateDiffEngine

        return StockAnimateDiffEngine(roots, cache, models)
    if name == "wan-vace":  # Wan 2.1 VACE, windowed over latent frames
        from storyshade.engine.wan_vace import WanVaceEngine

        return WanVaceEngine(roots, cache, models)
    if name == "wan-vace-stock":  # diffusers' WanVACEPipeline as shipped: the reference
        from storyshade.engine.wan_stock import StockWanVaceEngine

        return StockWanVaceEngine(roots, cache, models)
    if name == "preview":  # no model: cel-shaded draft from the control images
        from storyshade.engine.preview import PreviewEngine

        return PreviewEngine()
    raise StoryShadeError(
        f"unknown engine '{name}'",
        "use 'animatediff', 'animatediff-stock', 'wan-vace', 'wan-vace-stock' or 'preview'",
        field="settings.engine",
    )

"""Engines by name (the registry is storyshade/engines.py; each turns control frames into
shaded frames, see base.Engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storyshade.engine.base import Engine
from storyshade.engines import engine_class
from storyshade.models.loader import ModelCache, ModelKey


def get_engine(
    name: str,
    roots: list[Path],
    cache: ModelCache,
    models: ModelKey | None = None,
    embeddings: Any = None,
) -> Engine:
    """`models`: the job's models, resolved at submit (None: the engine resolves them);
    `embeddings`: the stage cache's store of reference embeddings (engines with references)."""
    return engine_class(name)(roots, cache, models, embeddings)

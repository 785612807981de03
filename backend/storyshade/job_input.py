"""What one render needs, worked out once and carried from submit to the engine.

A job's models are resolved and checked when it is submitted (so a missing model is a 400,
not a failed job) and its bundle is validated and hashed when it is unpacked. Doing either
again further down the path (the stage cache's keys, the engine's loader, the Ray
dispatcher's placement) costs time and can disagree with what was accepted, so every stage
takes this instead of re-deriving it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from storyshade.bundle import Bundle, content_hash
from storyshade.engines import capabilities
from storyshade.models.loader import ModelKey, model_key
from storyshade.settings import Settings


@dataclass(frozen=True)
class JobInput:
    bundle: Bundle  # validated; its pass files are read lazily, frame by frame
    settings: Settings
    models: ModelKey | None  # None: the model-free preview engine
    bundle_hash: str  # bundle.content_hash: the stage cache's key for the passes


def needs_models(settings: Settings) -> bool:
    return capabilities(settings.engine).needs_models


def prepare(
    bundle: Bundle,
    settings: Settings,
    roots: list[Path],
    *,
    models: ModelKey | None = None,
    bundle_hash: str | None = None,
) -> JobInput:
    """A JobInput, resolving models and hashing the bundle only where the caller has not
    already (raises ModelError naming a missing or mismatched model)."""
    if models is None and needs_models(settings):
        models = model_key(roots, settings)
    return JobInput(bundle, settings, models, bundle_hash or content_hash(bundle))

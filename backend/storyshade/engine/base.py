"""The one small interface every engine implements.

An engine takes control frames at generation size and yields finished frames as soon as
they exist, so callers can save (and stream) each one: a failed or cancelled job keeps
what it produced.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from storyshade.controls import ControlSet
from storyshade.models.loader import ModelCache, ModelKey, model_key
from storyshade.progress import Reporter
from storyshade.settings import Settings
from storyshade.wire.states import Stage


class Engine(Protocol):
    name: str

    def render(
        self,
        controls: ControlSet,
        settings: Settings,
        reporter: Reporter,
        held: Mapping[int, np.ndarray] | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (frame index within the shot, HxWx3 uint8 RGB at generation size) for every
        frame not in `held`: held frames (index → the earlier take's picture at generation
        size) are kept as they are and only steer their neighbours (re-shading a range)."""
        ...


def load_pipeline(
    roots: list[Path],
    cache: ModelCache,
    settings: Settings,
    reporter: Reporter,
    key: ModelKey | None = None,
) -> tuple[ModelKey, Any]:
    """Load (or reuse) the pipeline of `key` (the job's resolved models; resolved here from
    the settings only when the caller has none), as a 'loading' stage."""
    key = key or model_key(roots, settings)
    reporter.stage(Stage.LOADING, 0, 1)
    pipe = cache.get(key)
    reporter.stage(Stage.LOADING, 1, 1)
    return key, pipe

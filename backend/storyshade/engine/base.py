"""The one small interface every engine implements.

An engine takes control frames at generation size and yields finished frames as soon as
they exist, so callers can save (and stream) each one: a failed or cancelled job keeps
what it produced. Progress goes to the `Reporter`; cancellation comes as a `CancelToken`
that the engine checks at each unit of its work (model load, model call, window, step,
frame, decode chunk).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from storyshade.bundle import Region
from storyshade.cancel import CancelToken
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
        *,
        looks: Sequence[Region] = (),
        cancel: CancelToken | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (frame index within the shot, HxWx3 uint8 RGB at generation size) for every
        frame not in `held`: held frames (index → the earlier take's picture at generation
        size) are kept as they are and only steer their neighbours (re-shading a range).
        `looks` are the shot's (its regions: what each id of `controls.regions` is); they
        travel beside the control images, which do not depend on their texts.
        Raises `Cancelled` at the next unit of work once `cancel` is cancelled (None: never)."""
        ...


def load_pipeline(
    roots: list[Path],
    cache: ModelCache,
    settings: Settings,
    reporter: Reporter,
    key: ModelKey | None = None,
    cancel: CancelToken | None = None,
) -> tuple[ModelKey, Any]:
    """Load (or reuse) the pipeline of `key` (the job's resolved models; resolved here from
    the settings only when the caller has none), as a 'loading' stage; a cancelled `cancel`
    stops before the load and before the work after it."""
    cancel = cancel or CancelToken()
    key = key or model_key(roots, settings)
    reporter.stage(Stage.LOADING, 0, 1)
    cancel.check()
    pipe = cache.get(key)
    reporter.stage(Stage.LOADING, 1, 1)
    cancel.check()
    return key, pipe

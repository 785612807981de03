"""The one small interface every engine implements.

An engine takes control frames at generation size and yields finished frames as soon as
they exist, so callers can save (and stream) each one: a failed or cancelled job keeps
what it produced.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np

from storyshade.controls import ControlSet
from storyshade.progress import Reporter
from storyshade.settings import Settings


class Engine(Protocol):
    name: str

    def render(
        self, controls: ControlSet, settings: Settings, reporter: Reporter
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (frame index within the shot, HxWx3 uint8 RGB at generation size)."""
        ...

"""How an estimate of the seconds left is shown, on both sides: the server's `eta_s` and
the add-on's "about N s left" for a sequence.

A raw estimate (work left times a measured pace) jumps with noise and where a stage ends;
what the user reads must not: it may rise by no more than the time that passed since it
was last shown (a countdown that went 123, 173, 194 s taught users to ignore it), between
news it counts down with the clock, and once the work is done there is none.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Countdown:
    """Feed `show(raw)` each new raw estimate (None: no news); read what to show."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.shown: float | None = None
        self.at = 0.0
        self.over = False

    def show(self, raw: float | None = None) -> float | None:
        """Seconds left to show now, or None (not known yet, or done)."""
        if self.over:
            return None
        now = self.clock()
        passed = max(0.0, now - self.at)
        if raw is None:
            if self.shown is None:
                return None
            value = self.shown - passed  # no news: count down
        else:
            value = raw if self.shown is None else min(raw, self.shown + passed)
        self.shown, self.at = max(0.0, value), now
        return self.shown

    def done(self) -> None:
        """The work is over: nothing is left to show."""
        self.over, self.shown = True, None

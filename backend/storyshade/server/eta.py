"""Estimated seconds left, from measured times rather than guesses.

A running job's ETA comes from its own pace in the current stage (seconds per unit so far ×
units left). Before it has a pace, and for queued jobs, it comes from past jobs: an average
of whole-job seconds per (frame × step), learned from jobs that actually computed frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from storyshade.wire.states import LATE


@dataclass
class Pace:
    """Whole-job seconds per frame·step, averaged over recent jobs (None until one finished)."""

    per_unit: float | None = None

    def learn(self, seconds: float, frames: int, steps: int) -> None:
        unit = seconds / max(1, frames * steps)
        self.per_unit = unit if self.per_unit is None else 0.7 * self.per_unit + 0.3 * unit

    def predict(self, frames: int, steps: int) -> float | None:
        return None if self.per_unit is None else self.per_unit * frames * steps


@dataclass
class RunClock:
    """One running job's stopwatch: when it started and when its current stage began."""

    frames: int
    steps: int
    started: float = field(default_factory=time.monotonic)
    stage: str = ""
    stage_started: float = 0.0
    last_event: float = 0.0
    eta: float | None = None

    def update(self, event: dict, pace: Pace) -> dict:
        """Timing fields for a progress event: elapsed_s and, when known, eta_s."""
        now = time.monotonic()
        stage = event.get("stage", "")
        if stage != self.stage:
            self.stage = stage
            self.stage_started = self.last_event or self.started
        self.last_event = now
        done, total = event.get("done", 0), event.get("total", 0)
        eta = None
        if stage in LATE and done > 0 and total >= done:
            eta = (now - self.stage_started) / done * (total - done)
        else:
            predicted = pace.predict(self.frames, self.steps)
            if predicted is not None:
                eta = max(0.0, predicted - (now - self.started))
        self.eta = eta
        out = {"elapsed_s": round(now - self.started, 3)}
        if eta is not None:
            out["eta_s"] = round(eta, 2)
        return out

    def remaining(self, pace: Pace) -> float | None:
        if self.eta is not None:
            return self.eta
        predicted = pace.predict(self.frames, self.steps)
        return (
            None if predicted is None else max(0.0, predicted - (time.monotonic() - self.started))
        )

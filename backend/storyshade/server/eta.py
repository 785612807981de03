"""Seconds left for a job, from what this server measured for this engine and size.

A job's time goes to a few phases: reading the passes, building controls, denoising (and
the hires pass), and making the frames (decoding and saving interleave, frame by frame;
the preview engine shades and saves the same way). `Rates` keeps, per (engine, width,
height, hires), the seconds each phase took per unit of the job's size (the denoising
phases per frame·step, the others per frame); every phase a job finishes teaches it,
except one served from the stage cache. A running job's `JobEta` estimates its current
phase from the job's own pace once part of it is done (a window, a frame), else from
`Rates`, and adds the phases still to come from `Rates` (scaled by how much faster or
slower than measured this job runs its current phase); a `wire.countdown.Countdown`
keeps what is shown from jumping up, and nothing is shown once the job has ended. A job
of another engine or size never borrows these figures (an 8-frame `preview` shot of 20 s
was announced as "~3-4 min" from the pace of slow jobs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from storyshade.wire.countdown import Countdown
from storyshade.wire.states import Stage

# Progress stage → the phase its time counts in; stages not here (queued, loading) are not
# timed: their length does not scale with the job.
PHASE = {
    Stage.READING: "reading",
    Stage.CONTROLS: "controls",
    Stage.DENOISING: "denoising",
    Stage.REFINING: "refining",
    Stage.SHADING: "frames",
    Stage.DECODING: "frames",
    Stage.SAVING: "frames",
}
ORDER = ("reading", "controls", "denoising", "refining", "frames")
PER_STEP = ("denoising", "refining")
KEEP = 0.5  # weight of what was known before a new measurement (recent jobs count more)
SPEED_LIMIT = 4.0  # a job's own pace scales the phases to come by at most this much


@dataclass(frozen=True)
class JobSize:
    """What a job's time scales with, and which measurements apply to it."""

    engine: str
    width: int
    height: int
    hires: bool
    frames: int
    steps: int

    @classmethod
    def of(cls, settings: Any, frames: int) -> JobSize:
        return cls(
            str(settings.engine),
            int(settings.width),
            int(settings.height),
            settings.hires is not None,
            frames,
            int(settings.steps),
        )

    @property
    def key(self) -> tuple:
        return (self.engine, self.width, self.height, self.hires)

    def units(self, phase: str) -> int:
        return max(1, self.frames * (self.steps if phase in PER_STEP else 1))


class Rates:
    """Seconds per unit of each phase, per engine and size, as this server measured them."""

    def __init__(self) -> None:
        self._per_unit: dict[tuple, dict[str, float]] = {}

    def learn(self, size: JobSize, phase: str, seconds: float) -> None:
        if phase not in ORDER or seconds < 0:
            return
        unit = seconds / size.units(phase)
        known = self._per_unit.setdefault(size.key, {})
        old = known.get(phase)
        known[phase] = unit if old is None else KEEP * old + (1 - KEEP) * unit

    def expected(self, size: JobSize, phase: str) -> float | None:
        unit = self._per_unit.get(size.key, {}).get(phase)
        return None if unit is None else unit * size.units(phase)

    def after(self, size: JobSize, phase: str) -> float | None:
        """Seconds the phases after `phase` are expected to take (None: nothing known;
        `phase` "" is before the first)."""
        known = self._per_unit.get(size.key, {})
        later = ORDER[ORDER.index(phase) + 1 :] if phase in ORDER else ORDER
        parts = [self.expected(size, p) for p in later if p in known]
        return sum(p for p in parts if p is not None) if parts else None

    def predict(self, size: JobSize) -> float | None:
        """A whole job's seconds, before it starts (queue estimates)."""
        return self.after(size, "")


@dataclass
class JobEta:
    """One running job's clock and estimate, fed its progress events."""

    size: JobSize
    rates: Rates
    clock: Callable[[], float] = time.monotonic
    started: float = 0.0
    phase: str = ""
    phase_started: float = 0.0
    fraction: float = 0.0  # of the current phase, done
    cached: bool = False  # some of the phase came from the stage cache: it teaches nothing
    reached: str = ""  # the furthest phase this job has been in (loading can come after some)
    last_event: float = 0.0
    countdown: Countdown = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.started or self.clock()
        self.countdown = Countdown(self.clock)

    def update(self, event: dict[str, Any]) -> dict[str, float]:
        """Timing fields for a progress event: elapsed_s and, when known, eta_s."""
        now = self.clock()
        phase = PHASE.get(str(event.get("stage", "")), "")
        if phase != self.phase:
            self._phase_ended(self.last_event or now)
            self.phase, self.fraction, self.cached = phase, 0.0, False
            self.phase_started = self.last_event or self.started
            if phase and (not self.reached or ORDER.index(phase) > ORDER.index(self.reached)):
                self.reached = phase
        done, total = int(event.get("done") or 0), int(event.get("total") or 0)
        if total > 0:
            self.fraction = max(self.fraction, min(1.0, done / total))
        self.cached = self.cached or bool(event.get("cached"))
        self.last_event = now
        eta = self.countdown.show(self._raw(now))
        out = {"elapsed_s": round(now - self.started, 3)}
        if eta is not None:
            out["eta_s"] = round(eta, 2)
        return out

    def _phase_ended(self, end: float) -> None:
        if self.phase and not self.cached:
            self.rates.learn(self.size, self.phase, end - self.phase_started)

    def _raw(self, now: float) -> float | None:
        current: float | None = None
        spent = now - self.phase_started
        expected = self.rates.expected(self.size, self.phase) if self.phase else None
        speed = 1.0  # how much slower than measured this job runs (a busy machine, say)
        if self.phase and self.fraction > 0:  # the job's own pace
            whole = spent / self.fraction
            current = whole * (1.0 - self.fraction)
            if expected:
                speed = min(max(whole / expected, 1 / SPEED_LIMIT), SPEED_LIMIT)
        elif expected is not None:
            current = max(0.0, expected - spent)
        later = self.rates.after(self.size, self.reached)  # not the phases already done
        if current is None and later is None:
            return None
        return (current or 0.0) + (later or 0.0) * speed

    def remaining(self) -> float | None:
        """Seconds left now, without news (queue estimates for the jobs behind it)."""
        if self.countdown.shown is not None:
            return self.countdown.show(None)
        predicted = self.rates.predict(self.size)
        return None if predicted is None else max(0.0, predicted - (self.clock() - self.started))

    def finish(self, learn: bool = True) -> None:
        """The job ended (`learn`: it ran to its end, so its last phase is a measurement);
        no estimate is left."""
        if learn:
            self._phase_ended(self.clock())
        self.phase = ""
        self.countdown.done()

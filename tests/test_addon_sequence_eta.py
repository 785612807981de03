"""Shade Sequence's "about N s left", on a scripted clock: shots that each take what they
take, the server's own estimate for the shot under way, and the headline the panel and
the CLI show.

It used to be the sequence's whole time so far over the frames of finished shots, so it
grew while a shot ran (123 → 173 → 194 s) and still showed at the end.
"""

from __future__ import annotations

import itertools

from test_addon_helpers import ensure_registered

from addon.session.sequence import SequenceRun
from addon.session.shade import DONE
from addon.session.shots import Shot


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


class ScriptedShot:
    """A shot's run as the sequence sees it: `seconds` long, the server's estimate known
    once a quarter of it has passed (loading and export before that)."""

    def __init__(self, clock: Clock, seconds: float) -> None:
        self.clock, self.seconds = clock, seconds
        self.started = clock()
        self.outcome, self.text, self.eta_s = "", "", None

    @property
    def running(self) -> bool:
        return self.outcome == ""

    def tick(self, wait: float = 0.0) -> bool:
        spent = self.clock() - self.started
        if spent >= self.seconds:
            self.outcome, self.text, self.eta_s = DONE, "Take added", None
        elif spent > self.seconds / 4:
            self.eta_s = self.seconds - spent
        return self.running


def _shots(n: int) -> list[Shot]:
    return [Shot(f"sh{i}0", "Scene", "Cam", 1 + 8 * i, 8 * (i + 1), "marker") for i in range(n)]


def _sequence(seconds: list[float]) -> tuple[SequenceRun, Clock, list]:
    ensure_registered()
    clock = Clock()
    lengths = iter(seconds)
    seq = SequenceRun(_shots(len(seconds)), lambda shot: ScriptedShot(clock, next(lengths)), clock)
    shown = []  # (time, what the headline would say)
    while seq.running:
        seq.tick()
        clock.now += 1.0
        shown.append((clock(), seq.eta()))
    seq.close()
    end = clock()  # the truth is known afterwards: when it ended
    return seq, clock, [(t, s, end - t) for t, s in shown]


def test_never_rises_by_more_than_the_time_passed_and_is_gone_at_the_end() -> None:
    seq, _clock, rows = _sequence([20.0, 26.0, 18.0, 22.0])
    shown = [(t, s) for t, s, _ in rows if s is not None]
    assert shown, "an estimate while the sequence runs"
    for (t0, a), (t1, b) in itertools.pairwise(shown):
        assert b <= a + (t1 - t0) + 1e-9, (t0, a, b)
    assert seq.eta() is None and "left" not in seq.headline()
    assert seq.outcome == DONE


def test_within_a_quarter_of_the_truth_once_a_shot_is_shaded() -> None:
    _seq, _clock, rows = _sequence([20.0, 22.0, 19.0, 21.0])
    after_first = [(s, truth) for t, s, truth in rows if t > 500.0 + 22.0 and truth > 5]
    for shown, truth in after_first:
        assert abs(shown - truth) <= 0.25 * truth, (shown, truth)


def test_the_headline_says_it_while_running() -> None:
    ensure_registered()
    clock = Clock()
    seq = SequenceRun(_shots(2), lambda shot: ScriptedShot(clock, 10.0), clock)
    seq.tick()
    clock.now += 6.0
    seq.tick()
    assert seq.headline().startswith("Shot 1/2 sh00 (frames 1-8), about ")

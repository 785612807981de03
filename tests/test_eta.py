"""Estimates a user can trust: the server's seconds-left (server/eta.py) fed a scripted
job on a scripted clock, as the engine reports it (reading, controls, windowed denoising,
then decoding and saving interleaved frame by frame).

What must hold: after the first window the estimate is within 25% of the truth, it falls
with time (within the noise of the job's own pace), it never rises by more than the time
that passed, it is gone when the job is done, and a job of another engine or size never
borrows these figures.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import pytest
from storyshade.server.eta import JobEta, JobSize, Rates
from storyshade.wire.countdown import Countdown

SIZE = JobSize("animatediff", 512, 512, False, frames=32, steps=20)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def scripted_job(size: JobSize, seed: int, slow: float = 1.0) -> list[tuple[float, dict]]:
    """(seconds the unit took, the event reporting it) for a whole windowed job: each
    window-step takes 0.12 s per frame ±10%, a decode chunk of 8 frames 1.6 s, a save 0.05 s."""
    rng = random.Random(seed)

    def noisy(seconds: float) -> float:
        return seconds * slow * rng.uniform(0.9, 1.1)

    events: list[tuple[float, dict]] = [(noisy(3.0), {"stage": "loading", "done": 1, "total": 1})]
    n = size.frames
    events += [
        (noisy(0.02), {"stage": "reading passes", "done": i + 1, "total": n}) for i in range(n)
    ]
    events += [(noisy(0.05), {"stage": "controls", "done": i + 1, "total": n}) for i in range(n)]
    windows = 3
    total = size.steps * windows
    for k in range(total):
        step, window = divmod(k, windows)
        event = {"stage": "denoising", "done": k + 1, "total": total, "step": step + 1}
        events.append((noisy(0.12 * 16), {**event, "window": window + 1, "windows": windows}))
    for chunk in range(0, n, 8):
        events.append((noisy(1.6), {"stage": "decoding", "done": chunk + 8, "total": n}))
        for i in range(chunk, chunk + 8):
            events.append((noisy(0.05), {"stage": "saving", "done": i + 1, "total": n}))
    return events


def run(eta: JobEta, clock: Clock, events: list[tuple[float, dict]]) -> list[dict]:
    """Feed the events as they happen; each row: the event, what was shown, the truth."""
    left = sum(seconds for seconds, _ in events)
    rows = []
    for seconds, event in events:
        clock.now += seconds
        left -= seconds
        timing = eta.update(event)
        rows.append({**event, "shown": timing.get("eta_s"), "truth": left, "at": clock.now})
    eta.finish()
    return rows


def learned(runs: int = 1) -> Rates:
    """A server that has shaded `runs` jobs of this engine and size."""
    rates, clock = Rates(), Clock()
    for seed in range(runs):
        run(JobEta(SIZE, rates, clock), clock, scripted_job(SIZE, seed))
    return rates


def after_first_window(rows: list[dict]) -> list[dict]:
    first = next(i for i, r in enumerate(rows) if r["stage"] == "denoising")
    return [r for r in rows[first:] if r["truth"] > 2.0]  # the last seconds are all noise


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_within_a_quarter_of_the_truth_after_the_first_window(seed: int) -> None:
    clock = Clock()
    rows = run(JobEta(SIZE, learned(), clock), clock, scripted_job(SIZE, seed))
    for row in after_first_window(rows):
        assert row["shown"] is not None
        assert abs(row["shown"] - row["truth"]) <= 0.25 * row["truth"], row


def test_it_falls_with_time_and_never_rises_more_than_the_time_passed() -> None:
    clock = Clock()
    rows = run(JobEta(SIZE, learned(), clock), clock, scripted_job(SIZE, 21))
    shown = [(r["at"], r["shown"]) for r in rows if r["shown"] is not None]
    for (t0, a), (t1, b) in itertools.pairwise(shown):
        assert b <= a + (t1 - t0) + 0.01, (a, b, t1 - t0)  # 0.01: eta_s is rounded
    tail = [s for r in after_first_window(rows) if (s := r["shown"]) is not None]
    for i, value in enumerate(tail):  # monotone within the pace's noise (10%)
        assert max(tail[i:]) <= value * 1.1 + 1.0, (i, value, max(tail[i:]))


def test_a_slower_job_than_the_last_is_still_right_after_its_first_window() -> None:
    """The job's own pace beats what earlier jobs measured, once it has one."""
    clock = Clock()
    rows = run(JobEta(SIZE, learned(), clock), clock, scripted_job(SIZE, 5, slow=1.6))
    denoising = [r for r in after_first_window(rows) if r["stage"] == "denoising"]
    for row in denoising[len(denoising) // 10 :]:
        assert abs(row["shown"] - row["truth"]) <= 0.25 * row["truth"], row


def test_gone_when_done() -> None:
    clock, rates = Clock(), learned()
    eta = JobEta(SIZE, rates, clock)
    rows = run(eta, clock, scripted_job(SIZE, 3))
    assert rows[-1]["shown"] is not None and rows[-1]["shown"] < 1.0
    assert (eta.countdown.show(None) is None and eta.remaining() is None) or eta.remaining() == 0
    assert "eta_s" not in eta.update({"stage": "saving", "done": 32, "total": 32})


def test_another_engine_or_size_borrows_nothing() -> None:
    """What 512 px AnimateDiff jobs measured says nothing about a 256 px preview shot."""
    rates = learned(2)
    assert rates.predict(SIZE) == pytest.approx(
        sum(s for s, e in scripted_job(SIZE, 0) if e["stage"] != "loading"), rel=0.15
    )
    for other in (replace(SIZE, engine="preview"), replace(SIZE, width=256, height=256)):
        assert rates.predict(other) is None
        clock = Clock()
        eta = JobEta(other, rates, clock)
        clock.now += 1.0
        assert "eta_s" not in eta.update({"stage": "loading", "done": 1, "total": 1})


def test_a_first_job_guesses_nothing_before_its_own_pace() -> None:
    clock = Clock()
    rows = run(JobEta(SIZE, Rates(), clock), clock, scripted_job(SIZE, 8))
    assert all(r["shown"] is None for r in rows if r["stage"] == "loading")
    reading = [r for r in rows if r["stage"] == "reading passes"]
    assert reading[0]["shown"] is not None, "its own pace after the first frame read"


def test_cached_phases_teach_nothing() -> None:
    rates, clock = Rates(), Clock()
    eta = JobEta(SIZE, rates, clock)
    clock.now += 0.01
    eta.update({"stage": "controls", "done": 32, "total": 32, "cached": True})
    clock.now += 30.0
    eta.update({"stage": "denoising", "done": 1, "total": 60})
    assert rates.expected(SIZE, "controls") is None and rates.expected(SIZE, "denoising") is None


def test_countdown_counts_down_between_news_and_caps_a_jump_up() -> None:
    clock = Clock()
    countdown = Countdown(clock)
    assert countdown.show(None) is None
    assert countdown.show(100.0) == 100.0
    clock.now += 10
    assert countdown.show(None) == 90.0  # no news: the clock
    clock.now += 5
    assert countdown.show(200.0) == 95.0  # up by at most the 5 s that passed
    assert countdown.show(40.0) == 40.0  # down at once
    countdown.done()
    assert countdown.show(30.0) is None


def test_phases_already_done_are_not_counted_again() -> None:
    """The models load after the controls are built: what is left then is the denoising
    and the frames, not the reading and controls again."""
    rates, clock = learned(), Clock()
    eta = JobEta(SIZE, rates, clock)
    for stage in ("reading passes", "controls"):
        clock.now += 2.0
        eta.update({"stage": stage, "done": 32, "total": 32})
    clock.now += 1.0
    shown = eta.update({"stage": "loading", "done": 0, "total": 1})["eta_s"]
    assert shown == pytest.approx(
        rates.expected(SIZE, "denoising") + rates.expected(SIZE, "frames"), abs=0.05
    )

"""Cancellation is its own token, not a side effect of progress reporting (#12): a report
never stops anything, and a cancelled token stops the work at its next unit (here control
building, frame by frame, before any engine runs; the save loop, frame by frame; the stock
engine, step by step; the windowed engine's are in test_windowed.py and
test_engine_cancel.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from conftest import write_synthetic_bundle
from storyshade.bundle import load_bundle
from storyshade.cancel import CancelToken
from storyshade.controls import build_controls
from storyshade.engine.animatediff import StockAnimateDiffEngine
from storyshade.errors import Cancelled
from storyshade.models.loader import ModelCache
from storyshade.presets import resolve
from storyshade.progress import Reporter
from storyshade.render import render_bundle
from storyshade.settings import Settings
from storyshade.wire.states import Stage
from test_controls import box_depth
from test_windowed import controls_for, tiny_settings

FRAMES = 4


@pytest.fixture
def box_bundle(tmp_path: Path) -> Path:
    return write_synthetic_bundle(tmp_path / "box", frames=FRAMES, depth_fn=box_depth)


def stages(events: list[dict], stage: str) -> list[int]:
    return [e["done"] for e in events if e.get("stage") == stage]


def test_the_token_is_a_one_way_switch_seen_from_other_threads() -> None:
    token = CancelToken()
    assert not token.cancelled and not token.wait(0.01)
    token.check()  # not cancelled: nothing happens
    threading.Timer(0.05, token.cancel).start()
    assert token.wait(5)
    assert token.cancelled
    with pytest.raises(Cancelled):
        token.check()
    token.cancel()  # again: still cancelled, no error
    assert token.cancelled


def test_reporting_progress_never_cancels(box_bundle: Path) -> None:
    """A cancelled token that the work does not hold changes nothing: the reporter carries
    no cancellation, so every stage report goes through and the build completes."""
    elsewhere = CancelToken()
    elsewhere.cancel()
    events: list[dict] = []
    reporter = Reporter(events.append)
    reporter.stage(Stage.DENOISING, 1, 2)  # once a hidden cancellation point
    assert not hasattr(reporter, "check") and not hasattr(reporter, "cancel_event")

    def listener(event: dict) -> None:
        events.append(event)
        elsewhere.cancel()  # as a cancel for some other job would

    controls = build_controls(
        load_bundle(box_bundle), Settings(width=64, height=64), Reporter(listener)
    )
    assert len(controls.frames["depth"]) == FRAMES
    assert stages(events, Stage.CONTROLS) == list(range(1, FRAMES + 1))


@pytest.mark.parametrize(("stage", "at"), [(Stage.READING, 1), (Stage.CONTROLS, 2)])
def test_a_cancelled_token_stops_control_building_at_the_next_frame(
    box_bundle: Path, stage: str, at: int
) -> None:
    cancel = CancelToken()
    events: list[dict] = []

    def listener(event: dict) -> None:
        events.append(event)
        if event.get("stage") == stage and event["done"] == at:
            cancel.cancel()  # the user presses Cancel while frame `at` is being made

    with pytest.raises(Cancelled):
        build_controls(
            load_bundle(box_bundle),
            Settings(width=64, height=64),
            Reporter(listener),
            cancel=cancel,
        )
    assert stages(events, stage) == list(range(1, at + 1)), "no frame after the cancel"
    if stage == Stage.READING:
        assert not stages(events, Stage.CONTROLS), "the second pass never started"


def test_a_job_cancelled_before_it_starts_reads_nothing(box_bundle: Path) -> None:
    cancel = CancelToken()
    cancel.cancel()
    events: list[dict] = []
    with pytest.raises(Cancelled):
        build_controls(
            load_bundle(box_bundle),
            Settings(width=64, height=64),
            Reporter(events.append),
            cancel=cancel,
        )
    assert events == []


def cancelled_render(bundle: Path, out: Path, stage: str, done: int) -> list[dict]:
    """A preview render whose token is cancelled when `stage` reports `done`; its events."""
    cancel = CancelToken()
    events: list[dict] = []

    def listener(event: dict) -> None:
        events.append(event)
        if event.get("stage") == stage and event["done"] == done:
            cancel.cancel()

    settings = resolve("preview", {"width": 64, "height": 64})
    with pytest.raises(Cancelled):
        render_bundle(
            load_bundle(bundle), settings, out, [], reporter=Reporter(listener), cancel=cancel
        )
    return events


def test_a_render_cancelled_while_building_controls_never_reaches_the_engine(
    box_bundle: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    events = cancelled_render(box_bundle, out, Stage.CONTROLS, 1)
    assert stages(events, Stage.CONTROLS) == [1], "stopped inside control building"
    assert not [e for e in events if e.get("stage") in (Stage.SHADING, Stage.SAVING)]
    assert list(out.iterdir()) == []


def test_a_render_cancelled_while_saving_keeps_the_frames_it_saved(
    box_bundle: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    cancelled_render(box_bundle, out, Stage.SAVING, 2)
    assert len(list(out.glob("*.png"))) == 2, "two frames saved and kept; no third made"


def test_the_stock_engine_stops_after_the_step_in_flight(tiny_models: Path) -> None:
    """The stock pipeline is one diffusers call: its step callback checks the token, and a
    token cancelled before the job stops it at the model load."""
    engine = StockAnimateDiffEngine([tiny_models], ModelCache(size=1))
    cancel = CancelToken()
    events: list[dict] = []

    def listener(event: dict) -> None:
        events.append(event)
        if event.get("stage") == Stage.DENOISING:
            cancel.cancel()

    settings = tiny_settings(steps=3)
    with pytest.raises(Cancelled):
        list(engine.render(controls_for(8), settings, Reporter(listener), cancel=cancel))
    assert stages(events, Stage.DENOISING) == [1]

    events.clear()
    with pytest.raises(Cancelled):
        list(engine.render(controls_for(8), settings, Reporter(events.append), cancel=cancel))
    assert stages(events, Stage.LOADING) == [0], "stopped before loading the models"

"""The sidebar at its default width: text measured with Blender's font so nothing is cut,
the stage bar that only moves forward, and nothing left over from an earlier run."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import bpy
import pytest
from test_addon_helpers import FakeClient, ensure_registered, new_scene, png_bytes
from test_addon_panel import Layout

from addon.operators import modal
from addon.remote.protocol import Message
from addon.session import runtime
from addon.session.shade import CANCELLED, NETWORK, ShadeRequest, ShadeSession
from addon.ui import preview, sidebar, text_fit

DEFAULT_SIDEBAR = 280  # px at UI scale 1.0: what a new Blender window's N panel has


@pytest.fixture(autouse=True)
def scene():
    ensure_registered()
    runtime.health.record("", None, None)
    yield new_scene(frames=2)
    runtime.current = None
    bpy.context.preferences.view.ui_scale = 1.0


def _ctx(scene, scale: float, height: int = 1000):
    bpy.context.preferences.view.ui_scale = scale
    region = SimpleNamespace(width=int(DEFAULT_SIDEBAR * scale), height=height)
    return SimpleNamespace(scene=scene, region=region, preferences=bpy.context.preferences)


def _labels(log: list) -> list[str]:
    return [text for kind, text, *_ in log if kind == "label"]


@pytest.mark.parametrize("scale", [1.0, 1.5])
def test_every_label_fits_the_default_sidebar(scene, scale: float) -> None:
    ctx = _ctx(scene, scale)
    st = runtime.status(scene)
    st.text = "Take shot_take_003 added on channel 4"
    st.note = "The .blend is not saved: frames go to the temporary folder /tmp/storyshade/x"
    runtime.health.record(
        "http://127.0.0.1:8787",
        None,
        SimpleNamespace(problem="Connection refused", fix="start it with `storyshade serve`"),
    )
    log: list = []
    sidebar.STORYSHADE_PT_main.draw(SimpleNamespace(layout=Layout(log)), ctx)
    limit = text_fit.column_width(ctx, icon=False)
    labels = _labels(log)
    assert "Take shot_take_003 added on channel 4" in " ".join(labels)
    for text in labels:
        assert text_fit.text_width(text, ctx) <= limit, (text, limit)
    # Picker labels sit above their pickers, whole.
    assert {"Style:", "Camera/Motion:", "Resolution:", "Quality:", "Extra Presets:"} <= set(labels)


def test_wrap_measures_text_and_breaks_long_words(scene) -> None:
    ctx = _ctx(scene, 1.0)
    words = "a b c " * 30
    lines = text_fit.wrap(words, 100, ctx)
    assert len(lines) > 2 and all(text_fit.text_width(line, ctx) <= 100 for line in lines)
    assert " ".join(lines).split() == words.split()
    path = "/very/long/path/" * 10
    lines = text_fit.wrap(path, 120, ctx)
    assert "".join(lines) == path and all(text_fit.text_width(x, ctx) <= 120 for x in lines)
    wide = text_fit.text_width("Resolution", _ctx(scene, 1.5))
    assert wide > text_fit.text_width("Resolution", _ctx(scene, 1.0)), "scale changes width"


def test_preview_is_a_collapsible_sub_panel_sized_to_the_region(
    scene, tmp_path: Path, monkeypatch
) -> None:
    frame = tmp_path / "0001.png"
    frame.write_bytes(png_bytes())
    runtime.status(scene).preview_path = str(frame)
    if bpy.app.background:  # no icon system without a window; the image itself loads
        assert preview.icon_for(str(frame)) == 0 and preview.loaded()[0] == str(frame)
        monkeypatch.setattr(preview, "icon_for", lambda path: 7 if path else 0)
    log: list = []
    sidebar.STORYSHADE_PT_main.draw(SimpleNamespace(layout=Layout(log)), _ctx(scene, 1.0))
    assert ("panel", "storyshade_preview") in log
    at = log.index(("panel", "storyshade_preview"))
    assert (
        log.index(("operator", "storyshade.shade")) < at < log.index(("panel", "storyshade_look"))
    )
    short = sidebar.preview_scale(_ctx(scene, 1.0, height=400))
    tall = sidebar.preview_scale(_ctx(scene, 1.0, height=2000))
    assert short == pytest.approx(400 * sidebar.PREVIEW_SHARE / 20)  # the height limits it
    assert tall < 14 and tall * 20 <= DEFAULT_SIDEBAR, "never wider than the sidebar"


def _network_session(scene, tmp_path: Path) -> ShadeSession:
    request = ShadeRequest(settings={}, output_pattern=str(tmp_path / "{shot}" / "{take}"))
    session = ShadeSession(scene, FakeClient(), request)
    while session.phase != NETWORK:
        session.tick(wait=0.05)
    session.job.detach()
    return session


def test_stage_bar_only_moves_forward_and_unknown_amounts_show_no_bar(
    scene, tmp_path: Path
) -> None:
    session = _network_session(scene, tmp_path)
    assert session.text == "Uploading" and session.fraction is None
    seen = []

    def progress(stage: str, text: str, fraction: float, **data) -> None:
        session._apply(Message("progress", text=text, fraction=fraction, stage=stage, data=data))
        seen.append((session.stage, session.text, session.fraction))

    progress("loading", "Loading models", 1.0, done=1, total=1)
    assert seen[-1] == ("loading", "Loading models", None), "no full bar while loading"
    progress("denoising", "Denoising step 1/2, window 2/2", 0.5)
    progress("denoising", "Denoising step 2/2, window 1/2", 0.4)  # a late, smaller report
    assert seen[-1][2] == 0.5, "the bar never goes back within a stage"
    progress("decoding", "Decoding 1/2", 0.5, done=1, total=2)
    assert seen[-1] == ("frames", "Frames 0/2 received (1 decoded)", 0.0)
    frame = tmp_path / "f.png"
    frame.write_bytes(png_bytes())
    session._apply(Message("frame", frame=1, path=str(frame), text="Receiving 1/2"))
    assert (session.stage, session.text, session.fraction) == ("frames", "Frames 1/2 received", 0.5)
    assert session.status_line() == "Frames 1/2 received"
    session._apply(Message("progress", stage="queued", text="Queued #1"))
    assert session.status_line().startswith("Queued #1 · ") and session.status_line().endswith(" s")
    session.abandon()


def test_nothing_from_the_last_run_shows_in_the_next(scene, tmp_path: Path) -> None:
    session = _network_session(scene, tmp_path)
    session._apply(Message("note", text="control images ready"))
    assert session.note == "control images ready"
    session._apply(Message("cancelled", text="Cancelled"))
    assert session.outcome == CANCELLED and session.note == "", "server remarks end with the run"
    st = runtime.status(scene)
    st.preview_path = str(tmp_path / "old_take" / "0002.png")

    class Op(modal.ShadeRun):
        def report(self, *_a) -> None:
            pass

        def _build(self, context):
            return ShadeSession(context.scene, FakeClient(), ShadeRequest(settings={}))

    new = Op()._begin(bpy.context)
    assert st.preview_path == "", "the previous take's frame is not this run's preview"
    new.abandon()

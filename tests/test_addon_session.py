"""The shading run on Blender's main thread, driven by a simulated event loop.

ModalDriver.handle() is what the modal operator runs per event; these tests feed it
TIMER / ESC / other events in a loop (Blender's event loop does not run in background
mode) against a scripted fake server, with real Cycles exports of a 64x48 scene.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import bpy
import pytest
from test_addon_helpers import (
    WAIT_FOR_CANCEL,
    FakeClient,
    disable_prefs,
    enable_prefs,
    ensure_registered,
    new_scene,
)

from addon import compat
from addon.errors import StoryShadeError
from addon.export import bundle
from addon.operators import modal as modal_run
from addon.operators import shade
from addon.session import build, runtime
from addon.session.shade import (
    CANCELLED,
    DONE,
    EXPORTING,
    FAILED,
    NETWORK,
    ModalDriver,
    ShadeRequest,
    ShadeSession,
)
from addon.takes import take
from addon.ui import preview


@pytest.fixture(autouse=True)
def registered(tmp_path: Path):
    ensure_registered()
    scene = new_scene(frames=2)
    enable_prefs(output_pattern=str(tmp_path / "takes" / "{shot}" / "{take}"))
    yield scene
    runtime.current = None
    disable_prefs()


def _session(scene, fake: FakeClient, tmp_path: Path, **kw) -> ShadeSession:
    request = ShadeRequest(
        settings={"preset": "tiny", "seed": 7},
        output_pattern=str(tmp_path / "takes" / "{shot}" / "{take}"),
        server_url=fake.url,
        **kw,
    )
    return ShadeSession(scene, fake, request)


def _loop(driver: ModalDriver, until=lambda s: False, timeout: float = 60.0, extra_events=True):
    """Blender's event loop, simulated: timer ticks with other events in between."""
    texts: list[str] = []
    deadline = time.monotonic() + timeout
    result = {"RUNNING_MODAL"}
    while time.monotonic() < deadline:
        if extra_events:
            assert driver.handle("MOUSEMOVE", "NOTHING") == {"PASS_THROUGH"}
        result = driver.handle("TIMER", "NOTHING")
        if not texts or texts[-1] != driver.session.text:
            texts.append(driver.session.text)
        if result != {"RUNNING_MODAL"} or until(driver.session):
            return result, texts
        time.sleep(0.02)
    raise AssertionError(f"still running after {timeout}s: {texts}")


def test_modal_loop_exports_shades_and_adds_a_take(registered, tmp_path: Path) -> None:
    scene = registered
    fake = FakeClient()
    session = _session(scene, fake, tmp_path)
    driver = ModalDriver(session, lambda s: modal_run.show(s, bpy.context))
    result, _ = _loop(driver)
    assert result == {"FINISHED"} and session.outcome == DONE
    for expected in (
        "Exporting 1/2",
        "Exporting 2/2",
        "Queued #2",
        "Denoising step 2/2, window 2/2",
        "Frames 2/2 received",
    ):
        assert any(expected in t for t in session.log), (expected, session.log)
    # the bundle that went over the wire
    assert fake.submitted["files"] == ["frames/0001.exr", "frames/0002.exr", "shot.json"]
    assert json.loads(fake.submitted["manifest"])["frame_start"] == 1
    # the take strip, its files, and what the panel shows
    strip = compat.all_strips(scene.sequence_editor)[session.strip_name]
    assert strip["storyshade_job"] == "job1" and strip["storyshade_seed"] == 7
    assert (Path(strip["storyshade_folder"]) / "0002.png").is_file()
    st = runtime.status(scene)
    assert st.text.startswith("Take ") and st.progress == pytest.approx(1.0)
    assert st.preview_path.endswith("0002.png") and not st.is_error
    icon = preview.icon_for(st.preview_path)
    assert icon != 0 or bpy.app.background, "no icons without a UI, but the image loads:"
    assert preview.loaded() == (st.preview_path, (4, 3))


def test_export_is_one_frame_per_tick(registered, tmp_path: Path) -> None:
    session = _session(registered, FakeClient(), tmp_path)
    while session.phase != EXPORTING:
        session.tick(wait=0.1)
    session.tick()
    assert (session.phase, session.text) == (EXPORTING, "Exporting 1/2")
    session.tick()
    assert session.text == "Exporting 2/2"
    session.tick()
    assert session.phase == NETWORK
    session.abandon()


def test_esc_during_export_cancels_and_restores_the_scene(registered, tmp_path: Path) -> None:
    scene = registered
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.frame_set(2)
    fake = FakeClient()
    driver = ModalDriver(_session(scene, fake, tmp_path), lambda s: None)
    _loop(driver, until=lambda s: s.text == "Exporting 1/2")
    assert driver.handle("ESC", "PRESS") == {"CANCELLED"}
    assert driver.session.outcome == CANCELLED and "nothing was sent" in driver.session.text
    assert scene.render.engine == "BLENDER_WORKBENCH" and scene.frame_current == 2
    assert fake.count("submit") == 0
    assert scene.sequence_editor is None or not list(compat.all_strips(scene.sequence_editor))


def test_esc_during_denoising_cancels_the_server_job(registered, tmp_path: Path) -> None:
    script = [
        {"type": "state", "state": "running"},
        {"type": "progress", "stage": "denoising", "done": 1, "total": 20},
        WAIT_FOR_CANCEL,
    ]
    fake = FakeClient(script=script)
    driver = ModalDriver(
        _session(registered, fake, tmp_path), lambda s: modal_run.show(s, bpy.context)
    )
    _loop(driver, until=lambda s: s.text.startswith("Denoising"))
    assert driver.handle("ESC", "PRESS") == {"RUNNING_MODAL"}, "waits for the server to confirm"
    st = runtime.status(registered)
    assert st.text.startswith("Cancelling: waiting for the server") and not st.progress_known
    result, _ = _loop(driver)
    assert result == {"CANCELLED"} and driver.session.outcome == CANCELLED
    assert fake.count("cancel") == 1
    assert st.text.startswith("Cancelled: the server stopped job job1 ")
    assert st.text.endswith("s after Cancel; no frames were made")
    ed = registered.sequence_editor
    assert ed is None or not list(compat.all_strips(ed)), "a cancelled run adds no take"
    shot = tmp_path / "takes" / bundle.shot_name(registered)
    assert not shot.exists() or not list(shot.iterdir()), "no empty take folder is left"
    _folder, name, _ = take.next_take_dir(
        bundle.shot_name(registered), str(tmp_path / "takes" / "{shot}" / "{take}"), registered
    )
    assert name == "take_001", "the cancelled run used no take number"


def test_cancel_operator_stops_the_current_run(registered, tmp_path: Path) -> None:
    fake = FakeClient(script=[{"type": "state", "state": "running"}, WAIT_FOR_CANCEL])
    session = _session(registered, fake, tmp_path)
    runtime.current = session
    driver = ModalDriver(session, lambda s: None)
    _loop(driver, until=lambda s: s.text == "Starting")
    assert bpy.ops.storyshade.cancel() == {"FINISHED"}
    result, _ = _loop(driver)
    assert result == {"CANCELLED"} and fake.count("cancel") == 1


def test_server_failure_shows_problem_and_fix(registered, tmp_path: Path) -> None:
    error = {
        "error": "no motion adapter 'x' in the models folder",
        "fix": "run `storyshade models list`",
    }
    fake = FakeClient(script=[{"type": "state", "state": "failed", "error": error}])
    session = _session(registered, fake, tmp_path)
    result, _ = _loop(ModalDriver(session, lambda s: modal_run.show(s, bpy.context)))
    assert result == {"CANCELLED"} and session.outcome == FAILED
    st = runtime.status(registered)
    assert st.is_error and "no motion adapter" in st.text
    assert st.fix == "run `storyshade models list`"


def test_unreachable_server_fails_before_exporting(registered, tmp_path: Path) -> None:
    fake = FakeClient(unreachable=True)
    session = _session(registered, fake, tmp_path)
    result, _ = _loop(ModalDriver(session, lambda s: None))
    assert result == {"CANCELLED"} and "cannot reach" in session.error.problem
    assert not any(t.startswith("Exporting") for t in session.log)


def test_unwritable_take_folder_is_a_plain_error(registered, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    request = ShadeRequest(settings={}, output_pattern=str(blocker / "{shot}" / "{take}"))
    session = ShadeSession(registered, FakeClient(), request)
    result, _ = _loop(ModalDriver(session, lambda s: None))
    assert result == {"CANCELLED"} and session.outcome == FAILED
    assert "could not write" in session.error.problem and "Output Folder" in session.error.fix


def test_a_bug_ends_the_run_instead_of_leaving_it_busy(registered, tmp_path, monkeypatch) -> None:
    session = _session(registered, FakeClient(), tmp_path)
    monkeypatch.setattr(session, "_check", lambda wait: 1 / 0)
    result, _ = _loop(ModalDriver(session, lambda s: None))
    assert result == {"CANCELLED"} and "ZeroDivisionError" in session.error.problem


def test_no_camera_is_reported_before_anything_starts(registered, tmp_path: Path) -> None:
    registered.camera = None
    with pytest.raises(StoryShadeError, match="no active camera"):
        _session(registered, FakeClient(), tmp_path)


class _FakeWM:
    def __init__(self) -> None:
        self.windows: list = []
        self.timers: list = []
        self.handlers: list = []

    def event_timer_add(self, step, window=None):
        self.timers.append(step)
        return f"timer{len(self.timers)}"

    def event_timer_remove(self, timer) -> None:
        self.timers.remove(0.1)

    def modal_handler_add(self, op) -> bool:
        self.handlers.append(op)
        return True


class _Op:
    """The real operator's methods on a plain object: Blender cannot instantiate one
    outside its event system, but the methods are ordinary functions."""

    invoke = shade.STORYSHADE_OT_shade.invoke
    modal = shade.STORYSHADE_OT_shade.modal
    execute = shade.STORYSHADE_OT_shade.execute
    cancel = shade.STORYSHADE_OT_shade.cancel
    _begin = shade.STORYSHADE_OT_shade._begin
    _build = shade.STORYSHADE_OT_shade._build
    _end = shade.STORYSHADE_OT_shade._end
    _update = shade.STORYSHADE_OT_shade._update
    _stop_timer = shade.STORYSHADE_OT_shade._stop_timer

    def __init__(self) -> None:
        self.reports: list[tuple[set, str]] = []

    def report(self, kind, text) -> None:
        self.reports.append((kind, text))


def test_operator_invoke_and_modal_with_simulated_events(registered, tmp_path, monkeypatch) -> None:
    fake = FakeClient()
    monkeypatch.setattr(build, "Client", lambda url, token: fake)
    monkeypatch.setattr(modal_run, "background", lambda: False)
    registered.storyshade.quality = "tiny"
    wm = _FakeWM()
    ctx = SimpleNamespace(
        scene=registered,
        window=None,
        window_manager=wm,
        workspace=bpy.context.workspace,
        preferences=bpy.context.preferences,
    )
    op = _Op()
    assert op.invoke(ctx, SimpleNamespace(type="LEFTMOUSE", value="PRESS")) == {"RUNNING_MODAL"}
    assert wm.timers == [modal_run.TICK_SECONDS] and wm.handlers == [op]
    assert runtime.busy() and not shade.STORYSHADE_OT_shade.poll(bpy.context)
    result = {"RUNNING_MODAL"}
    deadline = time.monotonic() + 60
    while result == {"RUNNING_MODAL"} and time.monotonic() < deadline:
        result = op.modal(ctx, SimpleNamespace(type="TIMER", value="NOTHING"))
        time.sleep(0.02)
    assert result == {"FINISHED"}, op.reports
    assert wm.timers == [] and runtime.current is None
    assert op.reports[-1][0] == {"INFO"} and "take_001" in op.reports[-1][1]
    assert fake.submitted["settings"]["preset"].endswith(",tiny")
    strip_inputs = json.loads(
        next(iter(take.shot_strips(registered, bundle.shot_name(registered))))["storyshade_inputs"]
    )
    assert strip_inputs["quality"] == "tiny"


def test_operator_runs_synchronously_in_background_mode(registered, tmp_path, monkeypatch) -> None:
    """Timers never fire under `blender -b`: the button's operator must still finish."""
    assert bpy.app.background
    fake = FakeClient()
    monkeypatch.setattr(build, "Client", lambda url, token: fake)
    assert bpy.ops.storyshade.shade("INVOKE_DEFAULT") == {"FINISHED"}
    assert bpy.ops.storyshade.shade() == {"FINISHED"}
    names = sorted(s.name for s in take.shot_strips(registered, bundle.shot_name(registered)))
    assert [n.rsplit("_", 1)[-1] for n in names] == ["001", "002"]
    assert runtime.current is None


def test_operator_failure_raises_with_fix_in_background(registered, monkeypatch) -> None:
    monkeypatch.setattr(build, "Client", lambda url, token: FakeClient(unreachable=True))
    with pytest.raises(RuntimeError, match="cannot reach"):
        bpy.ops.storyshade.shade()
    assert runtime.status(registered).is_error and runtime.status(registered).fix

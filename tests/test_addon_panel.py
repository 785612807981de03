"""The sidebar's draw code in every state, against a layout that checks each call.

Background mode has no regions to draw into, so a recording layout stands in: it fails
on a property the data does not have or an operator that is not registered, which is
what breaks a panel at draw time in Blender.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import bpy
import pytest
from test_addon_helpers import REPO, FakeClient, ensure_registered, new_scene, png_bytes

import addon
from addon.session import runtime
from addon.session.shade import ShadeRequest, ShadeSession
from addon.ui import looks, preview, sidebar


class Layout:
    """Enough of bpy.types.UILayout to run the panel's draw code, recording what it shows."""

    def __init__(self, log: list) -> None:
        self.log = log
        self.enabled = True
        self.scale_y = 1.0
        self.use_property_split = False

    def _child(self, *_a, **_k) -> Layout:
        return Layout(self.log)

    column = row = box = split = _child

    def menu(self, idname: str, **kw) -> None:
        assert hasattr(bpy.types, idname), f"menu {idname} is not registered"
        self.log.append(("menu", idname))

    def panel(self, idname: str, default_closed: bool = False):
        assert "panel" in bpy.types.UILayout.bl_rna.functions  # collapsible sections, 4.1+
        self.log.append(("panel", idname))
        return Layout(self.log), Layout(self.log)

    def prop(self, data, name: str, **kw) -> None:
        assert name in data.bl_rna.properties, f"{data} has no property {name}"
        self.log.append(("prop", name))

    def operator(self, idname: str, **kw) -> SimpleNamespace:
        module, _, op = idname.partition(".")
        assert (
            hasattr(getattr(bpy.ops, module), op) and getattr(getattr(bpy.ops, module), op).idname()
        )
        self.log.append(("operator", idname))
        return SimpleNamespace()  # the button's properties, set by the caller

    def label(self, text: str = "", icon: str = "NONE") -> None:
        assert icon in bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items
        self.log.append(("label", text))

    def progress(self, factor: float = 0.0, type: str = "BAR", text: str = "") -> None:
        assert "progress" in bpy.types.UILayout.bl_rna.functions
        self.log.append(("progress", round(factor, 3), text))

    def template_icon(self, icon_value: int = 0, scale: float = 1.0) -> None:
        assert "template_icon" in bpy.types.UILayout.bl_rna.functions
        self.log.append(("icon", icon_value))

    def separator(self) -> None:
        pass


def _draw(cls, context) -> list:
    log: list = []
    cls.draw(SimpleNamespace(layout=Layout(log)), context)
    return log


@pytest.fixture(autouse=True)
def scene():
    ensure_registered()
    runtime.health.record("", None, None)  # earlier runs' answers are not this test's
    yield new_scene(frames=2)
    runtime.current = None


def _ctx(scene):
    return SimpleNamespace(scene=scene, region=SimpleNamespace(width=280))


def test_idle_panel_shows_server_presets_prompts_range_and_shade(scene) -> None:
    log = _draw(sidebar.STORYSHADE_PT_main, _ctx(scene))
    props = {name for kind, name, *_ in log if kind == "prop"}
    assert {
        "style",
        "camera",
        "resolution",
        "quality",
        "prompt",
        "negative_prompt",
        "seed",
    } <= props
    assert {"use_scene_range", "use_control_weights", "depth_weight", "take_mode"} <= props
    ops = [name for kind, name, *_ in log if kind == "operator"]
    assert ops == [
        "storyshade.server_check",
        "storyshade.server_start",
        "storyshade.shade",
        "storyshade.reattach",
        "storyshade.reference_add",  # Style References (docs/references.md)
    ]
    labels = [text for kind, text, *_ in log if kind == "label"]
    assert "Not checked yet" in labels
    assert any("flat colour" in t or "cel" in t.lower() for t in labels), "style description"


def test_motion_scale_sits_under_the_camera_picker(scene) -> None:
    """The presets' value, said in words, until the override is ticked; then a slider."""
    opts = scene.storyshade
    opts.camera = "calm"
    log = _draw(sidebar.STORYSHADE_PT_main, _ctx(scene))
    at = log.index(("prop", "camera"))
    after = log[at : log.index(("prop", "resolution"))]
    assert ("prop", "use_motion_scale") in after and ("prop", "motion_scale") not in after
    assert ("label", "0.70 from the presets") in after
    opts.use_motion_scale = True
    log = _draw(sidebar.STORYSHADE_PT_main, _ctx(scene))
    after = log[log.index(("prop", "camera")) : log.index(("prop", "resolution"))]
    assert ("prop", "motion_scale") in after
    assert not any(kind == "label" and "from the presets" in t for kind, t, *_ in after)


def test_motion_scale_is_greyed_with_the_reason_where_the_engine_refuses_it(scene) -> None:
    opts = scene.storyshade
    opts.quality, opts.use_motion_scale = "wan-tiny", True
    log = _draw(sidebar.STORYSHADE_PT_main, _ctx(scene))
    after = log[log.index(("prop", "camera")) : log.index(("prop", "resolution"))]
    said = " ".join(text for kind, text, *_ in after if kind == "label")  # wrapped lines
    assert "The 'wan-vace' engine cannot scale motion" in said
    assert ("prop", "motion_scale") not in after


def test_running_panel_shows_progress_cancel_and_preview(scene, tmp_path: Path) -> None:
    session = ShadeSession(scene, FakeClient(), ShadeRequest(settings={}))
    runtime.current = session
    st = runtime.status(scene)
    st.text, st.progress = "Denoising step 12/20, window 3/7", 0.4
    st.progress_known = True
    frame = tmp_path / "0001.png"
    frame.write_bytes(png_bytes())
    st.preview_path = str(frame)
    log = _draw(sidebar.STORYSHADE_PT_main, _ctx(scene))
    assert ("label", "Denoising step 12/20, window 3/7") in log
    assert ("progress", 0.4, "40%") in log
    assert ("operator", "storyshade.cancel") in log and ("operator", "storyshade.shade") not in log
    assert preview.loaded()[0] == str(frame), "the latest frame is loaded for the panel"
    if not bpy.app.background:
        assert any(kind == "icon" for kind, *_ in log)
    session.abandon()


def test_error_shows_problem_and_fix(scene) -> None:
    st = runtime.status(scene)
    st.text, st.fix, st.is_error = "cannot reach the StoryShade server", "press Start", True
    labels = [
        text for kind, text, *_ in _draw(sidebar.STORYSHADE_PT_main, _ctx(scene)) if kind == "label"
    ]
    assert "cannot reach the StoryShade server" in labels and "Fix: press Start" in labels


def test_sequencer_panel_shows_the_active_take(scene, tmp_path: Path) -> None:
    from addon.takes import take

    folder, name, _ = take.next_take_dir("shot", str(tmp_path / "{shot}" / "{take}"), scene)
    strip = take.add_take_strip(
        scene, folder, [1, 2], "shot", name, {"job": "j1", "settings": {"seed": 4}}
    )
    scene.sequence_editor.active_strip = strip
    log = _draw(sidebar.STORYSHADE_PT_sequencer, _ctx(scene))
    assert ("label", "Take: shot_take_001") in log and ("label", "Seed: 4") in log
    assert ("operator", "storyshade.take_use_settings") in log


def _labels(log: list) -> list[str]:
    return [text for kind, text, *_ in log if kind == "label"]


def test_look_panel_warns_about_a_look_without_prompt(scene) -> None:
    cube = scene.objects["Cube"]
    cube.storyshade_look.enabled = True
    ctx = SimpleNamespace(scene=scene, object=cube, region=SimpleNamespace(width=280))
    log = _draw(looks.STORYSHADE_PT_object_look, ctx)
    assert ("prop", "prompt") in log and ("prop", "weight") in log
    assert " ".join(_labels(log)).startswith("No prompt: Shade stops")
    cube.storyshade_look.prompt = "a wooden crate"
    labels = _labels(_draw(looks.STORYSHADE_PT_object_look, ctx))
    assert labels == ["References: none"], "no warning once it has a prompt"


def test_look_panel_says_what_an_object_without_a_look_inherits(scene) -> None:
    """Not the object's own greyed, empty fields: they read as a look without a prompt."""
    cube = scene.objects["Cube"]
    ctx = SimpleNamespace(scene=scene, object=cube, region=SimpleNamespace(width=280))
    log = _draw(looks.STORYSHADE_PT_object_look, ctx)
    assert ("prop", "prompt") not in log and "shot's prompt" in " ".join(_labels(log))
    girls = bpy.data.collections.new("Girl")
    scene.collection.children.link(girls)
    girls.objects.link(cube)
    girls.storyshade_look.enabled, girls.storyshade_look.prompt = True, "a girl in a red coat"
    text = " ".join(_labels(_draw(looks.STORYSHADE_PT_object_look, ctx)))
    assert "collection 'Girl'" in text and "a girl in a red coat" in text
    coll_ctx = SimpleNamespace(scene=scene, collection=girls, region=SimpleNamespace(width=280))
    assert ("prop", "prompt") in _draw(looks.STORYSHADE_PT_collection_look, coll_ctx)


def test_sidebar_looks_open_and_named_apart_from_the_style_section(scene) -> None:
    cls = looks.STORYSHADE_PT_looks
    assert cls.bl_label == "Object Looks" and "DEFAULT_CLOSED" not in getattr(
        cls, "bl_options", set()
    )
    ctx = SimpleNamespace(scene=scene, region=SimpleNamespace(width=280))
    assert "No looks: one prompt for the shot" in _labels(_draw(cls, ctx))
    scene.objects["Cube"].storyshade_look.enabled = True
    log = _draw(cls, ctx)
    assert ("prop", "name") in log and ("prop", "prompt") in log
    assert any(t.startswith("No prompt") for t in _labels(log))


def test_unregister_and_register_again(scene) -> None:
    addon.unregister()
    assert not hasattr(bpy.types.Scene, "storyshade")
    assert not hasattr(bpy.types, "STORYSHADE_PT_main") and not hasattr(
        bpy.types, "STORYSHADE_OT_shade"
    )
    addon.register()
    assert hasattr(bpy.types.Scene, "storyshade") and hasattr(bpy.types, "STORYSHADE_PT_sequencer")


def test_blender_exits_cleanly_after_the_add_on_ran() -> None:
    """Regression: under bpy 4.2, a PropertyGroup with Python methods, a registered CLI
    command, or an enum update callback whose module globals hold bpy crashed the process
    at exit (and a dynamic enum callback hung 4.5)."""
    script = (
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
        "import bpy, addon\n"
        "from addon.settings import props\n"
        "addon.register()\n"
        "opts = bpy.context.scene.storyshade\n"
        "opts.quality = 'tiny'\n"
        "assert props.overrides(opts)['preset'].endswith('tiny')\n"
        "addon.unregister()\n"
        "print('CLEAN')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0 and "CLEAN" in run.stdout, run.stderr[-2000:]

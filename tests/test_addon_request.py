"""One request for the sidebar and the headless CLI, and re-shading with the take's own
settings.

The panel's Shade and `blender -b FILE -c storyshade shade` build their request in one
place (session/build.py: shade_request): the CLI starts from the .blend's sidebar and puts the
flags given over it, so the same scene and flags make the same request. The user's
negative prompt is added after the presets' (as the prompt is wrapped in the style's
words), on both sides.

Re-shade Frames (panel) and `shade --take` (CLI) use the take's stored settings, looks and
references unless the user says otherwise: the Take sub-panel's "Use the Sidebar's
Settings", or on the command line the flags given.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import bpy
import pytest
from test_addon_helpers import (
    disable_prefs,
    enable_prefs,
    ensure_registered,
    new_scene,
    png_bytes,
)

from addon.errors import InputError
from addon.looks.resolve import LookOverrides
from addon.operators import cli, reshade
from addon.session import build
from addon.settings import presets, request_settings
from addon.takes import take
from addon.ui import sidebar

URL = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def scene(tmp_path: Path):
    ensure_registered()
    scene = new_scene(frames=4)
    enable_prefs(output_pattern=str(tmp_path / "takes" / "{shot}" / "{take}"))
    yield scene
    disable_prefs()


def _panel(scene):
    return build.shade_request(scene, URL, context=bpy.context)


def _cli(scene, *flags: str):
    return cli.build_request(cli._parser().parse_args(["shade", *flags]), scene, URL)


def test_the_cli_shades_what_the_sidebar_says(scene, tmp_path: Path) -> None:
    opts = scene.storyshade
    opts.style, opts.quality = "anime-cel", "tiny"
    opts.prompt, opts.negative_prompt, opts.seed = "a rainy alley", "people", 42
    opts.use_control_weights, opts.depth_weight = True, 1.5
    opts.use_color_match, opts.color_match_strength = True, 0.7
    opts.use_scene_range, opts.frame_start, opts.frame_end = False, 2, 3
    opts.take_mode = take.REPLACE
    panel_request, cli_request = _panel(scene), _cli(scene)
    assert cli_request == panel_request
    settings = panel_request.settings
    assert settings["seed"] == 42 and settings["color_match"] == {"strength": 0.7}
    assert (panel_request.frame_start, panel_request.frame_end) == (2, 3)


def test_flags_over_the_sidebar_make_the_request_the_panel_makes(scene) -> None:
    flags = ("--prompt", "night", "--negative-prompt", "blurry", "--seed", "9")
    flags += ("--preset", "tiny", "--frames", "2-3", "--replace")
    cli_request = _cli(scene, *flags)
    opts = scene.storyshade  # the same choices, made in the sidebar
    opts.prompt, opts.negative_prompt, opts.seed, opts.preset = "night", "blurry", 9, "tiny"
    opts.use_scene_range, opts.frame_start, opts.frame_end = False, 2, 3
    opts.take_mode = take.REPLACE
    assert cli_request == _panel(scene)
    # --preset works as Extra Presets: it replaces its layer's pick (quality), nothing else
    assert cli_request.settings["preset"] == "anime-cel,static,512x512,tiny"


def test_the_negative_prompt_is_added_to_the_presets_on_both_sides(scene) -> None:
    style_negative = presets.find("anime-cel").settings["negative_prompt"]
    expected = f"{style_negative}, blurry"
    assert _cli(scene, "--negative-prompt", "blurry").settings["negative_prompt"] == expected
    scene.storyshade.negative_prompt = "blurry"
    assert _panel(scene).settings["negative_prompt"] == expected


def test_colour_match_is_refused_where_the_engine_has_no_windows(scene, tmp_path) -> None:
    opts = scene.storyshade
    opts.quality, opts.use_color_match = "preview", True
    with pytest.raises(InputError, match="'preview' engine"):
        _panel(scene)
    with pytest.raises(InputError, match="untick Colour Match"):
        _cli(scene)
    opts.quality = "tiny"
    key = tmp_path / "key.png"
    key.write_bytes(png_bytes())
    opts.color_match_image = str(key)
    assert _panel(scene).settings["color_match"] == {"strength": 1.0, "image": str(key)}


def _shade_button(scene):
    """The request the sidebar's Shade button makes (build_session, as the operator)."""
    context = SimpleNamespace(scene=scene, preferences=bpy.context.preferences)
    session = build.build_session(context)
    session.cancel()  # only its request matters here
    return session.request


def test_the_sidebars_motion_scale_goes_with_the_panels_request_and_the_clis(scene) -> None:
    """Motion Scale, under the Camera/Motion picker: the presets' value unless ticked, then
    the sidebar's, in what Shade sends, in the CLI's request of the .blend, on the take."""
    opts = scene.storyshade
    opts.camera, opts.quality = "calm", "tiny"
    assert "motion_scale" not in _shade_button(scene).settings, "the calm preset's applies"
    opts.use_motion_scale, opts.motion_scale = True, 0.35
    request = _shade_button(scene)
    assert request.settings["motion_scale"] == 0.35
    assert request.settings["preset"] == "anime-cel,calm,512x512,tiny"
    assert request.inputs["use_motion_scale"] is True
    assert request.inputs["motion_scale"] == pytest.approx(0.35)
    assert _cli(scene).settings == request.settings, "blender -c storyshade shade: the same"
    opts.use_motion_scale = False
    assert "motion_scale" not in _panel(scene).settings


def test_motion_scale_is_refused_where_the_engine_has_no_motion_modules(scene) -> None:
    opts = scene.storyshade
    opts.quality, opts.use_motion_scale = "wan-tiny", True
    with pytest.raises(InputError, match="'wan-vace' engine, which has none"):
        _panel(scene)
    with pytest.raises(InputError, match="untick Motion Scale"):
        _cli(scene)
    opts.quality = "preview"  # the preview engine reads no motion, and says it ignores it
    assert _panel(scene).settings["motion_scale"] == 1.0


def test_what_shade_refuses_is_what_the_engines_declare() -> None:
    """The add-on refuses a sidebar setting, before exporting, for exactly the engines
    whose declaration neither reads nor ignores its feature (the server's 400)."""
    pytest.importorskip("pydantic", reason="the backend's declarations (not in bpy 4.2's venv)")
    from storyshade import engines

    for setting, feature in (("color_match", "color_match"), ("motion_scale", "motion")):
        refusing = [
            name
            for name in engines.names()
            if not engines.capabilities(name).honours(feature)
            and feature not in engines.capabilities(name).ignores
        ]
        assert sorted(request_settings.REFUSED[setting].engines) == sorted(refusing), setting


# -- re-shading: the take's own settings by default ------------------------------------------
REGIONS = [{"id": 1, "name": "Cube", "prompt": "a crate", "negative": "", "weight": 1.0}]


def _take(scene, tmp_path: Path):
    """A `tiny` take of frames 1-4 with a look on the Cube, as a run leaves it."""
    folder, name, _ = take.next_take_dir("shot", str(tmp_path / "takes/{shot}/{take}"), scene)
    for frame in range(1, 5):
        (folder / f"{frame:04d}.png").write_bytes(png_bytes())
    settings = {"preset": "anime-cel,static,512x512,tiny", "seed": 5, "prompt": "dusk"}
    info = {"job": "j1", "settings": settings, "looks": REGIONS}
    strip = take.add_take_strip(scene, folder, [1, 2, 3, 4], "shot", name, info)
    scene.sequence_editor.active_strip = strip
    return strip


def _reshade(scene):
    context = SimpleNamespace(scene=scene, preferences=bpy.context.preferences)
    session = reshade.build_reshade_session(context)
    session.cancel()  # only its request matters here
    return session.request


def test_reshade_uses_the_takes_settings_not_the_sidebars(scene, tmp_path) -> None:
    _take(scene, tmp_path)
    opts = scene.storyshade
    opts.quality, opts.prompt, opts.seed = "preview", "noon", 0  # the sidebar moved on
    opts.reshade_start, opts.reshade_end = 2, 3
    request = _reshade(scene)
    assert request.settings["preset"].endswith(",tiny") and request.settings["seed"] == 5
    assert request.settings["prompt"] == "dusk"
    assert request.looks == LookOverrides({"Cube": _look("Cube")}, {}, only=True)
    assert request.style_references == [], "the take had none: the .blend's are not added"


def _look(name: str):
    from addon.wire.looks import Look

    return Look(name, "a crate", "", 1.0, None)


def test_reshade_with_the_sidebars_settings_is_a_choice(scene, tmp_path) -> None:
    _take(scene, tmp_path)
    opts = scene.storyshade
    opts.quality, opts.prompt, opts.seed = "preview", "noon", 1
    opts.reshade_start, opts.reshade_end = 2, 3
    opts.reshade_use_sidebar = True
    request = _reshade(scene)
    assert request.settings["preset"].endswith(",preview") and request.settings["seed"] == 1
    assert request.settings["prompt"] == "noon" and request.looks is None


def test_the_take_sub_panel_says_which_settings_re_shade_uses(scene, tmp_path) -> None:
    _take(scene, tmp_path)
    context = SimpleNamespace(scene=scene, region=SimpleNamespace(width=280))
    log: list = []
    sidebar._take(_Recorder(log), context)
    assert "With this take's own settings" in " ".join(log), log
    assert "prop reshade_use_sidebar" in log
    scene.storyshade.reshade_use_sidebar = True
    log.clear()
    sidebar._take(_Recorder(log), context)
    said = " ".join(log)
    assert "With the sidebar's settings:" in said and "seed 0" in said, log


def test_cli_take_changes_only_what_a_flag_gives(scene, tmp_path) -> None:
    strip = _take(scene, tmp_path)
    scene.storyshade.prompt = "noon"  # the sidebar is not the take's: it is not used
    request = _cli(scene, "--take", strip.name, "--frames", "2-3", "--seed", "8")
    assert request.settings == {
        "preset": "anime-cel,static,512x512,tiny",
        "seed": 8,
        "prompt": "dusk",
    }
    assert request.looks.only and set(request.looks.objects) == {"Cube"}
    request = _cli(scene, "--take", strip.name, "--frames", "2-3", "--preset", "preview")
    assert request.settings["preset"] == "anime-cel,static,512x512,preview"
    assert request.settings["seed"] == 5


class _Recorder:
    """A layout that records labels ("text") and properties ("prop NAME")."""

    def __init__(self, log: list) -> None:
        self.log = log

    def __getattr__(self, name):
        return lambda *a, **k: _Recorder(self.log)

    def __setattr__(self, name, value) -> None:
        if name == "log":
            object.__setattr__(self, name, value)

    def panel(self, *_a, **_k):
        return _Recorder(self.log), _Recorder(self.log)

    def label(self, text: str = "", **_k) -> None:
        self.log.append(text)

    def prop(self, _data, name: str, **_k) -> None:
        self.log.append(f"prop {name}")

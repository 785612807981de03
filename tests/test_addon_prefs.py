"""Preferences, the preset pickers, the settings JSON the panel sends, and finding the
Python that runs a local server."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import bpy
import pytest
from test_addon_helpers import REPO, disable_prefs, enable_prefs, ensure_registered, new_scene

from addon.errors import StoryShadeError
from addon.remote import server_local
from addon.remote.client import DEFAULT_URL
from addon.remote.server_local import HealthCheck
from addon.settings import prefs, presets, props
from addon.takes import take


@pytest.fixture(autouse=True)
def scene():
    ensure_registered()
    scene = new_scene(frames=2)
    yield scene
    disable_prefs()


# -- preferences --------------------------------------------------------------------------
def test_preferences_defaults_and_reads(scene) -> None:
    assert prefs.server() == (DEFAULT_URL, None), "no preferences yet: defaults"
    assert prefs.value("output_pattern", default=take.DEFAULT_PATTERN) == take.DEFAULT_PATTERN
    p = enable_prefs()
    assert p.server_url == DEFAULT_URL and p.output_pattern == take.DEFAULT_PATTERN
    assert p.token == "" and p.server_python == "" and p.models_dir == ""
    enable_prefs(server_url=" http://127.0.0.1:9999 ", token="s3cret", server_python="/opt/py")
    assert prefs.server() == ("http://127.0.0.1:9999", "s3cret")
    assert prefs.value("server_python") == "/opt/py"
    assert prefs.StoryShadePreferences.bl_rna.properties["token"].subtype == "PASSWORD"


def test_preferences_id_is_the_extension_package() -> None:
    assert prefs.ADDON_ID == "addon"  # imported as `addon` here; bl_ext.<repo>.<id> installed
    assert prefs.StoryShadePreferences.bl_idname == prefs.ADDON_ID


# -- presets ------------------------------------------------------------------------------
def test_shipped_presets_are_listed_with_descriptions() -> None:
    layers = presets.load()
    assert set(layers) == set(presets.LAYERS)
    for layer, name in presets.DEFAULTS.items():
        info = next(p for p in layers[layer] if p.name == name)
        assert info.description and "\n" not in info.description
    assert presets.find("tiny").layer == "quality"


def test_enum_numbers_are_stable_and_defaults_come_first(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(presets, "FRESH_S", 0.0)  # look at the folder at every call
    for layer, name in presets.DEFAULTS.items():
        assert presets.enum_number(layer, name) == 0
    assert presets.enum_number("style", "noir") == presets.enum_number("style", "noir") > 0
    (tmp_path / "style").mkdir()
    (tmp_path / "style" / "noir.toml").write_text('description = "Ink"\n[settings]\n', "utf-8")
    assert [p.name for p in presets.load(tmp_path)["style"]] == ["noir"]
    (tmp_path / "style" / "ghibli.toml").write_text('description = "Soft"\n', "utf-8")
    assert [p.name for p in presets.load(tmp_path)["style"]] == ["ghibli", "noir"], "re-read"
    (tmp_path / "style" / "broken.toml").write_text("description = ", "utf-8")
    broken = presets.find("broken", tmp_path)
    assert broken is not None and "unreadable" in broken.description


def test_pickers_keep_their_choice_when_presets_are_added(scene) -> None:
    opts = scene.storyshade
    assert (opts.style, opts.camera, opts.resolution, opts.quality) == tuple(
        presets.DEFAULTS[layer] for layer in presets.LAYERS
    )
    opts.quality = "tiny"
    presets._cache.clear()  # as if a preset file had been added: items are rebuilt
    assert opts.quality == "tiny"
    with pytest.raises(TypeError):
        opts.quality = "no-such-preset"


# -- the settings JSON --------------------------------------------------------------------
def test_overrides_add_the_users_words_to_the_style(scene) -> None:
    opts = scene.storyshade
    style = presets.find("anime-cel").settings
    assert props.overrides(opts) == {"seed": 0, "preset": "anime-cel,static,512x512,standard"}
    opts.prompt, opts.negative_prompt, opts.seed = "rainy alley", "people", 9
    out = props.overrides(opts)
    # The server wraps `prompt` in the style's prompt_prefix/suffix; an older style that
    # sets `prompt` itself gets the user's words appended here instead.
    expected = f"{style['prompt']}, rainy alley" if "prompt" in style else "rainy alley"
    assert out["prompt"] == expected
    assert out["negative_prompt"] == f"{style['negative_prompt']}, people"
    assert out["seed"] == 9


def test_overrides_control_weights_only_for_controls_the_presets_define(scene) -> None:
    opts = scene.storyshade
    opts.use_control_weights = True
    opts.depth_weight, opts.normal_weight = 1.25, 0.5
    assert props.overrides(opts)["controls"] == {"depth": {"scale": 1.25}, "normal": {"scale": 0.5}}
    opts.preset = "tiny"  # an extra preset replaces its layer's pick (quality: standard)
    assert props.overrides(opts)["preset"] == "anime-cel,static,512x512,tiny"
    opts.use_control_weights = False
    assert "controls" not in props.overrides(opts)


def test_overrides_are_valid_server_settings(scene) -> None:
    resolve = pytest.importorskip("storyshade.presets", reason="backend not installed").resolve
    opts = scene.storyshade
    opts.quality, opts.prompt, opts.use_control_weights, opts.depth_weight = "tiny", "x", True, 2.0
    settings = dict(props.overrides(opts))
    resolved = resolve(settings.pop("preset"), settings)
    assert resolved.controls["depth"].scale == 2.0 and resolved.controls["depth"].model
    assert resolved.prompt == "x" and resolved.full_prompt.endswith(", x")  # inside the style
    assert resolved.width == 64


def test_frame_range_is_the_scenes_or_custom(scene) -> None:
    opts = scene.storyshade
    assert props.frame_range(opts) == (None, None)
    opts.use_scene_range, opts.frame_start, opts.frame_end = False, 5, 9
    assert props.frame_range(opts) == (5, 9)


def test_panels_draw_without_errors(scene) -> None:
    """Both sidebar panels are registered where the issue asks for them."""
    from addon.ui import sidebar

    assert sidebar.STORYSHADE_PT_main.bl_space_type == "VIEW_3D"
    assert sidebar.STORYSHADE_PT_sequencer.bl_space_type == "SEQUENCE_EDITOR"
    for cls in (sidebar.STORYSHADE_PT_main, sidebar.STORYSHADE_PT_sequencer):
        assert cls.bl_category == "StoryShade" and cls.bl_region_type == "UI"
        assert hasattr(bpy.types, cls.bl_idname)


# -- local server -------------------------------------------------------------------------
def _exe(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_server_command_from_the_preference(tmp_path: Path) -> None:
    py = _exe(tmp_path / "env" / "bin" / "python")
    assert server_local.detect_command(str(py)) == [str(py), "-m", "storyshade", "serve"]
    assert server_local.detect_command(str(tmp_path / "env"))[0] == str(py), "a venv folder works"
    cmd = _exe(tmp_path / "bin" / "storyshade")
    assert server_local.detect_command(str(cmd)) == [str(cmd), "serve"]


def test_server_command_found_automatically(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    repo = tmp_path / "repo"
    assert server_local.detect_command("", repo) is None
    py = _exe(repo / ".venv" / "bin" / "python")
    assert server_local.detect_command("", repo) == [str(py), "-m", "storyshade", "serve"]
    cmd = _exe(tmp_path / "path" / "storyshade")
    monkeypatch.setenv("PATH", str(cmd.parent))
    assert server_local.detect_command("", repo) == [str(cmd), "serve"], "PATH comes first"


def test_local_server_only_for_loopback_urls() -> None:
    assert server_local.host_port("http://127.0.0.1:8790") == ("127.0.0.1", 8790)
    assert server_local.host_port("localhost") == ("localhost", 8787)
    with pytest.raises(StoryShadeError, match="another machine"):
        server_local.host_port("http://gpu-box:8787")


def test_local_server_reports_a_missing_python(tmp_path: Path) -> None:
    server = server_local.LocalServer()
    with pytest.raises(StoryShadeError, match="does not exist") as err:
        server.start([str(tmp_path / "nope" / "python"), "-m", "storyshade", "serve"], DEFAULT_URL)
    assert "Server Python" in err.value.fix and not server.running


def test_local_server_that_dies_says_why(tmp_path: Path) -> None:
    script = tmp_path / "fail.py"
    script.write_text("import sys\nprint('no module named torch')\nsys.exit(3)\n", "utf-8")
    server = server_local.LocalServer()
    server.start([sys.executable, str(script)], "http://127.0.0.1:8799", env=dict(os.environ))
    server.proc.wait(20)
    err = server.exited_error()
    assert err is not None and "code 3" in err.problem and "no module named torch" in err.problem
    with pytest.raises(StoryShadeError, match="exited"):
        server.wait_ready(object(), timeout=1)
    server.stop()
    assert not server.running


def test_health_summary_in_plain_words() -> None:
    class Up:
        url = DEFAULT_URL

        def health(self):
            return {"version": "0.1.0", "device": "cpu", "model_roots": [], "jobs": {"queued": 1}}

    class Down:
        url = "http://127.0.0.1:1"

        def health(self):
            raise StoryShadeError("cannot reach the StoryShade server", "start it")

    check = HealthCheck()
    assert check.summary()[:2] == (False, "Not checked yet")
    check.start(Up())
    check.join(5)
    ok, line, fix = check.summary()
    assert ok and "v0.1.0 on cpu" in line and "1 queued" in line and "--models" in fix
    check.start(Down())
    check.join(5)
    assert check.summary() == (False, "Not reachable at http://127.0.0.1:1", "start it")


def test_folders_found_from_the_add_on_files_are_the_checkouts() -> None:
    """Paths counted up from a module's own file: they change when the module moves."""
    assert server_local.ADDON_ROOT == REPO
    assert presets.presets_dir() == REPO / "presets"


def test_repo_venv_is_what_auto_detect_finds_in_a_checkout() -> None:
    if not (REPO / ".venv" / "bin" / "python").exists():
        pytest.skip("no .venv in this checkout")
    cmd = server_local.detect_command("", REPO)
    assert cmd is not None and cmd[-1] == "serve"

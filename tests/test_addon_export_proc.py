"""A new user's first Shade: the background export a window runs, in a fresh user folder
where the extension was installed through Blender's own operator and the preferences
were never saved (Blender writes them only on quit).

The window side runs in a subprocess: a fresh bpy with HOME in a temporary folder, the
extension installed with `bpy.ops.extensions.package_install_files`. Its `blender` is
tests/blender_cli.py, Blender's command line over the same bpy (the PyPI module is no
Blender executable): a command that no enabled add-on registered ends as in Blender,
`Unrecognized command: "storyshade"`, exit 1. The real Blender 4.3 and 5.2 windows do the
same in scripts/gui_check.sh's fresh-user run.

Each failure (a Blender that cannot start, one that crashes mid-export, an export folder
that cannot be written) must end the Shade with the cause and a log path, the scene and
its pass indices as they were, and nothing sent to the server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_addon_helpers import build_extension

TESTS = Path(__file__).resolve().parent

SCRIPT = """
import json, os, shutil, stat, sys, time
import bpy

sys.path.insert(0, {tests!r})
res = bpy.ops.extensions.package_install_files(
    filepath={zip!r}, repo="user_default", enable_on_install=True)
assert res == {{"FINISHED"}}, res
from bl_ext.user_default.storyshade.addon.session import shade as session
from bl_ext.user_default.storyshade.addon.export import background
from test_addon_helpers import FakeClient, build_shot

scene = bpy.context.scene
for obj in list(scene.objects):
    bpy.data.objects.remove(obj)
build_shot(scene, frames=2)
cube = scene.objects["Cube"]
cube.pass_index = 7
cube.storyshade_look.enabled, cube.storyshade_look.prompt = True, "a crate"
scene.frame_set(2)
work = {work!r}
blender = os.path.join(work, "blender")  # what a window starts: bpy.app.binary_path
with open(blender, "w") as fh:
    fh.write(f"#!/bin/sh\\nexec {{sys.executable}} {tests!r}/blender_cli.py \\"$@\\"\\n")
os.chmod(blender, 0o755)
background.available = lambda: True  # a window (the bpy module is always background)

def shade(case):
    binary = blender if case != "no_blender" else os.path.join(work, "gone", "blender")
    background.blender_binary = lambda: binary
    os.environ.pop("BLENDER_CLI_ABORT_AFTER", None)
    if case == "crash":
        os.environ["BLENDER_CLI_ABORT_AFTER"] = "storyshade: Exporting 1/2"
    module = background.addon_module
    if case == "no_addon":  # a module the background Blender cannot enable
        background.addon_module = lambda: "bl_ext.user_default.not_installed"
    bundle = session.temp_bundle_dir
    if case == "unwritable":  # the export folder is below a file: nothing can go there
        blocker = os.path.join(work, "a-file")
        open(blocker, "w").close()
        session.temp_bundle_dir = lambda: __import__("pathlib").Path(blocker) / "bundle"
    fake = FakeClient()
    request = session.ShadeRequest(
        settings={{"seed": 1}},
        output_pattern=os.path.join(work, case, "{{shot}}", "{{take}}"),
        server_url=fake.url,
    )
    run = session.ShadeSession(scene, fake, request)
    deadline = time.monotonic() + 180
    texts = []
    while run.running and time.monotonic() < deadline:
        run.tick(wait=0.05)
        if not texts or texts[-1] != run.status_line():
            texts.append(run.status_line())
    session.temp_bundle_dir = bundle
    background.addon_module = module
    return {{
        "outcome": run.outcome,
        "problem": run.error.problem if run.error else "",
        "fix": run.error.fix if run.error else "",
        "texts": texts,
        "submitted": fake.count("submit"),
        "files": fake.submitted.get("files", []),
        "scene": [scene.frame_current, scene.render.engine, cube.pass_index,
                  bpy.context.view_layer.use_pass_object_index],
    }}

print("RESULT " + json.dumps({{case: shade(case) for case in {cases!r}}}), flush=True)
"""

CASES = ("first_shade", "crash", "no_blender", "unwritable", "no_addon")


@pytest.fixture(scope="module")
def shaded(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every case shaded in one fresh user folder (one Blender install for all)."""
    root = tmp_path_factory.mktemp("fresh-user")
    work = root / "work"
    work.mkdir()
    zip_path = build_extension(root / "dist")
    script = SCRIPT.format(tests=str(TESTS), zip=str(zip_path), work=str(work), cases=CASES)
    env = dict(os.environ, HOME=str(root / "home"), XDG_CONFIG_HOME=str(root / "config"))
    env["TMPDIR"] = str(root / "tmp")  # the export logs land here, apart from other tests
    (root / "tmp").mkdir()
    env.pop("PYTHONPATH", None)
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=600,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    result["_logs"] = sorted((root / "tmp" / "storyshade-logs").glob("*.log"))
    return result


def _scene_untouched(case: dict) -> None:
    frame, engine, index, use_index = case["scene"]
    assert (frame, index, use_index) == (2, 7, False), case["scene"]
    assert engine != "CYCLES", "the user's render engine came back"


def test_first_shade_after_install_exports_in_the_background(shaded) -> None:
    case = shaded["first_shade"]
    assert case["outcome"] == "done", (case["problem"], case["fix"], case["texts"])
    assert case["files"] == ["frames/0001.exr", "frames/0002.exr", "shot.json"]
    # what a long wait says: Blender starting, then which frame renders and how fast
    texts = case["texts"]
    assert any(t.startswith("Exporting 0/2: starting Blender · ") for t in texts), texts
    assert any("rendering frame 2 of 2, " in t and " s per frame · " in t for t in texts), texts
    _scene_untouched(case)


def _says_log(problem: str) -> Path:
    """The log the message names: it exists and holds the background Blender's output."""
    assert "; its output is in " in problem, problem
    log = Path(problem.rsplit("; its output is in ", 1)[1])
    assert log.is_file(), log
    return log


def test_a_crash_mid_export_names_the_crash_and_keeps_its_log(shaded) -> None:
    case = shaded["crash"]
    assert case["outcome"] == "failed" and case["submitted"] == 0
    problem = case["problem"]
    assert problem.startswith("the background Blender crashed (SIGABRT) after 1 of 2 frames")
    assert "storyshade: Exporting 1/2" in _says_log(problem).read_text()
    assert "Cycles (F12)" in case["fix"]
    _scene_untouched(case)


def test_a_blender_that_cannot_start_is_named_with_a_log(shaded) -> None:
    case = shaded["no_blender"]
    assert case["outcome"] == "failed" and case["submitted"] == 0
    assert case["problem"].startswith("could not start the background Blender ")
    assert "gone/blender" in case["problem"] and "No such file" in case["problem"]
    assert "could not start" in _says_log(case["problem"]).read_text()
    assert "restart Blender" in case["fix"]
    _scene_untouched(case)


def test_an_export_folder_that_cannot_be_written_is_named(shaded) -> None:
    case = shaded["unwritable"]
    assert case["outcome"] == "failed" and case["submitted"] == 0
    problem = case["problem"]
    # StoryShade's own words from the background Blender, not a line with "error" in it
    assert problem.startswith("the background export stopped: cannot write the shot's passes")
    assert "a-file/bundle" in problem and "Not a directory" in problem
    assert "Fix:" not in problem and "TMPDIR" in case["fix"]
    assert "storyshade: error: cannot write" in _says_log(problem).read_text()
    _scene_untouched(case)


def test_an_add_on_the_background_blender_cannot_enable_is_named(shaded) -> None:
    """What a new user met (`Unrecognized command: "storyshade"`), said as what it means,
    with a fix for it rather than "check that the scene renders with Cycles"."""
    case = shaded["no_addon"]
    assert case["outcome"] == "failed" and case["submitted"] == 0
    problem = case["problem"]
    assert problem.startswith("the background Blender could not enable StoryShade")
    assert "bl_ext.user_default.not_installed" in problem
    assert 'Unrecognized command: "storyshade"' in _says_log(problem).read_text()
    assert "reinstall StoryShade" in case["fix"] and "Cycles" not in case["fix"]
    _scene_untouched(case)


def test_a_good_export_leaves_no_log_behind(shaded) -> None:
    named = {
        Path(shaded[c]["problem"].rsplit("; its output is in ", 1)[1])
        for c in ("crash", "no_blender", "unwritable", "no_addon")
    }
    assert set(shaded["_logs"]) == named, "the good export's log is gone, the failed ones stay"


def test_the_command_enables_the_add_on_before_its_command() -> None:
    """`--addons MODULE` before `-c`: Blender enables the add-on for that run whatever the
    saved preferences say (checked on Debian's 4.3.2 and 5.2.2 by gui_check.sh)."""
    from addon.export import background

    cmd = background.command(Path("/x.blend"), "Scene", Path("/out"), 1, 8, "sh", None)
    i = cmd.index("--addons")
    assert cmd[i + 1] == background.addon_module() and i < cmd.index("-c")
    assert cmd[cmd.index("-c") + 1 : cmd.index("-c") + 3] == ["storyshade", "export"]


def test_the_module_name_is_the_add_on_package_above_addon() -> None:
    from addon import identity

    for package, module in (
        ("bl_ext.user_default.storyshade.addon", "bl_ext.user_default.storyshade"),
        ("bl_ext.studio_repo.storyshade.addon", "bl_ext.studio_repo.storyshade"),
        ("storyshade.addon", "storyshade"),  # a legacy add-on folder
    ):
        assert identity.root_package(package) == module

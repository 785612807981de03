"""The extension zip: built by Blender's own builder, holding only what Blender needs,
installable into a fresh profile where it registers and unregisters cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from test_addon_helpers import build_extension

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def extension_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_extension(tmp_path_factory.mktemp("dist"))


def test_zip_holds_only_manifest_init_addon_presets(extension_zip: Path) -> None:
    names = zipfile.ZipFile(extension_zip).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"blender_manifest.toml", "__init__.py", "addon", "presets"}
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "addon").rglob("*.py")}
    assert "addon/operators/cli.py" in modules and modules <= set(names), "every room ships"
    assert any(n.startswith("presets/style/") for n in names)
    assert not any("__pycache__" in n for n in names)


def test_installs_registers_and_unregisters(extension_zip: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, bpy, addon_utils
        res = bpy.ops.extensions.package_install_files(
            filepath={str(extension_zip)!r}, repo="user_default", enable_on_install=True)
        assert res == {{"FINISHED"}}, res
        mod = "bl_ext.user_default.storyshade"
        assert mod in sys.modules, sorted(m for m in sys.modules if m.startswith("bl_ext"))
        assert hasattr(bpy.ops.storyshade, "shade") and bpy.ops.storyshade.shade.poll() in (True, False)
        assert hasattr(bpy.types.Scene, "storyshade")
        assert bpy.context.preferences.addons[mod].preferences.server_url.startswith("http://")
        bpy.ops.preferences.addon_disable(module=mod)
        assert not hasattr(bpy.types.Scene, "storyshade")
        assert "STORYSHADE_PT_main" not in dir(bpy.types)
        print("EXTENSION-OK")
        """
    )
    env = dict(os.environ, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"))
    env.pop("PYTHONPATH", None)
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert "EXTENSION-OK" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]

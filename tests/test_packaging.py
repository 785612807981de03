"""The backend wheel carries every sub-package, the shipped presets and the wire package
(the add-on's addon/wire/, the one copy both sides share)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_backend_package_is_listed() -> None:
    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(REPO / "backend").parts)
        for p in (REPO / "backend").rglob("__init__.py")
    }
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"


def test_wheel_ships_presets(tmp_path: Path) -> None:
    src = tmp_path / "src"  # setuptools writes build/ into the source tree: use a copy
    shutil.copytree(
        REPO / "backend",
        src / "backend",
        ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"),
    )
    shutil.copytree(REPO / "presets", src / "presets")
    shutil.copytree(
        REPO / "addon" / "wire",
        src / "addon" / "wire",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("storyshade-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "storyshade/presets_data/style/anime-cel.toml" in names
    assert "storyshade/cli.py" in names
    assert any(n.startswith("storyshade/configs/") for n in names)
    wire = {n for n in names if n.startswith("storyshade/wire/")}
    shipped = {f"storyshade/wire/{p.name}" for p in (REPO / "addon" / "wire").glob("*.py")}
    assert wire == shipped

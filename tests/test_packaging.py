"""The backend wheel carries every sub-package, the shipped presets and the wire package
(the add-on's addon/wire/, the one copy both sides share)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from conftest import write_synthetic_bundle
from PIL import Image

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
    # data folders too (setuptools warns about, and may one day drop, unlisted ones)
    backend = REPO / "backend"
    data = {
        ".".join(d.relative_to(backend).parts)
        for d in backend.rglob("*")
        if d.is_dir() and not d.is_symlink() and "__pycache__" not in d.parts
        and not d.name.endswith(".egg-info") and not (d / "__init__.py").exists()
    }  # fmt: skip
    data |= {
        f"storyshade.presets_data.{d.name}" for d in (REPO / "presets").iterdir() if d.is_dir()
    }
    assert data - listed == set(), (
        "list these data folders in pyproject.toml's packages (a preset's images sit beside "
        "its .toml, not in a folder of their own)"
    )


# A style preset with a reference image beside it, added to the copy the wheel is built
# from: what a user's or a future shipped preset does (docs/presets.md).
IMAGE_PRESET = """description = "Packaging test: a style with a reference image beside it"

[settings]
prompt_prefix = "ink"
references = [{ image = "packaged-ref.png", weight = 0.5 }]
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The backend wheel, built as a user builds it (pip wheel, no build isolation here),
    from a copy of the checkout (setuptools writes build/ into the source tree) holding one
    more style preset with an image. Its build output is kept for the warning check."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for part in ("backend", "presets", "addon/wire"):  # the wire link copies as files
        shutil.copytree(
            REPO / part, src / part, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
        )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    (src / "presets" / "style" / "packaged-ref.toml").write_text(IMAGE_PRESET, encoding="utf-8")
    Image.new("RGB", (32, 32), (200, 40, 40)).save(src / "presets" / "style" / "packaged-ref.png")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
         "-w", str(tmp / "dist"), str(src)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    (tmp / "build.log").write_text(build.stdout + build.stderr, encoding="utf-8")
    (path,) = (tmp / "dist").glob("storyshade-*.whl")
    return path


def test_the_wheel_builds_without_setuptools_warnings(wheel: Path) -> None:
    log = (wheel.parent.parent / "build.log").read_text(encoding="utf-8")
    warned = [line.strip() for line in log.splitlines() if "Warning" in line]
    assert warned == [], "setuptools warned while building the wheel"


def test_wheel_ships_presets(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "storyshade/presets_data/style/anime-cel.toml" in names
    assert "storyshade/cli.py" in names
    assert any(n.startswith("storyshade/configs/") for n in names)
    wire = {n for n in names if n.startswith("storyshade/wire/")}
    shipped = {f"storyshade/wire/{p.name}" for p in (REPO / "addon" / "wire").glob("*.py")}
    assert wire == shipped
    assert "storyshade/presets_data/style/packaged-ref.png" in names


def test_the_installed_wheel_renders_on_its_own(
    wheel: Path, tiny_models: Path, tmp_path: Path
) -> None:
    """The wheel in a fresh venv, no checkout on sys.path, run from another folder:
    `storyshade render` with a shipped preset, and with the preset whose reference image
    ships beside it. The venv sees the shared venv's packages (torch, diffusers, ...) by a
    plain path line, which runs none of their .pth files, so the checkout's editable
    install stays out of it."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    deps = next(p for p in map(Path, sys.path) if p.name == "site-packages" and p.is_dir())
    (site / "shared-deps.pth").write_text(f"{deps}\n", encoding="utf-8")
    py = venv / "bin" / "python"
    subprocess.run(
        [py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    where = subprocess.run(
        [py, "-c", "import storyshade, storyshade.wire as w; print(storyshade.__file__, w.__file__)"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=True,
    ).stdout  # fmt: skip
    assert str(REPO) not in where and where.count(str(site)) == 2, where
    bundle = write_synthetic_bundle(tmp_path / "b", frames=2, size=(64, 48))
    for preset in ("tiny", "tiny,packaged-ref"):
        out = tmp_path / preset.replace(",", "-")
        run = subprocess.run(
            [venv / "bin" / "storyshade", "render", str(bundle), "--out", str(out),
             "--models", str(tiny_models), "--preset", preset, "--steps", "1"],
            capture_output=True, text=True, env=env, cwd=tmp_path,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]
        assert sorted(p.name for p in out.iterdir()) == ["0001.png", "0002.png"]

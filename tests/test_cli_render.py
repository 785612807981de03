"""`storyshade render` and `storyshade models tiny`: the serverless path, as a user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO, write_synthetic_bundle
from PIL import Image


def storyshade(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONPATH=str(REPO / "backend"), OMP_NUM_THREADS="1")
    full_env.pop("STORYSHADE_MODELS", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "storyshade", *args], capture_output=True, text=True, env=full_env
    )


def test_render_writes_one_png_per_scene_frame(tmp_path: Path, tiny_models: Path) -> None:
    bundle = write_synthetic_bundle(tmp_path / "b", frames=3, size=(80, 48), frame_start=10)
    out = tmp_path / "out"
    run = storyshade(
        "render",
        str(bundle),
        "--out",
        str(out),
        "--models",
        str(tiny_models),
        "--preset",
        "tiny",
        "--steps",
        "1",
        "--seed",
        "3",
    )
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["0010.png", "0011.png", "0012.png"]
    with Image.open(out / "0011.png") as img:
        assert img.size == (80, 48) and img.mode == "RGB"


def test_models_from_environment(tmp_path: Path, tiny_models: Path) -> None:
    bundle = write_synthetic_bundle(tmp_path / "b", frames=2)
    run = storyshade(
        "render",
        str(bundle),
        "--out",
        str(tmp_path / "o"),
        "--preset",
        "tiny",
        "--steps",
        "1",
        env={"STORYSHADE_MODELS": str(tiny_models)},
    )
    assert run.returncode == 0, run.stderr


def test_missing_models_say_what_and_where(tmp_path: Path, tiny_models: Path) -> None:
    bundle = write_synthetic_bundle(tmp_path / "b", frames=2)
    run = storyshade("render", str(bundle), "--out", str(tmp_path / "o"), "--preset", "tiny")
    assert run.returncode == 2
    assert "no models folder is configured" in run.stderr and "--models" in run.stderr

    broken = tmp_path / "models"
    shutil.copytree(tiny_models, broken)
    shutil.rmtree(broken / "checkpoints" / "tiny-sd15" / "vae")
    shutil.rmtree(broken / "controlnet" / "tiny-controlnet-normal")
    run = storyshade(
        "render",
        str(bundle),
        "--out",
        str(tmp_path / "o"),
        "--models",
        str(broken),
        "--preset",
        "tiny",
    )
    assert run.returncode == 2
    line = run.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line, "fails before any work"
    assert "vae" in line or "tiny-controlnet-normal" in line
    assert str(broken) in line


def test_not_a_bundle(tmp_path: Path) -> None:
    run = storyshade("render", str(tmp_path), "--out", str(tmp_path / "o"))
    assert run.returncode == 2 and "no shot.json" in run.stderr


def test_models_tiny_writes_diffusers_layout(tmp_path: Path) -> None:
    run = storyshade("models", "tiny", str(tmp_path / "m"))
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "m" / "checkpoints" / "tiny-sd15" / "model_index.json").is_file()
    assert (tmp_path / "m" / "motion" / "tiny-motion-v3" / "config.json").is_file()
    for role in ("depth", "normal"):
        cn = tmp_path / "m" / "controlnet" / f"tiny-controlnet-{role}"
        assert (cn / "diffusion_pytorch_model.safetensors").is_file()

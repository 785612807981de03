"""Shared fixtures: tiny real models on disk, synthetic bundles, the repo paths."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "backend"))  # the checkout's backend wins over any install
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Treat the repo root as a plain folder, not a package: its __init__.py is the Blender
    extension's entry point and must not be imported (as the checkout's folder name)."""
    if path == REPO:
        return pytest.Dir.from_parent(parent, path=path)
    return None


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models root holding the tiny random-weight sets, SD1.5 and Wan VACE (written once
    per test session, as `storyshade models tiny` writes them). Under a Python without the
    backend's packages (the bpy 4.2 run) the server's Python writes them."""
    root = tmp_path_factory.mktemp("models")
    if _has_torch():
        from storyshade.models.tiny import write_tiny_models
        from storyshade.models.tiny_wan import write_tiny_wan_models

        write_tiny_models(root)
        write_tiny_wan_models(root)
    else:
        _server_python("-m", "storyshade", "models", "tiny", str(root))
    return root


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _server_python(*args: object) -> None:
    """Run the server's Python (the bpy 4.2 run has no torch of its own)."""
    import subprocess

    python = os.environ.get("STORYSHADE_SERVER_PYTHON", sys.executable)
    env = dict(os.environ, PYTHONPATH=str(REPO / "backend"))
    subprocess.run([python, *map(str, args)], env=env, check=True, capture_output=True)


def write_synthetic_bundle(
    root: Path,
    frames: int = 4,
    size: tuple[int, int] = (64, 48),
    depth_fn=None,
    normal_fn=None,
    frame_start: int = 1,
    ids_fn=None,
    regions: list[dict] | None = None,
) -> Path:
    """A valid bundle with analytic passes: a camera at the origin facing a wall (-Z).
    With `regions` (shot.json looks) it is version 2, and `ids_fn(i)` gives frame i's
    region id map (HxW ints; all 0 without it)."""
    from storyshade.exr import write_depth_normal

    w, h = size
    (root / "frames").mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(frames):
        frame = frame_start + i
        depth = depth_fn(i) if depth_fn else np.full((h, w), 5.0 + 0.1 * i, np.float32)
        if normal_fn:
            normal = normal_fn(i)
        else:
            normal = np.zeros((h, w, 3), np.float32)
            normal[..., 2] = 1.0
        ids = None
        if regions is not None:
            ids = ids_fn(i) if ids_fn else np.zeros((h, w), np.uint8)
        write_depth_normal(root / "frames" / f"{frame:04d}.exr", depth, normal, ids)
        entries.append(
            {
                "frame": frame,
                "file": f"frames/{frame:04d}.exr",
                "camera": {
                    "matrix_world": np.eye(4).tolist(),
                    "lens": 50.0,
                    "sensor_width": 36.0,
                    "sensor_height": 24.0,
                    "clip_start": 0.1,
                    "clip_end": 100.0,
                },
            }
        )
    shot = {
        "format": "storyshade.shot",
        "version": 1 if regions is None else 2,
        "shot": "synthetic",
        "frame_start": frame_start,
        "frame_end": frame_start + frames - 1,
        "fps": 24.0,
        "resolution": [w, h],
        "unit_scale": 1.0,
        "frames": entries,
        **({"regions": regions} if regions is not None else {}),
    }
    (root / "shot.json").write_text(json.dumps(shot, indent=1), encoding="utf-8")
    return root


@pytest.fixture
def synthetic_bundle(tmp_path: Path) -> Path:
    return write_synthetic_bundle(tmp_path / "bundle")


@pytest.fixture
def server(tmp_path: Path, tiny_models: Path):
    """A real server process on a free loopback port with the tiny models."""
    from serverproc import ServerProcess

    with ServerProcess(tmp_path / "data", tiny_models) as proc:
        yield proc


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path):
    """A stand-in for the model hub (tests/hubstandin.py) as a real process on loopback,
    serving the tiny models under the real repository ids (tests/hub_repos.py)."""
    from hubstandin import HubStandin

    root = tmp_path_factory.mktemp("hub")
    if _has_torch():
        from hub_repos import write_repos

        write_repos(root, tiny_models)
    else:  # the bpy 4.2 run: the server's Python writes them
        _server_python(REPO / "tests" / "hub_repos.py", str(root), str(tiny_models))
    with HubStandin(root) as standin:
        yield standin


@pytest.fixture
def fresh_hub(hub):
    """The stand-in with no switches set and an empty request log."""
    hub.configure()
    hub.clear_log()
    yield hub
    hub.configure()

"""`make demo`, the README's first command, as a new user without models runs it: the
sample storyboard shot exported from Blender, shaded through a real server with the tiny
models (AnimateDiff and Wan VACE) and the preview engine, three take strips of 24 frames
in the saved .blend, and the contact sheet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_the_demo_shades_the_sample_shot_without_real_models(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "STORYSHADE_MODELS"}
    env |= {"STORYSHADE_DEMO_OUT": str(tmp_path), "HOME": str(tmp_path / "home")}
    cmd = [sys.executable, str(REPO / "demo" / "run_demo.py")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0, said[-4000:]
    assert "NO REAL MODELS CONFIGURED" in said  # said plainly, not hidden
    takes = sorted((tmp_path / "storyshade" / "shot").glob("take_*"))
    assert len(takes) == 3, said[-4000:]  # tiny AnimateDiff, tiny Wan VACE, preview
    assert all(len(list(t.glob("*.png"))) == 24 for t in takes)
    assert (tmp_path / "shot.blend").is_file()
    assert (tmp_path / "contact_sheet.png").stat().st_size > 10_000

"""The Wan benchmark runs as its command: children measure ours and the stock pipeline on
the tiny shapes and the report lands in its own section of a BENCHMARKS.md (the GPU command
`bench_engine.py --gpu --engine wan-vace` runs this script's same path at the 1.3B's shapes).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_the_wan_benchmark_measures_ours_and_stock_and_writes_its_section(tmp_path: Path):
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## Engine: windowed vs stock diffusers\n\nkept\n")
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_wan.py"), "--cpu", "--tiny"]
    cmd += ["--only", "main", "--frames", "9", "--steps", "1", "--write", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    assert "## Engine: windowed vs stock diffusers\n\nkept\n" in text
    section = text.split("## Wan VACE engine: windowed vs stock WanVACEPipeline", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith(("| ours", "| stock"))]
    assert len(rows) == 2 and "error" not in section.lower(), section

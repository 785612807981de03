"""The engine benchmark's report: its section of BENCHMARKS.md and nothing else changes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_engine import (  # noqa: E402
    CPU_HEADING,
    GPU_HEADING,
    HEADING,
    Case,
    describe,
    table,
    write_section,
)


def fake(engine: str, frames: int, seconds: float, peak: float, device: str = "cpu") -> dict:
    from dataclasses import asdict

    case = Case(engine=engine, frames=frames, models="m", device=device)
    return {
        **asdict(case),
        "seconds": seconds,
        "peak_mib": peak,
        "base_mib": 1000.0,
        "count": frames,
    }


RESULTS = [
    fake("windowed", 16, 16.0, 1500),
    fake("stock", 16, 16.0, 1600),
    fake("windowed", 256, 300.0, 1600),
    fake("stock", 256, 250.0, 9000),
]


def test_table_and_verdicts():
    text = table(RESULTS)
    assert (
        "| 256 | 1600 | 9000 | 600 | 8000 | 1.172 (0.85) | 0.977 (1.02) | 1.20 | 1.067x |" in text
    )
    verdict = describe(RESULTS)
    assert "1.067x its peak at 16 (target <= 1.15x): met" in verdict
    assert "at most 1.20x stock's (at 256 frames; target <= 1.33x): met" in verdict
    failed = table([*RESULTS[:2], {**RESULTS[2], "error": "killed"}])
    assert "| 256 | failed |" in failed and "- windowed 256 frames: killed" in failed


def test_write_section_keeps_other_sections(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Controls\n\nfast.\n", encoding="utf-8")
    write_section(path, CPU_HEADING, "first run\n")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\n## Controls\n\nfast.\n\n" + HEADING)
    assert "first run" in text and "Not measured yet" in text

    path.write_text(text + "\n## Server\n\nslow.\n", encoding="utf-8")
    write_section(path, CPU_HEADING, "second run\n")
    write_section(path, GPU_HEADING, "gpu numbers\n")
    text = path.read_text(encoding="utf-8")
    assert "first run" not in text and "second run" in text and "gpu numbers" in text
    assert "Not measured yet" not in text
    assert text.index("second run") < text.index(GPU_HEADING) < text.index("## Server")
    assert text.endswith("## Server\n\nslow.\n") and text.count(HEADING) == 1


def test_the_users_command_has_its_columns_and_verdict():
    render = [
        {**fake("render", 16, 20.0, 1100), "pass_size": 256},
        {**fake("render", 256, 300.0, 1122), "pass_size": 256},
    ]
    text = table(RESULTS + render)
    assert "`storyshade render` peak MiB | its peak vs first row |" in text
    assert "| 1.067x | 1122 | 1.020x |" in text
    assert "`storyshade render`" not in table(RESULTS)  # no render runs: no such columns
    alone = table(render)
    assert "| 256 | 1122 | 1.020x | 300 |" in alone
    verdict = describe(render)
    assert "256x256 EXR passes" in verdict and "no allocator or thread variables" in verdict
    assert "peak at 256 frames is 1.020x its peak at 16 (target <= 1.05x): met" in verdict


def test_the_users_command_is_measured_as_a_user_runs_it(tmp_path, monkeypatch):
    """The benchmark's `render` case runs the `storyshade` command with the caller's
    environment minus any MALLOC_* variable, and the case's settings as a user preset."""
    import tomllib

    from bench_engine import write_quality_preset
    from harness import without_malloc

    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert not any(k.startswith("MALLOC_") for k in without_malloc(dict(os.environ)))
    case = Case(engine="render", frames=16, models="m", width=128, height=128)
    preset = write_quality_preset(tmp_path, case) / "quality" / "bench.toml"
    data = tomllib.loads(preset.read_text(encoding="utf-8"))["settings"]
    assert (data["width"], data["steps"], data["controls"]["depth"]["scale"]) == (128, 2, 0.8)
    from storyshade.presets import load_preset

    assert load_preset(preset).layer == "quality"  # a valid quality preset

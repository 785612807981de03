"""Peak memory does not grow with the shot: 64 frames cost what 16 do (tiny models, CPU).

Each render runs in its own process (benchmarks/bench_engine.py's child mode) and reports
its peak resident set after model loading; "work" is that peak minus what was resident when
the render began. The stock pipeline is measured too, to show the measurement does see growth
when it is there: a flat line from an instrument that cannot see slopes would prove nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

MARGIN = 1.15  # 64 frames may need at most 15% more working memory than 16 (plus noise)
NOISE_MIB = 16.0


def work_mib(models: Path, engine: str, frames: int) -> float:
    from bench_engine import Case, run_child
    from storyshade.models.tiny import TINY_NAMES

    case = Case(
        engine=engine,
        frames=frames,
        models=str(models),
        width=64,
        height=64,
        steps=1,
        guidance=1.0,
        names=dict(TINY_NAMES),
    )
    result = run_child(case, timeout=900)
    assert "error" not in result, result.get("error")
    assert result["count"] == frames
    return result["peak_mib"] - result["base_mib"]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux peak reset")
def test_peak_memory_is_flat_in_frame_count(tiny_models):
    ours = {n: work_mib(tiny_models, "windowed", n) for n in (16, 64)}
    assert ours[64] <= ours[16] * MARGIN + NOISE_MIB, ours

    stock = {n: work_mib(tiny_models, "stock", n) for n in (16, 32)}
    assert stock[32] >= stock[16] * 1.5, f"the measurement should see stock's growth: {stock}"

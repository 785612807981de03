"""Re-shading frames A-B with the Wan VACE engine: held frames go to VACE as the video to
keep (mask 0), only A-B are made and written (the frames outside stay byte for byte),
the seam is no worse than the take's own neighbouring frames, and only the clip around
A-B is denoised."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_synthetic_bundle
from storyshade.bundle import load_bundle
from storyshade.engine.wan_vace import RESHADE_MARGIN, plan_clip
from storyshade.models.loader import ModelCache
from storyshade.render import render_bundle
from test_reshade import frames_of, hold, moving_depth, step
from test_wan_engine import wan_settings

FRAMES = 21
A, B = 10, 13  # scene frames (the synthetic shot starts at frame 1)


def settings(**overrides):
    return wan_settings(guidance_scale=1.0, **overrides)


@pytest.fixture(scope="module")
def shot(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("wan-reshade")
    bundle = write_synthetic_bundle(root / "bundle", FRAMES, depth_fn=moving_depth)
    cache = ModelCache(size=1)
    render_bundle(load_bundle(bundle), settings(), root / "take", [tiny_models], cache)
    return root, bundle, cache


def test_only_the_range_is_made_and_it_joins_its_neighbours(shot, tiny_models, capsys):
    root, bundle, cache = shot
    take = frames_of(root / "take")
    keep = range(A, B + 1)
    held = load_bundle(hold(bundle, root / "take", root / "held", keep))
    before = {p.name: p.read_bytes() for p in (root / "held" / "take").iterdir()}
    written = render_bundle(held, settings(seed=12), root / "new", [tiny_models], cache)
    assert [int(p.stem) for p in written] == list(keep)  # held frames are not written
    after = {p.name: p.read_bytes() for p in (root / "held" / "take").iterdir()}
    assert after == before  # the take's frames outside A-B: byte for byte
    new = frames_of(root / "new")
    assert any(step(new[f], take[f]) > 1 for f in keep), "a new seed must change the range"
    neighbours = [step(take[f], take[f + 1]) for f in range(1, FRAMES)]
    seams = (step(take[A - 1], new[A]), step(new[B], take[B + 1]))
    with capsys.disabled():
        print(
            f"\nWan re-shade seam (mean abs level, 0-255): {seams[0]:.2f}/{seams[1]:.2f}, "
            f"take's neighbours {min(neighbours):.2f}..{max(neighbours):.2f} "
            f"(median {np.median(neighbours):.2f})"
        )
    assert max(seams) <= max(neighbours)


def test_the_clip_is_the_range_and_its_held_context():
    held = {i: None for i in range(200) if not 100 <= i < 110}
    clip = plan_clip(200, held)
    assert clip.start % 4 == 0 and clip.start <= 100 - RESHADE_MARGIN + 3
    assert clip.start + clip.frames == 110 + RESHADE_MARGIN
    assert plan_clip(50, {}).frames == 50
    assert plan_clip(5, {i: None for i in range(5)}) is None

"""Context windows, fusion weights, per-frame noise and slicing: the windowed engine's parts."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from storyshade.engine.chunking import Plan, Split, slice_models
from storyshade.engine.noise import frame_noise, free_noise_sources, initial_noise
from storyshade.engine.oom import Fallback, ladder
from storyshade.engine.pipeline_edits import edited
from storyshade.engine.windows import context_windows, fusion_weights

SHAPES = [(1, 16, 4), (5, 16, 4), (16, 16, 4), (17, 16, 4), (32, 16, 4), (64, 16, 4), (100, 16, 4)]
SHAPES += [(256, 16, 4), (40, 8, 0), (40, 8, 7), (33, 12, 6), (24, 24, 2), (300, 32, 8)]


@pytest.mark.parametrize("schedule", ["static", "shifting"])
@pytest.mark.parametrize("fuse", ["pyramid", "flat"])
@pytest.mark.parametrize(("frames", "length", "overlap"), SHAPES)
def test_windows_cover_every_frame_and_weights_sum_to_one(frames, length, overlap, schedule, fuse):
    for step in range(6):
        windows = context_windows(frames, length, overlap, schedule, step)
        assert windows[0].start == 0 and windows[-1].stop == frames
        for w in windows:
            assert len(w) == min(length, frames) and 0 <= w.start and w.stop <= frames
        for a, b in pairwise(windows):
            assert b.start > a.start
            assert a.stop - b.start >= min(overlap, frames), "seams keep at least the overlap"
        total = torch.zeros(frames, dtype=torch.float64)
        for w, share in zip(windows, fusion_weights(windows, frames, fuse), strict=True):
            assert share.shape == (len(w),) and bool((share > 0).all())
            total[w.start : w.stop] += share.double()
        assert torch.allclose(total, torch.ones(frames, dtype=torch.float64), atol=1e-6)


def test_static_windows_are_few_and_even():
    windows = context_windows(64, 16, 4)
    assert [w.start for w in windows] == [0, 12, 24, 36, 48]  # ceil((64 - 4) / 12) = 5
    assert [w.start for w in context_windows(70, 16, 4)] == [0, 11, 22, 32, 43, 54]
    assert len(context_windows(256, 16, 4)) == 21  # ceil(252 / 12)
    assert context_windows(16, 16, 4) == [range(0, 16)]
    assert context_windows(7, 16, 4) == [range(0, 7)]


def test_shifting_windows_move_the_seams_between_steps():
    starts = {tuple(w.start for w in context_windows(64, 16, 4, "shifting", s)) for s in range(4)}
    assert len(starts) >= 3
    assert context_windows(64, 16, 4, "shifting", 0) == [
        range(s, s + 16) for s in (0, 12, 24, 36, 48)
    ]


def test_single_window_shares_are_exactly_one():
    (share,) = fusion_weights([range(0, 12)], 12, "pyramid")
    assert bool((share == 1.0).all())


def test_pyramid_trusts_the_middle_of_a_window():
    windows = context_windows(28, 16, 4)
    first, second = fusion_weights(windows, 28, "pyramid")
    overlap = range(windows[1].start, windows[0].stop)
    # Across the shared frames the first window's share falls as the second's rises.
    a = [first[i - windows[0].start].item() for i in overlap]
    b = [second[i - windows[1].start].item() for i in overlap]
    assert a == sorted(a, reverse=True) and b == sorted(b) and a[0] > b[0] and a[-1] < b[-1]


@pytest.mark.parametrize(("length", "overlap"), [(16, 16), (16, 20), (8, -1)])
def test_bad_overlap_is_refused(length, overlap):
    with pytest.raises(ValueError, match="overlap"):
        context_windows(40, length, overlap)


@pytest.mark.parametrize("free_noise", [False, True])
def test_per_frame_noise_is_stable_when_frames_are_added(free_noise):
    short = initial_noise(7, 20, (4, 8, 8), free_noise=free_noise, length=16, stride=12)
    long = initial_noise(7, 45, (4, 8, 8), free_noise=free_noise, length=16, stride=12)
    assert short.shape == (1, 4, 20, 8, 8) and long.shape == (1, 4, 45, 8, 8)
    assert torch.equal(long[:, :, :20], short)
    assert not torch.equal(long[:, :, 0], long[:, :, 1])
    other_seed = initial_noise(8, 20, (4, 8, 8), free_noise=free_noise, length=16, stride=12)
    assert not torch.equal(other_seed, short)


def test_frame_noise_depends_on_seed_and_index_only():
    assert torch.equal(frame_noise(3, 5, (4, 2, 2)), frame_noise(3, 5, (4, 2, 2)))
    assert not torch.equal(frame_noise(3, 5, (4, 2, 2)), frame_noise(3, 6, (4, 2, 2)))
    assert not torch.equal(frame_noise(3, 5, (4, 2, 2)), frame_noise(4, 5, (4, 2, 2)))
    noise = initial_noise(1, 3, (4, 2, 2))
    assert torch.equal(noise[0, :, 2], frame_noise(1, 2, (4, 2, 2)))


def test_free_noise_reuses_shuffled_earlier_noise():
    sources = free_noise_sources(0, 40, 16, 12)
    assert sources[:16] == list(range(16))
    assert sorted(sources[16:28]) == list(range(12))  # a permutation of frames 0-11
    assert sources[16:28] != list(range(12))
    assert all(s < 16 for s in sources)  # every frame draws from the first window's noise
    assert free_noise_sources(0, 30, 16, 12) == sources[:30]
    noise = initial_noise(0, 40, (4, 2, 2), free_noise=True, length=16, stride=12)
    assert torch.equal(noise[0, :, 16], noise[0, :, sources[16]])


def test_split_gives_the_unsplit_result():
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 8))
    x = torch.randn(3, 37, 8)
    for dim in (0, 1):
        for size in (1, 5, 37, 100):
            assert torch.allclose(Split(layer, size, dim)(x), layer(x), atol=1e-6)


def test_sliced_models_get_their_original_modules_back(tiny_models):
    from diffusers import UNetMotionModel
    from storyshade.models.loader import ModelCache, model_key
    from storyshade.models.tiny import TINY_NAMES
    from storyshade.settings import Settings

    settings = Settings(
        checkpoint=TINY_NAMES["checkpoint"],
        motion_adapter=TINY_NAMES["motion_adapter"],
        controls={"depth": {"model": TINY_NAMES["depth"]}},
    )
    unet: UNetMotionModel = ModelCache().get(model_key([tiny_models], settings)).unet
    before = {name: type(m) for name, m in unet.named_modules()}
    plan = Plan(temporal_chunk=7, ff_chunk=5, attention_slice=1)
    with edited() as edits:
        assert slice_models(edits, [unet], plan) > 0
        wrapped = [m for m in unet.modules() if isinstance(m, Split)]
        assert {(m.dim, m.size) for m in wrapped} == {(0, 7), (1, 5), (0, 1)}
    assert {name: type(m) for name, m in unet.named_modules()} == before
    with pytest.raises(RuntimeError), edited() as edits:
        slice_models(edits, [unet], plan)
        raise RuntimeError("a failing window")
    assert {name: type(m) for name, m in unet.named_modules()} == before


def test_oom_ladder_slices_further_then_offloads():
    plans = ladder(Plan(name="as configured", ff_chunk=64))
    assert [p.name for p in plans] == [
        "as configured",
        "smaller chunks",
        "smallest chunks",
        "offload",
    ]
    assert plans[1].cfg_split and plans[1].ff_chunk == 64  # never coarser than the user asked
    assert plans[2].attention_slice == 1 and not plans[2].offload and plans[3].offload


def test_fallback_moves_down_only_on_out_of_memory():
    moves: list[str] = []
    fallback = Fallback(ladder(Plan()), lambda old, new, where: moves.append(f"{where}:{new.name}"))
    seen: list[str] = []

    def work(plan: Plan) -> str:
        seen.append(plan.name)
        if len(seen) < 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return plan.name

    assert fallback.run(work, "w1") == "smallest chunks"
    assert moves == ["w1:smaller chunks", "w1:smallest chunks"]
    assert fallback.run(lambda plan: plan.name, "w2") == "smallest chunks"  # stays there
    with pytest.raises(ValueError):
        fallback.run(lambda plan: (_ for _ in ()).throw(ValueError("not memory")), "w3")
    always = Fallback(ladder(Plan()), lambda *a: None)
    with pytest.raises(torch.OutOfMemoryError):
        always.run(lambda plan: (_ for _ in ()).throw(torch.OutOfMemoryError("oom")), "w4")
    assert always.plan.offload

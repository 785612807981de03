"""Control frames on disk (controls/store.py): what goes in comes back, one frame at a time,
and the folder goes when nothing uses it."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest
from storyshade.controls.store import ControlStore, DiskFrames


def test_frames_round_trip_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (6, 5, 3), dtype=np.uint8) for _ in range(4)]
    store = ControlStore(tmp_path)
    writer = store.writer("depth", len(frames))
    for f in frames:
        writer.append(f)
    seq = writer.finish()
    assert isinstance(seq, DiskFrames) and len(seq) == 4 and seq.nbytes == 4 * 6 * 5 * 3
    for got, want in zip(seq, frames, strict=True):
        assert got.dtype == np.uint8 and np.array_equal(got, want)
    assert np.array_equal(seq[-1], frames[-1])
    assert [np.array_equal(a, b) for a, b in zip(seq[1:3], frames[1:3], strict=True)] == [1, 1]
    seq[0][:] = 0  # every read is a fresh array: the file is untouched
    assert np.array_equal(seq[0], frames[0])
    with pytest.raises(IndexError):
        seq[4]
    # a plain .npy: numpy reads it whole
    assert np.array_equal(np.load(seq.path), np.stack(frames))


def test_16_bit_frames_and_mismatches(tmp_path: Path) -> None:
    writer = ControlStore(tmp_path).writer("depth16", 2)
    writer.append(np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    with pytest.raises(ValueError):
        writer.append(np.zeros((3, 4), np.uint8))
    with pytest.raises(ValueError):
        writer.finish()  # one of two frames written
    empty = ControlStore(tmp_path).writer("regions", 3)
    assert empty.finish() == []  # nothing appended: no file, an empty sequence


def test_folder_lives_as_long_as_its_frames(tmp_path: Path) -> None:
    store = ControlStore(tmp_path)
    writer = store.writer("depth", 1)
    writer.append(np.ones((2, 2, 3), np.uint8))
    seq = writer.finish()
    folder = store.path
    del store, writer
    gc.collect()
    assert folder.is_dir() and seq[0].sum() == 12  # the frames keep the folder
    del seq
    gc.collect()
    assert not folder.exists()


def test_built_controls_are_on_disk_and_counted_by_the_stage_cache(tmp_path: Path) -> None:
    from conftest import write_synthetic_bundle
    from storyshade.bundle import load_bundle
    from storyshade.cache import nbytes
    from storyshade.controls import build_controls
    from storyshade.settings import Settings

    bundle = load_bundle(write_synthetic_bundle(tmp_path / "b", frames=3, size=(64, 64)))
    controls = build_controls(bundle, Settings(width=64, height=64), workdir=tmp_path / "w")
    depth = controls.frames["depth"]
    assert isinstance(depth, DiskFrames) and depth.path.is_relative_to(tmp_path / "w")
    assert depth[0].shape == (64, 64, 3) and len(controls.depth16) == 3
    assert nbytes(controls) == 3 * (2 * 64 * 64 * 3 + 64 * 64 * 2)
    folder = depth.path.parent
    del controls, depth
    gc.collect()
    assert not folder.exists()

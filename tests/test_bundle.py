"""The bundle contract: what the add-on writes is what the backend validates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_synthetic_bundle
from storyshade.bundle import load_bundle, parse_shot
from storyshade.errors import BundleError
from storyshade.exr import write_depth_normal


def test_synthetic_bundle_round_trip(synthetic_bundle: Path) -> None:
    bundle = load_bundle(synthetic_bundle)
    assert bundle.shot.frame_numbers == [1, 2, 3, 4]
    depth, normal = bundle.read_passes(2)
    assert depth.shape == (48, 64) and normal.shape == (48, 64, 3)
    assert depth[0, 0] == pytest.approx(5.2)


def _shot(path: Path) -> dict:
    return json.loads((path / "shot.json").read_text())


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s.update(version=99), "version"),
        (lambda s: s.update(frame_end=0), "shot.json"),
        (lambda s: s["frames"][0]["camera"].update(lens=-1), "lens"),
        (lambda s: s["frames"][1].update(file="../../etc/passwd.exr"), "file"),
        (lambda s: s.update(resolution=[0, 10]), "resolution"),
        (lambda s: s["frames"][0]["camera"].update(clip_end=0.01), "camera"),
    ],
)
def test_bad_fields_are_named(synthetic_bundle: Path, mutate, field: str) -> None:
    shot = _shot(synthetic_bundle)
    mutate(shot)
    with pytest.raises(BundleError) as err:
        parse_shot(json.dumps(shot))
    assert field in err.value.message


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no shot.json"):
        load_bundle(tmp_path)
    (tmp_path / "shot.json").write_text('{"hello": 1}')
    with pytest.raises(BundleError, match="not a StoryShade shot bundle"):
        load_bundle(tmp_path)
    (tmp_path / "shot.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(tmp_path)


def test_missing_and_broken_pass_files(synthetic_bundle: Path) -> None:
    (synthetic_bundle / "frames" / "0003.exr").unlink()
    with pytest.raises(BundleError, match="0003.exr is missing"):
        load_bundle(synthetic_bundle)
    (synthetic_bundle / "frames" / "0003.exr").write_bytes(b"not an exr")
    with pytest.raises(BundleError, match="not a readable EXR"):
        load_bundle(synthetic_bundle).read_passes(2)


def test_nan_and_inf_depth_rejected(tmp_path: Path) -> None:
    def depth(i: int) -> np.ndarray:
        d = np.full((48, 64), 3.0, np.float32)
        d[5, 5] = [np.nan, np.inf][i % 2]
        return d

    root = write_synthetic_bundle(tmp_path / "b", frames=2, depth_fn=depth)
    bundle = load_bundle(root)
    for i in range(2):
        with pytest.raises(BundleError, match="NaN or infinite depth"):
            bundle.read_passes(i)


def test_pass_size_must_match_resolution(tmp_path: Path) -> None:
    root = write_synthetic_bundle(tmp_path / "b", frames=1)
    write_depth_normal(
        root / "frames" / "0001.exr", np.ones((10, 10), np.float32), np.zeros((10, 10, 3))
    )
    with pytest.raises(BundleError, match="but shot.json says 64x48"):
        load_bundle(root).read_passes(0)

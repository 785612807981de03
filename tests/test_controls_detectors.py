"""controlnet-aux detectors for line controls: Canny (no weights) and learned ones from disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_synthetic_bundle
from storyshade.bundle import load_bundle
from storyshade.controls import build_controls
from storyshade.errors import ModelError
from storyshade.settings import Settings


def step_depth(i: int) -> np.ndarray:
    d = np.full((64, 64), 8.0, np.float32)
    d[16:48, 16:48] = 3.0
    return d


@pytest.fixture
def bundle(tmp_path: Path):
    return load_bundle(write_synthetic_bundle(tmp_path / "b", 1, (64, 64), step_depth))


def line_settings(role: str, detector: str | None) -> Settings:
    ctl = {"model": "any"} | ({"detector": detector} if detector else {})
    return Settings(width=64, height=64, controls={role: ctl})


def test_missing_learned_weights_say_what_to_copy_where(bundle, tmp_path: Path) -> None:
    with pytest.raises(ModelError) as info:
        build_controls(bundle, line_settings("softedge", "hed"), roots=[tmp_path / "models"])
    text = str(info.value)
    assert "ControlNetHED.pth" in text and "lllyasviel/Annotators" in text
    assert str(tmp_path / "models" / "annotators") in text and "'geometry'" in text


def test_canny_through_controlnet_aux_outlines_the_box(bundle) -> None:
    cs = build_controls(bundle, line_settings("canny", None))
    assert cs.meta["derived"] == {"canny": "canny"}
    edges = cs.frames["canny"][0][..., 0]
    assert edges.shape == (64, 64)
    assert set(np.unique(edges).tolist()) <= {0, 255}
    assert edges[32, 14:19].max() == 255  # the box's left side
    assert edges[32, 24:40].max() == 0 and edges[2:10, 2:10].max() == 0  # flat inside/out


def test_learned_detector_runs_from_weights_on_disk(bundle, tmp_path: Path) -> None:
    """HED with random weights saved where a user would copy the real ones."""
    import torch
    from controlnet_aux.hed import ControlNetHED_Apache2

    torch.manual_seed(0)
    folder = tmp_path / "models" / "annotators"
    folder.mkdir(parents=True)
    torch.save(ControlNetHED_Apache2().state_dict(), folder / "ControlNetHED.pth")
    cs = build_controls(bundle, line_settings("softedge", "hed"), roots=[tmp_path / "models"])
    soft = cs.frames["softedge"][0]
    assert soft.shape == (64, 64, 3) and soft.dtype == np.uint8


class _Payload:
    """A pickle that would run code when loaded by an unrestricted unpickler."""

    def __reduce__(self):
        return (Path.touch, (Path(__file__).parent / ".pwned",))


def test_learned_weights_never_run_pickled_code(bundle, tmp_path: Path) -> None:
    import pickle

    folder = tmp_path / "models" / "annotators"
    folder.mkdir(parents=True)
    marker = Path(__file__).parent / ".pwned"
    marker.unlink(missing_ok=True)
    (folder / "ControlNetHED.pth").write_bytes(pickle.dumps({"w": _Payload()}))
    with pytest.raises(ModelError, match="refused to load hed weights"):
        build_controls(bundle, line_settings("softedge", "hed"), roots=[tmp_path / "models"])
    assert not marker.exists()

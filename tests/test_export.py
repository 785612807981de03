"""Export with real headless Cycles: the bundle is valid and the scene is left untouched."""

from __future__ import annotations

from pathlib import Path

import blender_env  # noqa: F401
import bpy
import numpy as np
import pytest
from storyboard import build_storyboard
from storyshade.bundle import load_bundle

from addon.errors import StoryShadeError
from addon.export import bundle as export


def _state(scene) -> dict:
    vl = scene.view_layers[0]
    return {
        "engine": scene.render.engine,
        "samples": scene.cycles.samples,
        "z": vl.use_pass_z,
        "normal": vl.use_pass_normal,
        "path": scene.render.filepath,
        "format": scene.render.image_settings.file_format,
        "frame": scene.frame_current,
        "filter": scene.render.filter_size,
    }


@pytest.fixture
def scene():
    sc = build_storyboard(frames=4, width=64, height=36)
    sc.render.engine = "BLENDER_EEVEE"
    sc.render.filepath = "//renders/user_path_"
    sc.frame_set(3)
    return sc


def test_bundle_matches_scene_and_validates(scene, tmp_path: Path) -> None:
    before = _state(scene)
    export.export_bundle(scene, tmp_path / "b", 2, 4)
    assert _state(scene) == before
    bundle = load_bundle(tmp_path / "b")
    shot = bundle.shot
    assert (shot.frame_start, shot.frame_end, shot.resolution) == (2, 4, (64, 36))
    assert shot.fps == 12
    cams = [np.asarray(f.camera.matrix_world) for f in shot.frames]
    assert not np.allclose(cams[0], cams[-1]), "the dolly must show in per-frame cameras"
    assert shot.frames[0].camera.lens == pytest.approx(35)
    depth, normal = bundle.read_passes(0)
    assert depth.shape == (36, 64)
    assert (depth == 1e10).any() and (depth < 100).any()  # sky and geometry
    lengths = np.linalg.norm(normal[depth < 100], axis=-1)
    assert np.allclose(lengths, 1, atol=1e-3)


def test_scene_restored_when_export_is_cancelled(scene, tmp_path: Path) -> None:
    before = _state(scene)
    steps = export.iter_export(scene, tmp_path / "b")
    assert next(steps) == (1, 4)
    assert _state(scene)["engine"] == "CYCLES"  # mid-export
    steps.close()  # what the panel's Cancel does
    assert _state(scene) == before
    assert not (tmp_path / "b" / "shot.json").exists()


def test_scene_restored_when_export_fails(scene, tmp_path: Path) -> None:
    before = _state(scene)
    (tmp_path / "b" / "frames" / "0002.exr").mkdir(parents=True)  # Cycles cannot write it
    with pytest.raises(StoryShadeError, match="did not write"):
        export.export_bundle(scene, tmp_path / "b")
    assert _state(scene) == before


def test_no_camera_and_inverted_range(scene, tmp_path: Path) -> None:
    with pytest.raises(StoryShadeError, match="inverted"):
        export.export_bundle(scene, tmp_path / "b", 5, 2)
    scene.camera = None
    with pytest.raises(StoryShadeError, match="no active camera"):
        export.export_bundle(scene, tmp_path / "b")
    assert bpy.context.scene.render.engine == "BLENDER_EEVEE"

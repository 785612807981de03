"""The `preview` engine: a cel-shaded draft from the control images, no model."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from storyshade.controls.normal import encode, normalize
from storyshade.engine import get_engine
from storyshade.engine.preview import SKY_HORIZON, SKY_TOP, shade
from storyshade.models.loader import ModelCache
from storyshade.presets import resolve


def controls_for(normal: np.ndarray, depth01: np.ndarray, bg: np.ndarray):
    rgb = np.floor(encode(normalize(normal), bg, "bae") * 255 + 0.5).astype(np.uint8)
    d = np.floor(np.where(bg, 0, depth01) * 255 + 0.5).astype(np.uint8)
    return np.repeat(d[..., None], 3, -1), rgb


def test_light_from_the_upper_left_fog_with_distance_sky_behind() -> None:
    h, w = 32, 64
    normal = np.zeros((h, w, 3), np.float32)
    normal[:, :32] = (-1, 1, 1)  # faces the key light (upper left, towards the viewer)
    normal[:, 32:] = (1, -1, 0.2)  # faces away from it
    depth = np.full((h, w), 0.9, np.float32)
    bg = np.zeros((h, w), bool)
    bg[:8] = True
    shaded = shade(*controls_for(normal, depth, bg))
    assert shaded.shape == (h, w, 3) and shaded.dtype == np.uint8
    out = shaded.astype(int)
    lit, dark = out[20, 10].sum(), out[20, 50].sum()
    assert lit > dark + 100
    assert np.abs(out[0, 0] - SKY_TOP).max() <= 2  # sky gradient at the top
    assert out[0, 0].sum() < out[7, 0].sum() <= SKY_HORIZON.sum() + 2
    assert out[8, 10].sum() < 150  # the silhouette against the sky is inked
    far = shade(*controls_for(normal, np.full((h, w), 0.05, np.float32), bg)).astype(int)
    # fog pulls the far copy's shadow side towards the horizon colour
    assert np.abs(far[20, 50] - SKY_HORIZON).sum() < np.abs(out[20, 50] - SKY_HORIZON).sum()


def test_preview_engine_renders_a_blender_shot_in_seconds(tmp_path: Path) -> None:
    pytest.importorskip("bpy")
    import blender_scenes as scenes
    from storyshade.bundle import load_bundle
    from storyshade.render import render_bundle

    scene = scenes.sphere(width=96, height=64)
    scenes.add_plane(scene, 40.0, (0.0, 0.0, -3.0), name="Wall")
    bundle = load_bundle(scenes.export(scene, tmp_path / "bundle"))
    settings = resolve("preview", {"width": 128, "height": 128})
    start = time.monotonic()
    written = render_bundle(bundle, settings, tmp_path / "out", roots=[])
    assert time.monotonic() - start < 20  # seconds, even on a busy 2-core machine
    assert [p.name for p in written] == ["0001.png"]
    frame = np.asarray(Image.open(written[0]).convert("RGB")).astype(int)
    assert frame.shape == (64, 96, 3)  # back at the scene's resolution, padding cropped
    # the sphere's upper left faces the key light, its lower right does not
    assert frame[32 - 8, 48 - 8].sum() > frame[32 + 8, 48 + 8].sum() + 60
    assert frame[32, 16:26].sum(-1).min() < 200  # ink on the silhouette (radius ~27 px)


def test_preview_needs_no_models() -> None:
    engine = get_engine("preview", [], ModelCache())
    assert engine.name == "preview"

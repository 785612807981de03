"""Control images from real Blender renders of analytic scenes.

Each scene is rendered once (Cycles, 1 sample, tens of pixels) through the add-on's export,
then turned into control images at a generation size equal to the render size, so every
pixel can be checked against what the geometry says it must be.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bpy")

import blender_scenes as scenes
from storyshade.bundle import load_bundle
from storyshade.controls import ControlSet, build_controls
from storyshade.controls.depth import robust_range
from storyshade.errors import BundleError
from storyshade.exr import write_depth_normal
from storyshade.settings import Settings

FACING = np.array([128, 128, 255])


@pytest.fixture(scope="module")
def render(tmp_path_factory: pytest.TempPathFactory):
    """render(name, scene_fn) → bundle folder; each scene is exported once per module."""
    done: dict[str, Path] = {}

    def _render(name: str, build) -> Path:
        if name not in done:
            done[name] = scenes.export(build(), tmp_path_factory.mktemp(name))
        return done[name]

    return _render


def controls(bundle_dir: Path, **overrides) -> ControlSet:
    bundle = load_bundle(bundle_dir)
    size = {"width": bundle.width, "height": bundle.height}
    return build_controls(bundle, Settings(**{**size, **overrides}))


def passes(bundle_dir: Path, index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return load_bundle(bundle_dir).read_passes(index)


def test_wall_facing_camera_has_uniform_depth_and_faces_the_camera(render) -> None:
    bundle = render("wall", lambda: scenes.wall(distance=5.0))
    depth, _ = passes(bundle)
    np.testing.assert_allclose(depth, 5.0, atol=1e-4)  # the known distance, everywhere
    cs = controls(bundle)
    d8, d16 = cs.frames["depth"][0], cs.depth16[0]
    assert len(np.unique(d8)) == 1 and len(np.unique(d16)) == 1
    assert cs.meta["depth_near"] < 5.0 < cs.meta["depth_far"]
    assert np.abs(cs.frames["normal"][0].astype(int) - FACING).max() <= 2


@pytest.mark.parametrize("yaw, brighter_red", [(45.0, False), (-45.0, True)])
def test_wall_turned_sideways_flips_red(render, yaw: float, brighter_red: bool) -> None:
    """Facing camera-right (+x) makes red drop below 128: BAE's red channel is (1 - nx)/2."""
    bundle = render(f"wall_yaw{yaw:+.0f}", lambda: scenes.wall(yaw_deg=yaw))
    normal = controls(bundle).frames["normal"][0].astype(int)
    red, green = normal[..., 0], normal[..., 1]
    if brighter_red:
        assert red.min() > 128
    else:
        assert red.max() < 128
    np.testing.assert_allclose(red, 255 * (1 - np.sin(np.radians(yaw))) / 2, atol=2)
    assert np.abs(green - 128).max() <= 2


def test_floor_seen_from_a_tilted_camera_is_green(render) -> None:
    bundle = render("floor", lambda: scenes.floor_from_above(tilt_deg=60.0))
    normal = controls(bundle).frames["normal"][0].astype(int)
    floor = passes(bundle)[0] < 1e9
    assert floor.mean() > 0.5
    green, red = normal[..., 1][floor], normal[..., 0][floor]
    assert green.min() > 128
    # camera pitched 60 degrees down: the up vector is 30 degrees from the camera's y axis
    np.testing.assert_allclose(green, 255 * (1 + np.cos(np.radians(30))) / 2, atol=2)
    assert np.abs(red - 128).max() <= 2


def test_sphere_has_a_smooth_gradient_with_its_centre_facing_the_camera(render) -> None:
    import cv2

    bundle = render("sphere", scenes.sphere)
    cs = controls(bundle)
    normal = cs.frames["normal"][0].astype(int)
    depth = cs.frames["depth"][0][..., 0].astype(int)
    h, w = normal.shape[:2]
    cy, cx = h // 2, w // 2
    centre = normal[cy - 1 : cy + 1, cx - 1 : cx + 1].reshape(-1, 3).mean(0)
    assert np.abs(centre - FACING).max() <= 2
    assert depth[cy - 1 : cy + 1, cx - 1 : cx + 1].min() >= depth.max() - 2  # nearest point
    # left faces left (red up), right faces right (red down), top up (green up)
    assert normal[cy, cx - 10, 0] > 160 and normal[cy, cx + 10, 0] < 96
    assert normal[cy - 10, cx, 1] > 160 and normal[cy + 10, cx, 1] < 96
    # smooth: inside the silhouette, red falls steadily left to right, with no jumps
    inside = cv2.erode((passes(bundle)[0] < 1e9).astype(np.uint8), np.ones((5, 5))) > 0
    row = normal[cy, :, 0][inside[cy]]
    assert np.all(np.diff(row) <= 0)
    for axis in (0, 1):
        step = np.abs(np.diff(normal, axis=axis)).max(-1)
        both = np.logical_and(*(np.moveaxis(inside, axis, 0)[s] for s in (np.s_[:-1], np.s_[1:])))
        assert step[np.moveaxis(both, 0, axis)].max() <= 24


def test_camera_roll_of_90_degrees_rotates_the_normal_image(render) -> None:
    """Rolling the camera +90 degrees turns the picture a quarter turn clockwise, and each
    camera-space normal (nx, ny) becomes (ny, -nx): R' = 255 - G, G' = R."""
    import cv2

    flat = controls(render("roll0", lambda: scenes.asymmetric(0.0)))
    rolled_bundle = render("roll90", lambda: scenes.asymmetric(90.0))
    rolled = controls(rolled_bundle)
    a = np.rot90(flat.frames["normal"][0], k=-1).astype(int)
    b = rolled.frames["normal"][0].astype(int)
    expected = np.stack([255 - a[..., 1], a[..., 0], a[..., 2]], axis=-1)
    fg = cv2.erode((passes(rolled_bundle)[0] < 1e9).astype(np.uint8), np.ones((3, 3))) > 0
    assert fg.mean() > 0.1
    err = np.abs(b - expected).max(-1)[fg]
    assert np.percentile(err, 99) <= 2
    assert np.abs(b - a).max(-1)[fg].mean() > 20  # the colours really changed
    depth_a = np.rot90(flat.frames["depth"][0], k=-1).astype(int)
    assert np.percentile(np.abs(rolled.frames["depth"][0].astype(int) - depth_a)[fg], 99) <= 1


def test_object_entering_mid_shot_leaves_a_static_walls_depth_alone(render) -> None:
    bundle = render("enters", lambda: scenes.object_enters(frames=5, enter_at=3))
    cs = controls(bundle)
    depths = [passes(bundle, i)[0] for i in range(5)]
    cube = [(d < 4.0).any() for d in depths]
    assert cube == [False, False, True, True, True]
    wall = np.logical_and.reduce([np.abs(d - 5.0) < 1e-3 for d in depths])
    assert wall.mean() > 0.5
    values = np.stack([f[..., 0][wall] for f in cs.frames["depth"]]).astype(int)
    assert values.max() - values.min() <= 1  # at most 1/255 across the shot
    assert cs.frames["depth"][4][..., 0][depths[4] < 4.0].min() > values.max()  # cube nearer
    # a per-frame range would have moved the wall: the shot-wide one is what holds it still
    assert robust_range(depths[:1]) != robust_range(depths)


@pytest.mark.parametrize(
    "convention, colour", [("bae", (128, 128, 255)), ("midas", (255, 128, 128))]
)
def test_background_gets_exactly_the_documented_values(render, convention, colour) -> None:
    bundle = render("sphere", scenes.sphere)
    bg = passes(bundle)[0] >= 1e9
    assert 0.3 < bg.mean() < 0.95
    cs = controls(bundle, normal_convention=convention)
    assert (cs.frames["depth"][0][bg] == 0).all()
    assert (cs.depth16[0][bg] == 0).all()
    assert (cs.frames["normal"][0][bg] == colour).all()
    # padded into a square generation size: the margins and the background stay exact
    padded = controls(bundle, normal_convention=convention, width=128, height=128)
    x, y, w, h = padded.meta["content_box"]
    assert (x, w) == (0, 128) and y > 0
    normal, depth = padded.frames["normal"][0], padded.frames["depth"][0]
    margin = np.ones(normal.shape[:2], bool)
    margin[y : y + h] = False
    assert (normal[margin] == colour).all() and (depth[margin] == 0).all()
    corner = normal[y : y + 8, :8]
    assert (corner == colour).all() and (depth[y : y + 8, :8] == 0).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_infinite_depth_is_rejected_with_a_clear_error(render, tmp_path, bad) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(render("sphere", scenes.sphere), bundle)
    depth, normal = passes(bundle)
    depth[3, 4] = bad
    write_depth_normal(bundle / "frames" / "0001.exr", depth, normal)
    with pytest.raises(BundleError, match="NaN or infinite") as info:
        controls(bundle)
    assert "frames[0]" in str(info.value) and "Fix:" in str(info.value)

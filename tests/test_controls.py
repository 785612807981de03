"""Control images from synthetic bundles: depth range modes, encodings, sizes, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import write_synthetic_bundle
from storyshade.bundle import load_bundle
from storyshade.cli import main
from storyshade.controls import build_controls
from storyshade.controls.lines import geometry_edges, lineart, softedge
from storyshade.controls.normal import decode, encode, normalize
from storyshade.controls.sizing import SizeMap, cover_resize, suggest_generation_size
from storyshade.errors import StoryShadeError
from storyshade.presets import resolve
from storyshade.progress import Reporter
from storyshade.settings import Settings, validate_settings

BG = 1e10


def box_depth(i: int, w: int = 64, h: int = 48) -> np.ndarray:
    """A wall at 8 with a box at 4 sliding right one step per frame; sky in the top rows."""
    d = np.full((h, w), 8.0, np.float32)
    d[:6] = BG
    d[20:30, 10 + 4 * i : 22 + 4 * i] = 4.0
    return d


@pytest.fixture
def box_bundle(tmp_path: Path) -> Path:
    return write_synthetic_bundle(tmp_path / "box", frames=4, depth_fn=box_depth, frame_start=7)


def settings(**kw) -> Settings:
    return Settings(**{"width": 64, "height": 64, **kw})


def crop(cs, image: np.ndarray) -> np.ndarray:
    """The picture inside the padding (64x48 renders sit in 64x64 at unit scale)."""
    x, y, w, h = cs.meta["content_box"]
    return image[y : y + h, x : x + w]


# -- depth ------------------------------------------------------------------------------------


def test_depth_is_inverse_with_one_range_for_the_shot(box_bundle: Path) -> None:
    cs = build_controls(load_bundle(box_bundle), settings())
    near, far = cs.meta["depth_near"], cs.meta["depth_far"]
    assert cs.meta["depth_range"] == "robust" and near <= 4.0 and far >= 8.0
    depth = [crop(cs, f[..., 0]) for f in cs.frames["depth"]]
    assert all((f[:6] == 0).all() for f in depth)  # background
    box = depth[0][25, 15]
    # the near percentile is white; the far one sits just above the background's 0
    assert box == 255 and depth[0][40, 40] == round(255 * 0.1 / 1.1)
    assert len({int(f[40, 60]) for f in depth}) == 1  # the wall never changes
    for f in cs.frames["depth"]:
        assert f.dtype == np.uint8 and f.shape == (64, 64, 3)
        assert (f[..., 0] == f[..., 1]).all() and (f[..., 1] == f[..., 2]).all()
    d16 = crop(cs, cs.depth16[0])
    assert d16.dtype == np.uint16 and abs(int(d16[25, 15]) / 257 - int(box)) <= 1


def test_robust_range_ignores_a_few_outlier_pixels(tmp_path: Path) -> None:
    def depth(i: int) -> np.ndarray:
        d = np.linspace(4.0, 8.0, 64 * 48, dtype=np.float32).reshape(48, 64)
        d[0, 0] = 0.001  # a stray near pixel must not crush the rest to black
        return d

    bundle = load_bundle(write_synthetic_bundle(tmp_path / "b", frames=2, depth_fn=depth))
    cs = build_controls(bundle, settings())
    assert 3.9 < cs.meta["depth_near"] < 4.2
    image = crop(cs, cs.frames["depth"][0])[..., 0]
    assert image[0, 1] >= 253 and 20 <= image[-1, -1] <= 24  # 4 near-white, 8 just above 0


def test_clip_and_fixed_ranges(box_bundle: Path) -> None:
    bundle = load_bundle(box_bundle)
    clip = build_controls(bundle, settings(depth_range="clip")).meta
    assert (clip["depth_near"], clip["depth_far"]) == (0.1, 100.0)
    fixed = build_controls(bundle, settings(depth_range="fixed", depth_near=2, depth_far=16))
    assert (fixed.meta["depth_near"], fixed.meta["depth_far"]) == (2.0, 16.0)
    # 1/4 on a 2..16 scale: (1/4 - 1/16) / (1/2 - 1/16) = 3/7
    assert crop(fixed, fixed.frames["depth"][0])[25, 15, 0] == round(255 * 3 / 7)


def test_fixed_range_needs_near_and_far(box_bundle: Path) -> None:
    # refused where settings are made (a submit, the CLI, presets), naming the field...
    with pytest.raises(StoryShadeError, match="needs depth_far") as err:
        validate_settings({"depth_range": "fixed", "depth_near": 1})
    assert err.value.field == "settings.depth_far"
    with pytest.raises(StoryShadeError, match="greater than depth_near"):
        validate_settings({"depth_range": "fixed", "depth_near": 5, "depth_far": 2})
    # ...and still by the controls, for settings copied past validation
    for update in ({"depth_near": 1.0}, {"depth_near": 5.0, "depth_far": 2.0}):
        unchecked = settings().model_copy(update={"depth_range": "fixed", **update})
        with pytest.raises(StoryShadeError, match="depth_near"):
            build_controls(load_bundle(box_bundle), unchecked)


def test_range_is_recorded_in_the_job_events(box_bundle: Path) -> None:
    events: list[dict] = []
    build_controls(load_bundle(box_bundle), settings(), Reporter(events.append))
    notes = [e for e in events if e["type"] == "note"]
    assert notes and notes[-1]["controls"]["depth_range"] == "robust"
    assert notes[-1]["controls"]["content_box"] == [0, 8, 64, 48]


# -- normals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "normal, bae, midas",
    [
        ((0, 0, 1), (128, 128, 255), (255, 128, 128)),  # facing the camera
        ((1, 0, 0), (0, 128, 128), (128, 128, 0)),  # facing camera-right
        ((0, 1, 0), (128, 255, 128), (128, 255, 128)),  # facing up
    ],
)
def test_normal_conventions(normal, bae, midas) -> None:
    n = np.array([[normal]], np.float32)
    no_bg = np.zeros((1, 1), bool)
    for convention, expected in (("bae", bae), ("midas", midas)):
        rgb = np.floor(encode(n, no_bg, convention) * 255 + 0.5).astype(np.uint8)
        assert tuple(rgb[0, 0]) == expected
        np.testing.assert_allclose(decode(rgb, convention), n, atol=0.01)


def test_world_normals_are_rotated_into_camera_space(tmp_path: Path) -> None:
    """A camera turned to look along world +X sees a wall facing world -X head on."""
    root = write_synthetic_bundle(
        tmp_path / "b",
        frames=1,
        normal_fn=lambda i: np.broadcast_to(np.float32([-1, 0, 0]), (48, 64, 3)).copy(),
    )
    shot = json.loads((root / "shot.json").read_text())
    turn = [[0, 0, -1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]]  # -90 about Y: looks at +X
    shot["frames"][0]["camera"]["matrix_world"] = turn
    (root / "shot.json").write_text(json.dumps(shot))
    cs = build_controls(load_bundle(root), settings(normal_convention="bae"))
    assert np.abs(cs.frames["normal"][0].astype(int) - (128, 128, 255)).max() <= 1


# -- sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "render", [(1920, 1080), (1080, 1920), (640, 480), (512, 512), (2048, 858)]
)
def test_fit_pad_keeps_the_aspect_and_maps_back(render) -> None:
    gen = (512, 512)
    m = SizeMap.fit(render, gen)
    x, y, w, h = m.box
    assert abs(w / h - render[0] / render[1]) < 0.02
    assert (w == gen[0] and x == 0) or (h == gen[1] and y == 0)
    rng = np.random.default_rng(0)
    scene = cv2.resize(rng.integers(0, 255, (9, 16, 3), np.uint8), render, cv2.INTER_CUBIC)
    generated = m.place(m.to_content(scene), 0)
    assert generated.shape == (512, 512, 3)
    back = m.to_scene(generated)
    assert back.shape == (render[1], render[0], 3)
    assert np.abs(back.astype(int) - scene).mean() < 6  # only resampling blur is lost
    # the renderer's cover_resize finds the same picture inside the padding
    assert np.abs(cover_resize(generated, *render).astype(int) - back).mean() < 6


def test_suggested_sizes_keep_the_aspect_on_a_64_grid() -> None:
    assert suggest_generation_size((1920, 1080)) == (704, 384)
    assert suggest_generation_size((1024, 1024)) == (512, 512)
    w, h = suggest_generation_size((2048, 858))
    assert w % 64 == 0 and h % 64 == 0
    w, h = suggest_generation_size((1000, 333), 512 * 512)
    assert w % 8 == 0 and h % 8 == 0 and abs(w / h - 1000 / 333) < 0.12


def test_generation_size_must_be_a_multiple_of_8() -> None:
    with pytest.raises(StoryShadeError, match="multiple of 8"):
        validate_settings({"width": 500})


def test_controls_at_generation_size_are_padded(box_bundle: Path) -> None:
    cs = build_controls(load_bundle(box_bundle), settings(width=128, height=128))
    x, y, w, h = cs.meta["content_box"]
    assert (x, y, w, h) == (0, 16, 128, 96)
    for role in ("depth", "normal"):
        assert all(f.shape == (128, 128, 3) for f in cs.frames[role])
    assert (cs.frames["depth"][0][:16] == 0).all()
    assert (cs.frames["normal"][0][:16] == (128, 128, 255)).all()
    assert cs.to_scene(cs.frames["depth"][0]).shape == (48, 64, 3)


# -- derived lines ----------------------------------------------------------------------------


def test_geometry_edges_sit_on_the_near_side_of_a_depth_jump() -> None:
    d = np.zeros((20, 20), np.float32)
    d[:, :10] = 0.8  # near half on the left
    d[:, 10:] = 0.2
    n = np.zeros((20, 20, 3), np.float32)
    n[..., 2] = 1
    edges = geometry_edges(d, n, np.zeros((20, 20), bool))
    assert edges[:, 9].all() and not edges[:, 10].any() and edges.sum() == 20


def test_geometry_edges_find_creases_and_silhouettes() -> None:
    d = np.full((20, 20), 0.5, np.float32)
    n = np.zeros((20, 20, 3), np.float32)
    n[..., 2] = 1
    n[:, 10:] = normalize(np.float32([1, 0, 1]))  # 45 degrees: a crease
    bg = np.zeros((20, 20), bool)
    bg[:3] = True
    d[:3] = 0
    edges = geometry_edges(d, n, bg)
    assert edges[5:, 9].all()  # crease
    assert edges[3, :].all() and not edges[:3].any()  # silhouette drawn on the object


def test_line_roles_are_white_on_black(box_bundle: Path) -> None:
    s = settings(
        controls={
            "depth": {"model": "d"},
            "normal": {"model": "n"},
            "lineart": {"model": "l"},
            "softedge": {"model": "s", "detector": "geometry"},
        }
    )
    cs = build_controls(load_bundle(box_bundle), s)
    assert cs.meta["derived"] == {"lineart": "geometry", "softedge": "geometry"}
    line, soft = cs.frames["lineart"][0], cs.frames["softedge"][0]
    assert line.shape == soft.shape == (64, 64, 3)
    assert line.max() == 255 and np.median(line) == 0
    assert (soft > 0).sum() > (line > 0).sum()  # soft edges are wider
    # the box outline: its left edge is inked, the wall beside it is not
    y0 = cs.meta["content_box"][1]
    assert line[y0 + 25, 10, 0] == 255 and line[y0 + 25, 5, 0] == 0


def test_line_renderers_keep_black_background() -> None:
    mask = np.zeros((16, 16), bool)
    assert lineart(mask).max() == 0 and softedge(mask).max() == 0


def test_detector_is_only_for_line_roles() -> None:
    with pytest.raises(StoryShadeError, match="drop 'detector'"):
        validate_settings({"controls": {"depth": {"model": "d", "detector": "canny"}}})
    with pytest.raises(StoryShadeError):
        validate_settings({"controls": {"lineart": {"model": "l", "detector": "magic"}}})


# -- the `storyshade controls` command --------------------------------------------------------


def test_cli_writes_exactly_the_engines_images(box_bundle: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "controls"
    args = ["--preset", "preview,tiny", "--lines", "lineart,softedge"]
    code = main(["controls", str(box_bundle), "--out", str(out), *args])
    assert code == 0
    assert "contact_sheet.png" in capsys.readouterr().out
    expected = build_controls(
        load_bundle(box_bundle), resolve("preview,tiny"), extra_roles=("lineart", "softedge")
    )
    for role in ("depth", "normal", "lineart", "softedge"):
        names = sorted(p.name for p in (out / role).iterdir())
        assert names == ["0007.png", "0008.png", "0009.png", "0010.png"]  # scene frames
        for frame, image in zip((7, 8, 9, 10), expected.frames[role], strict=True):
            written = cv2.cvtColor(
                cv2.imread(str(out / role / f"{frame:04d}.png")), cv2.COLOR_BGR2RGB
            )
            assert (written == image).all()
    d16 = cv2.imread(str(out / "depth16" / "0007.png"), cv2.IMREAD_UNCHANGED)
    assert d16.dtype == np.uint16 and (d16 == expected.depth16[0]).all()
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[1] > 4 * 64
    meta = json.loads((out / "controls.json").read_text())
    assert meta["depth_range"] == "robust" and meta["frames"] == [7, 8, 9, 10]


def test_cli_reports_problems_in_one_line(tmp_path: Path, capsys) -> None:
    assert main(["controls", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no shot.json" in err and "Fix:" in err


def test_cli_rejects_nan_depth(tmp_path: Path, capsys) -> None:
    def depth(i: int) -> np.ndarray:
        d = np.full((48, 64), 5.0, np.float32)
        d[1, 1] = np.nan
        return d

    root = write_synthetic_bundle(tmp_path / "nan", frames=1, depth_fn=depth)
    assert main(["controls", str(root), "--out", str(tmp_path / "o")]) == 2
    assert "NaN or infinite" in capsys.readouterr().err

"""Per-object looks on the server side: version-2 bundles (regions table + Object Index
pass) validate, version 1 still does; region maps reach the controls (`storyshade
controls` writes them with a legend), unseen looks are a warning, and the preview engine
paints looks in their base colours."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import write_synthetic_bundle
from storyshade.bundle import load_bundle, parse_shot
from storyshade.cli import main
from storyshade.controls import build_controls
from storyshade.errors import BundleError
from storyshade.presets import resolve
from storyshade.progress import Reporter
from storyshade.render import render_bundle
from storyshade.server.upload import check_passes

CRATE = {"id": 1, "name": "Crate", "prompt": "a wooden crate", "color": [0.8, 0.2, 0.1]}
GIRL = {"id": 2, "name": "Girl", "prompt": "a girl in a red coat"}


def _ids(i: int) -> np.ndarray:
    """A crate in the left half of every frame; the girl enters the right half at frame 3."""
    ids = np.zeros((48, 64), np.uint8)
    ids[10:30, 4:28] = 1
    if i >= 2:
        ids[10:40, 40:60] = 2
    return ids


def _bundle(tmp_path: Path, regions=(CRATE, GIRL), ids_fn=_ids, frames: int = 4) -> Path:
    return write_synthetic_bundle(
        tmp_path / "b", frames=frames, ids_fn=ids_fn, regions=[dict(r) for r in regions]
    )


def test_a_version_2_bundle_carries_looks_and_region_maps(tmp_path) -> None:
    bundle = load_bundle(_bundle(tmp_path))
    assert [(r.id, r.name) for r in bundle.shot.regions] == [(1, "Crate"), (2, "Girl")]
    check_passes(bundle)  # what the server runs at upload
    _depth, _normal, ids = bundle.read_frame(3)
    assert ids.dtype == np.uint8 and np.array_equal(ids, _ids(3))
    assert bundle.read_passes(0)[0].shape == (48, 64)


def test_version_1_bundles_still_validate(tmp_path) -> None:
    bundle = load_bundle(write_synthetic_bundle(tmp_path / "b", frames=2))
    assert bundle.shot.version == 1 and bundle.shot.regions == []
    assert bundle.read_frame(0)[2] is None


def _shot(tmp_path: Path, **edit) -> bytes:
    shot = json.loads((_bundle(tmp_path) / "shot.json").read_text())
    shot.update(edit)
    return json.dumps(shot).encode()


@pytest.mark.parametrize(
    "edit, says",
    [
        ({"regions": [{**CRATE, "prompt": "  "}]}, "needs a prompt"),
        ({"regions": [CRATE, {**GIRL, "id": 1}]}, "share one region id"),
        ({"regions": [{**CRATE, "id": i + 1, "name": f"n{i}"} for i in range(17)]}, "at most 16"),
        ({"regions": [{**CRATE, "id": 0}]}, "greater than or equal to 1"),
        ({"regions": [{**CRATE, "color": [2, 0, 0]}]}, "between 0 and 1"),
        ({"regions": [CRATE], "version": 1}, "need bundle version 2"),
        ({"version": 4}, "reads versions 1, 2, 3"),
    ],
)
def test_bad_looks_are_errors_naming_the_field(tmp_path, edit, says) -> None:
    with pytest.raises(BundleError, match=says) as err:
        parse_shot(_shot(tmp_path, **edit))
    assert err.value.field.startswith("shot.json")


def test_an_id_in_the_pass_without_a_look_is_refused_at_upload(tmp_path) -> None:
    bundle = load_bundle(_bundle(tmp_path, regions=(CRATE,)))  # the girl's id 2 is not listed
    with pytest.raises(BundleError, match="region id 2") as err:
        check_passes(bundle)
    assert err.value.field == "frames[2].file"


def test_a_look_pass_without_the_object_index_is_refused(tmp_path) -> None:
    root = write_synthetic_bundle(tmp_path / "b", frames=2)
    shot = json.loads((root / "shot.json").read_text())
    shot.update(version=2, regions=[CRATE])
    (root / "shot.json").write_text(json.dumps(shot))
    with pytest.raises(BundleError, match="Object Index"):
        check_passes(load_bundle(root))


def test_controls_write_region_maps_legend_and_sheet_column(tmp_path) -> None:
    out = tmp_path / "controls"
    assert main(["controls", str(_bundle(tmp_path)), "--out", str(out), "--size", "128x96"]) == 0
    legend = json.loads((out / "regions.json").read_text())
    assert legend["1"] == {"name": "Crate", "prompt": "a wooden crate", "color": [204, 51, 26]}
    assert legend["2"]["name"] == "Girl" and len(legend["2"]["color"]) == 3
    first = cv2.cvtColor(cv2.imread(str(out / "regions" / "0001.png")), cv2.COLOR_BGR2RGB)
    last = cv2.cvtColor(cv2.imread(str(out / "regions" / "0004.png")), cv2.COLOR_BGR2RGB)
    # generated at twice the render size: render pixel (y, x) is (2y, 2x) here
    assert tuple(first[40, 20]) == (204, 51, 26) and tuple(first[0, 0]) == (0, 0, 0)
    assert tuple(first[40, 100]) == (0, 0, 0)  # the girl has not entered yet
    assert tuple(last[40, 100]) == tuple(legend["2"]["color"])
    sheet = cv2.cvtColor(cv2.imread(str(out / "contact_sheet.png")), cv2.COLOR_BGR2RGB)
    assert (sheet == (204, 51, 26)).all(-1).sum() > 50  # the regions column
    plain = tmp_path / "plain"
    main(["controls", str(write_synthetic_bundle(tmp_path / "p")), "--out", str(plain)])
    assert not (plain / "regions").exists() and not (plain / "regions.json").exists()


def test_a_look_never_visible_is_a_warning_in_the_events(tmp_path) -> None:
    hidden = {"id": 3, "name": "Ghost", "prompt": "a ghost"}
    bundle = load_bundle(_bundle(tmp_path, regions=(CRATE, GIRL, hidden)))
    events: list[dict] = []
    controls = build_controls(
        bundle, resolve("preview", {"width": 64, "height": 64}), Reporter(events.append)
    )
    notes = [e["message"] for e in events if e["type"] == "note"]
    assert any("'Ghost' is not visible in any frame" in n for n in notes), notes
    assert len(controls.regions) == 4 and controls.regions[0].shape == (64, 64)


def test_preview_paints_looks_in_their_base_colours(tmp_path) -> None:
    settings = resolve("preview", {"width": 64, "height": 64})
    plain = render_bundle(
        load_bundle(write_synthetic_bundle(tmp_path / "p", frames=1)),
        settings,
        tmp_path / "o1",
        roots=[],
    )
    looked = render_bundle(
        load_bundle(_bundle(tmp_path, frames=1)), settings, tmp_path / "o2", roots=[]
    )
    a = cv2.cvtColor(cv2.imread(str(plain[0])), cv2.COLOR_BGR2RGB).astype(int)
    b = cv2.cvtColor(cv2.imread(str(looked[0])), cv2.COLOR_BGR2RGB).astype(int)
    crate = b[14:26, 8:24].reshape(-1, 3).mean(0)
    assert crate[0] > crate[1] + 60 and crate[0] > crate[2] + 60  # reddish, as its colour
    assert np.abs(a[40:46, 30:36] - b[40:46, 30:36]).max() <= 1  # no look: unchanged

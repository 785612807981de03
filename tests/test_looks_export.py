"""Per-object looks through real headless Cycles: the Object Index pass holds each look's
region id, exactly; looks are inherited from parents and collections; the user's pass
indices and view-layer settings come back exactly, also when the export stops early."""

from __future__ import annotations

import json
from pathlib import Path

import blender_env  # noqa: F401
import blender_scenes as bs
import bpy
import numpy as np
import pytest
from storyshade.bundle import load_bundle

import addon
from addon.errors import StoryShadeError
from addon.export import bundle as export
from addon.looks import looks_file, resolve


@pytest.fixture(scope="module", autouse=True)
def look_props():
    """The look PropertyGroup on objects and collections: the add-on, registered."""
    mine = not hasattr(bpy.types.Object, "storyshade_look")
    if mine:
        addon.register()
    yield
    if mine:
        addon.unregister()


def _file(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "looks.json"
    path.write_text(json.dumps(data))
    return path


def _ids(bundle_dir: Path) -> list[np.ndarray]:
    bundle = load_bundle(bundle_dir)
    return [bundle.read_frame(i)[2] for i in range(len(bundle))]


def test_object_entering_is_in_no_region_map_before_it_enters(tmp_path) -> None:
    scene = bs.object_enters(frames=5, enter_at=3)
    cube = scene.objects["Cube"]
    cube.pass_index = 7  # the user's own pass index, to be restored
    layer = scene.view_layers[0]
    overrides = looks_file.load_looks_file(
        _file(
            tmp_path, {"objects": {"Cube": {"prompt": "a wooden crate", "color": [0.6, 0.4, 0.2]}}}
        ),
        scene,
    )
    export.export_bundle(scene, tmp_path / "b", looks=overrides)

    shot = json.loads((tmp_path / "b" / "shot.json").read_text())
    assert shot["version"] == 2
    assert shot["regions"] == [
        {"id": 1, "name": "Cube", "prompt": "a wooden crate", "negative": "", "weight": 1.0,
         "color": [0.6, 0.4, 0.2]}
    ]  # fmt: skip
    ids = _ids(tmp_path / "b")
    assert [int((m == 1).sum()) for m in ids[:2]] == [0, 0]  # frames 1-2: not in view
    assert all((m == 1).sum() > 20 for m in ids[2:])  # from frame 3: the cube's pixels
    assert all(set(np.unique(m).tolist()) <= {0, 1} for m in ids)
    assert (cube.pass_index, layer.use_pass_object_index) == (7, False)


def test_looks_are_inherited_from_parents_and_collections(tmp_path) -> None:
    scene = bs.new_scene(width=96, height=64)
    bs.add_camera(scene, (0.0, 0.0, 6.0))
    left = bs.add_cube(scene, 0.8, (-1.0, 0.0, 0.0))
    right = bs.add_cube(scene, 0.8, (1.0, 0.0, 0.0))
    hand = bs.add_cube(scene, 0.3, (0.0, 0.0, 0.5))
    hand.parent = right
    wall = bs.add_plane(scene, 40.0, name="Wall")
    wall.location.z = -2.0
    girl = bpy.data.collections.new("Girl")
    scene.collection.children.link(girl)
    for obj in (left, right):
        scene.collection.objects.unlink(obj)
        girl.objects.link(obj)
    girl.storyshade_look.enabled = True
    girl.storyshade_look.prompt = "a girl in a red coat"
    wall.storyshade_look.enabled = True
    wall.storyshade_look.prompt = "a brick wall"

    regions, by_object = resolve.shot_regions(scene)
    assert [(r["id"], r["name"]) for r in regions] == [(1, "Girl"), (2, "Wall")]
    assert by_object == {left.name: 1, right.name: 1, hand.name: 1, "Wall": 2}

    export.export_bundle(scene, tmp_path / "b")
    (ids,) = _ids(tmp_path / "b")
    assert set(np.unique(ids).tolist()) == {1, 2}  # no pixel without a look here
    assert ids[32, 48 - 16] == 1 and ids[32, 48 + 16] == 1 and ids[2, 2] == 2


def test_a_looks_file_naming_nothing_is_an_error(tmp_path) -> None:
    scene = bs.object_enters()
    for data, says in (
        ({"objects": {"Crate": {"prompt": "x"}}}, "object 'Crate'"),
        ({"collections": {"Girl": {"prompt": "x"}}}, "collection 'Girl'"),
        ({"objects": {"Cube": {"prompt": ""}}}, "non-empty"),
        ({"objects": {"Cube": {"prompt": "x", "colour": [1, 0, 0]}}}, "unknown keys"),
        ({"objects": {"Cube": {"prompt": "x", "color": [2, 0, 0]}}}, "values 0-1"),
        ({"people": {}}, "must be"),
    ):
        with pytest.raises(StoryShadeError, match=says):
            looks_file.load_looks_file(_file(tmp_path, data), scene)


def test_bad_looks_fail_before_any_frame_and_leave_the_scene_alone(tmp_path) -> None:
    scene = bs.object_enters()
    cube = scene.objects["Cube"]
    cube.storyshade_look.enabled = True  # a look with no prompt
    with pytest.raises(StoryShadeError, match="no prompt"):
        export.export_bundle(scene, tmp_path / "b")
    assert not (tmp_path / "b" / "frames").exists() or not any(
        (tmp_path / "b" / "frames").iterdir()
    )

    many = {"objects": {}}
    for i in range(17):
        obj = bs.add_cube(scene, 0.1, (i * 0.2, 0.0, 0.0))
        many["objects"][obj.name] = {"prompt": f"thing {i}"}
    overrides = looks_file.load_looks_file(_file(tmp_path, many), scene)
    with pytest.raises(StoryShadeError, match="at most 16"):
        export.export_bundle(scene, tmp_path / "c", looks=overrides)
    assert cube.pass_index == 0 and not scene.view_layers[0].use_pass_object_index


def test_pass_indices_come_back_when_the_export_stops_early(tmp_path) -> None:
    scene = bs.object_enters(frames=4)
    scene.objects["Wall"].pass_index = 3
    overrides = looks_file.load_looks_file(
        _file(tmp_path, {"objects": {"Cube": {"prompt": "a crate"}}}), scene
    )
    steps = export.iter_export(scene, tmp_path / "b", looks=overrides)
    next(steps)
    assert scene.objects["Wall"].pass_index == 0  # during the export: no look, id 0
    steps.close()  # cancel
    assert scene.objects["Wall"].pass_index == 3
    assert scene.objects["Cube"].pass_index == 0
    assert not scene.view_layers[0].use_pass_object_index


def test_a_shot_without_looks_stays_a_version_1_bundle(tmp_path) -> None:
    scene = bs.object_enters(frames=2)
    export.export_bundle(scene, tmp_path / "b")
    shot = json.loads((tmp_path / "b" / "shot.json").read_text())
    assert shot["version"] == 1 and "regions" not in shot

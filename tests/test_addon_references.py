"""Reference images in the add-on: stored in the .blend (the scene's style references and
each look's character references), sent as `settings.references` with the images inside
the bundle, and every bad input refused before anything is exported (panel message, CLI
exit 2). Real bpy and Cycles; the server is the scripted fake (the real one:
test_addon_references_server.py)."""

from __future__ import annotations

import json
from pathlib import Path

import bpy
import pytest
from test_addon_helpers import FakeClient, enable_prefs, png_bytes
from test_addon_session import registered  # noqa: F401 (autouse: add-on, scene, preferences)

from addon import compat
from addon.errors import InputError
from addon.looks.reference_files import wire_settings
from addon.operators import cli
from addon.session import runtime
from addon.session.shade import DONE, ShadeRequest, ShadeSession


@pytest.fixture
def scene(registered):  # noqa: F811
    return registered


def _png(path: Path, rgb=(200, 80, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(8, 8, rgb))
    return path


def _refs(collection, *entries) -> None:
    for image, weight in entries:
        item = collection.add()
        item.image, item.weight = str(image), weight


def _girl(scene, tmp_path: Path):
    """The cube is the Girl: a look with a character reference."""
    cube = bpy.data.objects["Cube"]
    cube.name = "Girl"
    look = cube.storyshade_look
    look.enabled, look.prompt = True, "a girl in a red coat"
    _refs(look.references, (_png(tmp_path / "refs" / "girl.png", (250, 20, 20)), 0.9))
    return cube


def _session(scene, fake, tmp_path: Path, settings: dict | None = None) -> ShadeSession:
    request = ShadeRequest(
        settings={"preset": "tiny", "seed": 1, **(settings or {})},
        output_pattern=str(tmp_path / "takes" / "{shot}" / "{take}"),
        server_url=fake.url,
    )
    return ShadeSession(scene, fake, request)


def test_references_survive_saving_and_opening_the_blend(scene, tmp_path: Path) -> None:
    style = _png(tmp_path / "palette.png")
    _refs(scene.storyshade.references, (style, 0.6), ("//refs/b.jpg", 1.3))
    girl = _girl(scene, tmp_path)
    girl.storyshade_look.bank = str(tmp_path / "bank" / "Girl")
    coll = bpy.data.collections.new("Crowd")
    scene.collection.children.link(coll)
    _refs(coll.storyshade_look.references, ("//crowd.webp", 0.4))
    blend = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    scene = bpy.context.scene
    assert [(r.image, round(r.weight, 3)) for r in scene.storyshade.references] == [
        (str(style), 0.6),
        ("//refs/b.jpg", 1.3),
    ]
    look = bpy.data.objects["Girl"].storyshade_look
    assert [(Path(r.image).name, round(r.weight, 3)) for r in look.references] == [
        ("girl.png", 0.9)
    ]
    assert look.bank == str(tmp_path / "bank" / "Girl")
    crowd = bpy.data.collections["Crowd"].storyshade_look.references
    assert [(r.image, round(r.weight, 3)) for r in crowd] == [("//crowd.webp", 0.4)]


def test_style_and_look_references_travel_inside_the_bundle(scene, tmp_path: Path) -> None:
    style = _png(tmp_path / "palette.png")
    _refs(scene.storyshade.references, (style, 0.6))
    _girl(scene, tmp_path)
    fake = FakeClient(frames=[1])
    session = _session(scene, fake, tmp_path).run_blocking()
    assert session.outcome == DONE, session.text
    sent = fake.submitted["settings"]["references"]
    assert sent == [
        {"image": "references/1-palette.png", "weight": 0.6},
        {"image": "references/2-girl.png", "weight": 0.9, "look": "Girl"},
    ]
    assert {"references/1-palette.png", "references/2-girl.png"} <= set(fake.submitted["files"])
    # the take keeps the files' own paths, so it can be re-shaded from them
    strip = compat.all_strips(scene.sequence_editor)[session.strip_name]
    kept = json.loads(strip["storyshade_settings"])["references"]
    assert kept[0] == {"image": str(style), "weight": 0.6}
    assert kept[1]["look"] == "Girl" and Path(kept[1]["image"]).is_file()


def test_cli_references_replace_the_blends(scene, tmp_path: Path, monkeypatch) -> None:
    _refs(scene.storyshade.references, (_png(tmp_path / "palette.png"), 0.6))
    _girl(scene, tmp_path)
    other = _png(tmp_path / "cli" / "other.png")
    monkeypatch.chdir(tmp_path / "cli")
    args = cli._parser().parse_args(
        ["shade", "--reference", "other.png:0.5", "--reference", "other.png@Girl"]
    )
    settings = cli._settings(args, scene)
    session = _session(scene, FakeClient(frames=[1]), tmp_path, settings)
    assert session.request.settings["references"] == [
        {"image": str(other), "weight": 0.5},
        {"image": str(other), "weight": 0.8, "look": "Girl"},
    ]
    session.cancel()


def _bad_file(tmp_path: Path, kind: str) -> Path:
    if kind == "missing":
        return tmp_path / "nowhere.png"
    if kind == "format":
        path = tmp_path / "anim.gif"
        path.write_bytes(b"GIF89a" + b"\0" * 20)
        return path
    path = tmp_path / "notes.png"  # a .png that is text
    path.write_text("not an image", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("missing", "is not there"),
        ("format", "'.gif' is not an image format"),
        ("magic", "is not a PNG file"),
    ],
)
def test_a_bad_image_stops_shade_in_the_panel_before_export(scene, tmp_path, kind, says) -> None:
    bad = _bad_file(tmp_path, kind)
    _refs(scene.storyshade.references, (bad, 0.8))
    with pytest.raises(RuntimeError):  # background mode: the operator's error raises
        bpy.ops.storyshade.shade()
    st = runtime.status(scene)
    assert st.is_error and str(bad) in st.text and says in st.text, st.text
    assert st.fix
    assert not (tmp_path / "takes").exists(), "nothing was exported or made"


def test_too_many_references_and_an_empty_row_are_refused(scene, tmp_path: Path) -> None:
    png = _png(tmp_path / "a.png")
    _refs(scene.storyshade.references, *[(png, 0.5)] * 3)
    _girl(scene, tmp_path)  # its reference is the fifth
    _refs(scene.storyshade.references, (png, 0.5))
    with pytest.raises(InputError, match="5 reference images; StoryShade takes at most 4"):
        _session(scene, FakeClient(), tmp_path)
    scene.storyshade.references.clear()
    _refs(scene.storyshade.references, ("", 0.5))
    with pytest.raises(InputError, match="style reference 1 has no image"):
        _session(scene, FakeClient(), tmp_path)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--reference", "{tmp}/nowhere.png"], "nowhere.png is not there"),
        (["--reference", "{tmp}/a.png@Ghost"], "look 'Ghost', which the shot does not have"),
        (["--reference", "{tmp}/a.png:3"], "weight 3.0 is not 0-2"),
        (["--reference", "{tmp}/a.png"] * 5, "5 reference images"),
    ],
)
def test_cli_bad_references_exit_2_naming_the_problem(scene, tmp_path, capsys, argv, says) -> None:
    _png(tmp_path / "a.png")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    # the server is never asked: the check comes first
    assert cli.main(["shade", "--server", "http://127.0.0.1:9", "--no-save", *argv]) == 2
    err = capsys.readouterr().err
    assert says in err and "Fix:" in err, err


def test_reattaching_needs_no_reference_files(scene, tmp_path: Path) -> None:
    """The job is on the server already: its images may be gone from this machine."""
    from addon.takes.run import TakeRun

    gone = {"image": str(tmp_path / "gone.png"), "weight": 0.8}
    folder = tmp_path / "takes" / "shot" / "take_001"
    folder.mkdir(parents=True)
    run = TakeRun("shot", "take_001", folder, False, [1], job_id="job1")
    run.settings = {"preset": "tiny", "references": [gone]}
    fake = FakeClient(frames=[1])
    request = ShadeRequest(settings=run.settings, server_url=fake.url)
    session = ShadeSession.reattach(scene, fake, request, run).run_blocking()
    assert session.outcome == DONE, session.text


def test_wire_names_are_paths_the_server_takes() -> None:
    """The server takes bundle paths of letters, digits, space and `._()+-` only."""
    refs = [{"image": "/a/girl's [v2] #1.PNG", "weight": 1.0}, {"image": "/b/Zoë.jpg"}]
    wire = wire_settings({"seed": 1, "references": refs})
    assert [r["image"] for r in wire["references"]] == [
        "references/1-girl_s _v2_ _1.png",
        "references/2-Zoë.jpg",
    ]


def test_shade_sequence_sends_the_edits_style_references_to_every_shot(tmp_path) -> None:
    """Scene strips are shots of other scenes: the style references are the edit's."""
    from test_shots import strip_edit

    from addon.operators.sequence import build_sequence

    edit = strip_edit()
    enable_prefs(server_url="http://127.0.0.1:9", output_pattern=str(tmp_path / "{take}"))
    palette = _png(tmp_path / "palette.png")
    _refs(edit.storyshade.references, (palette, 0.7))
    run = build_sequence(bpy.context)
    for shot in run.shots:
        session = run.make_session(shot)
        assert session.scene_name != edit.name
        assert session.request.settings["references"] == [{"image": str(palette), "weight": 0.7}]
        session.cancel()


def _looks_file(tmp_path: Path, girl: dict) -> Path:
    path = tmp_path / "pipeline" / "looks.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"objects": {"Girl": girl}}))
    return path


def test_a_looks_file_carries_references_relative_to_itself(scene, tmp_path: Path) -> None:
    from addon.looks.looks_file import load_looks_file

    bpy.data.objects["Cube"].name = "Girl"  # no look in the .blend: the file's only
    front = _png(tmp_path / "pipeline" / "girl" / "front.png", (250, 20, 20))
    side = _png(tmp_path / "pipeline" / "girl" / "side.png", (20, 250, 20))
    path = _looks_file(
        tmp_path,
        {
            "prompt": "a girl in a red coat",
            "references": ["girl/front.png", {"image": "girl/side.png", "weight": 0.5}],
        },
    )
    request = ShadeRequest(
        settings={"preset": "tiny", "seed": 1},
        output_pattern=str(tmp_path / "takes" / "{shot}" / "{take}"),
        server_url=(fake := FakeClient(frames=[1])).url,
        looks=load_looks_file(path, scene),
    )
    session = ShadeSession(scene, fake, request).run_blocking()
    assert session.outcome == DONE, session.text
    assert fake.submitted["settings"]["references"] == [
        {"image": "references/1-front.png", "weight": 0.8, "look": "Girl"},
        {"image": "references/2-side.png", "weight": 0.5, "look": "Girl"},
    ]
    assert {"references/1-front.png", "references/2-side.png"} <= set(fake.submitted["files"])
    strip = compat.all_strips(scene.sequence_editor)[session.strip_name]
    kept = json.loads(strip["storyshade_settings"])["references"]
    assert [r["image"] for r in kept] == [str(front), str(side)]  # absolute: re-shade finds them


@pytest.mark.parametrize(
    ("refs", "says"),
    [
        (["girl/nowhere.png"], "objects['Girl']: reference image"),
        ("front.png", "references must be a list"),
        ([{"image": "a.png", "weight": 3}], "weight 3 is not 0-2"),
        ([{"file": "a.png"}], 'reference 1 must be {"image": PATH'),
        (["a.png"] * 5, "5 reference images; StoryShade takes at most 4"),
        ([{"image": "a.png", "look": "Girl"}], "belongs to the look it is under"),
    ],
)
def test_bad_references_in_a_looks_file_stop_shade_before_export(
    scene, tmp_path, capsys, refs, says
) -> None:
    bpy.data.objects["Cube"].name = "Girl"
    _png(tmp_path / "pipeline" / "a.png")
    path = _looks_file(tmp_path, {"prompt": "a girl", "references": refs})
    rc = cli.main(["shade", "--server", "http://127.0.0.1:9", "--no-save", "--looks", str(path)])
    err = capsys.readouterr().err
    assert rc == 2 and says in err and "Exporting" not in err, err

"""The character bank: a look with its reference images saved to a folder from one .blend
and given to another object in a fresh .blend, and every malformed bank refused with the
file and the fix named. Real bpy operators; the bank is plain files."""

from __future__ import annotations

import tomllib
from pathlib import Path

import bpy
import pytest
from test_addon_helpers import ensure_registered, new_scene, png_bytes

from addon.errors import InputError
from addon.looks.bank import TOML, dump_toml, list_characters, read_character
from addon.session import runtime
from addon.wire.looks import Look


@pytest.fixture(autouse=True)
def scene(tmp_path: Path):
    ensure_registered()
    scene = new_scene(frames=1)
    scene.storyshade.bank_dir = str(tmp_path / "bank")
    return scene


def _select(name: str) -> None:
    for obj in bpy.context.view_layer.objects:
        obj.select_set(obj.name == name)
    bpy.context.view_layer.objects.active = bpy.data.objects[name]


def test_a_saved_character_is_given_to_another_object_in_a_fresh_blend(scene, tmp_path) -> None:
    src = tmp_path / "mine"
    src.mkdir()
    (src / "front.png").write_bytes(png_bytes(6, 6, (250, 10, 10)))
    (src / "sheet.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 32)  # a JPEG's first bytes
    girl = bpy.data.objects["Cube"]
    girl.name = "Girl"
    look = girl.storyshade_look
    look.enabled, look.prompt, look.negative = True, 'a girl in a "red" coat', "hat"
    look.weight, look.use_color, look.color = 1.5, True, (0.8, 0.1, 0.1)
    for image, weight in ((src / "front.png", 0.9), (src / "sheet.jpg", 0.4)):
        ref = look.references.add()
        ref.image, ref.weight = str(image), weight
    _select("Girl")
    assert bpy.ops.storyshade.bank_save() == {"FINISHED"}
    folder = tmp_path / "bank" / "Girl"
    assert sorted(p.name for p in folder.iterdir()) == [TOML, "front.png", "sheet.jpg"]
    assert look.bank == str(folder)
    assert "Saved 'Girl'" in runtime.status(scene).bank_note
    # saving again replaces the character, leaving no staging folders behind
    look.references.remove(1)
    assert bpy.ops.storyshade.bank_save() == {"FINISHED"}
    assert sorted(p.name for p in (tmp_path / "bank").iterdir()) == ["Girl"]
    assert sorted(p.name for p in folder.iterdir()) == [TOML, "front.png"]
    ref = look.references.add()
    ref.image, ref.weight = str(src / "sheet.jpg"), 0.4
    assert bpy.ops.storyshade.bank_save() == {"FINISHED"}
    src.joinpath("front.png").unlink()  # the bank has its own copies

    scene = new_scene(frames=1)  # another .blend: a box that is the girl
    scene.storyshade.bank_dir = str(tmp_path / "bank")
    assert list_characters(tmp_path / "bank") == ["Girl"]
    _select("Cube")
    assert bpy.ops.storyshade.bank_load(name="Girl") == {"FINISHED"}
    look = bpy.data.objects["Cube"].storyshade_look
    assert look.enabled and look.prompt == 'a girl in a "red" coat' and look.negative == "hat"
    assert look.weight == pytest.approx(1.5) and look.use_color
    assert tuple(look.color) == pytest.approx((0.8, 0.1, 0.1))
    assert [(r.image, round(r.weight, 3)) for r in look.references] == [
        (str(folder / "front.png"), 0.9),
        (str(folder / "sheet.jpg"), 0.4),
    ]
    assert look.bank == str(folder)
    assert "Girl (2 references) is now the look of 'Cube'" in runtime.status(scene).bank_note


def test_a_pick_updates_the_look_that_shades_the_selection(scene, tmp_path) -> None:
    """A mannequin's part shaded by its collection's look: the collection's look changes
    (one character, one look), not a new look per part."""
    (tmp_path / "bank" / "Robot").mkdir(parents=True)
    (tmp_path / "bank" / "Robot" / TOML).write_text(
        dump_toml(Look("Robot", "a tin robot"), []), encoding="utf-8"
    )
    coll = bpy.data.collections.new("Mannequin")
    scene.collection.children.link(coll)
    cube = bpy.data.objects["Cube"]
    coll.objects.link(cube)
    coll.storyshade_look.enabled = True
    _select("Cube")
    assert bpy.ops.storyshade.bank_load(name="Robot") == {"FINISHED"}
    assert coll.storyshade_look.prompt == "a tin robot"
    assert not cube.storyshade_look.enabled


def test_the_toml_writer_round_trips_awkward_text() -> None:
    char = Look('Zoë "Z" \\ the\tsecond\nline', "a\x01b", color=(0.0, 0.5, 1.0))
    data = tomllib.loads(dump_toml(char, [("a b.png", 0.25)]))
    assert data["name"] == char.name and data["prompt"] == "a\x01b"
    assert data["color"] == [0.0, 0.5, 1.0]
    assert data["references"] == [{"image": "a b.png", "weight": 0.25}]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('prompt = "a girl', "is not valid TOML"),
        ('prompt = "a girl"\nmood = "sad"', "unknown keys ['mood']"),
        ('prompt = "a girl"\nweight = 9', "weight = 9 is not a number in 0.05-4"),
        ('prompt = ""', "prompt is missing or empty"),
        ('prompt = "a"\n[[references]]\nimage = "../x.png"', "must be a file name in"),
        ('prompt = "a"\n[[references]]\nimage = "gone.png"', "gone.png is not there"),
    ],
)
def test_a_malformed_character_names_its_file(scene, tmp_path, text, says) -> None:
    folder = tmp_path / "bank" / "Bad"
    folder.mkdir(parents=True)
    (folder / TOML).write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_character(folder)
    assert says in str(caught.value) and caught.value.fix, str(caught.value)
    _select("Cube")
    with pytest.raises(RuntimeError):  # the operator's error (background mode raises it)
        bpy.ops.storyshade.bank_load(name="Bad")
    note = runtime.status(scene).bank_note
    assert runtime.status(scene).bank_error and says in note, note
    assert not bpy.data.objects["Cube"].storyshade_look.enabled, "nothing changed"


def test_a_missing_bank_folder_and_a_look_to_save_are_named(scene, tmp_path) -> None:
    with pytest.raises(InputError, match="does not exist") as caught:
        list_characters(tmp_path / "bank")
    assert str(tmp_path / "bank") in caught.value.problem
    _select("Cube")
    with pytest.raises(RuntimeError):
        bpy.ops.storyshade.bank_load(name="Girl")
    assert "bank folder" in runtime.status(scene).bank_note
    assert "does not exist" in runtime.status(scene).bank_note
    (tmp_path / "bank" / "Girl").mkdir(parents=True)
    with pytest.raises(RuntimeError):
        bpy.ops.storyshade.bank_load(name="Girl")
    assert "holds no character.toml" in runtime.status(scene).bank_note
    with pytest.raises(RuntimeError):
        bpy.ops.storyshade.bank_save()
    assert "'Cube' has no look to save" in runtime.status(scene).bank_note

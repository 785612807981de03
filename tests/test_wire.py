"""addon/wire/: the one copy of what the add-on and the server agree on.

It must stay importable on both sides (standard library only), be the very module each
side uses, and be the only place the shared names are spelled out."""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import pytest

from addon.settings.presets import layered_settings
from addon.wire import archive, layering, manifest
from addon.wire.layout import FORMAT, VERSION, frame_name, pass_file, take_file
from addon.wire.references import parse_reference_arg
from addon.wire.states import TERMINAL, JobState, Stage

REPO = Path(__file__).resolve().parents[1]
WIRE = REPO / "addon" / "wire"


def test_wire_imports_only_the_standard_library() -> None:
    for path in WIRE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = {(node.module or "").split(".")[0]}
            else:
                continue  # relative: another wire module
            assert roots <= set(sys.stdlib_module_names) | {"__future__"}, (path.name, roots)


def test_both_sides_load_the_same_files() -> None:
    import storyshade.wire.layout as server_side

    import addon.wire.layout as addon_side

    assert Path(server_side.__file__).resolve() == Path(addon_side.__file__).resolve()
    assert Path(server_side.__file__).resolve().parent == WIRE


# What used to be spelled on both sides; now only addon/wire/ may spell it.
SPELLED_ONCE = {
    "bundle format name": re.compile(r"storyshade\.shot\""),
    "frame file name": re.compile(r":04d\}\.(png|exr)"),
    "zip of a bundle folder": re.compile(r"def zip_bundle"),
    "preset layer order": re.compile(r"LAYERS = \("),
    "preset merge": re.compile(r"def _?merge(_loras)?\("),
    "terminal job states": re.compile(r"\(\"done\", \"failed\", \"cancelled\"\)"),
    "--reference IMG[:W][@LOOK] parsing": re.compile(r"rpartition\(\"@\"\)"),
    "reference limit": re.compile(r"MAX_REFERENCES = "),
}


@pytest.mark.parametrize("what", sorted(SPELLED_ONCE))
def test_shared_names_are_spelled_only_in_the_wire(what: str) -> None:
    pattern = SPELLED_ONCE[what]
    sources = [*(REPO / "addon").rglob("*.py"), *(REPO / "backend").rglob("*.py")]
    found = [
        str(p.relative_to(REPO))
        for p in sources
        if WIRE not in p.parents and pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert found == [], f"{what} is spelled outside addon/wire/ in {found}"


def test_layout_names() -> None:
    assert (FORMAT, VERSION) == ("storyshade.shot", 3)
    assert (frame_name(7), pass_file(7), take_file(7)) == (
        "0007.png",
        "frames/0007.exr",
        "take/0007.png",
    )


def test_manifest_round_trip_and_refusals(tmp_path: Path) -> None:
    shot = {"format": FORMAT, "version": 1, "frames": [], "fps": 24.0}
    manifest.write(tmp_path, shot)
    assert manifest.read(tmp_path) == shot
    with pytest.raises(ValueError):
        manifest.write(tmp_path, {**shot, "fps": float("nan")})  # the server would refuse it
    with pytest.raises(manifest.ManifestError, match="not valid JSON"):
        manifest.loads('{"format": "storyshade.shot", "fps": NaN}')
    with pytest.raises(manifest.ManifestError, match="not a StoryShade shot") as err:
        manifest.loads(json.dumps({"format": "other"}))
    assert err.value.field == "shot.json:format"


def test_zip_holds_every_file_by_relative_name(tmp_path: Path) -> None:
    import io
    import zipfile

    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "0001.exr").write_bytes(b"x")
    (tmp_path / "shot.json").write_text("{}")
    names = zipfile.ZipFile(io.BytesIO(archive.zip_bundle(tmp_path))).namelist()
    assert names == ["frames/0001.exr", "shot.json"]


def test_loras_merge_by_name_in_the_addon_as_on_the_server(tmp_path: Path) -> None:
    """The add-on's copy had drifted: it replaced a style's LoRA list wholesale."""
    for layer, body in {
        "style": '[[settings.loras]]\nname = "ink"\nweight = 0.5\n'
        '[[settings.loras]]\nname = "flat"\nweight = 0.3\n',
        "quality": '[[settings.loras]]\nname = "ink"\nweight = 0.9\n',
    }.items():
        (tmp_path / layer).mkdir()
        (tmp_path / layer / f"my-{layer}.toml").write_text(f'description = "x"\n{body}')
    merged = layered_settings(["my-style", "my-quality"], tmp_path)
    assert merged["loras"] == [{"name": "ink", "weight": 0.9}, {"name": "flat", "weight": 0.3}]
    assert layering.merge({"loras": [{"name": "a"}]}, {"loras": []}) == {"loras": []}


def test_reference_argument_relative_to_a_base(tmp_path: Path) -> None:
    assert parse_reference_arg("girl.png:0.5@Girl", tmp_path) == {
        "image": str(tmp_path / "girl.png"),
        "weight": 0.5,
        "look": "Girl",
    }
    assert parse_reference_arg("/a/b:c.png", tmp_path) == {"image": "/a/b:c.png"}


def test_states_travel_as_plain_strings() -> None:
    assert json.dumps({"state": JobState.DONE, "stage": Stage.DENOISING}) == (
        '{"state": "done", "stage": "denoising"}'
    )
    assert "cancelled" in TERMINAL and "running" not in TERMINAL

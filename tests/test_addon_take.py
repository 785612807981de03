"""Takes: naming, folders, channel choice, keep/replace, and the settings each strip keeps."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import bpy
import pytest
from test_addon_helpers import color_strip, ensure_registered, new_scene, png_bytes

from addon import compat
from addon.errors import StoryShadeError
from addon.settings import props
from addon.takes import take


@pytest.fixture(autouse=True)
def scene():
    ensure_registered()
    return new_scene(frames=3)


def _frames(folder: Path, frames: list[int]) -> None:
    for f in frames:
        (folder / f"{f:04d}.png").write_bytes(png_bytes())


def _shade(scene, tmp_path: Path, shot: str = "shot", frames=(1, 2, 3), mode=take.KEEP, **settings):
    """What a finished run does on the Blender side: next folder, frames, strip."""
    folder, name, _ = take.next_take_dir(shot, str(tmp_path / "{shot}" / "{take}"), scene)
    _frames(folder, list(frames))
    info = {"job": f"job-{name}", "settings": {"preset": "anime-cel,tiny", "seed": 3, **settings}}
    return take.add_take_strip(scene, folder, list(frames), shot, name, info, mode)


def test_two_runs_give_two_strips_on_two_channels(scene, tmp_path: Path) -> None:
    first = _shade(scene, tmp_path, prompt="rain")
    first_dir = first.directory
    second = _shade(scene, tmp_path, prompt="snow")
    strips = {s.name: s for s in compat.all_strips(scene.sequence_editor)}
    assert sorted(strips) == ["shot_take_001", "shot_take_002"]
    one, two = strips["shot_take_001"], strips["shot_take_002"]
    assert (one.channel, two.channel) == (1, 2)
    assert one.directory == first_dir and one.directory != two.directory, "nothing overwritten"
    assert (one.frame_final_start, one.frame_final_end) == (1, 4)
    assert (two.frame_final_start, two.frame_final_end) == (1, 4)
    assert [e.filename for e in two.elements] == ["0001.png", "0002.png", "0003.png"]
    assert (one["storyshade_prompt"], two["storyshade_prompt"]) == ("rain", "snow")
    assert Path(bpy.path.abspath(one.directory), "0001.png").is_file()
    assert first.name == "shot_take_001" and second.name == "shot_take_002"


def test_a_take_goes_above_the_shots_earlier_takes(scene, tmp_path: Path) -> None:
    color_strip(scene, "Edit", 3, 1, 4)
    one = _shade(scene, tmp_path)
    assert one.channel == 1
    two = _shade(scene, tmp_path)
    assert two.channel == 2
    three = _shade(scene, tmp_path)
    assert three.channel == 4, "channel 3 is taken over these frames"
    other = _shade(scene, tmp_path, shot="other", frames=(10, 11))
    assert other.channel == 1, "another shot's frames do not collide"


def test_replace_swaps_the_strip_but_keeps_the_files(scene, tmp_path: Path) -> None:
    one = _shade(scene, tmp_path)
    old_dir = Path(bpy.path.abspath(one.directory))
    two = _shade(scene, tmp_path, mode=take.REPLACE)
    strips = list(compat.all_strips(scene.sequence_editor))
    assert [(s.name, s.channel) for s in strips] == [("shot_take_002", 1)]
    assert two.name == "shot_take_002"
    assert (old_dir / "0001.png").is_file(), "replace never deletes a take's frames"
    three = _shade(scene, tmp_path)
    assert (three.name, three.channel) == ("shot_take_003", 2)


def test_each_take_stores_its_settings(scene, tmp_path: Path) -> None:
    strip = _shade(scene, tmp_path, prompt="dusk", negative_prompt="blur", seed=2**32 - 1)
    assert strip["storyshade_shot"] == "shot" and strip["storyshade_take"] == "take_001"
    assert strip["storyshade_preset"] == "anime-cel,tiny"
    assert strip["storyshade_prompt"] == "dusk" and strip["storyshade_negative_prompt"] == "blur"
    assert strip["storyshade_job"] == "job-take_001"
    assert str(strip["storyshade_seed"]) == str(2**32 - 1), "seeds beyond int32 survive as text"
    assert (strip["storyshade_frame_start"], strip["storyshade_frame_end"]) == (1, 3)
    assert take.strip_settings(strip) == {
        "preset": "anime-cel,tiny",
        "seed": 2**32 - 1,
        "prompt": "dusk",
        "negative_prompt": "blur",
    }
    assert json.loads(strip["storyshade_settings"])["prompt"] == "dusk"


def test_take_numbers_continue_past_folders_and_strips(scene, tmp_path: Path) -> None:
    pattern = str(tmp_path / "{shot}" / "{take}")
    (tmp_path / "shot" / "take_007").mkdir(parents=True)
    (tmp_path / "shot" / "notes").mkdir()
    folder, name, temporary = take.next_take_dir("shot", pattern, scene)
    assert (name, folder, temporary) == ("take_008", tmp_path / "shot" / "take_008", False)
    folder.rmdir()
    (tmp_path / "shot" / "take_007").rmdir()
    strip = _shade(scene, tmp_path)  # no folders left: strips still count
    assert strip.name == "shot_take_001"
    strip["storyshade_take"] = "take_012"
    assert take.next_take_dir("shot", pattern, scene)[1] == "take_013"


def test_output_pattern_tokens_and_unsaved_files(scene, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    folder, _name, temporary = take.next_take_dir("s1", "//renders/{scene}/{shot}-{take}", scene)
    assert temporary, "an unsaved .blend has no // folder: frames go to a temp folder"
    assert folder.is_relative_to(tmp_path / "tmp")
    assert folder.name == "s1-take_001" and folder.parent.name == scene.name
    folder, _, _ = take.next_take_dir("s1", str(tmp_path / "{shot}"), scene)
    assert folder == tmp_path / "s1" / "take_001", "a pattern without {take} still separates takes"


def test_saved_blend_puts_takes_beside_it(scene, tmp_path: Path) -> None:
    blend = tmp_path / "board.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    try:
        folder, _name, temporary = take.next_take_dir(
            "board", take.DEFAULT_PATTERN, bpy.context.scene
        )
        assert not temporary and folder == tmp_path / "storyshade" / "board" / "take_001"
        root, _ = take.takes_root("board")
        assert root == tmp_path / "storyshade" / "board"
    finally:
        bpy.ops.wm.read_factory_settings(use_empty=True)


def test_full_sequencer_is_a_plain_error(scene, tmp_path: Path) -> None:
    for ch in range(1, take.MAX_CHANNEL + 1):
        color_strip(scene, f"c{ch}", ch, 1, 4)
    with pytest.raises(StoryShadeError, match="no free sequencer channel"):
        _shade(scene, tmp_path)


def test_use_take_settings_restores_the_panel(scene, tmp_path: Path) -> None:
    scene.storyshade.quality = "tiny"
    scene.storyshade.prompt = "moonlight"
    scene.storyshade.seed = 42
    inputs = props.inputs(scene.storyshade)
    folder, name, _ = take.next_take_dir("shot", str(tmp_path / "{shot}" / "{take}"), scene)
    strip = take.add_take_strip(scene, folder, [1, 2], "shot", name, {"inputs": inputs})
    scene.storyshade.quality = "standard"
    scene.storyshade.prompt = ""
    scene.storyshade.seed = 0
    scene.sequence_editor.active_strip = strip
    assert bpy.ops.storyshade.take_use_settings() == {"FINISHED"}
    opts = scene.storyshade
    assert (opts.quality, opts.prompt, opts.seed) == ("tiny", "moonlight", 42)


def test_use_take_settings_needs_a_take(scene) -> None:
    scene.sequence_editor_create().active_strip = color_strip(scene, "c", 1, 1, 2)
    assert not bpy.ops.storyshade.take_use_settings.poll()

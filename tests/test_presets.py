"""Presets: every shipped file validates and merges; broken files name file and field;
user folders override; LoRA lists merge by name; the style wraps the user's prompt."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from storyshade import presets
from storyshade.cli import main
from storyshade.errors import StoryShadeError
from storyshade.presets import LAYERS, PresetWarning, load_preset, resolve, scan


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for layer in LAYERS:
        (tmp_path / layer).mkdir()
    monkeypatch.setenv("STORYSHADE_PRESETS", str(tmp_path))
    return tmp_path


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_every_shipped_preset_validates_and_merges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORYSHADE_PRESETS", raising=False)
    found, broken = scan()
    assert broken == {}
    for name, preset in found.items():
        assert preset.shipped and preset.description
        settings = resolve(name)
        assert settings == resolve(name)  # deterministic
        for key, value in preset.settings.items():
            if key in ("loras", "motion_loras", "controls"):
                continue
            got = getattr(settings, key)
            got = got.model_dump() if hasattr(got, "model_dump") else got
            assert got == value, (name, key)


def test_shipped_layers_cover_the_issue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORYSHADE_PRESETS", raising=False)
    found = presets.all_presets()
    by_layer = {layer: {n for n, p in found.items() if p.layer == layer} for layer in LAYERS}
    assert len(by_layer["style"]) >= 6
    assert {"anime-cel", "watercolor", "ink-noir", "pastel"} <= by_layer["style"]
    assert {"512x512", "512x768", "768x512", "768x432", "432x768"} <= by_layer["resolution"]
    assert {"draft", "standard", "final", "tiny", "preview"} <= by_layer["quality"]
    for name in by_layer["resolution"]:
        s = resolve(name)
        assert f"{s.width}x{s.height}" == name
    draft, standard, final = resolve("draft"), resolve("standard"), resolve("final")
    assert draft.guidance_scale == 1.0 and 4 <= draft.steps <= 8
    assert "lightning" in draft.motion_adapter.lower()
    assert (standard.steps, standard.guidance_scale) == (20, 7.5)
    assert final.steps == 30
    lcm = resolve("draft-lcm")
    assert lcm.scheduler == "lcm" and any("AnimateLCM" in lo.name for lo in lcm.loras)


def test_style_wraps_the_user_prompt() -> None:
    """The model reads prefix, prompt, suffix; the three stay apart in the settings, so
    looks get the same wrapping (tests/test_prompt_text.py)."""
    s = resolve("watercolor", {"prompt": "a lighthouse at dusk"})
    assert s.prompt == "a lighthouse at dusk"
    assert s.full_prompt.startswith("watercolor painting")
    assert "a lighthouse at dusk" in s.full_prompt
    assert s.full_prompt.endswith("storybook illustration")
    assert s.full_prompt == s.styled(s.prompt)


@pytest.mark.parametrize(
    ("layer", "text", "field", "words"),
    [
        ("quality", "description = 'x'\n[settings]\nsteps = 'many'\n", "settings.steps", "integer"),
        ("quality", "description = 'x'\n[settings]\nstepz = 3\n", "settings.stepz", "unknown"),
        ("style", "description = 'x'\n[settings]\nsteps = 3\n", "settings.steps", "quality"),
        ("style", "description = 'x'\n[settings]\nprompt = 'a'\n", "settings.prompt", "prefix"),
        ("resolution", "description = 'x'\n[settings]\nwidth = 500\n", "settings.width", "8"),
        ("camera", "[settings]\nmotion_scale = 1.0\n", "description", "description"),
        ("camera", "description = 'x'\nextra = 1\n[settings]\n", "preset", "extra"),
        ("style", "description = 'x'\n[settings\n", "preset", "TOML"),
        (
            "style",
            "description = 'x'\n[settings]\nloras = [{ name = 'a', weight = 9 }]\n",
            "settings.loras.0.weight",
            "less than",
        ),
    ],
)
def test_broken_preset_names_file_and_field(
    user_dir: Path, layer: str, text: str, field: str, words: str
) -> None:
    path = _write(user_dir / layer / "broken.toml", text)
    with pytest.raises(StoryShadeError) as err:
        load_preset(path)
    assert err.value.field == field
    assert str(path) in err.value.message
    assert words.lower() in err.value.message.lower()
    with pytest.raises(StoryShadeError) as again:  # naming it in a render fails the same way
        resolve("broken")
    assert again.value.message == err.value.message


def test_broken_user_file_does_not_break_other_presets(user_dir: Path, capsys) -> None:
    _write(user_dir / "style" / "oops.toml", "description = 'x'\n[settings]\nsteps = 3\n")
    assert resolve("ink-noir").negative_prompt  # unaffected
    assert main(["presets", "list"]) == 2
    out = capsys.readouterr().out
    assert "BROKEN oops" in out and "oops.toml" in out


def test_user_folder_overrides_shipped_preset(user_dir: Path, capsys) -> None:
    _write(
        user_dir / "style" / "ink-noir.toml",
        'description = "my noir"\n[settings]\nprompt_prefix = "charcoal sketch"\n'
        'loras = [{ name = "my-ink", weight = 0.7 }]\n',
    )
    s = resolve("ink-noir", {"prompt": "a cat"})
    assert s.full_prompt == "charcoal sketch, a cat"
    assert [(lo.name, lo.weight) for lo in s.loras] == [("my-ink", 0.7)]
    assert main(["presets", "list", "--layer", "style"]) == 0
    out = capsys.readouterr().out
    assert "my noir" in out and str(user_dir) in out


def test_lora_lists_merge_by_name_across_layers(user_dir: Path) -> None:
    _write(
        user_dir / "style" / "inky.toml",
        'description = "x"\n[settings]\nloras = [{ name = "ink", weight = 0.8 }]\n',
    )
    s = resolve("inky,draft-lcm", {"loras": [{"name": "ink", "weight": 0.3}]})
    assert [(lo.name, lo.weight) for lo in s.loras] == [
        ("ink", 0.3),
        ("AnimateLCM_sd15_t2v_lora", 0.8),
    ]
    assert resolve("inky", {"loras": []}).loras == []


def test_more_than_two_motion_loras_warns(user_dir: Path) -> None:
    loras = ", ".join(f'{{ name = "m{i}", weight = 0.5 }}' for i in range(3))
    _write(
        user_dir / "camera" / "busy.toml",
        f'description = "x"\n[settings]\nmotion_loras = [{loras}]\n',
    )
    with pytest.warns(PresetWarning, match="3 motion LoRAs"):
        resolve("busy")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PresetWarning)
        resolve("zoom-in")  # one is fine


def test_cli_show_prints_the_merged_result(capsys) -> None:
    assert main(["presets", "show", "pastel,768x432,draft", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["width"], data["height"], data["steps"]) == (768, 432, 4)
    assert data["prompt_prefix"].startswith("soft pastel") and data["prompt"] == ""
    assert main(["presets", "show", "clay"]) == 0
    out = capsys.readouterr().out
    assert "# style      clay" in out and "clay.toml" in out
    assert main(["presets", "show", "nope"]) == 2


def test_lora_override_without_name_is_a_named_error() -> None:
    import pytest
    from storyshade.errors import StoryShadeError
    from storyshade.presets import resolve

    with pytest.raises(StoryShadeError) as err:
        resolve("anime-cel", {"loras": [{"weight": 0.5}]})
    assert "settings.loras" in err.value.message

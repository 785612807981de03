"""A .blend saved by the add-on before its modules moved into rooms opens with everything
StoryShade saved in it, and the add-on still shows a user the same things.

tests/data/saved_before_rooms.blend was written by the pre-rooms add-on under bpy 4.2
(tests/addon_surface.py says how); its .json holds what was saved and that add-on's
surface: operator ids, panels and their tabs, every saved property with its limits.
"""

from __future__ import annotations

import json

import bpy
import pytest
from addon_surface import saved_state, surface
from test_addon_helpers import REPO, ensure_registered

from addon import registration
from addon.settings import props, request_settings
from addon.takes import take

FIXTURE = REPO / "tests" / "data" / "saved_before_rooms.blend"
BEFORE = json.loads(FIXTURE.with_suffix(".json").read_text(encoding="utf-8"))
# What the add-on has gained since: new sidebar settings (a .blend without them gets
# their defaults). Anything else new, or anything gone, fails below.
ADDED_SETTINGS = {"use_motion_scale", "motion_scale"}


@pytest.fixture()
def loaded():
    ensure_registered()
    bpy.ops.wm.open_mainfile(filepath=str(FIXTURE))
    yield bpy.context.scene
    bpy.ops.wm.read_factory_settings(use_empty=True)


def test_the_fixture_was_written_before_the_rooms() -> None:
    assert BEFORE["bpy"].startswith("4.2"), "written by the oldest Blender, so all open it"
    assert len(BEFORE["surface"]["classes"]) == 33 and BEFORE["take"]["storyshade_looks"]


def test_looks_settings_references_and_take_survive(loaded) -> None:
    state = saved_state(loaded)
    before = {k: BEFORE[k] for k in state}
    assert state == before


def test_the_sidebar_makes_the_request_it_made_before(loaded) -> None:
    """Same saved sidebar, same settings JSON (the take recorded what was sent)."""
    strip = take.shot_strips(loaded, "sh010")[0]
    sent = take.strip_settings(strip)
    assert sent["preset"] == "watercolor,768x432,draft,pan-left"
    assert request_settings.build(props.choices(loaded.storyshade)) == sent


def test_use_takes_settings_restores_the_sidebar(loaded) -> None:
    opts = loaded.storyshade
    strip = take.shot_strips(loaded, "sh010")[0]
    stored = json.loads(strip["storyshade_inputs"])
    for key in ("style", "quality", "prompt", "seed", "depth_weight", "use_color_match"):
        opts.property_unset(key)
    opts.references.clear()
    loaded.sequence_editor.active_strip = strip
    assert bpy.ops.storyshade.take_use_settings() == {"FINISHED"}
    now = props.inputs(opts)
    for key, value in stored.items():
        if key == "references":
            assert [r["image"] for r in now[key]] == [r["image"] for r in value]
        elif isinstance(value, float):
            assert now[key] == pytest.approx(value, abs=1e-6), key
        else:
            assert now[key] == value, key


def _same_or_more(before: dict, now: dict, where: str) -> list[str]:
    """What changed from `before` in `now`: enum items may grow (new preset files)."""
    wrong = []
    for key, old in before.items():
        new = now.get(key)
        if new is None:
            wrong.append(f"{where}{key} is gone")
        elif isinstance(old, dict) and isinstance(new, dict):
            wrong += _same_or_more(old, new, f"{where}{key}.")
        elif key == "items":
            wrong += [f"{where}items lost {sorted(set(old) - set(new))}"] * bool(
                set(old) - set(new)
            )
        elif old != new:
            wrong.append(f"{where}{key}: {old!r} -> {new!r}")
    return wrong


def test_operators_panels_and_saved_properties_are_as_before() -> None:
    """Every id, label, tab and saved property name of the pre-rooms add-on is still
    there, unchanged; the only additions are ADDED_SETTINGS."""
    ensure_registered()
    now = surface(registration.classes())
    before = BEFORE["surface"]
    assert _same_or_more(before, now, "") == []
    assert set(now["classes"]) == set(before["classes"])
    assert set(now["data"]) == set(before["data"])
    for name, entry in now["classes"].items():
        added = set(entry.get("properties", {})) - set(
            before["classes"][name].get("properties", {})
        )
        assert added <= (ADDED_SETTINGS if name == "StoryShadeSceneSettings" else set()), name

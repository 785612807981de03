"""A look's texts are not part of the control images' cache key: editing a look's prompt
(or weight, or colour) reuses the control images; changing which pixels it covers does not
(issue #24 item 3)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import write_synthetic_bundle
from storyshade.bundle import content_hash, controls_part, load_bundle
from storyshade.cache import StageCache
from storyshade.job_input import prepare
from storyshade.presets import resolve
from storyshade.progress import Reporter
from storyshade.render import render

LOOK = {"id": 1, "name": "Crate", "prompt": "a wooden crate", "color": [0.8, 0.2, 0.1]}


def left(i: int) -> np.ndarray:
    ids = np.zeros((48, 64), np.uint8)
    ids[:, : 20 + i] = 1
    return ids


def bundle_with(root: Path, ids_fn=left, **look) -> Path:
    return write_synthetic_bundle(root, 4, (64, 48), ids_fn=ids_fn, regions=[{**LOOK, **look}])


def edit_look(root: Path, **look) -> None:
    shot = json.loads((root / "shot.json").read_text(encoding="utf-8"))
    shot["regions"][0].update(look)
    (root / "shot.json").write_text(json.dumps(shot), encoding="utf-8")


def test_a_looks_text_is_outside_the_controls_part_of_the_bundle_hash(tmp_path: Path):
    root = bundle_with(tmp_path / "a")
    before = content_hash(load_bundle(root))
    edit_look(root, prompt="a steel crate", negative="rust", weight=2.0, color=[0, 0, 1])
    after = content_hash(load_bundle(root))
    assert controls_part(after) == controls_part(before) and after != before
    moved = bundle_with(tmp_path / "b", ids_fn=lambda i: left(i + 5))
    assert controls_part(content_hash(load_bundle(moved))) != controls_part(before)


def test_a_look_prompt_edit_reuses_the_control_images(tmp_path: Path):
    """Two jobs through the stage cache, the second with only its look's texts changed: the
    job's events say the controls came from the cache and no control frame was rebuilt,
    and its frames differ (the colour paints the preview)."""
    stages = StageCache(tmp_path / "stages")
    root = bundle_with(tmp_path / "shot")
    settings = resolve("tiny,preview")

    def job(out: str) -> list[dict]:
        events: list[dict] = []
        render(prepare(load_bundle(root), settings, []), tmp_path / out, [], None,
               Reporter(events.append), stages)  # fmt: skip
        return events

    first = job("one")
    assert not any(e.get("reused") == "controls" for e in first)
    edit_look(root, prompt="a steel crate", color=[0.1, 0.3, 0.9])
    second = job("two")
    assert any(e.get("reused") == "controls" and e.get("cache") == "hit" for e in second)
    built = [e for e in second if e["type"] == "progress" and e.get("stage") == "controls"]
    built = [e for e in built if not e.get("cached")]
    assert built == [], "a look's prompt edit rebuilt control images"
    a, b = (sorted((tmp_path / d).glob("*.png")) for d in ("one", "two"))
    assert len(a) == len(b) == 4 and any(
        x.read_bytes() != y.read_bytes() for x, y in zip(a, b, strict=True)
    )

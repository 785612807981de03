"""No setting that does nothing: every Settings field (and every per-control field) is walked.

For each field the table says what changing it does in each engine: "frames" (the frames
change), "same" (the frames stay; the field is a speed/memory lever or is not read by that
engine, and docs/engine.md says so) or "refused" (that engine cannot do it and says so, an
error naming the field). A field added to Settings without a row here fails the
walk, so nothing new can be silently ignored. Every change also changes the stage cache's
frames key, so an earlier result is never served for it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import REPO, write_synthetic_bundle
from PIL import Image
from storyshade import settings_doc
from storyshade.bundle import load_bundle
from storyshade.cache import StageCache
from storyshade.declare import declared, is_neutral
from storyshade.engines import capabilities
from storyshade.errors import StoryShadeError
from storyshade.job_input import prepare
from storyshade.models.loader import ModelCache
from storyshade.models.tiny import (
    TINY_NAMES,
    tiny_adapter,
    tiny_unet,
    write_lora,
    write_tiny_checkpoint,
)
from storyshade.render import render_bundle
from storyshade.settings import Control, Settings
from test_engine_controls import write_live_controlnets

FRAMES = 6
DEPTH = TINY_NAMES["depth"]
NORMAL = TINY_NAMES["normal"]

BASE: dict[str, Any] = {
    "checkpoint": TINY_NAMES["checkpoint"],
    "motion_adapter": TINY_NAMES["motion_adapter"],
    "controls": {"depth": {"model": DEPTH, "scale": 0.8}, "normal": {"model": NORMAL}},
    "prompt": "a lighthouse",
    "negative_prompt": "blurry",
    "width": 64,
    "height": 64,
    "steps": 2,
    "guidance_scale": 2.0,
    "seed": 3,
    "context_length": 4,  # two windows over the 6 frames, so window settings matter
    "context_overlap": 2,
    "preview_every": 0,
}

FIXED = {"depth_range": "fixed", "depth_near": 1.0, "depth_far": 30.0}
IPX = {"ip_adapter": TINY_NAMES["ip_adapter"], "image_encoder": TINY_NAMES["image_encoder"]}
REFERENCE = str(REPO / "docs" / "gui" / "4.3-looks-preview.png")
# field: (base overrides, changed value). What the change does on each engine is not written
# here: it follows from the field's declaration (declare.Declared) and the engine's
# Capabilities, see `expected`.
WALK: dict[str, tuple[dict[str, Any], Any]] = {
    "engine": ({}, "animatediff-stock"),
    "prompt": ({}, "a red barn"),
    "prompt_prefix": ({}, "ink sketch"),
    "prompt_suffix": ({}, "at night"),
    "negative_prompt": ({}, ""),
    "seed": ({}, 4),
    "steps": ({}, 3),
    "guidance_scale": ({}, 4.0),
    "width": ({}, 72),
    "height": ({"width": 128}, 72),  # a height-limited fit
    "checkpoint": ({}, "tiny-sd15-b"),
    "motion_adapter": ({}, "tiny-motion-b"),
    "motion_scale": ({}, 0.5),
    "scheduler": ({}, "euler_a"),
    "controls": ({}, {"depth": {"model": DEPTH, "scale": 0.8}}),
    "loras": ({}, [{"name": "tiny-style"}]),
    "motion_loras": ({}, [{"name": "tiny-sway"}]),
    "references": (IPX, [{"image": REFERENCE}]),  # preview: a note
    "ip_adapter": ({}, TINY_NAMES["ip_adapter_plus"]),  # without references
    "image_encoder": ({}, "another-encoder"),  # without references
    "color_match": ({}, {"strength": 1.0}),
    "context_length": ({}, 3),
    "context_overlap": ({}, 3),  # 1 would tile the same 2 windows
    "decode_chunk_size": ({}, 3),
    "context_schedule": ({"steps": 4}, "shifting"),
    "context_fuse": ({}, "flat"),
    "free_noise": ({}, True),
    "forward_chunk": ({}, 64),
    "attention_slicing": ({}, True),
    "channels_last": ({}, False),  # CUDA only; these runs are on the CPU
    "compile": ({}, "auto"),  # eager on the CPU ('on': test_levers.py)
    "step_cache": ({"steps": 4}, 4),  # 2 of 2 steps: below 8-bit levels
    "preview_every": ({}, 1),  # events, not frames
    "depth_range": ({}, "clip"),
    "depth_near": (FIXED, 4.0),
    "depth_far": (FIXED, 5.0),
    "normal_convention": ({}, "midas"),  # preview decodes either
    "dtype": ({}, "bfloat16"),
    "device": ({}, "cpu"),  # 'auto' is the CPU here: where, not what
    "hires": ({}, {"scale": 1.5, "strength": 0.5}),  # preview: a draft
    # Wan-only settings: refused on AnimateDiff (tests/test_wan_*.py walk them on Wan)
    "wan_window": ({}, 33),
    "wan_overlap": ({}, 8),
    "wan_scheduler": ({}, "euler"),
    "wan_shift": ({}, 5.0),
    "wan_cache": ({}, "first_block"),
    "wan_cache_threshold": ({}, 0.1),
    "wan_cache_interval": ({}, 3),
    "wan_offload": ({}, "model"),
}

# What the walk measured per field when the effects were written by hand (before the
# declarations): the derived expectations must equal them.
WINDOWED_BEFORE = {
    "engine": "frames",
    "prompt": "frames",
    "prompt_prefix": "frames",
    "prompt_suffix": "frames",
    "negative_prompt": "frames",
    "seed": "frames",
    "steps": "frames",
    "guidance_scale": "frames",
    "width": "frames",
    "height": "frames",
    "checkpoint": "frames",
    "motion_adapter": "frames",
    "motion_scale": "frames",
    "scheduler": "frames",
    "controls": "frames",
    "loras": "frames",
    "motion_loras": "frames",
    "references": "frames",
    "ip_adapter": "same",
    "image_encoder": "same",
    "color_match": "frames",
    "context_length": "frames",
    "context_overlap": "frames",
    "decode_chunk_size": "same",
    "context_schedule": "frames",
    "context_fuse": "frames",
    "free_noise": "frames",
    "forward_chunk": "same",
    "attention_slicing": "same",
    "channels_last": "same",
    "compile": "same",
    "step_cache": "frames",
    "preview_every": "same",
    "depth_range": "frames",
    "depth_near": "frames",
    "depth_far": "frames",
    "normal_convention": "frames",
    "dtype": "frames",
    "device": "same",
    "hires": "frames",
}
PREVIEW_BEFORE = {
    "engine": "frames",
    "prompt": "same",
    "prompt_prefix": "same",
    "prompt_suffix": "same",
    "negative_prompt": "same",
    "seed": "same",
    "steps": "same",
    "guidance_scale": "same",
    "width": "frames",
    "height": "frames",
    "checkpoint": "same",
    "motion_adapter": "same",
    "motion_scale": "same",
    "scheduler": "same",
    "controls": "same",
    "loras": "same",
    "motion_loras": "same",
    "references": "same",
    "ip_adapter": "same",
    "image_encoder": "same",
    "color_match": "refused",
    "context_length": "same",
    "context_overlap": "same",
    "decode_chunk_size": "same",
    "context_schedule": "same",
    "context_fuse": "same",
    "free_noise": "same",
    "forward_chunk": "same",
    "attention_slicing": "same",
    "channels_last": "same",
    "compile": "same",
    "step_cache": "same",
    "preview_every": "same",
    "depth_range": "frames",
    "depth_near": "frames",
    "depth_far": "frames",
    "normal_convention": "same",
    "dtype": "same",
    "device": "same",
    "hires": "same",
}

# Effects real but too small for this walk's 8-bit comparison on the tiny models.
BELOW_RESOLUTION = {
    ("animatediff", "context_schedule"): "shifting windows move the tiny model's frames by "
    "one 8-bit level only (measured on 6 frames, windows 4/2, 4 steps)",
}

LINES = {"depth": {"model": DEPTH}, "lineart": {"model": NORMAL, "detector": "geometry"}}
# per-control field: (base controls, role, changed value)
CONTROL_WALK: dict[str, tuple[dict[str, Any] | None, str, Any]] = {
    "model": (None, "depth", NORMAL),
    "scale": (None, "depth", 0.3),
    "detector": (LINES, "lineart", "canny"),
    "start": (None, "depth", 0.5),
    "end": (None, "depth", 0.4),  # 2 steps: off for both
    "guess_mode": (None, "depth", True),
}


@pytest.fixture(scope="module")
def models(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny set with steering ControlNets, a second checkpoint and adapter, and LoRAs."""
    root = write_live_controlnets(tiny_models, tmp_path_factory.mktemp("walk") / "models")
    torch.manual_seed(7)
    write_tiny_checkpoint(root / "checkpoints" / "tiny-sd15-b")
    tiny_adapter("v3").save_pretrained(root / "motion" / "tiny-motion-b", safe_serialization=True)
    write_lora(tiny_unet(), root / "lora" / "tiny-style.safetensors", seed=1)
    write_lora(tiny_adapter("v3"), root / "lora" / "tiny-sway.safetensors", motion=True, seed=2)
    return root


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory):
    """A shot with depth that varies in space and time, and tilted faces."""

    def depth(i: int) -> np.ndarray:
        y, x = np.mgrid[0:48, 0:64].astype(np.float32)
        return 3.0 + x / 8 + y / 16 + 0.3 * i

    def normal(i: int) -> np.ndarray:
        n = np.zeros((48, 64, 3), np.float32)
        n[..., 0], n[..., 2] = 0.6, 0.8
        n[:, 32:, 0] = -0.6
        return n

    root = tmp_path_factory.mktemp("walk-bundle") / "bundle"
    return load_bundle(write_synthetic_bundle(root, FRAMES, (64, 48), depth, normal))


@pytest.fixture(scope="module")
def cache() -> ModelCache:
    return ModelCache(size=2)


def run(bundle, models: Path, cache: ModelCache, values: dict, out: Path) -> np.ndarray:
    settings = Settings(**values)
    shutil.rmtree(out, ignore_errors=True)
    paths = render_bundle(bundle, settings, out, [models], cache)
    return np.stack([np.asarray(Image.open(p)) for p in paths]).astype(int)


def frames_key(bundle, models: Path, values: dict, tmp: Path) -> str:
    work = prepare(bundle, Settings(**values), [models])
    return StageCache(tmp / "stages").keys(work, [models]).frames


def test_the_walk_covers_every_field():
    assert set(WALK) == set(Settings.model_fields), "classify new settings in WALK"
    assert set(CONTROL_WALK) == set(Control.model_fields)
    for model in (Settings, Control):
        undocumented = [n for n, f in model.model_fields.items() if not f.description]
        assert not undocumented, f"{model.__name__} fields without a description"


def test_the_docs_tables_are_the_declarations():
    """docs/engine.md's engines and settings tables are generated from the declarations."""
    doc = (REPO / "docs" / "engine.md").read_text(encoding="utf-8")
    assert settings_doc.BEGIN in doc, "docs/engine.md lost its generated section"
    start = doc.index(settings_doc.BEGIN)
    section = doc[start : doc.index(settings_doc.END, start) + len(settings_doc.END)]
    assert section == settings_doc.markdown(), (
        "docs/engine.md differs from the declarations: paste `storyshade settings --markdown`"
    )


def expected(engine: str, field: str, before: dict[str, Any], value: Any) -> str:
    """What changing `field` to `value` does on `engine`, from the field's declaration and
    the engine's capabilities: "frames", "same" or "refused"."""
    if field == "engine":
        return "frames"
    caps = capabilities(engine)
    decl = declared(Settings, field)
    if decl.feature in caps.ignores:
        return "same"
    if not caps.honours(decl.feature):
        settings = Settings(**{**before, field: value})
        return "same" if is_neutral(Settings, field, value, settings) else "refused"
    if decl.effect != "frames":
        return "same"
    if decl.only_with and decl.only_with not in before:
        return "same"  # acts only with another field, which this base does not set
    return "frames"


def test_the_derived_effects_are_the_ones_measured_before():
    """The walk's expectations, once written by hand per engine, now follow from the
    declarations; they must not have moved (issue #24: no behaviour changes)."""
    before = {f: WALK[f] for f in WINDOWED_BEFORE}  # the fields there were then
    assert {f: expected("animatediff", f, {**BASE, **e}, v) for f, (e, v) in before.items()} == (
        WINDOWED_BEFORE
    )
    assert {f: expected("preview", f, {**BASE, **e}, v) for f, (e, v) in before.items()} == (
        PREVIEW_BEFORE
    )


@pytest.fixture(scope="module")
def references() -> dict[str, np.ndarray]:
    """Base renders, shared by the fields that start from the same base."""
    return {}


# In `make test`, the windowed engine walks a sample of the fields (one per kind: text,
# sampling, models, controls, windows, speed); every field runs in `make test-nightly`.
# The whole walk renders ~70 shots: over 13 minutes on 2 shared cores.
QUICK = {"prompt", "seed", "checkpoint", "controls", "context_length", "forward_chunk", "engine"}


def _walk_cases():
    for engine in ("animatediff", "preview"):
        for field in WALK:
            marks = [pytest.mark.slow]
            if engine == "animatediff" and field not in QUICK:
                marks.append(pytest.mark.nightly)
            yield pytest.param(engine, field, id=f"{engine}-{field}", marks=marks)


@pytest.mark.parametrize(("engine", "field"), list(_walk_cases()))
def test_every_setting_changes_the_frames_or_is_documented_inert(
    engine, field, bundle, models, cache, references, tmp_path
):
    extra, value = WALK[field]
    before = {**BASE, "engine": engine, **extra}
    after = {**before, field: value}
    if field == "engine":
        after["engine"] = "preview" if engine == "animatediff" else "animatediff"
    effect = expected(engine, field, before, value)
    if effect == "refused":
        with pytest.raises(StoryShadeError) as err:
            run(bundle, models, cache, after, tmp_path / "b")
        assert err.value.field == f"settings.{field}"
        return
    key = f"{engine} {sorted(extra.items())}"
    if key not in references:
        references[key] = run(bundle, models, cache, before, tmp_path / "a")
    a = references[key]
    b = run(bundle, models, cache, after, tmp_path / "b")
    same = a.shape == b.shape and np.abs(a - b).max() <= 1
    if same and (engine, field) in BELOW_RESOLUTION:
        pytest.xfail(BELOW_RESOLUTION[engine, field])
    assert same == (effect == "same"), f"{field} on {engine}: expected {effect}"
    assert frames_key(bundle, models, before, tmp_path) != frames_key(
        bundle, models, after, tmp_path
    )


@pytest.mark.slow
def test_every_control_field_changes_the_frames(bundle, models, cache, tmp_path):
    wrong = []
    for field, (controls, role, value) in CONTROL_WALK.items():
        before = {**BASE, "controls": controls or BASE["controls"]}
        changed_controls = {r: dict(c) for r, c in before["controls"].items()}
        changed_controls[role][field] = value
        after = {**before, "controls": changed_controls}
        a = run(bundle, models, cache, before, tmp_path / "a")
        b = run(bundle, models, cache, after, tmp_path / "b")
        if a.shape == b.shape and np.abs(a - b).max() <= 1:
            wrong.append(field)
    assert not wrong, f"per-control fields with no effect: {wrong}"


def test_every_feature_says_what_an_engine_without_it_cannot_do():
    """A refusal names what the engine cannot do: every feature a setting serves or an
    engine declares has its words (declare.FEATURES)."""
    from storyshade import engines
    from storyshade.declare import FEATURES, declarations

    used = {d.feature for model in (Settings, Control) for d in declarations(model).values()}
    for name in engines.names():
        caps = engines.capabilities(name)
        used |= caps.reads | caps.ignores
    assert used <= set(FEATURES), f"features without words: {sorted(used - set(FEATURES))}"

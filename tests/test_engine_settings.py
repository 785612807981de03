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
from storyshade.bundle import load_bundle
from storyshade.cache import StageCache
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
# field: (base overrides, changed value, windowed effect, preview effect)
WALK: dict[str, tuple[dict[str, Any], Any, str, str]] = {
    "engine": ({}, "animatediff-stock", "frames", "frames"),
    "prompt": ({}, "a red barn", "frames", "same"),
    "prompt_prefix": ({}, "ink sketch", "frames", "same"),
    "prompt_suffix": ({}, "at night", "frames", "same"),
    "negative_prompt": ({}, "", "frames", "same"),
    "seed": ({}, 4, "frames", "same"),
    "steps": ({}, 3, "frames", "same"),
    "guidance_scale": ({}, 4.0, "frames", "same"),
    "width": ({}, 72, "frames", "frames"),
    "height": ({"width": 128}, 72, "frames", "frames"),  # a height-limited fit
    "checkpoint": ({}, "tiny-sd15-b", "frames", "same"),
    "motion_adapter": ({}, "tiny-motion-b", "frames", "same"),
    "motion_scale": ({}, 0.5, "frames", "same"),
    "scheduler": ({}, "euler_a", "frames", "same"),
    "controls": ({}, {"depth": {"model": DEPTH, "scale": 0.8}}, "frames", "same"),
    "loras": ({}, [{"name": "tiny-style"}], "frames", "same"),
    "motion_loras": ({}, [{"name": "tiny-sway"}], "frames", "same"),
    "references": (IPX, [{"image": REFERENCE}], "frames", "same"),  # preview: a note
    "ip_adapter": ({}, TINY_NAMES["ip_adapter_plus"], "same", "same"),  # without references
    "image_encoder": ({}, "another-encoder", "same", "same"),  # without references
    "color_match": ({}, {"strength": 1.0}, "frames", "refused"),
    "context_length": ({}, 3, "frames", "same"),
    "context_overlap": ({}, 3, "frames", "same"),  # 1 would tile the same 2 windows
    "decode_chunk_size": ({}, 3, "same", "same"),
    "context_schedule": ({"steps": 4}, "shifting", "frames", "same"),
    "context_fuse": ({}, "flat", "frames", "same"),
    "free_noise": ({}, True, "frames", "same"),
    "forward_chunk": ({}, 64, "same", "same"),
    "attention_slicing": ({}, True, "same", "same"),
    "channels_last": ({}, False, "same", "same"),  # CUDA only; these runs are on the CPU
    "compile": ({}, "auto", "same", "same"),  # eager on the CPU ('on': test_levers.py)
    "step_cache": ({"steps": 4}, 4, "frames", "same"),  # 2 of 2 steps: below 8-bit levels
    "preview_every": ({}, 1, "same", "same"),  # events, not frames
    "depth_range": ({}, "clip", "frames", "frames"),
    "depth_near": (FIXED, 4.0, "frames", "frames"),
    "depth_far": (FIXED, 5.0, "frames", "frames"),
    "normal_convention": ({}, "midas", "frames", "same"),  # preview decodes either
    "dtype": ({}, "bfloat16", "frames", "same"),
    "device": ({}, "cpu", "same", "same"),  # 'auto' is the CPU here: where, not what
    "hires": ({}, {"scale": 1.5, "strength": 0.5}, "frames", "same"),  # preview: a draft
    # Wan-only settings: refused on these engines (tests/test_wan_*.py walk them on Wan)
    "wan_window": ({}, 33, "refused", "refused"),
    "wan_overlap": ({}, 8, "refused", "refused"),
    "wan_scheduler": ({}, "euler", "refused", "refused"),
    "wan_shift": ({}, 5.0, "refused", "refused"),
    "wan_cache": ({}, "first_block", "refused", "refused"),
    "wan_cache_threshold": ({}, 0.1, "refused", "refused"),
    "wan_cache_interval": ({}, 3, "refused", "refused"),
    "wan_offload": ({}, "model", "refused", "refused"),
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


def test_inert_fields_are_documented_per_engine():
    """docs/engine.md lists, per engine, the fields that leave the frames as they are."""
    doc = (REPO / "docs" / "engine.md").read_text(encoding="utf-8")
    section = doc.split("## Which settings change the frames", 1)[1].split("\n## ", 1)[0]
    rows = {
        line.split("|")[1].strip(): line
        for line in section.splitlines()
        if line.startswith("| `")
        or line.startswith("| animatediff")
        or line.startswith("| preview")
    }
    for engine, column in (("animatediff", 2), ("preview", 3)):
        inert = {f for f, row in WALK.items() if row[column] == "same"}
        line = next(v for k, v in rows.items() if k.strip("`") == engine)
        listed = {w.strip("`, ") for w in line.split("|")[2].split() if w.startswith("`")}
        assert inert == listed, f"{engine}: documented {sorted(listed)} vs walked {sorted(inert)}"


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
    extra, value, windowed_effect, preview_effect = WALK[field]
    before = {**BASE, "engine": engine, **extra}
    after = {**before, field: value}
    if field == "engine":
        after["engine"] = "preview" if engine == "animatediff" else "animatediff"
    expected = windowed_effect if engine == "animatediff" else preview_effect
    if expected == "refused":
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
    assert same == (expected == "same"), f"{field} on {engine}: expected {expected}"
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


def test_every_sampler_config_field_is_documented_where_it_is_declared() -> None:
    """SamplerConfig's docstring names each field with what it does (issue #12 item 6)."""
    from dataclasses import fields

    from storyshade.engine.sampling import SamplerConfig

    doc = SamplerConfig.__doc__ or ""
    missing = [f.name for f in fields(SamplerConfig) if f"\n    {f.name}: " not in doc]
    assert not missing, f"SamplerConfig fields without a line in its docstring: {missing}"

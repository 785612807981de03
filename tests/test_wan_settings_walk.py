"""Every setting on the Wan VACE engine changes the frames, is documented as leaving them
as they are (docs/engine.md, the wan-vace row), or is refused naming itself: none is
accepted and ignored. The walk renders through the real render path on the tiny Wan set
(a sample in `make test`, every field nightly), as tests/test_engine_settings.py does for
the AnimateDiff engines."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import write_synthetic_bundle
from PIL import Image
from storyshade.bundle import load_bundle
from storyshade.errors import StoryShadeError
from storyshade.models.loader import ModelCache
from storyshade.models.tiny_wan import TINY_WAN, write_tiny_wan, write_wan_lora
from storyshade.render import render_bundle
from storyshade.settings import Settings

REPO = Path(__file__).resolve().parents[1]
BASE: dict[str, Any] = {
    "engine": "wan-vace",
    "checkpoint": TINY_WAN,
    "controls": {
        "depth": {"model": "vace", "scale": 1.0},
        "normal": {"model": "vace", "scale": 0.0},
    },
    "prompt": "a lighthouse",
    "negative_prompt": "blurry",
    "width": 64,
    "height": 64,
    "steps": 2,
    "guidance_scale": 3.0,
    "seed": 3,
    "wan_window": 9,  # two windows over the 13 frames
    "wan_overlap": 4,
    "preview_every": 0,
}
FIXED = {"depth_range": "fixed", "depth_near": 1.0, "depth_far": 30.0}
REFERENCE = str(REPO / "docs" / "gui" / "4.3-looks-preview.png")
BOTH = {"depth": {"model": "vace", "scale": 1.0}, "normal": {"model": "vace", "scale": 0.6}}
R = "refused"
# field: (base overrides, changed value, effect on wan-vace)
WAN_WALK: dict[str, tuple[dict[str, Any], Any, str]] = {
    "engine": ({}, "animatediff", R),  # an AnimateDiff engine on a Wan checkpoint
    "prompt": ({}, "a red barn", "frames"),
    "prompt_prefix": ({}, "ink sketch", "frames"),
    "prompt_suffix": ({}, "at night", "frames"),
    "negative_prompt": ({}, "", "frames"),
    "seed": ({}, 4, "frames"),
    "steps": ({}, 3, "frames"),
    "guidance_scale": ({}, 5.0, "frames"),
    "width": ({}, 80, "frames"),
    "height": ({"width": 96}, 80, "frames"),
    "checkpoint": ({}, "tiny-wan-vace-b", "frames"),
    "motion_adapter": ({}, "tiny-motion-v3", R),
    "motion_scale": ({}, 0.5, R),
    "scheduler": ({}, "euler", R),
    "controls": ({}, BOTH, "frames"),
    "loras": ({}, [{"name": "tiny-wan-style"}], "frames"),
    "motion_loras": ({}, [{"name": "tiny-wan-style"}], R),
    "references": ({}, [{"image": REFERENCE}], "frames"),
    # the IP-Adapter acts only with references, and is refused with them (VACE takes them)
    "ip_adapter": ({}, "tiny-ip-adapter", "same"),
    "image_encoder": ({}, "tiny-image-encoder", "same"),
    "color_match": ({}, {"strength": 1.0}, "frames"),
    "context_length": ({}, 8, R),
    "context_overlap": ({}, 2, R),
    "decode_chunk_size": ({}, 1, "same"),
    "context_schedule": ({"steps": 4, "wan_window": 5, "wan_overlap": 0}, "shifting", "frames"),
    "context_fuse": ({}, "flat", "frames"),
    "free_noise": ({}, True, R),
    "forward_chunk": ({}, 64, R),
    "attention_slicing": ({}, True, R),
    "channels_last": ({}, False, "same"),  # CUDA only; these runs are on the CPU
    "compile": ({}, "auto", "same"),  # eager on the CPU
    "step_cache": ({"steps": 4}, 2, R),
    "preview_every": ({}, 1, "same"),  # events, not frames
    "depth_range": ({}, "clip", "frames"),
    "depth_near": (FIXED, 4.0, "frames"),
    "depth_far": (FIXED, 5.0, "frames"),
    "normal_convention": ({"controls": BOTH}, "midas", "frames"),
    "dtype": ({}, "bfloat16", "frames"),
    "device": ({}, "cpu", "same"),  # 'auto' is the CPU here
    "hires": ({}, {"scale": 1.5, "strength": 0.5}, R),
    "wan_window": ({}, 13, "frames"),  # one window instead of two
    "wan_overlap": ({}, 0, "frames"),  # on a 21-frame shot: 3 windows against 2
    "wan_scheduler": ({}, "euler", "frames"),
    "wan_shift": ({}, 6.0, "frames"),
    "wan_cache": ({"steps": 6}, "taylorseer", "frames"),
    "wan_cache_threshold": ({"wan_cache": "first_block", "steps": 6}, 0.3, "frames"),
    "wan_cache_interval": ({"wan_cache": "taylorseer", "steps": 6}, 3, "frames"),
    "wan_offload": ({}, "model", "same"),  # where, not what
}
# Settings that act on the control images, whose change the tiny Wan VAE (3 base channels,
# RMS-normalised) encodes below one 8-bit level of the frames: a control video and its
# copy at half amplitude encode to latents 0.04 apart on a 0.9 scale (measured), while a
# control at scale 0 against 1 moves the frames by 30 levels. For these the walk checks
# the control video the engine sends instead.
BELOW_RESOLUTION = {"depth_range", "depth_near", "normal_convention"}
QUICK = {"prompt", "controls", "wan_window", "motion_scale", "color_match", "engine"}


def test_the_walk_covers_every_field():
    assert set(WAN_WALK) == set(Settings.model_fields), "classify new settings in WAN_WALK"


def test_the_declarations_give_the_walks_effects():
    """The effects above were measured on the tiny Wan set before the Wan engine declared
    its capabilities: the declarations (what docs/engine.md's tables are made from) must
    say the same for every field."""
    from test_engine_settings import expected

    derived = {f: expected("wan-vace", f, {**BASE, **e}, v) for f, (e, v, _) in WAN_WALK.items()}
    derived["engine"] = R  # an AnimateDiff engine on a Wan checkpoint: the models refuse it
    assert derived == {f: effect for f, (_, _, effect) in WAN_WALK.items()}


@pytest.fixture(scope="module")
def models(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wan-walk")
    for folder in tiny_models.iterdir():
        (root / folder.name).symlink_to(folder, target_is_directory=True)
    (root / "more").mkdir()
    write_tiny_wan(root / "more" / "tiny-wan-vace-b", seed=7)
    (root / "wan-lora").mkdir()
    write_wan_lora(root / "wan-lora" / "tiny-wan-style.safetensors", width=24, seed=2)
    return root


def shot(tmp_path_factory: pytest.TempPathFactory, frames: int):
    def depth(i: int) -> np.ndarray:
        y, x = np.mgrid[0:48, 0:64].astype(np.float32)
        return 3.0 + x / 16 + y / 24 + 0.2 * np.sin(x / 5 + i)

    def normal(_i: int) -> np.ndarray:
        n = np.zeros((48, 64, 3), np.float32)
        n[..., 0], n[..., 2] = 0.6, 0.8
        return n

    root = tmp_path_factory.mktemp("wan-walk-bundle") / "b"
    return load_bundle(write_synthetic_bundle(root, frames, depth_fn=depth, normal_fn=normal))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory):
    return shot(tmp_path_factory, 13)


@pytest.fixture(scope="module")
def long_bundle(tmp_path_factory: pytest.TempPathFactory):
    """21 frames, 6 latent frames: enough for the overlap to change the windows."""
    return shot(tmp_path_factory, 21)


@pytest.fixture(scope="module")
def cache() -> ModelCache:
    return ModelCache(size=2)


def run(bundle, models: Path, cache: ModelCache, values: dict, out: Path) -> np.ndarray:
    shutil.rmtree(out, ignore_errors=True)
    paths = render_bundle(bundle, Settings(**values), out, [models], cache)
    return np.stack([np.asarray(Image.open(p)) for p in paths]).astype(int)


@pytest.fixture(scope="module")
def references() -> dict:
    return {}


def _cases():
    for field in WAN_WALK:
        marks = [pytest.mark.slow] + ([] if field in QUICK else [pytest.mark.nightly])
        yield pytest.param(field, id=field, marks=marks)


@pytest.mark.parametrize("field", list(_cases()))
def test_every_setting_acts_is_documented_inert_or_is_refused(
    field, bundle, long_bundle, models, cache, references, tmp_path
):
    extra, value, expected = WAN_WALK[field]
    if field == "wan_overlap":
        bundle = long_bundle
    before = {**BASE, **extra}
    after = {**before, field: value}
    if expected == R:
        with pytest.raises(StoryShadeError) as err:
            run(bundle, models, cache, after, tmp_path / "b")
        assert err.value.field, "a refusal names what it refuses"
        assert field in f"{err.value.field} {err.value.problem}" or field == "engine", err.value
        return
    key = repr(sorted(extra.items())) + str(len(bundle))
    if key not in references:
        torch.manual_seed(0)
        references[key] = run(bundle, models, cache, before, tmp_path / "a")
    a = references[key]
    b = run(bundle, models, cache, after, tmp_path / "b")
    same = a.shape == b.shape and np.abs(a - b).max() <= 1
    if same and field in BELOW_RESOLUTION:
        from storyshade.controls import build_controls

        role = "normal" if field == "normal_convention" else "depth"
        images = [build_controls(bundle, Settings(**v)).frames[role] for v in (before, after)]
        assert any(not np.array_equal(x, y) for x, y in zip(*images, strict=True)), field
        return
    assert same == (expected == "same"), f"{field} on wan-vace: expected {expected}"

"""Every mismatch is found before loading and named with both files, using tiny models of
deliberately wrong shapes (cross-attention width, UNet levels, adapter version)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from storyshade.errors import ModelError
from storyshade.models.arch import adapter_arch
from storyshade.models.loader import model_key
from storyshade.models.tiny import (
    tiny_adapter,
    tiny_controlnet,
    tiny_unet,
    write_lora,
    write_motion_file,
    write_tiny_checkpoint,
)
from storyshade.presets import resolve


def _save(model, path: Path) -> Path:
    model.save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="module")
def zoo(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny set plus models that do not fit it (or each other)."""
    root = tmp_path_factory.mktemp("zoo")
    for kind in ("checkpoints", "motion", "controlnet"):
        (root / kind).mkdir()
        for model in (tiny_models / kind).iterdir():
            (root / kind / model.name).symlink_to(model)
    write_tiny_checkpoint(root / "checkpoints" / "sd15-like", cross=768)
    for cross, name in ((768, "sd15-like"), (1024, "sd2-like"), (2048, "sdxl-like")):
        _save(tiny_controlnet(cross), root / "controlnet" / f"cn-{name}")
    _save(tiny_adapter("v3", blocks=(32, 64, 64)), root / "motion" / "three-level-adapter")
    _save(tiny_adapter("v2"), root / "motion" / "tiny-motion-v2")
    write_motion_file(tiny_adapter("v1"), root / "motion" / "tiny-motion-v1.safetensors")
    write_motion_file(
        tiny_adapter("v2"),
        root / "motion" / "tiny_lightning_4step_diffusers.safetensors",
        original=False,
    )
    sparse = root / "motion" / "tiny-sparsectrl"
    sparse.mkdir()
    (sparse / "config.json").write_text(json.dumps({"_class_name": "SparseControlNetModel"}))
    (sparse / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    lora = root / "lora"
    write_lora(tiny_unet(), lora / "tiny-style.safetensors")
    write_lora(tiny_unet(cross=768), lora / "sd15-like-style.safetensors")
    write_lora(tiny_adapter("v2"), lora / "v2-push.safetensors", motion=True)
    write_lora(tiny_adapter("v3"), lora / "v3-push.safetensors", motion=True)
    return root


def _error(zoo: Path, overrides: dict) -> ModelError:
    with pytest.raises(ModelError) as err:
        model_key([zoo], resolve("tiny", overrides))
    return err.value


def _controls(name: str) -> dict:
    return {"controls": {r: {"model": name} for r in ("depth", "normal")}}


@pytest.mark.parametrize(
    ("checkpoint", "controlnet", "families"),
    [
        ("sd15-like", "cn-sd2-like", ("SD2", "SD1.5")),
        ("sd15-like", "cn-sdxl-like", ("SDXL", "SD1.5")),
        ("tiny-sd15", "cn-sd15-like", ("SD1.5", "non-standard")),
    ],
)
def test_controlnet_and_checkpoint_cross_attention(
    zoo: Path, checkpoint: str, controlnet: str, families: tuple[str, str]
) -> None:
    err = _error(zoo, {"checkpoint": checkpoint, **_controls(controlnet)})
    assert str(zoo / "checkpoints" / checkpoint) in err.problem
    assert str(zoo / "controlnet" / controlnet) in err.problem
    for fam in families:
        assert fam in err.problem
    assert err.field == "settings.controls.depth"


def test_matching_family_passes(zoo: Path) -> None:
    key = model_key(
        [zoo], resolve("tiny", {"checkpoint": "sd15-like", **_controls("cn-sd15-like")})
    )
    assert key.checkpoint.name == "sd15-like"


def test_motion_adapter_must_fit_the_checkpoint_unet(zoo: Path) -> None:
    err = _error(zoo, {"motion_adapter": "three-level-adapter"})
    assert str(zoo / "motion" / "three-level-adapter") in err.problem
    assert str(zoo / "checkpoints" / "tiny-sd15") in err.problem
    assert "[32, 64, 64]" in err.problem and "[32, 64]" in err.problem
    assert "SD1.5 motion adapters" in err.fix


def test_adapter_versions_are_read_without_loading(zoo: Path) -> None:
    assert adapter_arch(zoo / "motion" / "tiny-motion-v3").version == "v3"
    assert adapter_arch(zoo / "motion" / "tiny-motion-v2").version == "v2"
    assert adapter_arch(zoo / "motion" / "tiny-motion-v1.safetensors").version == "v1"
    assert adapter_arch(zoo / "motion" / "tiny-sparsectrl").version == "sparsectrl"


def test_v1_adapter_window_limit(zoo: Path) -> None:
    err = _error(zoo, {"motion_adapter": "tiny-motion-v1", "context_length": 32})
    assert "v1" in err.problem and "24" in err.problem
    assert str(zoo / "motion" / "tiny-motion-v1.safetensors") in err.problem
    model_key([zoo], resolve("tiny", {"motion_adapter": "tiny-motion-v1", "context_length": 16}))


def test_sparsectrl_is_not_a_motion_adapter(zoo: Path) -> None:
    err = _error(zoo, {"motion_adapter": "tiny-sparsectrl"})
    assert "SparseCtrl" in err.problem


def test_motion_lora_needs_the_adapter_it_was_trained_for(zoo: Path) -> None:
    err = _error(zoo, {"motion_loras": [{"name": "v2-push"}]})  # tiny adapter is v3
    assert str(zoo / "lora" / "v2-push.safetensors") in err.problem
    assert str(zoo / "motion" / "tiny-motion-v3") in err.problem
    assert "mid-block" in err.problem and err.field == "settings.motion_loras"
    model_key([zoo], resolve("tiny", {"motion_loras": [{"name": "v3-push"}]}))
    model_key(
        [zoo],
        resolve(
            "tiny", {"motion_adapter": "tiny-motion-v2", "motion_loras": [{"name": "v2-push"}]}
        ),
    )


def test_style_lora_family_must_match_the_checkpoint(zoo: Path) -> None:
    err = _error(zoo, {"loras": [{"name": "sd15-like-style"}]})
    assert str(zoo / "lora" / "sd15-like-style.safetensors") in err.problem
    assert str(zoo / "checkpoints" / "tiny-sd15") in err.problem
    assert "SD1.5" in err.problem
    model_key([zoo], resolve("tiny", {"loras": [{"name": "tiny-style", "weight": 0.5}]}))


def test_lightning_adapter_needs_its_sampler_settings(zoo: Path) -> None:
    lightning = {"motion_adapter": "tiny_lightning_4step_diffusers"}
    err = _error(zoo, lightning)  # tiny quality: ddim, CFG 2, 2 steps
    assert str(zoo / "motion" / "tiny_lightning_4step_diffusers.safetensors") in err.problem
    assert "scheduler 'ddim'" in err.problem and "guidance_scale 2.0" in err.problem
    assert "steps 2 (distilled for 4)" in err.problem
    assert err.field == "settings.scheduler"
    ok = {**lightning, "scheduler": "euler", "guidance_scale": 1.0, "steps": 4}
    assert model_key([zoo], resolve("tiny", ok)).scheduler == "euler"


def test_lcm_scheduler_needs_an_lcm_model(zoo: Path) -> None:
    err = _error(zoo, {"scheduler": "lcm"})
    assert "LCM" in err.problem and str(zoo / "motion" / "tiny-motion-v3") in err.problem


def test_models_check_lists_every_mismatch(zoo: Path) -> None:
    from storyshade.models.check import check_preset

    settings = resolve("tiny", {"checkpoint": "sd15-like", "motion_adapter": "three-level-adapter"})
    report = check_preset([zoo], settings)
    assert not report.ok and len(report.problems) == 3  # depth, normal, adapter
    assert report.text().count("MISMATCH") == 3

"""Discovery finds tiny models in every layout (diffusers folder, HF cache, single file),
refuses pickle files with a conversion recipe, and `models list|check` report it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from storyshade.cli import main
from storyshade.errors import ModelError
from storyshade.models.discover import discover
from storyshade.models.locate import find, model_roots
from storyshade.models.tiny import (
    TINY_NAMES,
    mirror_as_hf_cache,
    tiny_adapter,
    tiny_unet,
    write_checkpoint_file,
    write_controlnet_file,
    write_lora,
    write_motion_file,
)


@pytest.fixture(autouse=True)
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HF cache of our own, so the machine's cache never leaks into a test."""
    cache = tmp_path / "hf-hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("STORYSHADE_MODELS", raising=False)
    return cache


def _by_name(found) -> dict:
    return {f.name: f for f in found}


def test_model_roots_from_flag_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORYSHADE_MODELS", "/env/a:/env/b")
    assert model_roots(["/flag"]) == [Path("/flag"), Path("/env/a"), Path("/env/b")]


def test_discovers_diffusers_folders(tiny_models: Path) -> None:
    found = _by_name(discover([tiny_models]))
    expected = {
        TINY_NAMES["checkpoint"]: "checkpoint",
        TINY_NAMES["motion_adapter"]: "motion_adapter",
        TINY_NAMES["depth"]: "controlnet",
        TINY_NAMES["normal"]: "controlnet",
    }
    for name, kind in expected.items():
        assert (found[name].kind, found[name].layout) == (kind, "diffusers")
    assert not any(f.name in ("unet", "vae", "text_encoder") for f in found.values())


def test_discovers_hf_cache_layout(tiny_models: Path, hf_cache: Path, tmp_path: Path) -> None:
    snap = mirror_as_hf_cache(tiny_models / "checkpoints" / "tiny-sd15", hf_cache, "acme/tiny-sd15")
    mirror_as_hf_cache(tiny_models / "motion" / "tiny-motion-v3", hf_cache, "acme/tiny-motion")
    lora = write_lora(tiny_unet(), tmp_path / "tiny-style.safetensors")
    mirror_as_hf_cache(lora, hf_cache, "acme/loras")
    found = [f for f in discover([]) if f.layout == "hf-cache"]
    kinds = {(f.kind, f.repo_id, f.name) for f in found}
    assert ("checkpoint", "acme/tiny-sd15", "tiny-sd15") in kinds
    assert ("motion_adapter", "acme/tiny-motion", "tiny-motion") in kinds
    assert ("lora", "acme/loras", "tiny-style") in kinds
    # Found by repo id or by the repo's own name, with no models root at all.
    assert find([], "checkpoint", "acme/tiny-sd15") == snap
    assert find([], "checkpoint", "tiny-sd15") == snap
    assert find([], "motion_adapter", "acme/tiny-motion").parent.name == "snapshots"
    # An explicit root wins over the cache on a name clash.
    assert (
        find([tiny_models], "checkpoint", "tiny-sd15") == tiny_models / "checkpoints" / "tiny-sd15"
    )


def test_discovers_single_files_by_content(tiny_models: Path, tmp_path: Path) -> None:
    root = tmp_path / "models"
    # Deliberately outside the recommended sub-folders: classification is by tensor names.
    write_checkpoint_file(
        tiny_models / "checkpoints" / "tiny-sd15", root / "misc" / "ck.safetensors"
    )
    write_controlnet_file(
        tiny_models / "controlnet" / "tiny-controlnet-depth", root / "cn.safetensors"
    )
    write_motion_file(tiny_adapter("v1"), root / "more" / "mm_v1.safetensors")
    write_motion_file(
        tiny_adapter("v2"), root / "lightning_4step_diffusers.safetensors", original=False
    )
    write_lora(tiny_unet(), root / "lora" / "style.safetensors")
    write_lora(tiny_adapter("v2"), root / "lora" / "push.safetensors", motion=True)
    found = _by_name(discover([root]))
    assert {n: (f.kind, f.layout) for n, f in found.items()} == {
        "ck": ("checkpoint", "single-file"),
        "cn": ("controlnet", "single-file"),
        "mm_v1": ("motion_adapter", "single-file"),
        "lightning_4step_diffusers": ("motion_adapter", "single-file"),
        "style": ("lora", "single-file"),
        "push": ("lora", "single-file"),
    }
    assert found["push"].note == "motion LoRA" and found["style"].note == "style LoRA"
    assert find([root], "checkpoint", "ck") == root / "misc" / "ck.safetensors"


def test_pickle_files_are_refused_with_a_recipe(tmp_path: Path, capsys) -> None:
    root = tmp_path / "models"
    (root / "checkpoints").mkdir(parents=True)
    (root / "checkpoints" / "old-model.ckpt").write_bytes(b"\x80\x04not really a pickle")
    binonly = root / "controlnet" / "bin-only"
    binonly.mkdir(parents=True)
    (binonly / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel"}))
    (binonly / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(ModelError) as err:
        find([root], "checkpoint", "old-model")
    assert "old-model.ckpt" in err.value.problem and "pickle" in err.value.problem
    assert "weights_only=True" in err.value.fix and "save_file" in err.value.fix
    assert "old-model.safetensors" in err.value.fix
    from storyshade.models.locate import check_folder_weights

    with pytest.raises(ModelError) as err:
        check_folder_weights(find([root], "controlnet", "bin-only"), "controlnet")
    assert "pickle" in err.value.problem and "save_pretrained" in err.value.fix
    assert main(["models", "list", "--models", str(root)]) == 0
    out = capsys.readouterr().out
    assert "REFUSED" in out and "old-model" in out and "bin-only" in out


def test_wrong_kind_and_missing_models_are_explained(tiny_models: Path) -> None:
    with pytest.raises(ModelError, match="is a controlnet, not a motion adapter"):
        find([tiny_models], "motion_adapter", "tiny-controlnet-depth")
    with pytest.raises(ModelError) as err:
        find([tiny_models], "checkpoint", "nowhere")
    assert "not found" in err.value.problem and str(tiny_models) in err.value.problem
    with pytest.raises(ModelError, match="not a model name"):
        find([tiny_models], "checkpoint", "../etc")


def test_cli_models_list_and_check(tiny_models: Path, capsys) -> None:
    assert main(["models", "list", "--models", str(tiny_models)]) == 0
    out = capsys.readouterr().out
    for name in TINY_NAMES.values():
        assert name in out
    assert main(["models", "check", "tiny", "--models", str(tiny_models)]) == 0
    assert "all models present and compatible" in capsys.readouterr().out
    # The shipped defaults name real models: the report says where to get each.
    assert main(["models", "check", "anime-cel,zoom-in", "--models", str(tiny_models)]) == 2
    out = capsys.readouterr().out
    assert "MISSING" in out and "not ready" in out
    assert "https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5" in out
    assert "https://huggingface.co/guoyww/animatediff-motion-lora-zoom-in" in out
    assert (
        f"$ storyshade models pull animatediff-motion-adapter-v1-5-2 --models {tiny_models}" in out
    )
    assert f"all at once: storyshade models pull anime-cel,zoom-in --models {tiny_models}" in out
    assert main(["models", "check", "preview"]) == 0  # no models needed

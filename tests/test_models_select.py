"""Which files of a repository a pull takes (models/select.py): pure rules on the hub's file
list, checked here on listings shaped like the real repositories."""

from __future__ import annotations

import pytest
from storyshade.errors import ModelError
from storyshade.models.select import RemoteFile, select
from storyshade.models.sources import SOURCES, source_for


def listing(*paths: str) -> dict[str, RemoteFile]:
    return {p: RemoteFile(p, 10) for p in paths}


SD15 = listing(
    "model_index.json", "v1-5-pruned.safetensors", "v1-5-pruned-emaonly.ckpt", "README.md",
    "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
    "unet/diffusion_pytorch_model.fp16.safetensors", "unet/diffusion_pytorch_model.non_ema.safetensors",
    "unet/diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.fp16.bin",
    "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.fp16.safetensors",
    "text_encoder/config.json", "text_encoder/model.safetensors", "text_encoder/model.fp16.safetensors",
    "text_encoder/pytorch_model.bin", "tokenizer/vocab.json", "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json",
    "scheduler/scheduler_config.json", "safety_checker/config.json", "safety_checker/model.safetensors",
    "feature_extractor/preprocessor_config.json",
)  # fmt: skip


def takes(name: str, files: dict[str, RemoteFile], variant: str = "fp16") -> dict[str, str]:
    return {t.local: t.remote.path for t in select(SOURCES[name], files, variant)}


def test_a_pipeline_takes_its_parts_in_one_variant_under_plain_names() -> None:
    got = takes("stable-diffusion-v1-5", SD15)
    assert (
        got["unet/diffusion_pytorch_model.safetensors"]
        == "unet/diffusion_pytorch_model.fp16.safetensors"
    )
    assert got["text_encoder/model.safetensors"] == "text_encoder/model.fp16.safetensors"
    assert set(got) == {
        "model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "text_encoder/config.json",
        "text_encoder/model.safetensors", "tokenizer/vocab.json", "tokenizer/merges.txt",
        "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json",
        "scheduler/scheduler_config.json",
    }  # fmt: skip
    plain = takes("stable-diffusion-v1-5", SD15, "fp32")
    assert (
        plain["unet/diffusion_pytorch_model.safetensors"]
        == "unet/diffusion_pytorch_model.safetensors"
    )


def test_sharded_variants_keep_their_shards_and_get_the_plain_index() -> None:
    files = listing(
        "model_index.json", "transformer/config.json",
        "transformer/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
        "transformer/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
        "transformer/diffusion_pytorch_model.safetensors.index.fp16.json",
        "transformer/diffusion_pytorch_model-00001-of-00002.safetensors",
        "transformer/diffusion_pytorch_model-00002-of-00002.safetensors",
        "transformer/diffusion_pytorch_model.safetensors.index.json",
        "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/config.json", "text_encoder/model.safetensors",
        "tokenizer/spiece.model", "tokenizer/tokenizer.json", "scheduler/scheduler_config.json",
    )  # fmt: skip
    got = takes("Wan2.1-VACE-1.3B-diffusers", files)
    assert got["transformer/diffusion_pytorch_model.safetensors.index.json"].endswith(
        "index.fp16.json"
    )
    assert "transformer/diffusion_pytorch_model.fp16-00002-of-00002.safetensors" in got
    assert "transformer/diffusion_pytorch_model-00001-of-00002.safetensors" not in got
    assert (
        got["vae/diffusion_pytorch_model.safetensors"] == "vae/diffusion_pytorch_model.safetensors"
    )
    assert "tokenizer/spiece.model" in got  # a tokenizer's own file, not weights


def test_folder_and_file_entries() -> None:
    depth = listing(
        "config.json", "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
        "diffusion_pytorch_model.bin", "images/input.png", "README.md",
    )  # fmt: skip
    assert takes("control_v11f1p_sd15_depth", depth) == {
        "config.json": "config.json",
        "diffusion_pytorch_model.safetensors": "diffusion_pytorch_model.fp16.safetensors",
    }
    lcm = listing("config.json", "diffusion_pytorch_model.safetensors", "AnimateLCM_sd15_t2v_lora.safetensors", "AnimateLCM_sd15_t2v.ckpt")  # fmt: skip
    assert set(takes("AnimateLCM", lcm)) == {"config.json", "diffusion_pytorch_model.safetensors"}
    assert takes("AnimateLCM_sd15_t2v_lora", lcm) == {
        "AnimateLCM_sd15_t2v_lora.safetensors": "AnimateLCM_sd15_t2v_lora.safetensors"
    }
    ip = listing("models/image_encoder/config.json", "models/image_encoder/model.safetensors", "models/image_encoder/pytorch_model.bin")  # fmt: skip
    assert set(takes("image_encoder", ip)) == {"config.json", "model.safetensors"}


def test_refusals_name_the_problem() -> None:
    with pytest.raises(ModelError, match="only as pickle files"):
        takes("control_v11p_sd15_lineart", listing("config.json", "diffusion_pytorch_model.bin"))
    with pytest.raises(ModelError, match="--variant fp16"):
        takes("control_v11p_sd15_canny", listing("config.json", "diffusion_pytorch_model.fp16.safetensors"), "fp32")  # fmt: skip
    with pytest.raises(ModelError, match="variant 'bf16' is not one of"):
        takes("control_v11p_sd15_canny", listing("config.json"), "bf16")
    with pytest.raises(ModelError, match="has no folder vae/"):
        takes("stable-diffusion-v1-5", {k: v for k, v in SD15.items() if not k.startswith("vae/")})


def test_presets_name_models_by_entry_name_or_repository() -> None:
    assert source_for("Wan-AI/Wan2.1-VACE-14B-diffusers") is SOURCES["Wan2.1-VACE-14B-diffusers"]
    assert source_for("wan2.1-vace-1.3b-diffusers") is SOURCES["Wan2.1-VACE-1.3B-diffusers"]
    assert source_for("h94/IP-Adapter") is None  # several entries share it: name one
    assert all(s.kind in ("checkpoint", "motion_adapter", "controlnet", "lora", "ip_adapter", "image_encoder") for s in SOURCES.values())  # fmt: skip

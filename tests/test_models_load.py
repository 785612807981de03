"""Loading: single files (original layout) give the same weights as diffusers folders, the
shipped SD1.5 configs describe the real architecture, and LoRA strengths and samplers
change on the cached pipeline without reloading the UNet."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from storyshade.errors import ModelError
from storyshade.models.loader import ModelCache, model_key
from storyshade.models.single_file import (
    CONFIGS,
    checkpoint_config,
    find_tokenizer,
    load_controlnet,
    load_motion_adapter,
)
from storyshade.models.tiny import (
    mirror_as_hf_cache,
    tiny_adapter,
    tiny_unet,
    write_checkpoint_file,
    write_controlnet_file,
    write_lora,
    write_motion_file,
    write_tiny_checkpoint,
)
from storyshade.presets import resolve


@pytest.fixture(autouse=True)
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def _link_tiny(tiny_models: Path, root: Path) -> Path:
    for kind in ("checkpoints", "motion", "controlnet"):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for model in (tiny_models / kind).iterdir():
            (root / kind / model.name).symlink_to(model)
    return root


def _same(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_single_file_checkpoint_loads_like_its_folder(tiny_models: Path, tmp_path: Path) -> None:
    root = _link_tiny(tiny_models, tmp_path / "models")
    folder = tiny_models / "checkpoints" / "tiny-sd15"
    write_checkpoint_file(folder, root / "checkpoints" / "tiny-file.safetensors")
    cache = ModelCache(size=2)
    from_file = cache.get(model_key([root], resolve("tiny", {"checkpoint": "tiny-file"})))
    from_folder = cache.get(model_key([root], resolve("tiny")))
    assert cache.loads == 2
    _same(from_file.vae.state_dict(), from_folder.vae.state_dict())
    _same(from_file.text_encoder.state_dict(), from_folder.text_encoder.state_dict())
    _same(from_file.unet.state_dict(), from_folder.unet.state_dict())
    ids = from_file.tokenizer("a red barn").input_ids
    assert ids == from_folder.tokenizer("a red barn").input_ids


def test_single_file_tokenizer_comes_from_any_matching_folder(
    tiny_models: Path, tmp_path: Path
) -> None:
    import shutil

    root = _link_tiny(tiny_models, tmp_path / "models")
    path = write_checkpoint_file(
        tiny_models / "checkpoints" / "tiny-sd15", root / "checkpoints" / "bare.safetensors"
    )
    shutil.rmtree(path.with_suffix(".config") / "tokenizer")
    config = checkpoint_config(path)
    assert find_tokenizer(config, [root]) == root / "checkpoints" / "tiny-sd15" / "tokenizer"
    with pytest.raises(ModelError) as err:
        find_tokenizer(config, [])
    assert "no CLIP tokenizer" in err.value.problem
    assert "stable-diffusion-v1-5" in err.value.fix


def _ldm_header_file(path: Path, cross: int) -> Path:
    """An original-layout file holding only the tensors classification reads."""
    from safetensors.torch import save_file

    key = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
    save_file({key: torch.zeros(8, cross)}, str(path))
    return path


def test_sd15_single_file_uses_shipped_config(tmp_path: Path) -> None:
    sd15 = _ldm_header_file(tmp_path / "some-sd15-finetune.safetensors", 768)
    assert checkpoint_config(sd15) == CONFIGS / "sd15"
    xl = _ldm_header_file(tmp_path / "an-sdxl.safetensors", 2048)
    with pytest.raises(ModelError) as err:
        checkpoint_config(xl)
    assert "SDXL" in err.value.problem and "an-sdxl.config" in err.value.fix
    # The SD1.5 tokenizer is found in any SD1.5 diffusers folder under the roots.
    root = tmp_path / "models"
    write_tiny_checkpoint(root / "checkpoints" / "sd15-like", cross=768)
    found = find_tokenizer(CONFIGS / "sd15", [root])
    assert found == root / "checkpoints" / "sd15-like" / "tokenizer"
    with pytest.raises(ModelError, match="no CLIP tokenizer"):
        find_tokenizer(CONFIGS / "sd15", [])


def test_shipped_configs_describe_real_sd15() -> None:
    """Build the real architectures on the meta device (no memory), and check that a real
    SD1.5 file's keys convert completely with the shipped configs."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint
    from storyshade.models.arch import _ldm_blocks
    from storyshade.models.ldm import unet_to_ldm
    from transformers import CLIPTextConfig, CLIPTextModel

    with init_empty_weights():
        unet_config = UNet2DConditionModel.load_config(CONFIGS / "sd15" / "unet")
        unet = UNet2DConditionModel.from_config(unet_config)
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(CONFIGS / "sd15" / "vae"))
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(CONFIGS / "sd15" / "text_encoder"))
        cn = ControlNetModel.from_config(ControlNetModel.load_config(CONFIGS / "sd15-controlnet"))

    def count(m) -> float:
        return sum(p.numel() for p in m.parameters()) / 1e6

    assert round(count(unet)) == 860 and round(count(vae)) == 84
    assert round(count(text)) == 123 and round(count(cn)) == 361
    state = unet.state_dict()
    ldm = unet_to_ldm(state, unet_config["layers_per_block"])
    back = convert_ldm_unet_checkpoint(ldm, unet_config)
    assert set(back) == set(state)
    table = {k: tuple(v.shape) for k, v in ldm.items()}
    assert _ldm_blocks(table, "model.diffusion_model.") == (320, 640, 1280, 1280)


def test_single_file_controlnet_and_motion_modules(tiny_models: Path, tmp_path: Path) -> None:
    from diffusers import ControlNetModel, MotionAdapter

    folder = tiny_models / "controlnet" / "tiny-controlnet-depth"
    cn_file = write_controlnet_file(folder, tmp_path / "cn.safetensors")
    _same(
        load_controlnet(cn_file, torch.float32).state_dict(),
        ControlNetModel.from_pretrained(folder).state_dict(),
    )
    for version, original in (("v1", True), ("v2", True), ("v3", False)):
        adapter = tiny_adapter(version)
        path = write_motion_file(adapter, tmp_path / f"mm-{version}.safetensors", original)
        loaded = load_motion_adapter(path, torch.float32)
        assert isinstance(loaded, MotionAdapter)
        assert loaded.config.use_motion_mid_block == (version == "v2")
        _same(loaded.state_dict(), adapter.state_dict())
    assert loaded.config.motion_max_seq_length == 32


def test_hf_cache_alone_is_enough(tiny_models: Path, hf_cache: Path) -> None:
    for kind in ("checkpoints", "motion", "controlnet"):
        for model in (tiny_models / kind).iterdir():
            mirror_as_hf_cache(model, hf_cache, f"acme/{model.name}")
    key = model_key([], resolve("tiny"))
    assert "snapshots" in key.checkpoint.parts
    pipe = ModelCache().get(key)
    assert pipe.unet.config.cross_attention_dim == 32


def _unet_out(pipe) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 2, 8, 8, generator=gen)
    text = torch.randn(2, 77, 32, generator=gen)
    with torch.no_grad():
        return pipe.unet(sample, 10, encoder_hidden_states=text).sample


def test_lora_strength_and_style_switch_without_reload(tiny_models: Path, tmp_path: Path) -> None:
    root = _link_tiny(tiny_models, tmp_path / "models")
    write_lora(tiny_unet(), root / "lora" / "ink.safetensors", seed=1)
    write_lora(tiny_unet(), root / "lora" / "wash.safetensors", seed=2)
    write_lora(tiny_adapter("v3"), root / "lora" / "sway.safetensors", motion=True, seed=3)
    cache = ModelCache()

    def get(**overrides):
        return cache.get(model_key([root], resolve("tiny", overrides)))

    pipe = get()
    unet = pipe.unet
    base_weight = unet.conv_in.weight.data_ptr()
    plain = _unet_out(pipe)

    pipe = get(loras=[{"name": "ink", "weight": 1.0}])
    strong = _unet_out(pipe)
    ink = {n: p.data_ptr() for n, p in unet.named_parameters() if "style__ink" in n}
    assert ink
    pipe = get(loras=[{"name": "ink", "weight": 0.3}])
    weak = _unet_out(pipe)
    pipe = get(loras=[{"name": "wash", "weight": 1.0}], motion_loras=[{"name": "sway"}])
    other = _unet_out(pipe)
    pipe = get(loras=[{"name": "ink", "weight": 1.0}])
    again = _unet_out(pipe)
    pipe = get(scheduler="euler")
    off = _unet_out(pipe)

    assert cache.loads == 1  # one load for every switch
    assert pipe.unet is unet and unet.conv_in.weight.data_ptr() == base_weight
    # The ink LoRA was injected once: its tensors are the same objects after the switches.
    assert {n: p.data_ptr() for n, p in unet.named_parameters() if "style__ink" in n} == ink
    assert not torch.allclose(strong, plain) and not torch.allclose(weak, strong)
    assert not torch.allclose(other, strong)
    torch.testing.assert_close(again, strong)
    torch.testing.assert_close(off, plain)  # no LoRAs: the base model again
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert pipe.scheduler.config.timestep_spacing == "trailing"

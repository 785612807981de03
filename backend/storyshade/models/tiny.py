"""Write tiny random-weight models in every layout StoryShade reads.

The set has the same layout and architecture family as a real SD1.5 + AnimateDiff +
ControlNet install, only with a handful of channels, so tests and the offline demo load it
through exactly the code that loads real models (`storyshade.models.loader`). Builders take
the shape parameters that real families differ in (cross-attention width, UNet levels,
motion adapter version), so tests can also make deliberately mismatched models.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

TINY_NAMES = {
    "checkpoint": "tiny-sd15",
    "motion_adapter": "tiny-motion-v3",
    "depth": "tiny-controlnet-depth",
    "normal": "tiny-controlnet-normal",
    "ip_adapter": "tiny-ip-adapter",
    "ip_adapter_plus": "tiny-ip-adapter-plus",
    "image_encoder": "tiny-image-encoder",
}

_BLOCKS = (32, 64)
_CROSS = 32


def _block_types(levels: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    down = ("CrossAttnDownBlock2D",) * (levels - 1) + ("DownBlock2D",)
    up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (levels - 1)
    return down, up


def _byte_chars() -> list[str]:
    """The 256 printable stand-ins GPT-2/CLIP byte-level BPE uses for raw bytes."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    keep += range(ord("®"), ord("ÿ") + 1)
    extra = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(extra)) for b in range(256)]


def _tokenizer(dest: Path) -> None:
    """A CLIP BPE tokenizer over the 256 byte-level characters, built offline."""
    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": i + len(chars) for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (dest / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer(str(dest / "vocab.json"), str(dest / "merges.txt"), model_max_length=77)
    tok.save_pretrained(dest)


def tiny_unet(cross: int = _CROSS, blocks: tuple[int, ...] = _BLOCKS) -> Any:
    from diffusers import UNet2DConditionModel

    down, up = _block_types(len(blocks))
    return UNet2DConditionModel(
        block_out_channels=blocks,
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=down,
        up_block_types=up,
        cross_attention_dim=cross,
        attention_head_dim=8,
        norm_num_groups=32,
    )


def tiny_controlnet(cross: int = _CROSS, blocks: tuple[int, ...] = _BLOCKS) -> Any:
    from diffusers import ControlNetModel

    return ControlNetModel(
        block_out_channels=blocks,
        layers_per_block=1,
        in_channels=4,
        down_block_types=_block_types(len(blocks))[0],
        cross_attention_dim=cross,
        attention_head_dim=8,
        norm_num_groups=32,
        conditioning_embedding_out_channels=(8, 16),
    )


def tiny_adapter(version: str = "v3", blocks: tuple[int, ...] = _BLOCKS) -> Any:
    """v1: 24-frame positions, no mid block; v2: mid block; v3: no mid block."""
    from diffusers import MotionAdapter

    return MotionAdapter(
        block_out_channels=blocks,
        motion_layers_per_block=1,
        motion_num_attention_heads=2,
        motion_norm_num_groups=32,
        motion_max_seq_length=24 if version == "v1" else 32,
        use_motion_mid_block=version == "v2",
    )


def write_tiny_models(root: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write checkpoint, motion adapter and depth/normal ControlNets under `root`.

    Layout (the same one real models use, see docs/models.md):
    `checkpoints/tiny-sd15/`, `motion/tiny-motion-v3/`, `controlnet/tiny-controlnet-*/`.
    """
    import torch

    root = Path(root)
    torch.manual_seed(seed)
    paths = {"checkpoint": root / "checkpoints" / TINY_NAMES["checkpoint"]}
    write_tiny_checkpoint(paths["checkpoint"])
    paths["motion_adapter"] = root / "motion" / TINY_NAMES["motion_adapter"]
    tiny_adapter("v3").save_pretrained(paths["motion_adapter"], safe_serialization=True)
    for role in ("depth", "normal"):
        paths[role] = root / "controlnet" / TINY_NAMES[role]
        tiny_controlnet().save_pretrained(paths[role], safe_serialization=True)
    paths.update(write_tiny_references(root, seed=seed))
    return paths


def cross_attention_widths(unet: Any) -> list[int]:
    """Query widths of a UNet's spatial cross-attention layers, in attn_processors order."""
    from diffusers.models.attention_processor import Attention

    return [
        m.to_k.weight.shape[0]
        for name, m in unet.named_modules()
        if isinstance(m, Attention) and name.endswith("attn2") and ".attentions." in f".{name}"
    ]


def tiny_image_encoder(hidden: int = 32, projection: int = 24, image_size: int = 32) -> Any:
    """A CLIPVisionModelWithProjection of a few KB: the kind IP-Adapters read."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    return CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_attention_heads=4,
            num_hidden_layers=2,
            image_size=image_size,
            patch_size=8,
            projection_dim=projection,
        )
    )


def write_ip_adapter(
    dest: Path,
    widths: list[int],
    cross: int = _CROSS,
    embed: int = 24,
    plus: bool = False,
    tokens: int = 4,
    seed: int = 0,
) -> Path:
    """A random IP-Adapter .safetensors in the h94/IP-Adapter key layout: `image_proj.*`
    (base: proj + norm; plus: a one-layer perceiver resampler reading `embed`-wide hidden
    states) and `ip_adapter.{1,3,...}.to_k_ip/to_v_ip` for each cross-attention width."""
    import torch

    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> Any:
        return torch.randn(*shape, generator=gen) / max(shape[-1], 1) ** 0.5

    state: dict[str, Any] = {}
    if plus:
        dim, inner, ff = cross, 64, 4 * cross
        state.update(
            {
                "latents": torch.randn(1, tokens, dim, generator=gen) / dim**0.5,
                "proj_in.weight": rand(dim, embed),
                "proj_in.bias": torch.zeros(dim),
                "proj_out.weight": rand(cross, dim),
                "proj_out.bias": torch.zeros(cross),
                "norm_out.weight": torch.ones(cross),
                "norm_out.bias": torch.zeros(cross),
                "layers.0.0.norm1.weight": torch.ones(dim),
                "layers.0.0.norm1.bias": torch.zeros(dim),
                "layers.0.0.norm2.weight": torch.ones(dim),
                "layers.0.0.norm2.bias": torch.zeros(dim),
                "layers.0.0.to_q.weight": rand(inner, dim),
                "layers.0.0.to_kv.weight": rand(2 * inner, dim),
                "layers.0.0.to_out.weight": rand(dim, inner),
                "layers.0.1.0.weight": torch.ones(dim),
                "layers.0.1.0.bias": torch.zeros(dim),
                "layers.0.1.1.weight": rand(ff, dim),
                "layers.0.1.3.weight": rand(dim, ff),
            }
        )
    else:
        state.update(
            {
                "proj.weight": rand(tokens * cross, embed),
                "proj.bias": torch.zeros(tokens * cross),
                "norm.weight": torch.ones(cross),
                "norm.bias": torch.zeros(cross),
            }
        )
    out = {f"image_proj.{k}": v for k, v in state.items()}
    for i, width in enumerate(widths):
        out[f"ip_adapter.{2 * i + 1}.to_k_ip.weight"] = rand(width, cross) * 2
        out[f"ip_adapter.{2 * i + 1}.to_v_ip.weight"] = rand(width, cross) * 2
    return _save(out, dest)


def write_tiny_references(root: str | Path, seed: int = 0) -> dict[str, Path]:
    """The tiny IP-Adapters (base and plus) and their image encoder, for references."""
    import torch

    root = Path(root)
    torch.manual_seed(seed + 1)
    paths = {"image_encoder": root / "image_encoder" / TINY_NAMES["image_encoder"]}
    encoder = tiny_image_encoder()
    encoder.save_pretrained(paths["image_encoder"], safe_serialization=True)
    widths = cross_attention_widths(tiny_unet())
    hidden, projection = encoder.config.hidden_size, encoder.config.projection_dim
    for name, plus in (("ip_adapter", False), ("ip_adapter_plus", True)):
        paths[name] = write_ip_adapter(
            root / "ip_adapter" / f"{TINY_NAMES[name]}.safetensors",
            widths,
            embed=hidden if plus else projection,
            plus=plus,
            tokens=8 if plus else 4,
            seed=seed + (2 if plus else 1),
        )
    return paths


def write_tiny_checkpoint(
    dest: Path, cross: int = _CROSS, blocks: tuple[int, ...] = _BLOCKS
) -> Path:
    """A complete diffusers SD1.5-layout pipeline folder with random weights."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    unet = tiny_unet(cross, blocks)  # built first: keeps the seeded weights of earlier sets
    vae = AutoencoderKL(
        block_out_channels=_BLOCKS,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=512,
            eos_token_id=513,
            pad_token_id=513,
            hidden_size=cross,
            intermediate_size=64,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=514,
            max_position_embeddings=77,
            projection_dim=cross,
        )
    )
    return save_checkpoint(dest, unet, vae, text_encoder)


def save_checkpoint(dest: Path, unet: Any, vae: Any, text_encoder: Any) -> Path:
    """Save random parts as a diffusers SD1.5 folder with the offline tokenizer and the
    SD1.5 DDIM schedule; the tiny set and the benchmark's bigger models share it."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    dest = Path(dest)
    _tokenizer(dest / "tokenizer")
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(dest / "tokenizer"),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(dest, safe_serialization=True)
    return dest


def _config_only(src: Path, dest: Path) -> None:
    """Copy a diffusers folder without its weights: a sidecar config for single files."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))


def _save(state: dict[str, Any], path: Path) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _load(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))


def write_checkpoint_file(folder: Path, dest: Path) -> Path:
    """A diffusers checkpoint folder as one original-layout (LDM) .safetensors file,
    with a `<stem>.config/` sidecar holding its configs and tokenizer."""
    from storyshade.models.arch import read_config
    from storyshade.models.ldm import clip_to_ldm, unet_to_ldm, vae_to_ldm

    unet_cfg = read_config(folder / "unet" / "config.json")
    vae_cfg = read_config(folder / "vae" / "config.json")
    state = {
        **unet_to_ldm(
            _load(folder / "unet" / "diffusion_pytorch_model.safetensors"),
            unet_cfg["layers_per_block"],
        ),
        **vae_to_ldm(
            _load(folder / "vae" / "diffusion_pytorch_model.safetensors"),
            len(vae_cfg["block_out_channels"]),
        ),
        **clip_to_ldm(_load(folder / "text_encoder" / "model.safetensors")),
    }
    _save(state, dest)
    _config_only(folder, dest.with_suffix(".config"))
    return dest


def write_controlnet_file(folder: Path, dest: Path) -> Path:
    from storyshade.models.arch import read_config
    from storyshade.models.ldm import unet_to_ldm

    cfg = read_config(folder / "config.json")
    state = _load(folder / "diffusion_pytorch_model.safetensors")
    _save(unet_to_ldm(state, cfg["layers_per_block"], prefix="control_model."), dest)
    _config_only(folder, dest.with_suffix(".config"))
    return dest


def write_motion_file(adapter: Any, dest: Path, original: bool = True) -> Path:
    """A motion module as one file: the original AnimateDiff layout (with positional
    tables, which carry the v1/v2 frame limit), or diffusers layout like Lightning."""
    import re

    import torch

    state = adapter.state_dict()
    if not original:
        return _save(state, dest)
    out = {}
    seq = adapter.config.motion_max_seq_length
    for key, value in state.items():
        key = re.sub(r"(motion_modules\.\d+)\.", r"\1.temporal_transformer.", key)
        for new, old in (
            (".norm1", ".norms.0"),
            (".norm2", ".norms.1"),
            (".norm3", ".ff_norm"),
            (".attn1", ".attention_blocks.0"),
            (".attn2", ".attention_blocks.1"),
        ):
            key = key.replace(new, old)
        out[key] = value
        if key.endswith("attention_blocks.0.to_q.weight"):
            for block in (0, 1):
                base = key.replace("attention_blocks.0.to_q.weight", f"attention_blocks.{block}")
                out[f"{base}.pos_encoder.pe"] = torch.zeros(1, seq, value.shape[1])
    return _save(out, dest)


def write_lora(model: Any, dest: Path, motion: bool = False, rank: int = 4, seed: int = 0) -> Path:
    """A random LoRA (diffusers/peft key layout) for the attention layers of `model`.

    `model` is a UNet (style LoRA: spatial attention) or a MotionAdapter (motion LoRA:
    temporal attention). Both halves are random, so the LoRA visibly changes outputs.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        if not name.endswith(("to_q", "to_k", "to_v", "to_out.0")):
            continue
        if ("motion_modules" in name) != motion:
            continue
        state[f"unet.{name}.lora_A.weight"] = torch.randn(rank, module.in_features, generator=gen)
        state[f"unet.{name}.lora_B.weight"] = (
            torch.randn(module.out_features, rank, generator=gen) * 0.5
        )
    return _save(state, dest)


def write_tiny_single_files(root: str | Path) -> dict[str, Path]:
    """Single-file versions of a tiny set already written by `write_tiny_models(root)`."""
    root = Path(root)
    return {
        "checkpoint": write_checkpoint_file(
            root / "checkpoints" / TINY_NAMES["checkpoint"],
            root / "checkpoints" / "tiny-sd15-file.safetensors",
        ),
        "motion_adapter": write_motion_file(
            tiny_adapter("v2"), root / "motion" / "tiny-motion-v2-file.safetensors"
        ),
        "depth": write_controlnet_file(
            root / "controlnet" / TINY_NAMES["depth"],
            root / "controlnet" / "tiny-controlnet-depth-file.safetensors",
        ),
    }


def mirror_as_hf_cache(folder: Path, cache: Path, repo_id: str, revision: str = "0" * 40) -> Path:
    """Copy a model folder into Hugging Face hub cache layout; returns the snapshot folder."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / revision
    if folder.is_dir():
        shutil.copytree(folder, snap, dirs_exist_ok=True)
    else:
        snap.mkdir(parents=True, exist_ok=True)
        shutil.copy2(folder, snap / folder.name)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision, encoding="utf-8")
    return snap

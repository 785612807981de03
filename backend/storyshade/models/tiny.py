"""Write a tiny random-weight model set in diffusers format.

The set has the same layout and architecture family as a real SD1.5 + AnimateDiff +
ControlNet install, only with a handful of channels, so tests and the offline demo load it
through exactly the code that loads real models (`storyshade.models.loader`).
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_NAMES = {
    "checkpoint": "tiny-sd15",
    "motion_adapter": "tiny-motion-v3",
    "depth": "tiny-controlnet-depth",
    "normal": "tiny-controlnet-normal",
}

_BLOCKS = (32, 64)
_CROSS = 32
_DOWN = ("CrossAttnDownBlock2D", "DownBlock2D")
_UP = ("UpBlock2D", "CrossAttnUpBlock2D")


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


def write_tiny_models(root: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write checkpoint, motion adapter and depth/normal ControlNets under `root`.

    Layout (the same one real models use, see README "Models"):
    `checkpoints/tiny-sd15/`, `motion/tiny-motion-v3/`, `controlnet/tiny-controlnet-*/`.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        DDIMScheduler,
        MotionAdapter,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    root = Path(root)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=_BLOCKS,
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=_DOWN,
        up_block_types=_UP,
        cross_attention_dim=_CROSS,
        attention_head_dim=8,
        norm_num_groups=32,
    )
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
            hidden_size=_CROSS,
            intermediate_size=64,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=514,
            max_position_embeddings=77,
            projection_dim=_CROSS,
        )
    )
    tok_dir = root / "checkpoints" / TINY_NAMES["checkpoint"] / "tokenizer"
    _tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    sd = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    paths = {"checkpoint": root / "checkpoints" / TINY_NAMES["checkpoint"]}
    sd.save_pretrained(paths["checkpoint"], safe_serialization=True)

    adapter = MotionAdapter(
        block_out_channels=_BLOCKS,
        motion_layers_per_block=1,
        motion_num_attention_heads=2,
        motion_norm_num_groups=32,
        motion_max_seq_length=32,
        use_motion_mid_block=False,
    )
    paths["motion_adapter"] = root / "motion" / TINY_NAMES["motion_adapter"]
    adapter.save_pretrained(paths["motion_adapter"], safe_serialization=True)

    for role in ("depth", "normal"):
        cn = ControlNetModel(
            block_out_channels=_BLOCKS,
            layers_per_block=1,
            in_channels=4,
            down_block_types=_DOWN,
            cross_attention_dim=_CROSS,
            attention_head_dim=8,
            norm_num_groups=32,
            conditioning_embedding_out_channels=(8, 16),
        )
        paths[role] = root / "controlnet" / TINY_NAMES[role]
        cn.save_pretrained(paths[role], safe_serialization=True)
    return paths

"""A tiny random-weight Wan 2.1 VACE set, in the layout of `Wan-AI/Wan2.1-VACE-1.3B-diffusers`.

`model_index.json`, `transformer/`, `vae/`, `text_encoder/` (UMT5), `tokenizer/`,
`scheduler/`: the same folders and classes as the real checkpoint, with a few channels
each, so tests load it through the loader real Wan checkpoints use
(`storyshade.models.wan_loader`). The tokenizer is a small Unigram model built here with
`tokenizers` (no hub, no sentencepiece file). Builders take the shape parameters real
checkpoints differ in (width, VACE layers), so tests can write mismatched files too: a
Wan T2V checkpoint without VACE blocks, a LoRA for a wider (14B-like) transformer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY_WAN = "tiny-wan-vace"
TINY_WAN_T2V = "tiny-wan-t2v"
HEADS, HEAD_DIM = 2, 12  # transformer width 24 (the 1.3B: 12 x 128 = 1536)
TEXT_DIM = 32  # UMT5 width (the real one: 4096)
MAX_TOKENS = 512  # UMT5's context, as the real tokenizer's model_max_length


def tiny_wan_tokenizer() -> Any:
    """A T5 tokenizer over printable ASCII (each character, and each with the word-start
    mark), with T5's special tokens: pad 0, eos 1, unk 2."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    chars = [chr(c) for c in range(32, 127)]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [(c, -3.0) for c in chars] + [("\u2581" + c, -2.5) for c in chars]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return T5TokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        extra_ids=0,
        model_max_length=MAX_TOKENS,
    )


def tiny_wan_text_encoder(vocab: int) -> Any:
    from transformers import UMT5Config, UMT5EncoderModel

    return UMT5EncoderModel(
        UMT5Config(
            vocab_size=vocab,
            d_model=TEXT_DIM,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )


def tiny_wan_transformer(
    heads: int = HEADS, vace_layers: tuple[int, ...] | None = (0, 2), layers: int = 3
) -> Any:
    """The VACE transformer (or, with `vace_layers` None, the plain T2V one)."""
    from diffusers import WanTransformer3DModel, WanVACETransformer3DModel

    common = {
        "patch_size": (1, 2, 2),
        "num_attention_heads": heads,
        "attention_head_dim": HEAD_DIM,
        "in_channels": 16,
        "out_channels": 16,
        "text_dim": TEXT_DIM,
        "freq_dim": 256,
        "ffn_dim": 32,
        "num_layers": layers,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "rope_max_seq_len": 32,
    }
    if vace_layers is None:
        return WanTransformer3DModel(**common)
    return WanVACETransformer3DModel(**common, vace_layers=list(vace_layers), vace_in_channels=96)


def tiny_wan_vae() -> Any:
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )


def flow_scheduler(shift: float = 3.0) -> Any:
    """The scheduler the real Wan checkpoints ship: flow-matching UniPC."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        num_train_timesteps=1000,
        flow_shift=shift,
    )


def write_tiny_wan(dest: Path, vace: bool = True, seed: int = 0) -> Path:
    """A complete diffusers Wan folder (VACE, or T2V with `vace` False), random weights."""
    import torch
    from diffusers import WanPipeline, WanVACEPipeline

    torch.manual_seed(seed)
    tokenizer = tiny_wan_tokenizer()
    parts = {
        "tokenizer": tokenizer,
        "text_encoder": tiny_wan_text_encoder(len(tokenizer)),
        "vae": tiny_wan_vae(),
        "scheduler": flow_scheduler(),
        "transformer": tiny_wan_transformer(vace_layers=(0, 2) if vace else None),
    }
    pipe = WanVACEPipeline(**parts) if vace else WanPipeline(**parts)
    pipe.save_pretrained(dest, safe_serialization=True)
    return Path(dest)


def write_wan_lora(dest: Path, width: int, layers: int = 3, rank: int = 4, seed: int = 0) -> Path:
    """A random Wan LoRA (diffusers/peft keys) for a transformer `width` channels wide:
    the tiny set's width fits; another width stands for a LoRA of the other model size."""
    import torch

    from storyshade.models.tiny import _save

    gen = torch.Generator().manual_seed(seed)
    state = {}
    for i in range(layers):
        for attn in ("attn1", "attn2"):
            for proj in ("to_q", "to_k", "to_v", "to_out.0"):
                name = f"transformer.blocks.{i}.{attn}.{proj}"
                state[f"{name}.lora_A.weight"] = torch.randn(rank, width, generator=gen)
                state[f"{name}.lora_B.weight"] = torch.randn(width, rank, generator=gen) * 0.5
    return _save(state, dest)


def write_tiny_wan_models(root: str | Path, seed: int = 0) -> dict[str, Path]:
    """The tiny Wan VACE checkpoint under `root/checkpoints/` (beside the SD1.5 set)."""
    path = Path(root) / "checkpoints" / TINY_WAN
    return {"wan checkpoint": write_tiny_wan(path, seed=seed)}

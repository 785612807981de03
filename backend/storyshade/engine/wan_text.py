"""UMT5 once per job: the shot's prompt and negative, and every look's, in one visit.

The text encoder (UMT5-XXL, about 11 GB in bfloat16 for the real checkpoints) stays in CPU
memory (models/wan_loader.py). For a job it is moved to the device, encodes every text the
job needs, and goes back before the transformer denoises, so the two never share the GPU
while denoising; where it does not fit the GPU (8 GB cards) it encodes in CPU memory. Each text is encoded alone, exactly as WanVACEPipeline encodes a prompt
(its cleaning, 512 tokens, zeros past the text's end), so one window equals the stock
pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from storyshade.bundle import Region
from storyshade.engine.regions import look_texts
from storyshade.progress import Reporter
from storyshade.settings import Settings

MAX_TOKENS = 512  # UMT5's context: WanVACEPipeline's max_sequence_length


def token_count(pipe: Any, text: str) -> int:
    return len(pipe.tokenizer(text, add_special_tokens=True).input_ids)


def encode_texts(
    pipe: Any, texts: Sequence[str], device: Any, dtype: Any, reporter: Reporter | None = None
) -> list[torch.Tensor]:
    """(1, 512, text_dim) embeddings per text, in `dtype` on `device`; the encoder visits
    the device for this call only. A text over 512 tokens is cut there (said in a note)."""
    encoder = pipe.text_encoder
    home = encoder.device
    unique = list(dict.fromkeys(texts))
    if reporter is not None:
        for text in unique:
            n = token_count(pipe, text)
            if n > MAX_TOKENS:
                reporter.note(
                    f"a prompt has {n} tokens; UMT5 reads the first {MAX_TOKENS}",
                    event="prompt_truncated",
                )
    try:
        done = _encode(pipe, unique, device, dtype, device)
    except torch.OutOfMemoryError:  # an 8 GB card cannot hold UMT5-XXL: encode in CPU memory
        encoder.to(home)
        torch.cuda.empty_cache()
        if reporter is not None:
            reporter.note(
                "the text encoder does not fit the GPU; encoding the prompts on the CPU",
                event="oom_fallback",
                plan="text encoder on the CPU",
                where="text encoding",
            )
        done = _encode(pipe, unique, device, dtype, home)
    finally:
        if str(encoder.device) != str(home):
            encoder.to(home)
    return [done[t] for t in texts]


def _encode(
    pipe: Any, texts: Sequence[str], device: Any, dtype: Any, where: Any
) -> dict[str, torch.Tensor]:
    """Each text's embeddings (on `device`), the encoder run where `where` is."""
    if str(pipe.text_encoder.device) != str(where):
        pipe.text_encoder.to(where)
    with torch.inference_mode():
        return {
            text: pipe._get_t5_prompt_embeds(
                prompt=text, max_sequence_length=MAX_TOKENS, device=device
            ).to(dtype)
            for text in texts
        }


def job_texts(settings: Settings, looks: Sequence[Region]) -> list[str]:
    """Every text a job encodes, in order: prompt, negative (with CFG), then each look's
    prompt and (with CFG) negative."""
    cfg = settings.guidance_scale > 1
    out = [settings.full_prompt] + ([settings.negative_prompt] if cfg else [])
    for look in looks:
        text, negative = look_texts(settings, look)  # the one rule, both engine families
        out.append(text)
        if cfg:
            out.append(negative)
    return out

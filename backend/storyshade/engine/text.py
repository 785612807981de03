"""Prompt texts into embeddings, read whole however long they are.

CLIP's text encoder has 77 positions: a start token, 75 tokens of text and an end token.
diffusers' `encode_prompt` cuts a longer text there, and a style's prefix plus a user's
prompt often pass 75 tokens, so the end of the prompt (often its most specific words)
never reached the model. Here a text is split into chunks of at most 75 tokens, cut after
the last comma among a full chunk's last 20 tokens where there is one (A1111's rule, so a
phrase stays whole), and each chunk is encoded on its own with its start and end tokens
and padding; the chunks' embeddings are concatenated along the token axis (cross-attention
takes keys of any length). With CFG the shorter of the positive and negative text is
padded with chunks of the empty text (as A1111 does), so both branches have as many tokens.

A text of at most 75 tokens is one chunk, encoded exactly as diffusers encodes it (the same
ids, one text-encoder call of the same shape), so its embeddings are bit for bit the stock
pipeline's.
"""

from __future__ import annotations

from typing import Any

import torch

from storyshade.progress import Reporter

COMMA_BACKTRACK = 20  # a full chunk is cut after a comma at most this many tokens back


def token_ids(pipe: Any, text: str) -> list[int]:
    """The text's token ids without start or end token, not truncated. (An explicit
    max_length keeps transformers from warning that the text is too long: here it is not a
    mistake. StoryShade loads no textual inversions, so diffusers' `maybe_convert_prompt`,
    which would warn too, has nothing to do.)"""
    out = pipe.tokenizer(text, add_special_tokens=False, truncation=False, max_length=10**9)
    return out.input_ids


def chunk_size(tokenizer: Any) -> int:
    """Tokens of text per chunk: the encoder's window minus the start and end tokens."""
    return tokenizer.model_max_length - 2


def split_chunks(ids: list[int], size: int, comma: int | None) -> list[list[int]]:
    """`ids` in chunks of at most `size`, a full chunk cut after its last comma when that
    comma is among its last COMMA_BACKTRACK tokens; at least one chunk (maybe empty)."""
    chunks: list[list[int]] = []
    rest = ids
    while len(rest) > size:
        cut = size
        for i in range(size - 1, max(size - COMMA_BACKTRACK, 0) - 1, -1):
            if rest[i] == comma:
                cut = i + 1
                break
        chunks.append(rest[:cut])
        rest = rest[cut:]
    chunks.append(rest)
    return chunks


def text_chunks(pipe: Any, text: str) -> tuple[list[list[int]], int]:
    """The text's chunks and its length in tokens."""
    tokenizer = pipe.tokenizer
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    if comma == tokenizer.unk_token_id:
        comma = None
    ids = token_ids(pipe, text)
    return split_chunks(ids, chunk_size(tokenizer), comma), len(ids)


def encode_chunks(pipe: Any, chunks: list[list[int]]) -> torch.Tensor:
    """(1, 77 * len(chunks), dim): each chunk as `[start] + chunk + [end] + padding`, as
    diffusers' tokenizer call makes it, through the text encoder in one batch."""
    tokenizer, encoder = pipe.tokenizer, pipe.text_encoder
    window = tokenizer.model_max_length
    device = pipe.unet.device
    rows, masks = [], []
    for chunk in chunks:
        ids = [tokenizer.bos_token_id, *chunk, tokenizer.eos_token_id]
        rows.append(ids + [tokenizer.pad_token_id] * (window - len(ids)))
        masks.append([1] * len(ids) + [0] * (window - len(ids)))
    mask = None
    if getattr(encoder.config, "use_attention_mask", False):
        mask = torch.tensor(masks, device=device)
    out = encoder(torch.tensor(rows).to(device), attention_mask=mask)[0]
    out = out.to(dtype=encoder.dtype, device=device)
    return out.reshape(1, -1, out.shape[-1])


def encode_pair(
    pipe: Any,
    positive: str,
    negative: str | None,
    cfg: bool,
    reporter: Reporter | None = None,
    names: tuple[str, str] = ("the prompt", "the negative prompt"),
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(positive, negative) embeddings (1, tokens, dim) each; the negative (None without
    CFG) has as many tokens as the positive. A text longer than one chunk is a note event
    (`prompt_chunks`, naming it by `names`)."""
    texts = [positive, negative or ""] if cfg else [positive]
    chunked = []
    for name, text in zip(names, texts, strict=False):
        chunks, tokens = text_chunks(pipe, text)
        chunked.append(chunks)
        if len(chunks) > 1 and reporter is not None:
            reporter.note(
                f"{name} is {tokens} tokens, more than the text encoder's "
                f"{chunk_size(pipe.tokenizer)}: read whole, in {len(chunks)} chunks",
                event="prompt_chunks",
                text=name,
                tokens=tokens,
                chunks=len(chunks),
            )
    if not cfg:
        return encode_chunks(pipe, chunked[0]), None
    pos, neg = chunked
    longest = max(len(pos), len(neg))
    pos = pos + [[]] * (longest - len(pos))  # empty chunks: the encoded empty text
    neg = neg + [[]] * (longest - len(neg))
    return encode_chunks(pipe, pos), encode_chunks(pipe, neg)


def overflow(pipe: Any, text: str) -> int:
    """How many of the text's tokens a single 77-token window (diffusers' encode_prompt)
    drops."""
    return max(0, len(token_ids(pipe, text)) - chunk_size(pipe.tokenizer))

"""Tokenizers for shards: train a byte-level BPE, or load any `tokenizer.json`.

One tokenizer serves a family of builds (a derived build reuses its parent's), so
token counts and the trainer's vocabulary agree across regimes. Every tokenizer
must know an end-of-document token: the trainer packs documents with it.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import fsspec
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from curation.errors import UserError

EOD_TOKEN = "<|endoftext|>"
KNOWN_EOD_TOKENS = (EOD_TOKEN, "<|end_of_text|>", "</s>", "<eos>", "<|im_end|>")


def train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE with `EOD_TOKEN` as its only special token (id 0)."""
    if vocab_size < 300:
        raise UserError(f"--vocab-size must be at least 300 (256 bytes plus merges), got {vocab_size}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def load_tokenizer(path: str) -> Tokenizer:
    """Load a `tokenizer.json` from a local path or fsspec URL, with a one-line error if unusable."""
    try:
        with fsspec.open(path, "r", encoding="utf-8") as handle:
            tokenizer = Tokenizer.from_str(handle.read())
    except FileNotFoundError:
        raise UserError(f"tokenizer not found: {path}") from None
    except Exception as error:
        raise UserError(f"cannot read tokenizer {path}: {str(error).splitlines()[0]}") from None
    eod_token_id(tokenizer, path)
    return tokenizer


def eod_token_id(tokenizer: Tokenizer, name: str = "tokenizer") -> int:
    """The id of the tokenizer's end-of-document token."""
    for token in KNOWN_EOD_TOKENS:
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return token_id
    raise UserError(f"{name} has no end-of-document token (one of {', '.join(KNOWN_EOD_TOKENS)})")


def save_tokenizer(tokenizer: Tokenizer, path: str) -> None:
    with fsspec.open(path, "w", encoding="utf-8") as handle:
        handle.write(tokenizer.to_str())


def encode_texts(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens (the trainer adds EOD when packing)."""
    return [encoding.ids for encoding in tokenizer.encode_batch_fast(texts, add_special_tokens=False)]


def batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch

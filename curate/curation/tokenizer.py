"""Tokenizers for shards: train a byte-level BPE, or load any `tokenizer.json`.

One tokenizer serves a family of builds (a derived build reuses its parent's), so
token counts and the trainer's vocabulary agree across regimes. Every tokenizer
must know an end-of-document token: the trainer packs documents with it.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import fsspec
import numpy as np
import pyarrow as pa
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from curate.curation.errors import UserError

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


def token_id_array(tokenizer: Tokenizer, texts: list[str], batch_size: int = 256) -> pa.ListArray:
    """Token ids of each text as an Arrow list<int32> column, encoded `batch_size` texts at a time.

    An `Encoding` costs tens of bytes per token (tokens, offsets, masks) and a Python list of ids as
    much again: a whole shard of large documents at once took gigabytes; this holds one batch.
    """
    lengths = [0]
    values = []
    for start in range(0, len(texts), batch_size):
        for encoding in tokenizer.encode_batch_fast(texts[start : start + batch_size], add_special_tokens=False):
            values.append(np.array(encoding.ids, dtype=np.int32))
            lengths.append(len(values[-1]))
    offsets = np.cumsum(lengths, dtype=np.int64)
    if offsets[-1] > np.iinfo(np.int32).max:
        raise ValueError(f"{offsets[-1]} tokens do not fit one list<int32> column; write smaller shards (--shard-rows)")
    flat = np.concatenate(values) if values else np.zeros(0, np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(flat, pa.int32()))


def batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch

"""Tokenizers for shards: train a byte-level BPE, or load any `tokenizer.json`.

One tokenizer serves a family of builds (a derived build reuses its parent's), so
token counts and the trainer's vocabulary agree across regimes. Every tokenizer
must know an end-of-document token: the trainer packs documents with it. Texts are encoded by
tiktoken where it gives exactly the tokenizer's ids (`fast_encoder`), else by `tokenizers`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterable, Iterator

import fsspec
import numpy as np
import pyarrow as pa
import rustbpe
import tiktoken
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from curate.curation.errors import UserError
from curate.curation.fast_encoder import (
    BYTE_LEVEL_PATTERN,
    byte_level_decoder,
    tiktoken_encoding,
)

EOD_TOKEN = "<|endoftext|>"
MAX_TRAIN_BYTES = 2**31 - 1
MIN_VOCAB_SIZE = 300
# A build's BPE, and `curate tokenizer train`'s, is trained on the first 128 Mi characters of its input
# (a build's in seeded order). Measured on held-out code (docs/benchmarks.md, bench_tokenizer_sample.py),
# a 16,384-token vocabulary trained on 128 Mi gives 0.55% fewer tokens than on 64 Mi for 12 CPU s of
# training (6 more), and 256 Mi 0.31% fewer again for three times that.
TOKENIZER_TRAIN_CHARS = 128 * 1024 * 1024
KNOWN_EOD_TOKENS = (EOD_TOKEN, "<|end_of_text|>", "</s>", "<eos>", "<|im_end|>")


def train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE with `EOD_TOKEN` as its only special token (id 0), the 256 bytes next
    (in the order of their byte-level characters, as `tokenizers` numbers them) and the merges in the
    order learned.

    rustbpe counts the pre-tokens (ByteLevel's regex) and learns the merges 2.2-3.2x faster per CPU
    second than `tokenizers`' BpeTrainer (benchmarks/bench_tokenizer_train.py), by the same rule:
    the most frequent pair merges next. Ties go to the lowest pair of ids (bytes by value), where
    BpeTrainer orders them otherwise.
    """
    check_vocab_size(vocab_size)
    trainer = rustbpe.Tokenizer()
    trainer.train_from_iterator(_within_count_range(texts), vocab_size - 1, pattern=BYTE_LEVEL_PATTERN)
    learned = [token for token, _ in sorted(trainer.get_mergeable_ranks(), key=lambda item: item[1])]
    return _byte_level_bpe(learned[256:])


def check_vocab_size(vocab_size: int) -> None:
    """Refuse a vocabulary too small to hold the end-of-document token, the 256 bytes and some merges."""
    if vocab_size < MIN_VOCAB_SIZE:
        raise UserError(f"--vocab-size must be at least {MIN_VOCAB_SIZE} (256 bytes plus merges), got {vocab_size}")


def _within_count_range(texts: Iterable[str]) -> Iterator[str]:
    """The texts, stopped with an error past MAX_TRAIN_BYTES: rustbpe counts pre-tokens and pairs in
    32 bits, and no count exceeds the number of bytes trained on."""
    seen = 0
    for text in texts:
        seen += len(text.encode("utf-8"))
        if seen > MAX_TRAIN_BYTES:
            raise UserError(f"a BPE trains on at most {MAX_TRAIN_BYTES:,} bytes of text (32-bit counts); train it on a sample")
        yield text


def _byte_level_bpe(merged: list[bytes]) -> Tokenizer:
    """The byte-level BPE whose tokens are `EOD_TOKEN`, the 256 bytes and `merged`, in this order of
    ids, each merged token made of the two tokens that BPE over the tokens before it leaves of its bytes."""
    alphabet = {b: c for c, b in byte_level_decoder().items()}

    def spelled(token: bytes) -> str:
        return "".join(alphabet[b] for b in token)

    ids = {bytes([alphabet_byte]): i for i, alphabet_byte in enumerate(sorted(alphabet, key=alphabet.get), start=1)}
    merges = []
    for token in merged:
        left, right = _last_merge(token, ids)
        merges.append((spelled(left), spelled(right)))
        ids[token] = len(ids) + 1
    vocab = {EOD_TOKEN: 0} | {spelled(token): token_id for token, token_id in ids.items()}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([EOD_TOKEN])
    return tokenizer


def _last_merge(token: bytes, ids: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The two tokens left of `token`'s bytes by merging, lowest id first, adjacent tokens known in `ids`."""
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best, at = min((ids.get(a + b, len(ids) + 1), i) for i, (a, b) in enumerate(zip(parts, parts[1:])))
        if best > len(ids):
            raise ValueError(f"no known pair merges inside token {token!r}")
        parts[at : at + 2] = [parts[at] + parts[at + 1]]
    return parts[0], parts[1]


def leading_texts(texts: Iterable[str], chars: int) -> Iterator[str]:
    """The texts in order up to and including the one that reaches `chars` characters together: a
    build's tokenizer training sample."""
    seen = 0
    for text in texts:
        yield text
        seen += len(text)
        if seen >= chars:
            return


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


@dataclass(frozen=True)
class Encoder:
    """How a tokenizer's texts are encoded: by tiktoken when it gives the same ids (3x faster),
    else by `tokenizers` itself; `fallback` says why not tiktoken."""

    tokenizer: Tokenizer
    fast: tiktoken.Encoding | None
    fallback: str

    def ids(self, texts: list[str]) -> list[np.ndarray]:
        """The ids of each text as int32, as `tokenizer.encode(text, add_special_tokens=False)` gives them
        (which still turns a special token's text into its id)."""
        if self.fast is None:
            return [np.array(e.ids, dtype=np.int32) for e in self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)]
        specials = self.fast.special_tokens_set
        return [self.fast.encode_to_numpy(t, allowed_special=specials, disallowed_special=()).view(np.int32) for t in texts]

    def manifest_entry(self) -> dict:
        """Which encoder wrote the ids, for the manifest's tokenizer entry (the ids are the same either way)."""
        return {"encoder": "tiktoken"} if self.fast else {"encoder": "tokenizers", "encoder_fallback": self.fallback}


@functools.lru_cache(maxsize=4)
def _fast_encoding(tokenizer_json: str, encode_special_tokens: bool) -> tuple[tiktoken.Encoding | None, str]:
    tokenizer = Tokenizer.from_str(tokenizer_json)
    tokenizer.encode_special_tokens = encode_special_tokens
    return tiktoken_encoding(tokenizer)


_last_encoder: Encoder | None = None


def encoder(tokenizer: Tokenizer) -> Encoder:
    """The tokenizer's encoder, built once per process: kept for the last tokenizer object (callers
    encode text after text with one), and per tokenizer JSON for the new object each shard task
    makes from it (serializing takes 20 ms for 16k tokens, building the encoder 0.1 s)."""
    global _last_encoder
    if _last_encoder is None or _last_encoder.tokenizer is not tokenizer:
        _last_encoder = Encoder(tokenizer, *_fast_encoding(tokenizer.to_str(), tokenizer.encode_special_tokens))
    return _last_encoder


def encode_texts(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens (the trainer adds EOD when packing)."""
    return [ids.tolist() for ids in encoder(tokenizer).ids(texts)]


def token_id_array(tokenizer: Tokenizer, texts: list[str], batch_size: int = 256) -> pa.ListArray:
    """Token ids of each text as an Arrow list<int32> column, encoded `batch_size` texts at a time.

    An `Encoding` costs tens of bytes per token (tokens, offsets, masks) and a Python list of ids as
    much again: a whole shard of large documents at once took gigabytes; this holds one batch.
    """
    encode = encoder(tokenizer).ids
    lengths = [0]
    values = []
    for start in range(0, len(texts), batch_size):
        for ids in encode(texts[start : start + batch_size]):
            values.append(ids)
            lengths.append(len(ids))
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

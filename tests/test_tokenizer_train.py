"""The build's BPE trainer: merges by the most frequent pair, numbered as `tokenizers` numbers them.

`train_bpe` learns with rustbpe and writes a `tokenizers` BPE; these tests hold it to a plain
count-and-merge trainer written here, and to the layout of the `tokenizers` trainer it replaced.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
import regex
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from curate.curation import tokenizer as tokenizer_module
from curate.curation.embedded import embedded_records
from curate.curation.errors import UserError
from curate.curation.fast_encoder import BYTE_LEVEL_PATTERN, byte_level_decoder
from curate.curation.tokenizer import EOD_TOKEN, encoder, train_bpe

VOCAB_SIZE = 400  # EOD, 256 bytes, 143 merges


def texts() -> list[str]:
    return [record["text"] for record in list(embedded_records())[:40]]


def merged(word: tuple[int, ...], pair: tuple[int, int], token: int) -> tuple[int, ...]:
    out: list[int] = []
    at = 0
    while at < len(word):
        if word[at : at + 2] == pair:
            out.append(token)
            at += 2
        else:
            out.append(word[at])
            at += 1
    return tuple(out)


def counted_merges(documents: list[str], count: int) -> list[bytes]:
    """Merge the pair most frequent over all pre-tokens, the lowest pair of ids on ties, `count` times."""
    pattern = regex.compile(BYTE_LEVEL_PATTERN)
    words = Counter(tuple(piece.encode()) for text in documents for piece in pattern.findall(text))
    tokens = [bytes([b]) for b in range(256)]
    for _ in range(count):
        pairs: Counter = Counter()
        for word, times in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += times
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        tokens.append(tokens[best[0]] + tokens[best[1]])
        words = Counter({merged(word, best, len(tokens) - 1): times for word, times in words.items()})
    return tokens[256:]


def token_bytes(tokenizer: Tokenizer) -> list[bytes]:
    """The tokens after EOD and the 256 bytes, in id order, as bytes."""
    decoder = byte_level_decoder()
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    return [bytes(decoder[c] for c in token) for token, _ in vocab[257:]]


def test_merges_are_the_most_frequent_pairs_in_order():
    documents = texts()
    tokenizer = train_bpe(documents, VOCAB_SIZE)
    assert tokenizer.get_vocab_size() == VOCAB_SIZE
    assert token_bytes(tokenizer) == counted_merges(documents, VOCAB_SIZE - 257)
    assert train_bpe(documents, VOCAB_SIZE).to_str() == tokenizer.to_str()


def test_layout_is_the_tokenizers_trainer_s():
    """EOD is id 0 and the bytes keep the ids BpeTrainer gave them; the pipeline is the same, and
    tiktoken encodes it."""
    documents = texts()
    reference = Tokenizer(models.BPE())
    reference.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=[EOD_TOKEN], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    reference.train_from_iterator(documents, trainer=trainer)
    tokenizer = train_bpe(documents, VOCAB_SIZE)
    first = {token: i for token, i in reference.get_vocab().items() if i < 257}
    assert {token: i for token, i in tokenizer.get_vocab().items() if i < 257} == first
    ours, theirs = json.loads(tokenizer.to_str()), json.loads(reference.to_str())
    assert ours["added_tokens"] == theirs["added_tokens"]
    assert ours["pre_tokenizer"] == theirs["pre_tokenizer"]
    assert encoder(tokenizer).fast is not None


def test_training_past_32_bit_counts_is_refused(monkeypatch):
    monkeypatch.setattr(tokenizer_module, "MAX_TRAIN_BYTES", 1000)
    with pytest.raises(UserError, match="at most 1,000 bytes"):
        train_bpe(["x" * 600, "y" * 600], VOCAB_SIZE)
    assert train_bpe(["x" * 500, "y" * 500], VOCAB_SIZE).get_vocab_size() > 257

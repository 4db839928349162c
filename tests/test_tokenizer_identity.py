"""The tiktoken encoder gives exactly the ids of `tokenizers` (issue 26), or is not used.

Shards must stay byte-identical whichever encoder wrote them, so every comparison here is
against `Tokenizer.encode_batch_fast(texts, add_special_tokens=False)`, the call shards were
encoded with before: on the corpora the suite builds from, a slice of the shared mixed corpus,
hand-made hard cases, seeded random Unicode, every code point, and strings glued from the
vocabulary's own tokens (where tiktoken's merge-by-token-id could part from HF's merge list).
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from stats_builds import a_documents
from test_build import build, corpus, phase_table, write_jsonl
from test_near_dedup import build_corpus
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from vl_samples import FLAT, LLAVA, MESSAGES_PARTS, SHAREGPT_STRING

from curate.curation.embedded import embedded_records
from curate.curation.fast_encoder import (
    byte_level_decoder,
    glued_tokens,
    tiktoken_encoding,
)
from curate.curation.tokenizer import (
    EOD_TOKEN,
    encode_texts,
    encoder,
    save_tokenizer,
    token_id_array,
    train_bpe,
)

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "mixed.jsonl.gz"
MIXED_DOCUMENTS = 2000

HARD_CASES = [
    "", " ", "a", "\n", "  ", "\t\t\t", "\r\n", "\r\n\r\n\r\n", "   \n\n\n   \t\t  \r\n  ", "trailing   ", "trailing\n\n\n",
    "x" + " " * 200 + "y", "\t" * 100 + "z", "\n" * 300, " \u00a0\u2003\u3000 \u200b\ufeff mixed spaces \u2028\u2029\x85",
    "0" * 500, "1234567890" * 40, "٣٤٥ १२३ ๑๒๓ ²³ ½ Ⅻ", "3.14159e-10 -42 +7 0x1F 1_000_000",
    "中文文本的分词测试。这是一个句子，包含标点符号！还有“引号”和（括号）。", "混合 mixed 文字 text 123 テキスト 텍스트",
    "Русский текст и English words, ελληνικά, עברית ومرحبا بالعالم", "हिन्दी में पाठ ਪੰਜਾਬੀ தமிழ் ไทย ລາວ ဗမာ",
    "emoji 😀😃🤖 👩‍👩‍👧‍👦 🏳️‍🌈 👍🏽 🇫🇷🇯🇵 ❤️ 1️⃣", "combining e\u0301 a\u0308\u0323 Z\u0351\u0352\u0353\u0354 ก\u0e34\u0e4a",
    "<|endoftext|>", "a<|endoftext|>b", "<|endoftext|><|endoftext|>", " <|endoftext|> ", "text\n<|endoftext|>\nmore",
    "<|endoftext|", "|endoftext|>", "<|endoftext|>>", "<<|endoftext|>", "<|ENDOFTEXT|>", "x<|end_of_text|></s><eos>",
    "it's we'll they've I'm you'd he'S 'll ''s", "control \x00\x01\x1b[31m red \x1b[0m \x7f", "\U0001d400\U0001d7d8 \U00020000\U0002a6d6 \U000e0001",
    "def f(x):\n    return x  # comment\n\n\nclass K:\n\tpass\n", "\ud7ff\ue000\uffff\U0010ffff", "a" * 3000, "ab" * 2000,
]


def vl_strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [s for item in value for s in vl_strings(item)] if isinstance(value, list) else []


def mixed(limit: int) -> list[str]:
    if not CORPUS.exists():
        return []
    with gzip.open(CORPUS, "rt", encoding="utf-8") as lines:
        return [json.loads(line)["text"] for _, line in zip(range(limit), lines)]


@pytest.fixture(scope="module")
def suite_texts() -> list[str]:
    """What the suite's builds tokenize: its generated corpora, a slice of the embedded corpus, VL samples."""
    texts = [r["text"] for r in corpus(200)] + [r["text"] for r in a_documents()] + list(build_corpus().values())
    texts += [r["text"] for r in list(embedded_records())[::16]]
    return texts + vl_strings([FLAT, LLAVA, MESSAGES_PARTS, SHAREGPT_STRING])


@pytest.fixture(scope="module")
def small() -> Tokenizer:
    """As the suite's builds train it: 300 tokens."""
    return train_bpe([r["text"] for r in corpus(30)], 300)


@pytest.fixture(scope="module")
def large(suite_texts) -> Tokenizer:
    """4096 tokens trained on code, prose and Chinese."""
    return train_bpe(suite_texts[::3] + mixed(MIXED_DOCUMENTS)[::2], 4096)


@pytest.fixture(params=["small", "large"])
def tokenizer(request) -> Tokenizer:
    return request.getfixturevalue(request.param)


def hf_ids(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False)]


def assert_same_ids(tokenizer: Tokenizer, texts: list[str]) -> None:
    fast = encoder(tokenizer)
    assert fast.fast is not None, fast.fallback
    different = [text for text, ids, expected in zip(texts, fast.ids(texts), hf_ids(tokenizer, texts)) if ids.tolist() != expected]
    assert not different, f"{len(different)} of {len(texts)} texts differ, e.g. {different[0][:200]!r}"


def random_text(rng: random.Random) -> str:
    """Code points from every plane except surrogates, with plenty of spaces, ASCII and combining marks."""
    chars = []
    for _ in range(rng.randrange(0, 60)):
        kind = rng.random()
        if kind < 0.25:
            chars.append(rng.choice(" \t\n\r\x0b\x0c\x85\xa0\u1680\u2000\u2028\u2029\u202f\u205f\u3000\u200b'"))
        elif kind < 0.45:
            chars.append(chr(rng.randrange(0x20, 0x7F)))
        elif kind < 0.55:
            chars.append(chr(rng.randrange(0x300, 0x370)))
        else:
            point = rng.randrange(0, 0x110000 - 0x800)
            chars.append(chr(point + 0x800 if point >= 0xD800 else point))
    return "".join(chars)


def test_byte_level_alphabet_is_hf_s():
    assert set(byte_level_decoder()) == set(pre_tokenizers.ByteLevel.alphabet())
    assert sorted(byte_level_decoder().values()) == list(range(256))


def test_suite_corpora(tokenizer, suite_texts):
    assert_same_ids(tokenizer, suite_texts)


def test_mixed_corpus(small, large):
    texts = mixed(MIXED_DOCUMENTS)
    if not texts:
        pytest.skip(f"{CORPUS} is not here")
    assert_same_ids(large, texts)
    assert_same_ids(small, texts[:300])


def test_hard_cases(tokenizer):
    assert_same_ids(tokenizer, HARD_CASES)
    # HF splits a special token out of any text, even with add_special_tokens=False; so does the encoder
    assert encode_texts(tokenizer, ["a<|endoftext|>b"])[0][1] == tokenizer.token_to_id(EOD_TOKEN)


def test_random_unicode(tokenizer):
    rng = random.Random(26)
    assert_same_ids(tokenizer, [random_text(rng) for _ in range(4000)])


def test_code_points_alone_and_between_letters_digits_and_spaces(large):
    """Every fifth code point: the two regex engines must class each one alike (all of them agreed once, in 40 s)."""
    points = [chr(c) for c in range(0, 0x110000, 5) if not 0xD800 <= c < 0xE000]
    assert_same_ids(large, ["".join(f"{c} {c}x1{c}" for c in points[i : i + 64]) for i in range(0, len(points), 64)])


def test_strings_glued_from_vocabulary_tokens(tokenizer):
    """Adjacent tokens whose concatenation is another token are where merge-by-id could differ."""
    fast = encoder(tokenizer).fast
    texts = glued_tokens([fast.decode_single_token_bytes(i) for i in range(1, fast.n_vocab)], 10_000, seed=7)
    assert len(texts) == 10_000
    assert_same_ids(tokenizer, texts)


def test_token_id_array_is_the_hf_column(large, suite_texts):
    """The Arrow column is the one the HF ids made, so shards keep their bytes."""
    texts = suite_texts[:700]
    ids = hf_ids(large, texts)
    offsets = np.cumsum([0] + [len(i) for i in ids], dtype=np.int64).astype(np.int32)
    expected = pa.ListArray.from_arrays(pa.array(offsets), pa.array([t for i in ids for t in i], pa.int32()))
    column = token_id_array(large, texts, batch_size=64)
    assert column.type == pa.list_(pa.int32()) and column.equals(expected)
    assert encode_texts(large, texts) == ids


def with_normalizer(tokenizer: Tokenizer) -> Tokenizer:
    changed = Tokenizer.from_str(tokenizer.to_str())
    changed.normalizer = normalizers.NFKC()
    return changed


def with_prefix_space(tokenizer: Tokenizer) -> Tokenizer:
    changed = Tokenizer.from_str(tokenizer.to_str())
    changed.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    return changed


def with_merges_out_of_id_order(tokenizer: Tokenizer) -> Tokenizer:
    spec = json.loads(tokenizer.to_str())
    merges = spec["model"]["merges"]
    merges[-2], merges[-1] = merges[-1], merges[-2]
    return Tokenizer.from_str(json.dumps(spec))


def with_plain_added_token(tokenizer: Tokenizer) -> Tokenizer:
    changed = Tokenizer.from_str(tokenizer.to_str())
    changed.add_tokens(["word1"])
    return changed


def with_unmade_token(tokenizer: Tokenizer, ignore_merges: bool = False) -> Tokenizer:
    """Merges X+J, Q+X, QX+J in that order: HF makes Q, XJ of "QXJ", so (in "QXJa") tiktoken's QXJ would be wrong."""
    spec = json.loads(tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    assert not {"XJ", "QX", "QXJ"} & set(vocab)
    for token in ["XJ", "QX", "QXJ"]:
        vocab[token] = len(vocab)
    spec["model"]["merges"] += [["X", "J"], ["Q", "X"], ["QX", "J"]]
    spec["model"]["ignore_merges"] = ignore_merges
    return Tokenizer.from_str(json.dumps(spec))


def with_special_prefix(tokenizer: Tokenizer) -> Tokenizer:
    changed = Tokenizer.from_str(tokenizer.to_str())
    changed.add_special_tokens(["<|end"])
    return changed


def word_piece(_: Tokenizer) -> Tokenizer:
    vocab = {"[UNK]": 0, "</s>": 1} | {w: i + 2 for i, w in enumerate(["word", "##1", "##2", "Document", "of", "doc", ":"])}
    changed = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    changed.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    changed.add_special_tokens(["</s>"])
    return changed


@pytest.mark.parametrize(
    "change, reason",
    [
        (with_normalizer, "it has a normalizer (NFKC)"),
        (with_prefix_space, "the pre-tokenizer is not ByteLevel(add_prefix_space=False, use_regex=True)"),
        (with_merges_out_of_id_order, "is out of id order"),
        (with_plain_added_token, "added token 'word1' is not a plain special token"),
        (word_piece, "the model is WordPiece, not BPE"),
        (with_unmade_token, "the merges do not make token"),
        (lambda tokenizer: with_unmade_token(tokenizer, ignore_merges=True), "the merges do not make token"),
        (with_special_prefix, "special token '<|end' is the prefix of another"),
    ],
)
def test_what_tiktoken_cannot_be_is_left_to_tokenizers(small, change, reason):
    tokenizer = change(small)
    fast, fallback = tiktoken_encoding(tokenizer)
    assert fast is None and reason in fallback
    assert encoder(tokenizer).manifest_entry() == {"encoder": "tokenizers", "encoder_fallback": fallback}
    texts = [r["text"] for r in corpus(20)] + HARD_CASES
    assert encode_texts(tokenizer, texts) == hf_ids(tokenizer, texts)


def test_ignore_merges_changes_nothing_when_the_merges_make_every_token(small, suite_texts):
    spec = json.loads(small.to_str())
    spec["model"]["ignore_merges"] = True
    assert_same_ids(Tokenizer.from_str(json.dumps(spec)), suite_texts[:300] + HARD_CASES)


def test_the_manifest_names_the_encoder(ray_local, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", corpus(12))
    given = with_normalizer(train_bpe([r["text"] for r in corpus(12)], 300))
    save_tokenizer(given, str(tmp_path / "tok.json"))
    manifest = build([source], tmp_path / "out", tokenizer=str(tmp_path / "tok.json"))
    assert manifest["tokenizer"]["encoder"] == "tokenizers"
    assert manifest["tokenizer"]["encoder_fallback"] == "it has a normalizer (NFKC)"
    rows = phase_table(tmp_path / "out", manifest, "phase-1").to_pylist()
    assert [r["input_ids"] for r in rows] == hf_ids(given, [r["text"] for r in rows])


def test_a_lone_surrogate_is_an_error_as_in_tokenizers(large):
    """Ingest quarantines such texts; should one get here, it fails as before instead of being changed."""
    with pytest.raises(TypeError):
        hf_ids(large, ["lone \ud800 surrogate"])
    with pytest.raises(UnicodeEncodeError):
        encode_texts(large, ["lone \ud800 surrogate"])

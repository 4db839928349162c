"""The dedup library without Ray: normalization, shingling, MinHash, LSH layout, exact Jaccard."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from curate.curation.hashing import GOLDEN, mix64
from curate.dedup.lsh import LshLayout, band_keys, optimal_layout, resolve_layout
from curate.dedup.minhash import CHUNK_BYTES, CHUNK_SHINGLES, MinHasher, ShingleSets, shingle_hashes
from curate.dedup.normalize import normalize_texts, shingle_strings
from curate.dedup.verify import SORT_RUN, jaccard_pairs, shingle_sets

WORDS = [f"w{i}" for i in range(400)]
ENGLISH = " ".join(WORDS[:60])
CHINESE = "床前明月光，疑是地上霜。举头望明月，低头思故乡。春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。"
TEXTS = [
    ENGLISH,
    "The quick brown fox jumps over the lazy dog; the dog sleeps.",
    CHINESE,
    "man ls — 列出目录内容。ls 命令列出目录中的文件，默认按字母顺序排列。",
    "Привет, мир! Это тест нормализации текста для дедупликации.",
    "short text",
    "",
    "!!! ... ???",
    "x",
    "Ｆｕｌｌ－ｗｉｄｔｈ ＬＥＴＴＥＲＳ and ligature ﬁ",
]


def exact_jaccard(a: str, b: str, n: int = 5) -> float:
    sa, sb = set(shingle_strings(a, n)), set(shingle_strings(b, n))
    return len(sa & sb) / len(sa | sb) if sa | sb else 0.0


def test_normalization_folds_case_compatibility_forms_punctuation_and_whitespace():
    assert normalize_texts(pa.array(["ＦＵＬＬ ﬁ Ünï", None])).to_pylist() == ["full fi ünï", ""]
    words = shingle_strings("Hello,   WORLD!\n\tIt's  ＦＵＬＬ width\x1b[0m — «ok»", 1)
    assert words == ["hello", "world", "it", "s", "full", "width", "0m", "ok"]
    assert shingle_strings("a+b = c; $x", 1) == ["a+b", "=", "c", "$x"]  # symbols are not punctuation


def test_cjk_documents_get_character_ngrams_and_others_word_ngrams():
    shingles = shingle_strings(CHINESE, 5)
    assert shingles[:2] == ["床前明月光", "前明月光疑"]  # the comma is dropped, not a unit
    assert len(shingles) == 40 - 4
    assert shingle_strings("日本語のテキストです", 3)[0] == "日本語"
    assert shingle_strings("한국어 텍스트 입니다", 2) == ["한국어 텍스트", "텍스트 입니다"]
    assert shingle_strings("ls 命令列出目录中的文件", 2)[:3] == ["ls", "s命", "命令"]


def test_shingle_hashes_match_the_string_definition():
    sets = shingle_hashes(TEXTS, 5)
    for i, text in enumerate(TEXTS):
        strings = shingle_strings(text, 5)
        hashes = sets.hashes[sets.offsets[i] : sets.offsets[i + 1]]
        assert len(hashes) == len(strings)
        assert len(set(hashes.tolist())) == len(set(strings))
    assert shingle_strings("", 5) == [] and sets.counts()[TEXTS.index("")] == 0
    assert shingle_strings("short text", 5) == ["short text"]


def test_exact_jaccard_from_hashes_equals_jaccard_of_shingle_strings():
    rng = np.random.default_rng(3)
    texts = [" ".join(rng.choice(WORDS[:40], size=rng.integers(1, 80)).tolist()) for _ in range(30)] + TEXTS
    left = rng.integers(0, len(texts), 200)
    right = rng.integers(0, len(texts), 200)
    got = jaccard_pairs(shingle_sets(texts, 5), left, right)
    expected = [exact_jaccard(texts[a], texts[b]) for a, b in zip(left, right)]
    np.testing.assert_allclose(got, expected)


def test_shingle_sets_are_each_documents_distinct_hashes_across_sort_runs():
    """Sets are sorted SORT_RUN shingles at a time: documents around and above a run's size, with
    repeated shingles, each get exactly their own sorted distinct hashes."""
    rng = np.random.default_rng(5)
    sizes = [SORT_RUN + 7, 3, SORT_RUN // 2, SORT_RUN // 2 + 10, 2 * SORT_RUN + 1, 0, 40]
    texts = [" ".join(rng.choice(WORDS[:30], size=n).tolist()) for n in sizes] + TEXTS
    raw, sets = shingle_hashes(texts, 5), shingle_sets(texts, 5)
    for i in range(len(texts)):
        expected = np.unique(raw.hashes[raw.offsets[i] : raw.offsets[i + 1]])
        assert np.array_equal(sets.hashes[sets.offsets[i] : sets.offsets[i + 1]], expected)
    assert sets.counts()[0] < SORT_RUN  # 30 words repeat: the set is smaller than its shingles


def test_signatures_shape_dtype_and_same_text_same_signature():
    sigs = MinHasher(num_perm=64, ngram_size=5, seed=1).signatures(TEXTS + ["HELLO,  world!!", "hello world"])
    assert sigs.shape == (len(TEXTS) + 2, 64) and sigs.dtype == np.uint32
    assert np.array_equal(sigs[-1], sigs[-2])
    assert not np.array_equal(sigs[0], sigs[1])


def test_signatures_do_not_depend_on_the_batch_around_a_document():
    hasher = MinHasher()
    together = hasher.signatures(TEXTS)
    alone = np.vstack([hasher.signatures([t]) for t in TEXTS])
    assert np.array_equal(together, alone)
    assert np.array_equal(hasher.signatures(pa.chunked_array([TEXTS[:3], TEXTS[3:]])), together)


def test_seed_changes_the_hash_functions():
    assert not np.array_equal(MinHasher(seed=1).signatures([ENGLISH]), MinHasher(seed=2).signatures([ENGLISH]))


def test_documents_spanning_shingle_and_byte_chunks():
    rng = np.random.default_rng(0)
    long_text = " ".join(rng.choice(WORDS, size=CHUNK_SHINGLES * 3).tolist())
    huge_text = "word " * (CHUNK_BYTES // 4)
    hasher = MinHasher(num_perm=32)
    shingles = shingle_hashes([long_text], 5)
    # The signature of a set is the element-wise minimum of the signatures of its parts.
    cut = len(shingles.hashes) // 3
    parts = ShingleSets(shingles.hashes, np.array([0, cut, len(shingles.hashes)]))
    assert np.array_equal(hasher.signatures_of(shingles)[0], hasher.signatures_of(parts).min(axis=0))
    sigs = hasher.signatures(["a b c d e f", huge_text, long_text])
    assert np.array_equal(sigs[2], hasher.signatures([long_text])[0])
    assert shingle_hashes([huge_text], 5).counts()[0] == CHUNK_BYTES // 4 - 4


def test_empty_documents_have_no_shingles_and_the_empty_signature():
    sigs = MinHasher(num_perm=16).signatures(["", "   ", "?!"])
    assert (sigs == np.uint32(0xFFFFFFFF)).all()


def test_estimated_jaccard_is_unbiased_with_the_expected_error():
    rng = np.random.default_rng(7)
    hasher = MinHasher(num_perm=128, ngram_size=1)
    errors = []
    for _ in range(60):
        shared = rng.integers(20, 120)
        own = rng.integers(0, 40)
        pool = rng.permutation(len(WORDS))
        common = [WORDS[i] for i in pool[:shared]]
        a = " ".join(common + [WORDS[i] for i in pool[shared : shared + own]])
        b = " ".join(common + [WORDS[i] for i in pool[shared + own : shared + 2 * own]])
        truth = exact_jaccard(a, b, 1)
        sig = hasher.signatures([a, b])
        errors.append((sig[0] == sig[1]).mean() - truth)
    errors = np.array(errors)
    assert abs(errors.mean()) < 0.02
    assert errors.std() < 0.06  # k-permutation MinHash: at most sqrt(0.25 / 128) = 0.044


def test_optimal_layout_minimises_error_areas_and_explicit_layouts_are_checked():
    layout = optimal_layout(0.8, 128)
    assert layout.bands * layout.rows <= 128
    assert layout.candidate_probability(0.85) > 0.95
    assert layout.candidate_probability(0.5) < 0.05
    balanced = optimal_layout(0.8, 128, 0.5, 0.5)
    assert (balanced.bands, balanced.rows) == (9, 13)
    assert resolve_layout(0.8, 128, 16, 8) == LshLayout(16, 8)
    with pytest.raises(ValueError):
        resolve_layout(0.8, 128, 16, None)
    with pytest.raises(ValueError):
        resolve_layout(0.8, 128, 20, 8)


def test_band_keys_agree_exactly_where_a_band_agrees():
    sigs = MinHasher(num_perm=16).signatures([ENGLISH, ENGLISH, TEXTS[1]])
    changed = sigs[1].copy()
    changed[5] += 1  # band 1 of 4 x 4
    keys = band_keys(np.vstack([sigs, changed]), LshLayout(4, 4))
    assert keys.shape == (4, 4) and keys.dtype == np.uint64
    assert np.array_equal(keys[0], keys[1])
    assert (keys[0] != keys[2]).all()
    assert (keys[0] == keys[3]).tolist() == [True, False, True, True]
    assert len(set(keys[0].tolist())) == 4  # same values in different bands never collide


def test_long_units_that_differ_late_or_only_in_length_stay_distinct():
    words = ["internationalization", "internationalizatiom", "internationalizations", "a" * 16, "a" * 17, "a" * 8, "a" * 9]
    assert len(set(shingle_hashes(words, 1).hashes.tolist())) == len(words)


def test_signatures_equal_the_plain_minimum_for_any_number_of_permutations():
    texts = [*TEXTS, " ".join(WORDS * 40), ""]
    shingles = shingle_hashes(texts, 5)
    folded = (shingles.hashes ^ (shingles.hashes >> np.uint64(32))).astype(np.uint64)
    for num_perm in (1, 13, 128):
        hasher = MinHasher(num_perm=num_perm)
        a = hasher._multipliers[:, 0].astype(np.uint64)
        b = hasher._increments[:, 0].astype(np.uint64)
        got = hasher.signatures(texts)
        for doc, (lo, hi) in enumerate(zip(shingles.offsets[:-1], shingles.offsets[1:])):
            if hi == lo:
                assert (got[doc] == 0xFFFFFFFF).all()
                continue
            values = (a[:, None] * folded[None, lo:hi] + b[:, None]) & np.uint64(0xFFFFFFFF)
            assert np.array_equal(got[doc], values.min(axis=1).astype(np.uint32))


def _splitmix64_finaliser(value: int) -> int:
    mask = (1 << 64) - 1
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & mask
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & mask
    return value ^ (value >> 31)


def test_mix64_is_splitmix64_across_its_chunks():
    """mix64 works in cache-sized pieces; every piece, boundaries included, must give splitmix64's values."""
    states = np.arange(1, 3 * 65536 + 6, dtype=np.uint64) * GOLDEN
    mixed = mix64(states.reshape(-1, 1)).reshape(-1)
    assert [hex(int(v)) for v in mixed[:3]] == ["0xe220a8397b1dcdaf", "0x6e789e6aa1b965f4", "0x6c45d188009454f"]
    for i in [*range(0, len(states), 9973), 65535, 65536, 65537, 2 * 65536, len(states) - 1]:
        assert int(mixed[i]) == _splitmix64_finaliser(int(states[i]))
    columns = states[:65540].reshape(5, -1)
    assert np.array_equal(mix64(columns.T), mixed[:65540].reshape(5, -1).T)  # any memory layout

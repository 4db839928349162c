"""Exact dedup keys: the vectorised normalization equals its plain definition, so keys never drift."""

import random

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from curate.dedup.exact import normalize_for_exact, text_keys

# Whitespace RE2's \s knows and whitespace it does not, composed and decomposed accents, CJK.
ALPHABET = ["\t", "\n", "\x0b", "\x0c", "\r", " ", "\x1c", "\x85", "\xa0", "\u2003", "\u3000", "a", "é", "e\u0301", "\u212b", "字"]


def defined(texts: pa.Array) -> pa.Array:
    """NFC, every run of RE2 `\\s` one space, Unicode whitespace trimmed."""
    return pc.utf8_trim_whitespace(pc.replace_substring_regex(pc.utf8_normalize(texts, "NFC"), r"\s+", " "))


def test_normalization_equals_its_definition_on_random_text():
    rng = random.Random(7)
    texts = pa.array(["".join(rng.choice(ALPHABET) for _ in range(rng.randrange(12))) for _ in range(5000)])
    assert normalize_for_exact(texts).cast(pa.string()).equals(defined(texts))
    assert normalize_for_exact(texts.slice(101, 900)).cast(pa.string()).equals(defined(texts.slice(101, 900)))


def test_documents_keep_their_own_whitespace_runs():
    texts = pa.array(["a  ", "  b", "", "\t\n", "c\r\n\r\nd"])
    assert normalize_for_exact(texts).to_pylist() == ["a", "b", "", "", "c d"]
    assert text_keys(pa.array(["e\u0301 x"]))[0] == text_keys(pa.array(["\u00e9\n\n x"]))[0]


def test_null_texts_are_refused():
    with pytest.raises(ValueError, match="never null"):
        normalize_for_exact(pa.array(["a", None]))

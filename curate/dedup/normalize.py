"""Text normalization and shingling rules for near-duplicate detection.

Two documents are near-duplicates when their *shingle sets* overlap, so these rules decide what
"the same text" means: case, Unicode compatibility forms (full-width letters, ligatures),
punctuation, control characters and runs of whitespace never make two documents different.

1. NFKC and lowercase (pyarrow.compute on whole arrays).
2. Separators: punctuation (\\p{P}), separators (\\p{Z}), control characters (\\p{Cc}: tabs,
   newlines, terminal colour escapes) and whitespace. Symbols (+ = < $ ...) are kept: they carry
   meaning in code. Words are the maximal runs of non-separators.
3. Documents where CJK ideographs and kana make at least CJK_SHARE of the non-separator characters
   are written without spaces between words: their units are single characters (separators
   dropped); all other documents' units are words. Shingles are n consecutive units; a document
   with fewer than n units is one shingle; one with no units has no shingles.

The character classes come from RE2's Unicode tables (through pyarrow) once per process, as
lookup tables indexed by code point, so `classify_bytes` works on a whole batch's UTF-8 buffer
with numpy. `shingle_strings` is the readable one-document definition of the same rules.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SEPARATOR_PATTERN = r"^[\p{P}\p{Z}\p{Cc}\s]$"
CJK_PATTERN = r"^[\p{Han}\p{Hiragana}\p{Katakana}]$"
# Code points from here on: no separators, and planes 2 and 3 hold only CJK ideographs.
TABLE_SIZE = 0x20000
CJK_PLANES = (0x20000, 0x40000)
# Chinese man pages full of option names sit around 0.2-0.6 CJK; other text at 0.
CJK_SHARE = 0.1


def normalize_texts(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """NFKC and lowercase; nulls become ''. ASCII documents are their own NFKC form, so only the
    others go through Unicode normalization."""
    texts = pc.fill_null(texts, "")
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    lowered = pc.ascii_lower(texts)
    not_ascii = pc.invert(pc.string_is_ascii(texts))
    if not pc.any(not_ascii).as_py():
        return lowered
    unicode_texts = pc.utf8_lower(pc.utf8_normalize(pc.filter(texts, not_ascii), "NFKC"))
    return pc.replace_with_mask(lowered, not_ascii, unicode_texts.cast(lowered.type))


@functools.cache
def _class_tables() -> tuple[np.ndarray, np.ndarray]:
    """(separator, cjk) boolean tables over code points 0 .. TABLE_SIZE - 1."""
    code_points = [c for c in range(TABLE_SIZE) if not 0xD800 <= c < 0xE000]
    chars = pa.array([chr(c) for c in code_points], pa.string())
    separator, cjk = np.zeros(TABLE_SIZE, bool), np.zeros(TABLE_SIZE, bool)
    separator[code_points] = pc.match_substring_regex(chars, SEPARATOR_PATTERN).to_numpy(zero_copy_only=False)
    cjk[code_points] = pc.match_substring_regex(chars, CJK_PATTERN).to_numpy(zero_copy_only=False)
    return separator, cjk


@functools.cache
def _ascii_separator_bytes() -> bytes:
    """A `bytes.translate` table: 1 for ASCII separators, 0 for every other byte value."""
    separator_table, _ = _class_tables()
    table = np.zeros(256, np.uint8)
    table[:0x80] = separator_table[:0x80]
    return table.tobytes()


def _classes(code_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    separator_table, cjk_table = _class_tables()
    inside = code_points < TABLE_SIZE
    index = np.where(inside, code_points, 0)
    separator = separator_table[index] & inside
    cjk = np.where(inside, cjk_table[index], (code_points >= CJK_PLANES[0]) & (code_points < CJK_PLANES[1]))
    return separator, cjk


def decode_utf8(data: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Code points of the characters starting at the given byte positions (valid UTF-8)."""
    padded = np.concatenate([data, np.zeros(3, np.uint8)])
    code_points = padded[starts].astype(np.int64)
    multi = np.flatnonzero(code_points >= 0xC0)
    at, lead = starts[multi], code_points[multi]
    b1, b2, b3 = (padded[at + k].astype(np.int64) & 0x3F for k in (1, 2, 3))
    code_points[multi] = np.where(
        lead < 0xE0,
        ((lead & 0x1F) << 6) | b1,
        np.where(lead < 0xF0, ((lead & 0x0F) << 12) | (b1 << 6) | b2, ((lead & 0x07) << 18) | (b1 << 12) | (b2 << 6) | b3),
    )
    return code_points


def classify_bytes(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a batch's UTF-8 buffer and document offsets: per byte, whether it starts a character and
    whether its character is a separator; per document, whether it gets character n-grams.

    ASCII bytes are looked up directly (`bytes.translate`, several times faster than a numpy
    gather); only multi-byte characters are decoded.
    """
    separator = np.frombuffer(data.tobytes().translate(_ascii_separator_bytes()), dtype=bool).copy()
    n_docs = len(offsets) - 1
    if len(data) == 0 or data.max() < 0x80:
        return np.ones(len(data), bool), separator, np.zeros(n_docs, bool)  # every ASCII byte starts a character
    char_start = (data & 0xC0) != 0x80
    wide = np.flatnonzero(data >= 0xC0)
    wide_separator, wide_cjk = _classes(decode_utf8(data, wide))
    length = 2 + (data[wide] >= 0xE0).astype(np.int64) + (data[wide] >= 0xF0)
    for k in range(4):
        separator[wide[wide_separator & (k < length)] + k] = True
    cjk_count = np.bincount(np.searchsorted(offsets, wide[wide_cjk], side="right") - 1, minlength=n_docs)
    char_mode = np.zeros(n_docs, bool)
    if cjk_count.any():
        letters = np.zeros(n_docs, np.int64)
        non_empty = np.flatnonzero(np.diff(offsets) > 0)
        letter_starts = (char_start & ~separator).view(np.uint8)
        letters[non_empty] = np.add.reduceat(letter_starts, offsets[non_empty], dtype=np.int64)
        char_mode = (cjk_count > 0) & (cjk_count >= CJK_SHARE * letters)
    return char_start, separator, char_mode


def shingle_strings(text: str, ngram_size: int = 5) -> list[str]:
    """The shingles of one document as strings (the definition the vectorised hashing follows)."""
    normalized = normalize_texts(pa.array([text], pa.string()))[0].as_py()
    code_points = np.array([ord(c) for c in normalized], np.int64)
    separator, cjk = _classes(code_points)
    letters = int((~separator).sum())
    if cjk.any() and cjk.sum() >= CJK_SHARE * letters:
        units, joiner = [c for c, sep in zip(normalized, separator) if not sep], ""
    else:
        spaced = "".join(" " if sep else c for c, sep in zip(normalized, separator))
        units = [word for word in spaced.split(" ") if word]
        joiner = " "
    if not units:
        return []
    if len(units) <= ngram_size:
        return [joiner.join(units)]
    return [joiner.join(units[i : i + ngram_size]) for i in range(len(units) - ngram_size + 1)]

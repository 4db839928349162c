"""Text normalization and shingling rules for near-duplicate detection.

Two documents are near-duplicates when their *shingle sets* overlap, so these rules decide what
"the same text" means: case, Unicode compatibility forms (full-width letters, ligatures),
punctuation, control characters and runs of whitespace never make two documents different.

Shingles are word n-grams, except for documents written without spaces between words (Chinese,
Japanese), which get character n-grams; the choice is made per document from its share of CJK
characters. The batch functions run on whole Arrow arrays (pyarrow.compute), never one Python
call per document; `shingle_strings` is the readable one-document definition of the same rules.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Punctuation, separators, control characters (terminal colour escapes, tabs, newlines) and
# whitespace all fold to one space. Symbols (+ = < $ ...) stay: they carry meaning in code.
FOLD_PATTERN = r"[\p{P}\p{Z}\p{Cc}\s]+"
CJK_PATTERN = r"[\p{Han}\p{Hiragana}\p{Katakana}]"
# Documents with at least this share of CJK characters (among non-space characters) get
# character n-grams. Chinese man pages full of option names sit around 0.2-0.6; other text at 0.
CJK_SHARE = 0.1


def normalize_texts(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """NFKC, lowercase, fold punctuation/whitespace/control runs to one space, trim. Nulls -> ''."""
    texts = pc.fill_null(texts, "")
    folded = pc.replace_substring_regex(pc.utf8_lower(pc.utf8_normalize(texts, "NFKC")), FOLD_PATTERN, " ")
    normalized = pc.utf8_trim_whitespace(folded)
    if isinstance(normalized, pa.ChunkedArray):
        normalized = normalized.combine_chunks()
    return normalized


def char_mode(normalized: pa.Array) -> np.ndarray:
    """Per document: True where the text is written without spaces (character n-grams)."""
    cjk = pc.count_substring_regex(normalized, CJK_PATTERN).to_numpy(zero_copy_only=False)
    spaces = pc.count_substring(normalized, " ").to_numpy(zero_copy_only=False)
    non_space = pc.utf8_length(normalized).to_numpy(zero_copy_only=False) - spaces
    return (cjk > 0) & (cjk >= CJK_SHARE * non_space)


def shingle_strings(text: str, ngram_size: int = 5) -> list[str]:
    """The shingles of one document as strings (the definition the vectorised hashing follows).

    Word mode: n consecutive words joined by a space; character mode: n consecutive non-space
    characters. A document shorter than n units is one shingle of all its units; an empty one has none.
    """
    normalized = normalize_texts(pa.array([text], pa.string()))
    value = normalized[0].as_py()
    if char_mode(normalized)[0]:
        units, sep = list(value.replace(" ", "")), ""
    else:
        units, sep = value.split(), " "
    if not units:
        return []
    if len(units) <= ngram_size:
        return [sep.join(units)]
    return [sep.join(units[i : i + ngram_size]) for i in range(len(units) - ngram_size + 1)]

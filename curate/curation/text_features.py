"""What coverage statistics read from one table: units, n-gram hashes and per-document features.

Units are token ids (`input_ids`) when the table is tokenized and words of `text` otherwise.
From them come n-gram hashes, unigram count tables and per-document repetition; from the text
come languages, code languages and compression ratios. Everything here looks at one table only;
merging belongs to `curate.curation.sketches`, turning merged counts into numbers to
`curate.curation.coverage_metrics`.
"""

from __future__ import annotations

import re
import zlib
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from curate.curation.detect import detect_language
from curate.curation.hashing import GOLDEN, mix64
from curate.curation.sketches import count_table

NGRAM_ORDERS = (1, 2, 4, 8)
ASCII_LETTER = re.compile(r"[A-Za-z]")
COMPRESSION_LEVEL = 6
WORD_PATTERN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|\w+|[^\w\s]")

_COMBINE = np.uint64(0xD6E8FEB86659FD93)


def _spread(values: np.ndarray) -> np.ndarray:
    """A full splitmix64 step (golden-ratio increment, then `mix64`), so unit 0 does not hash to 0.

    stats.json's n-gram counts were defined with this step; leaving out the increment would
    change them.
    """
    return mix64(values.astype(np.uint64, copy=False) + GOLDEN)


def _combine(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Hash of the concatenation of two hashed sequences (order-sensitive)."""
    return _spread(left ^ (right * _COMBINE))


def ngram_hashes(units: np.ndarray, offsets: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Hashes of every n-gram (n in NGRAM_ORDERS) that lies inside one document.

    `units` are the uint64 token ids of all documents back to back, `offsets` the document
    boundaries (length documents + 1). Returns {n: (hashes, document index)}; the 2-, 4- and
    8-gram hashes are built by combining two halves, three vectorised passes in all.
    """
    total = len(units)
    lengths = np.diff(offsets)
    document = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    document_end = np.repeat(offsets[1:], lengths)
    positions = np.arange(total, dtype=np.int64)
    result: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    hashes = _spread(units)
    n = 1
    while n <= max(NGRAM_ORDERS):
        if n > 1:
            half, count = n // 2, max(total - n + 1, 0)
            hashes = _combine(hashes[:count], hashes[half : half + count])
        starts = positions[: len(hashes)]
        valid = starts + n <= document_end[: len(hashes)]
        if n in NGRAM_ORDERS:
            result[n] = (hashes[valid], document[: len(hashes)][valid])
        n *= 2
    return result


def document_chunks(offsets: np.ndarray, max_units: int) -> Iterator[tuple[int, int]]:
    """Document ranges [first, stop), in order, of at most `max_units` units each (a longer document alone)."""
    first, documents = 0, len(offsets) - 1
    while first < documents:
        fitting = int(np.searchsorted(offsets, offsets[first] + max_units, side="right")) - 1
        stop = min(documents, max(first + 1, fitting))
        yield first, stop
        first = stop


def string_column(table: pa.Table, name: str) -> list[str | None] | None:
    """The column's values as Python strings, or None when the table has no such column."""
    if name not in table.column_names:
        return None
    return table.column(name).to_pylist()


def source_values(table: pa.Table) -> list[str | None] | None:
    """The `source` column, or the `source` field of a `meta` struct, when the input had one."""
    if "source" in table.column_names and pa.types.is_string(table.schema.field("source").type):
        return table.column("source").to_pylist()
    if "meta" in table.column_names:
        meta_type = table.schema.field("meta").type
        if pa.types.is_struct(meta_type) and meta_type.get_field_index("source") >= 0:
            values = pc.struct_field(table.column("meta"), "source")
            return [None if v is None else str(v) for v in values.to_pylist()]
    return None


def token_units(table: pa.Table) -> tuple[np.ndarray, np.ndarray] | None:
    """(token ids back to back as uint64, document offsets), or None for an untokenized table."""
    if "input_ids" not in table.column_names:
        return None
    column = table.column("input_ids")
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.uint64)
    return values, np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)


def _word_units(texts: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    hashes: list[int] = []
    offsets = [0]
    for text in texts:
        hashes.extend(xxhash.xxh3_64_intdigest(word.encode("utf-8")) for word in WORD_PATTERN.findall(text or ""))
        offsets.append(len(hashes))
    return np.array(hashes, dtype=np.uint64), np.array(offsets, dtype=np.int64)


def table_units(table: pa.Table) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(units, document offsets, unit name): token ids when tokenized, else words of `text`."""
    tokens = token_units(table)
    if tokens is not None:
        return tokens[0], tokens[1], "token"
    texts = string_column(table, "text")
    if texts is not None:
        return (*_word_units(texts), "word")
    return None


def unigram_table(units: np.ndarray, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """Count table of units; token ids are small integers, so a bincount replaces the sort."""
    if unit != "token" or len(units) == 0:
        return count_table(units)
    counts = np.bincount(units.astype(np.int64))
    keys = np.flatnonzero(counts)
    return keys.astype(np.uint64), counts[keys].astype(np.int64)


def document_hash_values(
    texts: list[str | None] | None, units: tuple[np.ndarray, np.ndarray] | None
) -> np.ndarray:
    """One hash per document: of its text, or of its token ids when there is no text."""
    if texts is not None:
        return np.array([xxhash.xxh3_64_intdigest((t or "").encode("utf-8")) for t in texts], dtype=np.uint64)
    values, offsets = units
    return np.array(
        [xxhash.xxh3_64_intdigest(values[a:b].tobytes()) for a, b in zip(offsets[:-1], offsets[1:])],
        dtype=np.uint64,
    )


def repeated_ngram_ratios(
    hashes: np.ndarray, document: np.ndarray, documents: int, key_documents: int | None = None
) -> np.ndarray:
    """Per document: share of its n-gram occurrences that repeat an earlier one in the same document.

    The document index goes into the top bits of a sort key and the n-gram hash's top bits below
    it, so one sort (no argsort) finds the distinct n-grams of every document at once. The key
    leaves room for `key_documents` documents (default `documents`): a chunk of a table passes the
    table's count, so its hashes are cut to the same bits as the whole table's.
    """
    totals = np.bincount(document, minlength=documents)
    hash_bits = np.uint64(64 - max(1, (key_documents or documents).bit_length()))
    keys = np.sort((document.astype(np.uint64) << hash_bits) | (hashes >> (np.uint64(64) - hash_bits)))
    first = np.concatenate(([True], keys[1:] != keys[:-1])) if len(keys) else np.zeros(0, bool)
    distinct = np.bincount((keys[first] >> hash_bits).astype(np.int64), minlength=documents)
    has_ngrams = totals > 0
    return 1.0 - distinct[has_ngrams] / totals[has_ngrams]


def compression_ratios(texts: list[str | None]) -> np.ndarray:
    """UTF-8 bytes over zlib-compressed bytes per non-empty record (higher: more redundant)."""
    ratios = []
    for text in texts:
        if text:
            raw = text.encode("utf-8")
            ratios.append(len(raw) / len(zlib.compress(raw, COMPRESSION_LEVEL)))
    return np.array(ratios, dtype=np.float64)


def text_language(text: str) -> str:
    """`detect_language(text)`, answered without its per-character loop when its sample is ASCII.

    On ASCII text every letter is Latin, so detect_language says "en" when there is a letter
    and "unknown" when there is none; most English prose and code take this path.
    """
    sample = text[:4000]
    if sample.isascii():
        return "en" if ASCII_LETTER.search(sample) else "unknown"
    return detect_language(text)


def sizes_by_key(keys: list, tokens: np.ndarray, text_bytes: np.ndarray) -> dict:
    """{key: [documents, tokens, bytes]} over documents grouped by key (a language, a source)."""
    sizes: dict = {}
    for key, token_count, byte_count in zip(keys, tokens.tolist(), text_bytes.tolist()):
        entry = sizes.setdefault(key, [0, 0, 0])
        entry[0] += 1
        entry[1] += token_count
        entry[2] += byte_count
    return sizes

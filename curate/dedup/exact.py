"""Exact deduplication on a normalized form of the text.

The text is normalized (Unicode NFC, runs of whitespace collapsed, ends trimmed) only to
compute its key; the document keeps its text as it came. Each group of equal keys keeps
its smallest id. The same two steps find records that reuse an id (the first one stays):
an aggregate per group finds the groups with more than one member, then each row is
compared with its group's survivor, batch by batch.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import xxhash


def normalize_for_exact(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    collapsed = pc.replace_substring_regex(pc.utf8_normalize(texts, "NFC"), r"\s+", " ")
    return pc.utf8_trim_whitespace(collapsed)


def text_keys(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """128-bit xxh3 of each normalized text, as a hex string."""
    normalized = normalize_for_exact(texts).cast(pa.binary()).to_pylist()
    return pa.array([xxhash.xxh3_128_hexdigest(text) for text in normalized], pa.string())


def exact_duplicates(rows: pa.Table) -> pa.Table:
    """(input_pos, removed_id, kept_id) of rows whose id is not their group's smallest.

    `rows` holds key, id, input_pos and kept_id (the smallest id of the row's key group).
    """
    removed = rows.filter(pc.not_equal(rows["id"], rows["kept_id"]))
    return pa.table({"input_pos": removed["input_pos"], "removed_id": removed["id"], "kept_id": removed["kept_id"]})


def reused_ids(rows: pa.Table) -> pa.Table:
    """(input_pos) of rows that are not the first use of their id.

    `rows` holds id, input_pos and first_pos (the smallest input_pos of the row's id).
    """
    later = rows.filter(pc.not_equal(rows["input_pos"], rows["first_pos"]))
    return pa.table({"input_pos": later["input_pos"]})

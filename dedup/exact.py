"""Exact deduplication on a normalized form of the text, one hash partition at a time.

The text is normalized (Unicode NFC, runs of whitespace collapsed, ends trimmed) only to
compute its key; the document keeps its text as it came. Each group of equal keys keeps
its smallest id. The same per-partition logic finds records that reuse an id.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import xxhash


def normalize_for_exact(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    collapsed = pc.replace_substring_regex(pc.utf8_normalize(texts, "NFC"), r"\s+", " ")
    return pc.utf8_trim_whitespace(collapsed)


def text_keys(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """128-bit xxh3 of each normalized text, as fixed-size binary."""
    normalized = normalize_for_exact(texts)
    return pa.array([xxhash.xxh3_128_digest(text) for text in normalized.cast(pa.binary()).to_pylist()], pa.binary(16))


def exact_duplicates(partition: pa.Table) -> pa.Table:
    """(removed_pos, removed_id, kept_id) for every non-smallest id of an equal-key group.

    `partition` holds columns key, id, input_pos, and every row of a key is in it.
    """
    kept = partition.group_by("key").aggregate([("id", "min")]).rename_columns(["key", "kept_id"])
    joined = partition.join(kept, "key")
    removed = joined.filter(pc.not_equal(joined["id"], joined["kept_id"]))
    return pa.table(
        {"removed_pos": removed["input_pos"], "removed_id": removed["id"], "kept_id": removed["kept_id"]}
    ).sort_by("removed_pos")


def reused_ids(partition: pa.Table) -> pa.Table:
    """(removed_pos) of every record whose id already appeared earlier in the input.

    `partition` holds columns id and input_pos, and every row of an id is in it.
    """
    first = partition.group_by("id").aggregate([("input_pos", "min")]).rename_columns(["id", "first_pos"])
    joined = partition.join(first, "id")
    later = joined.filter(pc.not_equal(joined["input_pos"], joined["first_pos"]))
    return pa.table({"removed_pos": later["input_pos"]}).sort_by("removed_pos")

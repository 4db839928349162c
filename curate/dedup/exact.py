"""Exact deduplication on a normalized form of the text.

The text is normalized (Unicode NFC, runs of whitespace collapsed, ends trimmed) only to
compute its key; the document keeps its text as it came. Each group of equal keys keeps
its smallest id. The same two steps find records that reuse an id (the first one stays):
an aggregate per group finds the groups with more than one member, then each row is
compared with its group's survivor, batch by batch.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from curate.dedup.minhash import as_string_array, string_buffer

# The whitespace that collapses: ASCII tab, newline, form feed, carriage return and space (RE2's
# `\s`, which defined it first), each mapped to a space by `bytes.translate`.
_TO_SPACE = bytes(0x20 if byte in b"\t\n\f\r" else byte for byte in range(256))


def normalize_for_exact(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """NFC, every run of whitespace one space, Unicode whitespace trimmed at both ends. Only documents
    with non-ASCII characters go through NFC; the collapse works on the batch's UTF-8 buffer."""
    texts = as_string_array(texts)
    if texts.null_count:
        raise ValueError("exact keys are of validated texts, which are never null")
    not_ascii = pc.invert(pc.string_is_ascii(texts))
    if pc.any(not_ascii).as_py():
        composed = pc.utf8_normalize(pc.filter(texts, not_ascii), "NFC").cast(texts.type)
        texts = pc.replace_with_mask(texts, not_ascii, composed)
    data, offsets = string_buffer(texts)
    spaced = np.frombuffer(data.tobytes().translate(_TO_SPACE), np.uint8)
    space = spaced == 0x20
    # A space right after a space is dropped; one that opens a document would be trimmed anyway.
    dropped = np.zeros(len(data), bool)
    dropped[1:] = space[1:] & space[:-1]
    collapsed_offsets = offsets - np.searchsorted(np.flatnonzero(dropped), offsets)
    collapsed = pa.LargeStringArray.from_buffers(len(texts), pa.py_buffer(collapsed_offsets), pa.py_buffer(spaced[~dropped]))
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

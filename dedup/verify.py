"""Exact verification of near-duplicate candidates.

LSH buckets and connected components only propose: components chain documents A~B~C where A
and C share little. A document is removed only if the exact Jaccard similarity of its shingle
set with the *kept* document of its component reaches the threshold; otherwise it stays (and is
counted). Shingle sets are the 64-bit shingle hashes of `dedup.minhash`, so the Jaccard value is
exact up to a hash collision (probability about 2**-64 per pair of shingles).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from dedup.minhash import ShingleSets, shingle_hashes

PAIR_SCHEMA = pa.schema(
    [("removed_id", pa.string()), ("kept_id", pa.string()), ("kind", pa.string()), ("jaccard", pa.float64())]
)
VERIFIED_SCHEMA = PAIR_SCHEMA.append(pa.field("verified", pa.bool_()))


def _order_by_owner_then_hash(hashes: np.ndarray, owner: np.ndarray, owners: int) -> np.ndarray:
    """The permutation sorting rows by (owner, hash): one sort of the hashes, then a stable sort by
    owner, which numpy does as a radix sort when owners fit in 16 bits (3x faster than lexsort)."""
    by_hash = np.argsort(hashes)
    owner_dtype = np.uint16 if owners <= 1 << 16 else np.int64
    return by_hash[np.argsort(owner[by_hash].astype(owner_dtype), kind="stable")]


def shingle_sets(texts: list[str] | pa.Array | pa.ChunkedArray, ngram_size: int) -> ShingleSets:
    """Sorted distinct shingle hashes of each document."""
    raw = shingle_hashes(texts, ngram_size)
    doc = np.repeat(np.arange(len(raw.offsets) - 1), raw.counts())
    order = _order_by_owner_then_hash(raw.hashes, doc, len(raw.offsets) - 1)
    hashes, doc = raw.hashes[order], doc[order]
    distinct = np.ones(len(hashes), bool)
    distinct[1:] = (hashes[1:] != hashes[:-1]) | (doc[1:] != doc[:-1])
    counts = np.bincount(doc[distinct], minlength=len(raw.offsets) - 1)
    offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return ShingleSets(hashes[distinct], offsets)


def _gather(sets: ShingleSets, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The hashes of the given documents, one after another, and the position in `docs` of each."""
    counts = sets.counts()[docs]
    owner = np.repeat(np.arange(len(docs)), counts)
    first = np.repeat(sets.offsets[docs] - np.cumsum(counts) + counts, counts)
    return sets.hashes[first + np.arange(len(owner))], owner


def jaccard_pairs(sets: ShingleSets, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Exact Jaccard similarity of the sets of documents left[p] and right[p] (0 when both are empty)."""
    left_hashes, left_pair = _gather(sets, left)
    right_hashes, right_pair = _gather(sets, right)
    hashes = np.concatenate([left_hashes, right_hashes])
    pair = np.concatenate([left_pair, right_pair])
    order = _order_by_owner_then_hash(hashes, pair, len(left))
    hashes, pair = hashes[order], pair[order]
    shared = (hashes[1:] == hashes[:-1]) & (pair[1:] == pair[:-1])
    intersection = np.bincount(pair[1:][shared], minlength=len(left)).astype(np.float64)
    union = sets.counts()[left] + sets.counts()[right] - intersection
    return np.divide(intersection, union, out=np.zeros(len(left)), where=union > 0)


def verify_against_kept(table: pa.Table, threshold: float, ngram_size: int) -> pa.Table:
    """Rows of documents to verify: columns id, text, group (int64) and is_kept (bool); each group has
    exactly one kept row. Returns one row per non-kept document with its exact Jaccard similarity to
    its group's kept document and whether it reaches the threshold."""
    group = table.column("group").to_numpy()
    is_kept = table.column("is_kept").to_numpy(zero_copy_only=False)
    ids = table.column("id")
    kept_rows = np.flatnonzero(is_kept)
    kept_rows = kept_rows[np.argsort(group[kept_rows], kind="stable")]
    member_rows = np.flatnonzero(~is_kept)
    their_kept = kept_rows[np.searchsorted(group[kept_rows], group[member_rows])]
    if not np.array_equal(group[their_kept], group[member_rows]):
        raise ValueError("a verification group has no kept document")
    similarity = jaccard_pairs(shingle_sets(table.column("text"), ngram_size), member_rows, their_kept)
    return pa.table(
        {
            "removed_id": ids.take(member_rows),
            "kept_id": ids.take(their_kept),
            "kind": pa.array(["near"] * len(member_rows), pa.string()),
            "jaccard": similarity,
            "verified": similarity >= threshold,
        },
        schema=VERIFIED_SCHEMA,
    )

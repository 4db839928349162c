"""Exact verification of near-duplicate candidates.

LSH buckets only propose: a bucket can hold documents that share one band of their MinHash
signatures and little else, and a chain A~B~C says nothing about A and C. Every pair the greedy
relies on is verified here by the exact Jaccard similarity of the two shingle sets; only pairs at
or above the threshold become edges. Shingle sets are the 64-bit shingle hashes of
`curate.dedup.minhash`, so the Jaccard value is exact up to a hash collision (probability about 2**-64
per pair of shingles).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.dedup.minhash import ShingleSets, shingle_hashes

PAIR_SCHEMA = pa.schema(
    [("removed_id", pa.string()), ("kept_id", pa.string()), ("kind", pa.string()), ("jaccard", pa.float64())]
)
CHECKED_SCHEMA = pa.schema(
    [
        ("a", pa.int64()),
        ("b", pa.int64()),
        ("jaccard", pa.float64()),
        ("similar", pa.bool_()),
        ("a_id", pa.string()),
        ("b_id", pa.string()),
    ]
)


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


def _gather(values: np.ndarray, offsets: np.ndarray, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The values of the given documents (CSR offsets), one after another, and the position in
    `docs` each came from."""
    counts = offsets[docs + 1] - offsets[docs]
    owner = np.repeat(np.arange(len(docs)), counts)
    first = np.repeat(offsets[docs] - np.cumsum(counts) + counts, counts)
    return values[first + np.arange(len(owner))], owner


def intersection_sizes(sets: ShingleSets, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """|left[p] & right[p]| for every pair p.

    Shingles are renumbered 0..V-1; for each distinct left document its shingles are marked in
    one boolean table of V entries, and the shingles of all its right partners are looked up
    there. Work is linear in the sizes of the sets involved; sorting both sides of every pair
    together instead took 42 s for 200,000 pairs of templated C++ headers, this 0.6 s."""
    sizes = np.zeros(len(left), np.int64)
    if len(left) == 0:
        return sizes
    _, rank = np.unique(sets.hashes, return_inverse=True)
    marked = np.zeros(int(rank.max()) + 1 if len(rank) else 0, bool)
    order = np.argsort(left, kind="stable")
    by_left = left[order]
    bounds = np.flatnonzero(np.r_[True, by_left[1:] != by_left[:-1], True])
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        own = rank[sets.offsets[by_left[lo]] : sets.offsets[by_left[lo] + 1]]
        marked[own] = True
        partners = order[lo:hi]
        shingles, pair = _gather(rank, sets.offsets, right[partners])
        sizes[partners] = np.bincount(pair, weights=marked[shingles], minlength=hi - lo).astype(np.int64)
        marked[own] = False
    return sizes


def jaccard_pairs(sets: ShingleSets, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Exact Jaccard similarity of the sets of documents left[p] and right[p] (0 when both are empty)."""
    intersection = intersection_sizes(sets, left, right).astype(np.float64)
    union = sets.counts()[left] + sets.counts()[right] - intersection
    return np.divide(intersection, union, out=np.zeros(len(left)), where=union > 0)


def _distinct_nodes(texts: pa.Table) -> pa.Table:
    """One row per node, sorted by node (a node's text may come once per verification group)."""
    texts = texts.take(pc.sort_indices(texts, [("node", "ascending")]))
    node = texts.column("node").to_numpy()
    first = np.ones(len(node), bool)
    first[1:] = node[1:] != node[:-1]
    return texts.filter(first)


def _rows_of(nodes: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    rows = np.searchsorted(nodes, wanted)
    if len(wanted) and (rows.max() >= len(nodes) or not np.array_equal(nodes[rows], wanted)):
        raise ValueError("a pair to verify names a document without its text")
    return rows


def verify_pairs(texts: pa.Table, pairs: pa.Table, threshold: float, ngram_size: int) -> pa.Table:
    """Exact Jaccard similarity of every pair (a, b) of nodes, sorted by (a, b); texts (node, id,
    text) holds every node of the pairs."""
    texts = _distinct_nodes(texts)
    nodes = texts.column("node").to_numpy()
    pairs = pairs.take(pc.sort_indices(pairs, [("a", "ascending"), ("b", "ascending")]))
    a, b = _rows_of(nodes, pairs.column("a").to_numpy()), _rows_of(nodes, pairs.column("b").to_numpy())
    similarity = jaccard_pairs(shingle_sets(texts.column("text"), ngram_size), a, b)
    ids = texts.column("id")
    return pa.table(
        {
            "a": pairs.column("a"),
            "b": pairs.column("b"),
            "jaccard": similarity,
            "similar": similarity >= threshold,
            "a_id": ids.take(a),
            "b_id": ids.take(b),
        },
        schema=CHECKED_SCHEMA,
    )

"""LSH buckets as lists of verification work: which pairs to verify next, and who still waits.

A bucket holds the documents that share one band key, sorted by the keep policy; removed members
drop out. Verification round r allows `heads` heads per bucket: its first `heads` members still in
it. An undecided member at position p <= heads (0-based) is verified against all p members before
it: it is *resolved* in this bucket. One further down is *blocked*: it may be removed, but not
kept, until a later round resolves it. Below the cap it is verified against the first member only
(enough to remove a near-copy of it) and waits for a round with more heads, so a bucket of k
documents costs at most heads * (heads + 1) / 2 + k Jaccard computations per round, never k^2 / 2.
At the cap (`at_cap`) the heads stop growing and slide instead: a member further down is verified
against all of them, after which every head has been verified against every undecided member
after it and *retires* (leaves the bucket); the next round's heads are the next members. A bucket
of k documents then costs at most heads * k Jaccard computations per round, for about k / heads
rounds: its every pair has to be verified once anyway, and a round's work stays bounded.

The invariant: a member is resolved only once it has been verified against every predecessor in
the bucket that was not removed, those still in the bucket before it and the retired ones. A head
retires only after being verified against every member after it that was undecided; one already
decided was kept, so it was resolved, and verified against the head, before. Removed members never
come back (the greedy's decisions are final) and the order is fixed, so positions only move up and
a member resolved once stays resolved.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.curation.hashing import GOLDEN, mix64
from curate.dedup.components import KEPT, REMOVED, UNDECIDED

MEMBER_SCHEMA = pa.schema([("bucket", pa.int64()), ("node", pa.int64())])
# A member and where its document lives: its block of documents and its row there.
LOCATED_SCHEMA = MEMBER_SCHEMA.append(pa.field("block", pa.int32())).append(pa.field("row", pa.int32()))
ROW_SCHEMA = MEMBER_SCHEMA.append(pa.field("primary", pa.int64())).append(pa.field("id", pa.string()))
STATEFUL_SCHEMA = ROW_SCHEMA.append(pa.field("state", pa.int8()))
TEXT_SCHEMA = pa.schema([("node", pa.int64()), ("id", pa.string()), ("text", pa.string())])
CANDIDATE_SCHEMA = pa.schema([("a", pa.int64()), ("b", pa.int64()), ("group", pa.int64())])
BLOCKED_SCHEMA = pa.schema([("node", pa.int64())])


def _starts(sorted_keys: np.ndarray) -> np.ndarray:
    """For each row of a sorted key array, the index of the first row with its key."""
    first = np.ones(len(sorted_keys), bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return np.flatnonzero(first)[np.cumsum(first) - 1]


def bucket_members(table: pa.Table) -> tuple[pa.Table, int]:
    """The rows (bucket, node, ...) of the buckets with at least two documents, sorted by bucket and
    node, and the largest bucket's size."""
    bucket, node = table.column("bucket").to_numpy(), table.column("node").to_numpy()
    order = np.lexsort((node, bucket))
    start = _starts(bucket[order])
    size = np.bincount(start, minlength=len(bucket))[start]
    return table.take(order[size >= 2]), int(size.max()) if len(size) else 0


def policy_primary(keep: str, length: np.ndarray, position: np.ndarray) -> np.ndarray:
    """The first sort key of a keep policy (the document id breaks ties): 0 for min-id, minus the
    length for longest, the input position for first."""
    if keep == "longest":
        return -length.astype(np.int64)
    if keep == "first":
        return position.astype(np.int64)
    return np.zeros(len(length), np.int64)


def member_rows(members: pa.Table, docs: pa.Table, keep: str) -> tuple[pa.Table, pa.Table]:
    """Bucket rows with their policy keys, and the texts of their documents (node, id, text).

    members (LOCATED_SCHEMA) are those whose documents live in the block `docs` (id, text,
    input_pos), at their `row`: only these texts leave the block, once per document."""
    taken, member = np.unique(members.column("row").to_numpy(), return_inverse=True)
    docs = docs.take(taken)
    length = pc.fill_null(pc.utf8_length(docs.column("text")), 0).to_numpy()
    node = docs.column("input_pos")
    rows = pa.table(
        {
            "bucket": members.column("bucket"),
            "node": members.column("node"),
            "primary": policy_primary(keep, length, node.to_numpy())[member],
            "id": docs.column("id").take(member),
        },
        schema=ROW_SCHEMA,
    )
    texts = pa.table({"node": node, "id": docs.column("id"), "text": docs.column("text")}, schema=TEXT_SCHEMA)
    return rows, texts


def with_states(rows: pa.Table, states: pa.Table | None) -> pa.Table:
    """Rows with their node's state. A node the greedy did not see had no verified predecessor and
    was not blocked, so it is kept; with no states yet (first round) every node is undecided."""
    if states is None:
        state = np.full(rows.num_rows, UNDECIDED, np.int8)
    else:
        found = pc.index_in(rows.column("node"), value_set=states.column("node"))
        state = pc.fill_null(pc.take(states.column("state"), found), KEPT).to_numpy()
    return rows.append_column("state", pa.array(state, pa.int8())).cast(STATEFUL_SCHEMA)


def _groups(bucket: np.ndarray, position: np.ndarray, slice_size: int) -> np.ndarray:
    """Verification group of a member: its bucket and which slice of `slice_size` positions it is in."""
    part = ((position - 1) // slice_size + 1).astype(np.uint64)
    return mix64(bucket.view(np.uint64) + part * GOLDEN).view(np.int64)


def head_pairs(rows: pa.Table, heads: int, at_cap: bool, slice_size: int) -> tuple[pa.Table, pa.Table, pa.Table]:
    """One verification round over the buckets of a partition (rows with states).

    Returns the rows that stay in their buckets for the next round (removed members and, at the
    cap, retired heads dropped: their every pair in the bucket is verified in this round), the
    pairs (a, b, group) to verify (a before b in policy order; group: b's bucket slice), and the
    blocked nodes."""
    rows = rows.filter(pc.not_equal(rows.column("state"), REMOVED))
    rows = rows.take(pc.sort_indices(rows, [("bucket", "ascending"), ("primary", "ascending"), ("id", "ascending")]))
    bucket, node = rows.column("bucket").to_numpy(), rows.column("node").to_numpy()
    start = _starts(bucket)
    position = np.arange(len(bucket)) - start
    undecided = rows.column("state").to_numpy() == UNDECIDED
    waiting = undecided & (position > heads)
    verified = np.where(undecided, np.minimum(position, heads), 0)
    if not at_cap:
        verified[waiting] = 1
    member = np.repeat(np.arange(len(bucket)), verified)
    head = start[member] + np.arange(len(member)) - np.repeat(np.cumsum(verified) - verified, verified)
    candidates = pa.table(
        {"a": node[head], "b": node[member], "group": _groups(bucket, position, slice_size)[member]},
        schema=CANDIDATE_SCHEMA,
    )
    blocked = pa.table({"node": np.unique(node[waiting])}, schema=BLOCKED_SCHEMA)
    staying = rows.filter(position >= heads) if at_cap else rows
    return staying.select(ROW_SCHEMA.names), candidates, blocked

"""Hash shuffles on Ray tasks, and the keep-policy greedy over a verified graph with no single-machine stage.

A distributed table here is a list of Ray object refs to pyarrow Tables (Ray Data blocks from
`Dataset.to_arrow_refs()`, or the outputs of an earlier shuffle). `shuffle` splits every block by
a deterministic hash of a key column into `num_partitions` parts (one task per block) and hands
partition i of every input to one reduce task: a worker holds about 1/num_partitions of a stage's
rows, and the driver only ever holds refs and a few counters. Tables that an earlier shuffle
already partitioned by the same key (`aligned`) go to their reduce task whole, without a split.
Plain tasks cost milliseconds where a Ray Data groupby starts shuffle actors.

`greedy_states` computes the lexicographically-first maximal independent set of a directed
acyclic graph whose arcs run from the document a keep policy prefers to the other one: visiting
documents in policy order, a document is kept unless a kept document has an arc into it. Nodes
may be *blocked* (not yet verified against everything they must be): a blocked node is never
kept, and neither is anything that waits on it, but it can still be removed. The set is unique,
so the same states come out whether the graph is solved in one task (when it has at most
`local_limit` rows) or in synchronous rounds over partitions (Kahn's algorithm: a decided node
tells its successors, one round per level), and the round count is the same either way:
the number of levels of decisions.

Every output depends only on the rows, never on how they were split into blocks or partitions,
so results are the same with any number of CPUs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from curate.dedup.minhash import mix64

UNDECIDED, KEPT, REMOVED = 0, 1, 2
ARC_SCHEMA = pa.schema([("a", pa.int64()), ("b", pa.int64())])
NODE_SCHEMA = pa.schema([("node", pa.int64())])
STATE_SCHEMA = pa.schema([("node", pa.int64()), ("state", pa.int8())])
FRONTIER_SCHEMA = pa.schema(
    [
        ("node", pa.int64()),
        ("state", pa.int8()),
        ("in_count", pa.int64()),
        ("removed_in", pa.int64()),
        ("blocked", pa.bool_()),
        ("fresh", pa.bool_()),
    ]
)
MESSAGE_SCHEMA = pa.schema([("b", pa.int64()), ("kept", pa.bool_())])

Refs = list  # list[ray.ObjectRef[pa.Table]]


def partition_of(keys: np.ndarray, num_partitions: int) -> np.ndarray:
    """Deterministic hash partition (0..num_partitions-1) of int64 keys."""
    return (mix64(keys.astype(np.int64).view(np.uint64)) % np.uint64(num_partitions)).astype(np.int64)


def split_table(table: pa.Table, key: str, num_partitions: int) -> tuple[pa.Table, ...]:
    """The rows of table in num_partitions parts by the hash of their key, as a shuffle splits them."""
    if table.num_rows == 0:  # Ray Data may hand over empty blocks without columns
        return (table,) * num_partitions
    part = partition_of(table.column(key).to_numpy(), num_partitions)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(num_partitions + 1))
    ordered = table.take(order)
    return tuple(ordered.slice(lo, hi - lo) for lo, hi in zip(bounds[:-1], bounds[1:]))


def returned_parts(parts: tuple[pa.Table, ...]) -> tuple[pa.Table, ...] | pa.Table:
    """What a task with num_returns=len(parts) returns (Ray wants a bare value for one)."""
    return parts if len(parts) > 1 else parts[0]


@ray.remote
def _split(table: pa.Table, key: str, num_partitions: int) -> tuple[pa.Table, ...] | pa.Table:
    return returned_parts(split_table(table, key, num_partitions))


def as_table(pieces: Sequence[pa.Table], schema: pa.Schema) -> pa.Table:
    """The pieces as one table (the empty table of the schema when there are no rows)."""
    pieces = [p for p in pieces if p.num_rows]
    return pa.concat_tables(pieces).combine_chunks() if pieces else schema.empty_table()


@ray.remote
def _reduce(
    fn: Callable[..., object],
    schemas: Sequence[pa.Schema],
    counts: Sequence[int],
    split_by: Sequence[str | None],
    num_partitions: int,
    *parts: pa.Table,
):
    tables, start = [], 0
    for schema, count in zip(schemas, counts):
        tables.append(as_table(parts[start : start + count], schema))
        start += count
    outputs = fn(*tables)
    if not split_by:
        return outputs
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    flat: list[pa.Table] = []
    for output, key in zip(outputs, split_by):
        flat += split_table(output, key, num_partitions) if key else [output]
    return returned_parts(tuple(flat))


def _listed(refs: object) -> list:
    return refs if isinstance(refs, list) else [refs]


def shuffle(
    inputs: Sequence[tuple[Refs, str, pa.Schema]],
    num_partitions: int,
    fn: Callable[..., object],
    num_returns: int = 1,
    aligned: Sequence[tuple[Refs, pa.Schema]] = (),
    split: Sequence[tuple[Sequence[Refs], pa.Schema]] = (),
    split_by: Sequence[str | None] = (),
) -> list:
    """Co-partition every input (refs, key column, schema) by the hash of its key and call
    fn(table_of_input_0, ..., split_table_0, ..., aligned_table_0, ...) once per partition, on a worker.

    `split` inputs were split by the same hash where they were made (one list of num_partitions
    refs per block, like `split_table`'s parts): partition i of every block is passed, concatenated.
    `aligned` inputs are lists of exactly num_partitions refs already partitioned by the same hash
    (outputs of an earlier shuffle on the same key values): partition i is passed as is.
    Returns one ref per partition (a list of `num_returns` refs each when num_returns > 1).

    `split_by` names, for each of fn's outputs, a key column to split it by before it is returned
    (None: returned whole): such an output comes back as num_partitions refs, a `split` input of
    the next shuffle on that key without a task of its own. Then each partition's result is a
    list with one entry per output (a ref, or a list of refs), and num_returns is not used.
    """
    split_parts = []
    for refs, key, _ in inputs:
        splits = [_split.options(num_returns=num_partitions).remote(ref, key, num_partitions) for ref in refs]
        split_parts.append([_listed(s) for s in splits])
    split_parts += [list(blocks) for blocks, _ in split]
    schemas = [schema for _, _, schema in inputs] + [schema for _, schema in split] + [schema for _, schema in aligned]
    counts = [len(source) for source in split_parts] + [1] * len(aligned)
    widths = [num_partitions if key else 1 for key in split_by]
    reduce = _reduce.options(num_returns=sum(widths) if split_by else num_returns)
    outputs = []
    for p in range(num_partitions):
        parts = [block[p] for source in split_parts for block in source] + [refs[p] for refs, _ in aligned]
        output = reduce.remote(fn, schemas, counts, split_by, num_partitions, *parts)
        if split_by:
            flat, output = _listed(output), []
            for key, start in zip(split_by, np.cumsum([0, *widths[:-1]])):
                output.append(flat[start : start + num_partitions] if key else flat[start])
        outputs.append(output)
    return outputs


def _state_table(nodes: np.ndarray, state: np.ndarray) -> pa.Table:
    order = np.argsort(nodes)
    return pa.table({"node": nodes[order], "state": state[order].astype(np.int8)}, schema=STATE_SCHEMA)


def _receive(frontier: dict[str, np.ndarray], target: np.ndarray, from_kept: np.ndarray) -> np.ndarray:
    """Apply one level of messages (target row, sender kept?) to undecided rows, in place: a kept
    sender removes its target; a target whose every predecessor is removed is kept unless blocked.
    Returns the rows decided by these messages."""
    state = frontier["state"]
    live = state[target] == UNDECIDED
    target, from_kept = target[live], from_kept[live]
    removed = np.unique(target[from_kept])
    frontier["removed_in"] += np.bincount(target[~from_kept], minlength=len(state))
    state[removed] = REMOVED
    waiting = np.unique(target[~from_kept])
    kept = waiting[
        (state[waiting] == UNDECIDED)
        & (frontier["removed_in"][waiting] == frontier["in_count"][waiting])
        & ~frontier["blocked"][waiting]
    ]
    state[kept] = KEPT
    return np.concatenate([removed, kept])


def _start_frontier(nodes: np.ndarray, in_count: np.ndarray, blocked: np.ndarray) -> dict[str, np.ndarray]:
    """Node rows before any message: sources that are not blocked are kept (the first level)."""
    state = np.where((in_count == 0) & ~blocked, KEPT, UNDECIDED).astype(np.int8)
    return {
        "node": nodes,
        "state": state,
        "in_count": in_count,
        "removed_in": np.zeros(len(nodes), np.int64),
        "blocked": blocked,
        "fresh": state != UNDECIDED,
    }


def greedy_local(arcs: pa.Table, blocked: pa.Table) -> tuple[pa.Table, int]:
    """States of every node of arcs and blocked, solved in memory level by level; and the level count."""
    a, b = arcs.column("a").to_numpy(), arcs.column("b").to_numpy()
    nodes = np.unique(np.concatenate([a, b, blocked.column("node").to_numpy()]))
    src, dst = np.searchsorted(nodes, a), np.searchsorted(nodes, b)
    is_blocked = np.zeros(len(nodes), bool)
    is_blocked[np.searchsorted(nodes, blocked.column("node").to_numpy())] = True
    frontier = _start_frontier(nodes, np.bincount(dst, minlength=len(nodes)), is_blocked)
    order = np.argsort(src, kind="stable")
    src, dst = src[order], dst[order]
    first_arc = np.searchsorted(src, np.arange(len(nodes) + 1))
    fresh, levels = np.flatnonzero(frontier["fresh"]), 0
    while len(fresh):
        levels += 1
        counts = first_arc[fresh + 1] - first_arc[fresh]
        arc = np.repeat(first_arc[fresh] - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        fresh = _receive(frontier, dst[arc], frontier["state"][src[arc]] == KEPT)
    return _state_table(nodes, frontier["state"]), levels


@ray.remote
def _greedy_in_one_task(num_partitions: int, arc_count: int, *tables: pa.Table):
    """greedy_local over every arc and blocked table, the states split by node like a shuffle output."""
    arcs = as_table(tables[:arc_count], ARC_SCHEMA)
    blocked = as_table(tables[arc_count:], NODE_SCHEMA)
    states, levels = greedy_local(arcs, blocked)
    return (*split_table(states, "node", num_partitions), levels)


def _frontier_table(frontier: dict[str, np.ndarray]) -> pa.Table:
    return pa.table(frontier, schema=FRONTIER_SCHEMA)


def _start(arcs_by_a: pa.Table, arcs_by_b: pa.Table, blocked: pa.Table) -> tuple[pa.Table, pa.Table, int]:
    """This partition's arcs (by their first node) and node rows, and how many nodes it decided."""
    targets = arcs_by_b.column("b").to_numpy()
    nodes = np.unique(np.concatenate([arcs_by_a.column("a").to_numpy(), targets, blocked.column("node").to_numpy()]))
    in_count = np.bincount(np.searchsorted(nodes, targets), minlength=len(nodes))
    is_blocked = np.isin(nodes, blocked.column("node").to_numpy())
    frontier = _start_frontier(nodes, in_count, is_blocked)
    return arcs_by_a, _frontier_table(frontier), int(frontier["fresh"].sum())


@ray.remote
def _messages(arcs: pa.Table, frontier: pa.Table, num_partitions: int) -> tuple[pa.Table, ...] | pa.Table:
    """(successor, sender kept?) for every arc out of a node decided in the last round, split by successor."""
    fresh = frontier.filter(frontier.column("fresh"))
    kept = fresh.filter(pc.equal(fresh.column("state"), KEPT)).column("node").to_numpy()
    out = arcs.filter(pc.is_in(arcs.column("a"), value_set=fresh.column("node")))
    messages = pa.table({"b": out.column("b"), "kept": np.isin(out.column("a").to_numpy(), kept)}, schema=MESSAGE_SCHEMA)
    return returned_parts(split_table(messages, "b", num_partitions))


@ray.remote(num_returns=2)
def _update(frontier: pa.Table, *messages: pa.Table) -> tuple[pa.Table, int]:
    """This partition's node rows after one level of messages, and how many nodes they decided."""
    table = as_table(messages, MESSAGE_SCHEMA)
    columns = {name: frontier.column(name).to_numpy(zero_copy_only=False).copy() for name in FRONTIER_SCHEMA.names}
    target = np.searchsorted(columns["node"], table.column("b").to_numpy())
    decided = _receive(columns, target, table.column("kept").to_numpy(zero_copy_only=False))
    columns["fresh"] = np.zeros(len(columns["node"]), bool)
    columns["fresh"][decided] = True
    return _frontier_table(columns), len(decided)


@ray.remote
def _states(frontier: pa.Table) -> pa.Table:
    return frontier.select(STATE_SCHEMA.names).cast(STATE_SCHEMA)


def _greedy_rounds(arcs: Refs, blocked: Refs, num_partitions: int) -> tuple[Refs, int]:
    """greedy_local in synchronous rounds over partitions: one level of decisions per round."""
    started = shuffle(
        [(arcs, "a", ARC_SCHEMA), (arcs, "b", ARC_SCHEMA), (blocked, "node", NODE_SCHEMA)],
        num_partitions,
        _start,
        num_returns=3,
    )
    by_a = [s[0] for s in started]
    frontier = [s[1] for s in started]
    fresh, levels = sum(ray.get([s[2] for s in started])), 0
    while fresh:
        levels += 1
        send = _messages.options(num_returns=num_partitions)
        sent = [_listed(send.remote(by_a[p], frontier[p], num_partitions)) for p in range(num_partitions)]
        updated = [_update.remote(frontier[p], *[s[p] for s in sent]) for p in range(num_partitions)]
        frontier = [u[0] for u in updated]
        fresh = sum(ray.get([u[1] for u in updated]))
    return [_states.remote(ref) for ref in frontier], levels


def greedy_states(arcs: Refs, blocked: Refs, num_partitions: int, rows: int, local_limit: int) -> tuple[Refs, int]:
    """States (node, state) of every node of `arcs` (a is preferred to b) and `blocked`, split into
    num_partitions by node like a shuffle output; and the number of levels (rounds).

    `rows` is the number of arc and blocked rows: at most `local_limit` are solved in one task."""
    if rows <= local_limit:
        solved = _greedy_in_one_task.options(num_returns=num_partitions + 1).remote(
            num_partitions, len(arcs), *arcs, *blocked
        )
        return list(solved[:-1]), ray.get(solved[-1])
    return _greedy_rounds(arcs, blocked, num_partitions)

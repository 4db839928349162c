"""Hash shuffles on Ray tasks, and connected components with no single-machine stage.

A distributed table here is a list of Ray object refs to pyarrow Tables (Ray Data blocks from
`Dataset.to_arrow_refs()`, or the outputs of an earlier shuffle). `shuffle` splits every block by
a deterministic hash of a key column into `num_partitions` parts (one task per block) and hands
partition i of every input to one reduce task: a worker holds about 1/num_partitions of a stage's
rows, and the driver only ever holds refs and a few counters. Plain tasks cost milliseconds where
a Ray Data groupby starts shuffle actors, and the graph stages below run a handful of rounds.

Connected components alternate the large-star and small-star operations of Kiveris et al.,
"Connected Components in MapReduce and Beyond" (SoCC 2014), which converge in O(log^2 n) rounds
to one star per component whose center is the smallest node id. Convergence is tested exactly
inside large-star, which sees the full neighbourhood of every node: the graph is a star forest
centered on component minima iff no node has two smaller neighbours and no node has both a
smaller and a larger neighbour. Each reduce task returns how many unstable nodes it saw.

Every output depends only on the rows, never on how they were split into blocks or partitions,
so results are the same with any number of CPUs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import ray

from dedup.minhash import mix64

EDGE_SCHEMA = pa.schema([("a", pa.int64()), ("b", pa.int64())])
MEMBER_SCHEMA = pa.schema([("node", pa.int64()), ("component", pa.int64())])
MAX_ROUNDS = 64

Refs = list  # list[ray.ObjectRef[pa.Table]]


def partition_of(keys: np.ndarray, num_partitions: int) -> np.ndarray:
    """Deterministic hash partition (0..num_partitions-1) of int64 keys."""
    return (mix64(keys.astype(np.int64).view(np.uint64)) % np.uint64(num_partitions)).astype(np.int64)


@ray.remote
def _split(table: pa.Table, key: str, num_partitions: int) -> tuple[pa.Table, ...] | pa.Table:
    if table.num_rows == 0:  # Ray Data may hand over empty blocks without columns
        return (table,) * num_partitions if num_partitions > 1 else table
    part = partition_of(table.column(key).to_numpy(), num_partitions)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(num_partitions + 1))
    ordered = table.take(order)
    parts = tuple(ordered.slice(lo, hi - lo) for lo, hi in zip(bounds[:-1], bounds[1:]))
    return parts if num_partitions > 1 else parts[0]


@ray.remote
def _reduce(fn: Callable[..., object], schemas: Sequence[pa.Schema], counts: Sequence[int], *parts: pa.Table):
    tables, start = [], 0
    for schema, count in zip(schemas, counts):
        pieces = [p for p in parts[start : start + count] if p.num_rows]
        tables.append(pa.concat_tables(pieces).combine_chunks() if pieces else schema.empty_table())
        start += count
    return fn(*tables)


def shuffle(
    inputs: Sequence[tuple[Refs, str, pa.Schema]],
    num_partitions: int,
    fn: Callable[..., object],
    num_returns: int = 1,
) -> list:
    """Co-partition every input (refs, key column, schema) by the hash of its key and call
    fn(table_of_input_0, table_of_input_1, ...) once per partition, on a worker.

    Returns one ref per partition (a list of `num_returns` refs each when num_returns > 1).
    """
    split_parts = []
    for refs, key, _ in inputs:
        splits = [_split.options(num_returns=num_partitions).remote(ref, key, num_partitions) for ref in refs]
        split_parts.append([s if num_partitions > 1 else [s] for s in splits])
    schemas = [schema for _, _, schema in inputs]
    reduce = _reduce.options(num_returns=num_returns)
    outputs = []
    for p in range(num_partitions):
        parts = [split[p] for source in split_parts for split in source]
        counts = [len(source) for source in split_parts]
        outputs.append(reduce.remote(fn, schemas, counts, *parts))
    return outputs


def unique_pairs(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (first, second) pairs sorted by first, then second."""
    order = np.lexsort((second, first))
    first, second = first[order], second[order]
    keep = np.ones(len(first), bool)
    keep[1:] = (first[1:] != first[:-1]) | (second[1:] != second[:-1])
    return first[keep], second[keep]


def _group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    starts = np.ones(len(sorted_keys), bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return np.flatnonzero(starts)


def _edges(a: np.ndarray, b: np.ndarray) -> pa.Table:
    return pa.table({"a": a, "b": b}, schema=EDGE_SCHEMA)


def _both_directions(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    a, b = table.column("a").to_numpy(), table.column("b").to_numpy()
    keep = a != b
    return np.concatenate([a[keep], b[keep]]), np.concatenate([b[keep], a[keep]])


def large_star(table: pa.Table) -> tuple[pa.Table, pa.Table, int, int]:
    """Edges (a, b) keyed by a, both directions present. Each node u links its larger neighbours to
    m(u), the smallest of u and its neighbours. Returns (edges, centers, unstable node count,
    distinct undirected edges seen: each is counted at its smaller end)."""
    src, dst = unique_pairs(table.column("a").to_numpy(), table.column("b").to_numpy())
    if len(src) == 0:
        return EDGE_SCHEMA.empty_table(), MEMBER_SCHEMA.empty_table(), 0, 0
    starts = _group_starts(src)
    sizes = np.diff(np.append(starts, len(src)))
    node = src[starts]
    smallest = np.minimum(node, np.minimum.reduceat(dst, starts))
    n_smaller = np.add.reduceat((dst < src).astype(np.int64), starts)
    n_larger = sizes - n_smaller
    unstable = (n_smaller >= 2) | ((n_smaller >= 1) & (n_larger >= 1))
    larger = dst > src
    edges = _edges(dst[larger], np.repeat(smallest, sizes)[larger])
    center = node[(n_smaller == 0) & (n_larger > 0)]
    centers = pa.table({"node": center, "component": center}, schema=MEMBER_SCHEMA)
    return edges, centers, int(unstable.sum()), int(larger.sum())


def small_star(table: pa.Table) -> pa.Table:
    """Edges (hi, lo) keyed by hi, lo < hi. Each node u links itself and its smaller neighbours to
    the smallest of them."""
    hi, lo = unique_pairs(table.column("a").to_numpy(), table.column("b").to_numpy())
    if len(hi) == 0:
        return EDGE_SCHEMA.empty_table()
    starts = _group_starts(hi)
    sizes = np.diff(np.append(starts, len(hi)))
    smallest = np.minimum.reduceat(lo, starts)
    row_smallest = np.repeat(smallest, sizes)
    relinked = lo != row_smallest
    return _edges(np.concatenate([hi[starts], lo[relinked]]), np.concatenate([smallest, row_smallest[relinked]]))


@ray.remote
def _directed(table: pa.Table) -> pa.Table:
    return _edges(*_both_directions(table))


@ray.remote
def _oriented(table: pa.Table) -> pa.Table:
    a, b = table.column("a").to_numpy(), table.column("b").to_numpy()
    keep = a != b
    return _edges(np.maximum(a[keep], b[keep]), np.minimum(a[keep], b[keep]))


@ray.remote
def _members(edges: pa.Table, centers: pa.Table) -> pa.Table:
    leaves = pa.table({"node": edges.column("a"), "component": edges.column("b")}, schema=MEMBER_SCHEMA)
    return pa.concat_tables([leaves, centers])


def connected_components(edges: Refs, num_partitions: int) -> tuple[Refs, dict[str, int]]:
    """Components of the undirected graph given by int64 columns a, b (self loops and repeated
    edges ignored).

    Returns refs of tables (node, component), one row for every node that has an edge, component
    being the smallest node id of its component; and {"edges": distinct input edges, "rounds": n}.
    """
    current, input_edges = edges, None
    for round_number in range(1, MAX_ROUNDS + 1):
        directed = [_directed.remote(ref) for ref in current]
        stars = shuffle([(directed, "a", EDGE_SCHEMA)], num_partitions, large_star, num_returns=4)
        unstable = sum(ray.get([unstable_ref for _, _, unstable_ref, _ in stars]))
        if input_edges is None:
            input_edges = sum(ray.get([seen_ref for _, _, _, seen_ref in stars]))
        if unstable == 0:
            # The input was a star forest; large-star returned it unchanged, with its centers.
            members = [_members.remote(edge_ref, center_ref) for edge_ref, center_ref, _, _ in stars]
            return members, {"edges": input_edges, "rounds": round_number}
        oriented = [_oriented.remote(edge_ref) for edge_ref, _, _, _ in stars]
        current = shuffle([(oriented, "a", EDGE_SCHEMA)], num_partitions, small_star)
    raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")

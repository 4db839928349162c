"""The keep-policy greedy over verified pairs and the per-bucket verification schedule, on small graphs."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from curate.dedup.buckets import ROW_SCHEMA, head_pairs, with_states
from curate.dedup.components import ARC_SCHEMA, KEPT, NODE_SCHEMA, REMOVED, UNDECIDED, greedy_local, greedy_states


def arcs(*pairs: tuple[int, int]) -> pa.Table:
    return pa.table({"a": [a for a, _ in pairs], "b": [b for _, b in pairs]}, schema=ARC_SCHEMA)


def blocked(*nodes: int) -> pa.Table:
    return pa.table({"node": list(nodes)}, schema=NODE_SCHEMA)


def states_of(table: pa.Table) -> dict[int, int]:
    return dict(zip(table.column("node").to_pylist(), table.column("state").to_pylist()))


def test_chain_keeps_both_ends():
    states, levels = greedy_local(arcs((1, 2), (2, 3)), blocked())
    assert states_of(states) == {1: KEPT, 2: REMOVED, 3: KEPT}
    assert levels == 3


def test_star_keeps_its_center_only():
    states, levels = greedy_local(arcs(*[(0, leaf) for leaf in range(1, 30)]), blocked())
    assert states_of(states) == {0: KEPT} | {leaf: REMOVED for leaf in range(1, 30)}
    assert levels == 2


def test_a_blocked_node_is_never_kept_but_can_be_removed():
    states, _ = greedy_local(arcs((1, 2), (2, 3), (4, 5)), blocked(1, 5, 6))
    assert states_of(states) == {1: UNDECIDED, 2: UNDECIDED, 3: UNDECIDED, 4: KEPT, 5: REMOVED, 6: UNDECIDED}


def bucket_rows(bucket: int, ids: list[str], states: dict[int, int] | None = None) -> pa.Table:
    rows = pa.table(
        {"bucket": [bucket] * len(ids), "node": list(range(len(ids))), "primary": [0] * len(ids), "id": ids},
        schema=ROW_SCHEMA,
    )
    if states is None:
        return with_states(rows, None)
    table = pa.table({"node": list(states), "state": pa.array(list(states.values()), pa.int8())})
    return with_states(rows, table)


def test_members_are_verified_against_the_heads_before_them():
    rows = bucket_rows(7, ["e", "d", "c", "b", "a"])  # policy order a, b, c, d, e: nodes 4, 3, 2, 1, 0
    kept_rows, candidates, waiting, capped = head_pairs(rows, heads=2, at_cap=False, slice_size=1000)
    pairs = sorted(zip(candidates.column("a").to_pylist(), candidates.column("b").to_pylist()))
    assert pairs == sorted([(4, 3), (4, 2), (3, 2), (4, 1), (4, 0)])  # d and e wait: the first member only
    assert waiting.column("node").to_pylist() == [0, 1] and capped == 0
    assert kept_rows.num_rows == 5


def test_removed_members_drop_out_and_decided_ones_ask_nothing():
    rows = bucket_rows(7, ["e", "d", "c", "b", "a"], {0: UNDECIDED, 1: UNDECIDED, 3: REMOVED})  # 2 and 4: kept
    kept_rows, candidates, waiting, _ = head_pairs(rows, heads=2, at_cap=False, slice_size=1000)
    assert sorted(kept_rows.column("node").to_pylist()) == [0, 1, 2, 4]
    pairs = sorted(zip(candidates.column("a").to_pylist(), candidates.column("b").to_pylist()))
    assert pairs == [(2, 1), (4, 0), (4, 1)]
    assert waiting.column("node").to_pylist() == [0]


def test_at_the_cap_nothing_waits_and_the_predecessors_skipped_are_counted():
    rows = bucket_rows(7, ["e", "d", "c", "b", "a"])
    _, candidates, waiting, capped = head_pairs(rows, heads=2, at_cap=True, slice_size=1000)
    assert candidates.num_rows == 7 and waiting.num_rows == 0 and capped == (3 - 2) + (4 - 2)


def test_slices_split_a_bucket_into_verification_groups():
    rows = bucket_rows(7, [f"d{i:02d}" for i in range(10)])
    _, candidates, _, _ = head_pairs(rows, heads=1, at_cap=False, slice_size=3)
    assert len(set(candidates.column("group").to_pylist())) == 3  # members at positions 1-3, 4-6, 7-9


def test_rounds_over_partitions_give_the_states_of_one_task(ray_local):
    import ray

    rng = np.random.default_rng(2)
    a = rng.integers(0, 300, 900)
    b = a + rng.integers(1, 40, 900)  # arcs go from the preferred node (smaller) to the other
    graph = [ray.put(arcs(*zip(a[i::3].tolist(), b[i::3].tolist()))) for i in range(3)]
    waiting = [ray.put(blocked(*rng.integers(0, 340, 5).tolist()))]
    local, local_levels = greedy_states(graph, waiting, 4, rows=905, local_limit=10_000)
    spread, spread_levels = greedy_states(graph, waiting, 4, rows=905, local_limit=0)
    assert [ray.get(r) for r in local] == [ray.get(r) for r in spread]
    assert local_levels == spread_levels > 3
    assert {s for r in local for s in ray.get(r).column("state").to_pylist()} == {KEPT, REMOVED, UNDECIDED}

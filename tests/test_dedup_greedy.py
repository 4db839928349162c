"""The keep-policy greedy over verified pairs and the per-bucket verification schedule on small
graphs; and the verification rounds as `curate.dedup.near` drives them (without Ray) against the
greedy by brute force, on a few hundred random bucket graphs whose buckets outgrow the cap and on
one bucket of 1,100 documents."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

from curate.dedup.buckets import ROW_SCHEMA, head_pairs, with_states
from curate.dedup.components import (
    ARC_SCHEMA,
    KEPT,
    NODE_SCHEMA,
    REMOVED,
    UNDECIDED,
    greedy_local,
    greedy_states,
)
from curate.dedup.near import NearDedupConfig
from curate.dedup.verify import jaccard_pairs, shingle_sets, verify_pairs


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
    kept_rows, candidates, waiting = head_pairs(rows, heads=2, at_cap=False, slice_size=1000)
    pairs = sorted(zip(candidates.column("a").to_pylist(), candidates.column("b").to_pylist()))
    assert pairs == sorted([(4, 3), (4, 2), (3, 2), (4, 1), (4, 0)])  # d and e wait: the first member only
    assert waiting.column("node").to_pylist() == [0, 1]
    assert kept_rows.num_rows == 5


def test_removed_members_drop_out_and_decided_ones_ask_nothing():
    rows = bucket_rows(7, ["e", "d", "c", "b", "a"], {0: UNDECIDED, 1: UNDECIDED, 3: REMOVED})  # 2 and 4: kept
    kept_rows, candidates, waiting = head_pairs(rows, heads=2, at_cap=False, slice_size=1000)
    assert sorted(kept_rows.column("node").to_pylist()) == [0, 1, 2, 4]
    pairs = sorted(zip(candidates.column("a").to_pylist(), candidates.column("b").to_pylist()))
    assert pairs == [(2, 1), (4, 0), (4, 1)]
    assert waiting.column("node").to_pylist() == [0]


def test_at_the_cap_members_further_down_meet_every_head_and_wait_while_the_heads_retire():
    rows = bucket_rows(7, ["e", "d", "c", "b", "a"])  # policy order: nodes 4, 3, 2, 1, 0
    staying, candidates, waiting = head_pairs(rows, heads=2, at_cap=True, slice_size=1000)
    pairs = sorted(zip(candidates.column("a").to_pylist(), candidates.column("b").to_pylist()))
    assert pairs == sorted([(4, 3), (4, 2), (3, 2), (4, 1), (3, 1), (4, 0), (3, 0)])
    assert waiting.column("node").to_pylist() == [0, 1]  # not compared with c yet
    assert sorted(staying.column("node").to_pylist()) == [0, 1, 2]  # a and b met everyone after them
    _, candidates, waiting = head_pairs(with_states(staying, None), heads=2, at_cap=True, slice_size=1000)
    assert sorted(zip(candidates.column("a").to_pylist(), candidates.column("b").to_pylist())) == [(1, 0), (2, 0), (2, 1)]
    assert waiting.num_rows == 0


def test_slices_split_a_bucket_into_verification_groups():
    rows = bucket_rows(7, [f"d{i:02d}" for i in range(10)])
    _, candidates, _ = head_pairs(rows, heads=1, at_cap=False, slice_size=3)
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


Similar = Callable[[np.ndarray, np.ndarray], np.ndarray]


def rounds_to_the_end(rows: pa.Table, similar: Similar, config: NearDedupConfig) -> tuple[set[int], int, int, int]:
    """Verification rounds as `curate.dedup.near` runs them, without Ray: `similar(a, b)` verifies
    the pairs not verified before, sorted by (a, b). Returns the removed nodes, the rounds, the pairs verified and the rounds at the cap in
    which a member waited."""
    states, checked, edges, rounds, waited_at_cap = None, set(), [], 0, 0
    while True:
        rounds += 1
        heads = config.heads_in_round(rounds)
        at_cap = heads == config.max_heads
        rows, candidates, waiting = head_pairs(with_states(rows, states), heads, at_cap, config.max_cluster_slice)
        fresh = sorted(set(zip(candidates.column("a").to_pylist(), candidates.column("b").to_pylist())) - checked)
        if fresh:
            a, b = np.array(fresh).T
            edges += [pair for pair, ok in zip(fresh, similar(a, b)) if ok]
        checked.update(fresh)
        waited_at_cap += at_cap and waiting.num_rows > 0
        states, _ = greedy_local(arcs(*edges), waiting)
        found = states_of(states)
        if UNDECIDED not in found.values():
            return {node for node, state in found.items() if state == REMOVED}, rounds, len(checked), waited_at_cap


def brute_force_greedy(rows: pa.Table, similar: set[tuple[int, int]]) -> set[int]:
    """Removed nodes: visiting nodes in policy order, one is removed when a kept node before it
    shares a bucket with it and is similar to it (similar: (earlier, later) pairs)."""
    buckets: dict[int, set[int]] = {}
    for bucket, node in zip(rows.column("bucket").to_pylist(), rows.column("node").to_pylist()):
        buckets.setdefault(node, set()).add(bucket)
    keys = dict(zip(rows.column("node").to_pylist(), zip(rows.column("primary").to_pylist(), rows.column("id").to_pylist())))
    kept: list[int] = []
    removed = set()
    for node in sorted(keys, key=keys.get):
        if any((k, node) in similar and buckets[k] & buckets[node] for k in kept):
            removed.add(node)
        else:
            kept.append(node)
    return removed


def random_bucket_graph(rng: np.random.Generator) -> tuple[pa.Table, set[tuple[int, int]]]:
    """Up to 40 documents in 1-4 overlapping buckets of 2 or more, policy keys with ties (broken
    by id), and random similar pairs (earlier, later) at a random density."""
    n = int(rng.integers(2, 41))
    primary, ids = rng.integers(0, 3, n), [f"d{i:02d}" for i in rng.permutation(n)]
    key = lambda i: (primary[i], ids[i])  # noqa: E731
    bucket, node = [], []
    for b in range(int(rng.integers(1, 5))):
        members = rng.choice(n, size=int(rng.integers(2, n + 1)), replace=False).tolist()
        bucket += [b] * len(members)
        node += members
    rows = pa.table(
        {"bucket": bucket, "node": node, "primary": primary[node], "id": [ids[i] for i in node]}, schema=ROW_SCHEMA
    )
    density = rng.choice([0.05, 0.2, 0.5])
    similar = {(i, j) if key(i) < key(j) else (j, i) for i in range(n) for j in range(i + 1, n) if rng.random() < density}
    return rows, similar


def test_random_bucket_graphs_past_the_cap_give_the_brute_force_greedy():
    """Issue 27's check: with max_heads 4 or 8, members wait at the cap in most graphs, and every
    result is the greedy over all pairs sharing a bucket."""
    rng = np.random.default_rng(27)
    waited = 0
    for _ in range(300):
        rows, similar = random_bucket_graph(rng)
        config = NearDedupConfig(heads=int(rng.choice([1, 2])), max_heads=int(rng.choice([4, 8])))
        oracle = lambda a, b: np.array([(x, y) in similar for x, y in zip(a, b)], bool)  # noqa: E731
        removed, _, _, waited_at_cap = rounds_to_the_end(rows, oracle, config)
        assert removed == brute_force_greedy(rows, similar)
        waited += waited_at_cap > 0
    assert waited >= 150  # 178 of the 300


def template_copies() -> dict[str, str]:
    """1,100 copies of one 204-word text, each with a tail of distinct words: two copies with tails
    of t and u words have Jaccard 200 / (200 + t + u), at or above 0.8 when t + u <= 50. The first
    1,050 (tails of 31-70 words) are pairwise below 0.8; the last 50 (20-24 words) are similar to
    each other and to none of the first."""
    rng = np.random.default_rng(3)
    template = " ".join(f"w{i}" for i in range(204))
    tails = np.concatenate([rng.integers(31, 71, 1050), rng.integers(20, 25, 50)])
    return {f"copy-{i:04d}": " ".join([template, *(f"t{i}x{j}" for j in range(tail))]) for i, tail in enumerate(tails)}


def test_one_bucket_of_1100_copies_gives_the_brute_force_greedy():
    """Past the default cap of 1,024 heads: the last 50 copies lie beyond it, and only one of them
    may stay."""
    docs = template_copies()
    ids = sorted(docs)
    rows = pa.table({"bucket": [0] * len(ids), "node": range(len(ids)), "primary": [0] * len(ids), "id": ids}, schema=ROW_SCHEMA)
    texts = pa.table({"node": range(len(ids)), "id": ids, "text": [docs[i] for i in ids]})
    config = NearDedupConfig(threshold=0.8)
    assert config.heads_in_round(3) == config.max_heads == 1024

    def verified(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # pairs come sorted, as verify_pairs answers
        checked = verify_pairs(texts, pa.table({"a": a, "b": b}), config.threshold, config.ngram_size)
        return checked.column("similar").to_numpy(zero_copy_only=False)

    removed, rounds, pairs, waited_at_cap = rounds_to_the_end(rows, verified, config)
    a, b = np.triu_indices(len(ids), 1)
    jaccard = jaccard_pairs(shingle_sets([docs[i] for i in ids], config.ngram_size), a, b)
    similar = set(zip(a[jaccard >= config.threshold].tolist(), b[jaccard >= config.threshold].tolist()))
    assert similar == {(i, j) for i in range(1050, 1100) for j in range(i + 1, 1100)}
    assert removed == brute_force_greedy(rows, similar) == set(range(1051, 1100))
    assert rounds == 4 and waited_at_cap == 1  # heads 16, 128, 1,024, then the 76 after the retired heads
    assert pairs == len(a)  # nothing is removed before round 4: every pair is verified once

"""Near-duplicate removal on Ray: MinHash -> LSH buckets -> verified pairs -> keep-policy greedy.

The rule (DESIGN.md): a document is removed only when a document that stays has an exact Jaccard
similarity at or above the threshold with it, and of every candidate pair (two documents sharing
an LSH bucket) at or above the threshold at most one document stays. The result is the greedy in
keep-policy order over those pairs, the lexicographically-first maximal independent set of the
graph of verified candidate pairs: visiting documents in policy order, a document is removed
exactly when a kept document before it in one of its buckets is similar to it. So a chain A~B~C
(A and C not similar) keeps A and C, a star of near-copies keeps its first document, and two
families joined by one weak link keep one document each.

Stages (plain Ray tasks over hash partitions, `curate.dedup.components.shuffle`; none needs the corpus or
the graph on one node, and a task holds about 1/num_partitions of a stage's rows):

1. `map_batches`: MinHash signatures and band keys, one row per (document, band).
2. shuffle on the band key: the buckets with at least two documents.
3. shuffle on the document: bucket rows get the keep policy's sort key; the texts of bucket
   members are set aside, partitioned by document.
4. verification rounds until no document is undecided, each one:
   a. shuffle on the bucket: an undecided member among the bucket's first `heads` + 1 remaining
      members is paired with every one before it; one further down only with the first (with all
      `heads` at the cap), and it is blocked (not kept this round) (`curate.dedup.buckets`). A
      bucket of k documents costs at most heads * (heads + 1) / 2 + k Jaccard computations per
      round below the cap, heads * k at it, not k^2 / 2;
   b. shuffle on the first document of each pair: pairs found in several buckets (up to `bands`)
      and pairs verified in an earlier round are dropped;
   c. shuffle on the document, then on the verification group (a slice of at most
      `max_cluster_slice` members of one bucket, and its heads): exact Jaccard (`curate.dedup.verify`);
   d. the greedy over every pair verified so far at or above the threshold, blocked members never
      kept (`curate.dedup.components`); a document kept or removed stays so in later rounds (new pairs
      only ever lead to undecided documents), so the rounds converge to the greedy over all
      candidate pairs, whatever the schedule of heads;
   e. shuffle on the document: states joined to the bucket rows for the next round.
   Heads start at `heads` and grow HEAD_GROWTH-fold per round up to `max_heads`; from then on they
   slide: once every member after them was verified against them they leave the bucket, and the
   next `max_heads` members are the heads of the next round. No member is resolved before it was
   verified against every predecessor in its bucket that was not removed, so the rule holds on
   every candidate pair, and a bucket of k > max_heads documents takes about k / max_heads rounds
   at the cap.
5. each removed document is named with the kept document of highest Jaccard among the verified
   pairs that removed it (ties: smaller id).

Node ids are `input_pos` (unique per document). Every stage's output depends only on row
contents (sorted inside partitions, ties broken by id), the greedy's result is unique and the
round schedule is fixed by the configuration, so the output is identical for any number of CPUs,
nodes or block layout, and after a restart. The driver holds refs and counters, a fixed number
per round.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from curate.curation.errors import UserError
from curate.dedup.buckets import (
    CANDIDATE_SCHEMA,
    MEMBER_SCHEMA,
    ROW_SCHEMA,
    STATEFUL_SCHEMA,
    TEXT_SCHEMA,
    bucket_members,
    head_pairs,
    member_rows,
    with_states,
)
from curate.dedup.components import (
    ARC_SCHEMA,
    KEPT,
    STATE_SCHEMA,
    UNDECIDED,
    greedy_states,
    shuffle,
)
from curate.dedup.lsh import LshLayout, band_keys, resolve_layout
from curate.dedup.minhash import MinHasher, shingle_chunks
from curate.dedup.verify import CHECKED_SCHEMA, PAIR_SCHEMA, verify_pairs

KEEP_POLICIES = ("min-id", "longest", "first")
HEAD_GROWTH = 8
BAND_SCHEMA = pa.schema([("bucket", pa.int64()), ("node", pa.int64())])
DOC_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("input_pos", pa.int64())])
REQUEST_SCHEMA = pa.schema([("node", pa.int64()), ("group", pa.int64())])
GROUP_TEXT_SCHEMA = REQUEST_SCHEMA.append(pa.field("id", pa.string())).append(pa.field("text", pa.string()))
ATTRIBUTED_SCHEMA = PAIR_SCHEMA.append(pa.field("kept_node", pa.int64()))


@dataclass(frozen=True)
class NearDedupConfig:
    """Near-duplicate settings.

    num_partitions: hash partitions of every shuffle; a worker holds about 1/num_partitions of a
        stage's rows (band keys, bucket rows, pairs, texts), so raise it with the corpus size.
    heads: leading members of a bucket that the members after them are all verified against in
        the first round (a bucket of at most heads + 1 documents is settled in one round); grows
        HEAD_GROWTH-fold per round up to max_heads, from where the heads slide down the bucket,
        max_heads members per round (a larger bucket takes more rounds, never skips a pair).
    max_cluster_slice: members of one bucket verified together in one task (the heads' texts are
        repeated in each slice); with max_heads, bounds a worker's memory for buckets of any size.
    local_graph_limit: verified pairs plus blocked documents up to which the greedy runs in one
        task; larger graphs run in synchronous rounds over partitions (same result).
    """

    threshold: float = 0.8
    num_perm: int = 128
    ngram_size: int = 5
    bands: int | None = None
    rows: int | None = None
    keep: str = "min-id"
    seed: int = 1
    num_partitions: int = 8
    heads: int = 16
    max_heads: int = 1024
    max_cluster_slice: int = 1000
    local_graph_limit: int = 2_000_000

    def __post_init__(self) -> None:
        if self.keep not in KEEP_POLICIES:
            raise UserError(f"--keep must be one of {', '.join(KEEP_POLICIES)}, got {self.keep!r}")
        if self.num_perm < 1 or self.ngram_size < 1:
            raise UserError("--num-perm and --ngram-size must be at least 1")
        if min(self.num_partitions, self.heads, self.max_cluster_slice) < 1 or self.max_heads < self.heads:
            raise UserError("num_partitions, heads and max_cluster_slice must be at least 1, max_heads at least heads")
        if self.local_graph_limit < 0:
            raise UserError("local_graph_limit must not be negative")
        self.layout()

    def layout(self) -> LshLayout:
        try:
            return resolve_layout(self.threshold, self.num_perm, self.bands, self.rows)
        except ValueError as error:
            raise UserError(str(error)) from None

    def heads_in_round(self, round_number: int) -> int:
        """Heads per bucket in verification round 1, 2, ...: growing HEAD_GROWTH-fold up to max_heads."""
        return min(self.heads * HEAD_GROWTH ** (round_number - 1), self.max_heads)


def _band_rows(batch: pa.Table, config: NearDedupConfig, layout: LshLayout) -> pa.Table:
    hasher = MinHasher(config.num_perm, config.ngram_size, config.seed)
    positions = batch.column("input_pos").to_numpy()
    keys, nodes = [np.zeros((0, layout.bands), np.uint64)], [np.zeros(0, np.int64)]
    for first, shingles in shingle_chunks(batch.column("text"), config.ngram_size):
        has_shingles = shingles.counts() > 0
        keys.append(band_keys(hasher.signatures_of(shingles)[has_shingles], layout))
        nodes.append(positions[first : first + len(has_shingles)][has_shingles])
    return pa.table(
        {"bucket": np.concatenate(keys).reshape(-1).view(np.int64), "node": np.repeat(np.concatenate(nodes), layout.bands)},
        schema=BAND_SCHEMA,
    )


def _new_pairs(candidates: pa.Table, checked: pa.Table) -> tuple[pa.Table, pa.Table, int]:
    """Distinct candidate pairs not verified before, each in its smallest group; and the
    (document, group) text requests they make."""
    candidates = candidates.take(pc.sort_indices(candidates, [("a", "ascending"), ("b", "ascending"), ("group", "ascending")]))
    a, b = candidates.column("a").to_numpy(), candidates.column("b").to_numpy()
    first = np.ones(len(a), bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    pairs = candidates.filter(first)
    pairs = pairs.join(checked, ["a", "b"], join_type="left anti")
    pairs = pairs.take(pc.sort_indices(pairs, [("a", "ascending"), ("b", "ascending")])).cast(CANDIDATE_SCHEMA)
    ends = pa.table(
        {
            "node": pa.concat_arrays([pairs.column("a").combine_chunks(), pairs.column("b").combine_chunks()]),
            "group": pa.concat_arrays([pairs.column("group").combine_chunks()] * 2),
        },
        schema=REQUEST_SCHEMA,
    )
    return pairs, ends.group_by(["node", "group"]).aggregate([]).cast(REQUEST_SCHEMA), pairs.num_rows


def _texts_for_groups(requests: pa.Table, texts: pa.Table) -> pa.Table:
    """The text of every requested (document, group); texts is the partition of the same documents."""
    joined = requests.join(texts, "node", join_type="inner")
    return joined.select(GROUP_TEXT_SCHEMA.names).cast(GROUP_TEXT_SCHEMA)


def _verify(texts: pa.Table, pairs: pa.Table, threshold: float, ngram_size: int) -> pa.Table:
    return verify_pairs(texts.select(["node", "id", "text"]), pairs.select(["a", "b"]), threshold, ngram_size)


def _from_kept(checked: pa.Table, states: pa.Table) -> pa.Table:
    """Verified similar pairs whose first document is kept (their second one is then removed)."""
    kept = states.filter(pc.equal(states.column("state"), KEPT))
    return checked.filter(pc.is_in(checked.column("a"), value_set=kept.column("node")))


def _best_kept(pairs: pa.Table) -> pa.Table:
    """For each removed document, the kept document of its verified pairs with the highest Jaccard
    (ties: smaller id)."""
    order = pc.sort_indices(pairs, [("b", "ascending"), ("jaccard", "descending"), ("a_id", "ascending")])
    pairs = pairs.take(order)
    b = pairs.column("b").to_numpy()
    first = np.ones(len(b), bool)
    first[1:] = b[1:] != b[:-1]
    best = pairs.filter(first)
    return pa.table(
        {
            "removed_id": best.column("b_id"),
            "kept_id": best.column("a_id"),
            "kind": pa.array(["near"] * best.num_rows, pa.string()),
            "jaccard": best.column("jaccard"),
            "kept_node": best.column("a"),
        },
        schema=ATTRIBUTED_SCHEMA,
    )


def _cluster_sizes(pairs: pa.Table) -> Counter:
    """{cluster size: count} of the clusters (a kept document and those removed for it) whose kept
    document falls in this partition."""
    _, removed = np.unique(pairs.column("kept_node").to_numpy(), return_counts=True)
    return Counter((removed + 1).tolist())


@ray.remote
def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A block with exactly these columns and types (Ray Data may hand over empty blocks without any)."""
    return table.select(schema.names).cast(schema) if table.num_rows else schema.empty_table()


@ray.remote
def _stateful(rows: pa.Table) -> pa.Table:
    return with_states(rows, None)


@ray.remote
def _similar(checked: pa.Table) -> pa.Table:
    return checked.filter(checked.column("similar")) if checked.num_rows else CHECKED_SCHEMA.empty_table()


@ray.remote
def _arcs(checked: pa.Table) -> pa.Table:
    return checked.select(ARC_SCHEMA.names).cast(ARC_SCHEMA)


@ray.remote
def _pairs_only(table: pa.Table) -> pa.Table:
    return table.select(PAIR_SCHEMA.names).cast(PAIR_SCHEMA)


@ray.remote
def _rows(table: pa.Table) -> int:
    return table.num_rows


@ray.remote
def _undecided(states: pa.Table) -> int:
    return int((states.column("state").to_numpy() == UNDECIDED).sum())


def _total(refs: list) -> int:
    return sum(ray.get([_rows.remote(ref) for ref in refs]))


@contextmanager
def _no_operator_reservation() -> Iterator[None]:
    """Ray Data without per-operator resource reservations while the block is open.

    The reservation holds back half of the CPUs for operators that may need them later; for the
    MinHash map over blocks already in memory (one operator, output smaller than input) it only
    means that on a 2-CPU machine one task runs at a time (measured: 1.5 s instead of 0.9 s).
    """
    context = ray.data.DataContext.get_current()
    reserved = context.op_resource_reservation_enabled
    context.op_resource_reservation_enabled = False
    try:
        yield
    finally:
        context.op_resource_reservation_enabled = reserved


@dataclass
class _Search:
    """What the verification rounds carry from one round to the next: refs and counters only.

    rows: bucket rows still in play; texts: bucket members' texts (by document); states: the
    greedy's last states (by document); checked: (a, b) of every pair verified so far; similar:
    the verified rows at or above the threshold, and arcs: their (a, b)."""

    rows: list
    texts: list
    states: list | None = None
    checked: list = field(default_factory=list)
    similar: list = field(default_factory=list)
    arcs: list = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)


def _stateful_rows(search: _Search, partitions: int) -> list:
    """Bucket rows with their document's state (all undecided before the first round)."""
    if search.states is None:
        return [_stateful.remote(ref) for ref in search.rows]
    return shuffle([(search.rows, "node", ROW_SCHEMA)], partitions, with_states, aligned=[(search.states, STATE_SCHEMA)])


def _verify_new(search: _Search, candidates: list, config: NearDedupConfig) -> None:
    """Stages 4b and 4c: verify the candidate pairs not verified before."""
    partitions = config.num_partitions
    fresh = shuffle(
        [(candidates, "a", CANDIDATE_SCHEMA), (search.checked, "a", ARC_SCHEMA)], partitions, _new_pairs, num_returns=3
    )
    if not sum(ray.get([f[2] for f in fresh])):
        return
    requests, pairs = [f[1] for f in fresh], [f[0] for f in fresh]
    texts = shuffle([(requests, "node", REQUEST_SCHEMA)], partitions, _texts_for_groups, aligned=[(search.texts, TEXT_SCHEMA)])
    checked = shuffle(
        [(texts, "group", GROUP_TEXT_SCHEMA), (pairs, "group", CANDIDATE_SCHEMA)],
        partitions,
        partial(_verify, threshold=config.threshold, ngram_size=config.ngram_size),
    )
    similar = [_similar.remote(ref) for ref in checked]
    search.checked += [_arcs.remote(ref) for ref in checked]
    search.similar += similar
    search.arcs += [_arcs.remote(ref) for ref in similar]


def _verify_round(search: _Search, config: NearDedupConfig, round_number: int) -> bool:
    """One verification round (stages 4a-4e); True when no document is left undecided."""
    partitions = config.num_partitions
    heads = config.heads_in_round(round_number)
    generated = shuffle(
        [(_stateful_rows(search, partitions), "bucket", STATEFUL_SCHEMA)],
        partitions,
        partial(head_pairs, heads=heads, at_cap=heads == config.max_heads, slice_size=config.max_cluster_slice),
        num_returns=3,
    )
    search.rows = [g[0] for g in generated]
    blocked = [g[2] for g in generated]
    _verify_new(search, [g[1] for g in generated], config)
    graph_rows = _total(search.arcs) + _total(blocked)
    search.states, levels = greedy_states(search.arcs, blocked, partitions, graph_rows, config.local_graph_limit)
    search.counts["rounds"] += 1
    search.counts["greedy_rounds"] += levels
    return sum(ray.get([_undecided.remote(ref) for ref in search.states])) == 0


def _attributed(search: _Search, partitions: int) -> list:
    """Refs of (removed_id, kept_id, kind, jaccard, kept_node), one row per removed document."""
    from_kept = shuffle([(search.similar, "a", CHECKED_SCHEMA)], partitions, _from_kept, aligned=[(search.states, STATE_SCHEMA)])
    return shuffle([(from_kept, "b", CHECKED_SCHEMA)], partitions, _best_kept)


def _stats(search: _Search, attributed: list, documents: int, config: NearDedupConfig) -> dict:
    sizes = shuffle([(attributed, "kept_node", ATTRIBUTED_SCHEMA)], config.num_partitions, _cluster_sizes)
    histogram = sum(ray.get(sizes), Counter())
    removed = _total(attributed)
    candidate_pairs, verified = _total(search.checked), _total(search.similar)
    layout = config.layout()
    return {
        "documents": documents,
        "near_duplicates": removed,
        "near_duplicate_rate": removed / documents if documents else 0.0,
        "candidate_pairs": candidate_pairs,
        "verified_edges": verified,
        "failed_verification": candidate_pairs - verified,
        "clusters": sum(histogram.values()),
        "largest_cluster": max(histogram, default=0),
        "cluster_size_histogram": {str(size): histogram[size] for size in sorted(histogram)},
        "lsh": {"bands": layout.bands, "rows": layout.rows, "threshold": config.threshold},
        "bucket_memberships": search.counts["bucket_memberships"],
        "largest_bucket": search.counts["largest_bucket"],
        "rounds": search.counts["rounds"],
        "greedy_rounds": search.counts["greedy_rounds"],
    }


def near_duplicates(ds: "ray.data.Dataset", config: NearDedupConfig) -> tuple["ray.data.Dataset", dict]:
    """Near-duplicate pairs of a Dataset with columns id (unique), text and input_pos (unique).

    Returns (pairs, stats): pairs has columns removed_id, kept_id, kind ("near"), jaccard (exact,
    >= threshold); stats is JSON-able (counts, LSH layout, rounds, cluster size histogram).
    """
    layout = config.layout()
    partitions = config.num_partitions
    doc_refs = [_conform.remote(ref, DOC_SCHEMA) for ref in ds.to_arrow_refs()]
    with _no_operator_reservation():
        docs = ray.data.from_arrow_refs(doc_refs)
        band_refs = docs.map_batches(
            _band_rows, fn_kwargs={"config": config, "layout": layout}, batch_format="pyarrow"
        ).to_arrow_refs()

    buckets = shuffle([(band_refs, "bucket", BAND_SCHEMA)], partitions, bucket_members, num_returns=2)
    members = [b[0] for b in buckets]
    search = _Search(rows=[], texts=[])
    search.counts["largest_bucket"] = max(ray.get([b[1] for b in buckets]), default=0)
    search.counts["bucket_memberships"] = _total(members)
    if search.counts["bucket_memberships"]:
        keyed = shuffle(
            [(members, "node", MEMBER_SCHEMA), (doc_refs, "input_pos", DOC_SCHEMA)],
            partitions,
            partial(member_rows, keep=config.keep),
            num_returns=2,
        )
        search.rows, search.texts = [k[0] for k in keyed], [k[1] for k in keyed]
        round_number = 1
        while not _verify_round(search, config, round_number):
            round_number += 1
        attributed = _attributed(search, partitions)
    else:
        attributed = []
    stats = _stats(search, attributed, docs.count(), config)
    pairs = ray.data.from_arrow_refs([_pairs_only.remote(ref) for ref in attributed] or [ray.put(PAIR_SCHEMA.empty_table())])
    return pairs, stats

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
the graph on one node, and a task holds about 1/num_partitions of a stage's rows; a task splits
its output for the next shuffle itself):

1. a task per block of documents (the largest blocks first, here and in stage 3): MinHash
   signatures and band keys, one row per (document, band), with where the document lives (its
   block and row).
2. shuffle on the band key: the buckets with at least two documents, their rows sent to the blocks
   of their documents.
3. a task per block: bucket rows get the keep policy's sort key; the shingle sets of the block's
   bucket members, all that verification reads of a document, are computed once and set aside,
   partitioned by document. Nothing of the other documents (usually most) leaves its block; the
   stats count the documents that do (`members_moved`).
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
      a shingle set goes to each verification task once, whatever the number of its groups there;
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
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from curate.curation.errors import UserError
from curate.dedup.buckets import (
    CANDIDATE_SCHEMA,
    LOCATED_SCHEMA,
    ROW_SCHEMA,
    STATEFUL_SCHEMA,
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
    as_table,
    greedy_states,
    partition_of,
    shuffle,
    split_table,
)
from curate.dedup.lsh import LshLayout, band_keys, resolve_layout
from curate.dedup.minhash import MinHasher, ShingleSets, shingle_chunks
from curate.dedup.verify import CHECKED_SCHEMA, PAIR_SCHEMA, jaccard_pairs, shingle_sets

KEEP_POLICIES = ("min-id", "longest", "first")
HEAD_GROWTH = 8
DOC_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("input_pos", pa.int64())])
REQUEST_SCHEMA = pa.schema([("node", pa.int64()), ("group", pa.int64())])
SET_SCHEMA = pa.schema([("node", pa.int64()), ("id", pa.string()), ("shingles", pa.large_list(pa.uint64()))])
GROUP_SET_SCHEMA = REQUEST_SCHEMA.append(pa.field("id", pa.string())).append(pa.field("shingles", pa.large_list(pa.uint64())))
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


def _band_rows(docs: pa.Table, block: int, config: NearDedupConfig, layout: LshLayout) -> pa.Table:
    """(bucket, node, block, row) for every band of every document with shingles in this block."""
    hasher = MinHasher(config.num_perm, config.ngram_size, config.seed)
    keys, rows = [np.zeros((0, layout.bands), np.uint64)], [np.zeros(0, np.int64)]
    for first, shingles in shingle_chunks(docs.column("text"), config.ngram_size):
        has_shingles = shingles.counts() > 0
        keys.append(band_keys(hasher.signatures_of(shingles)[has_shingles], layout))
        rows.append(first + np.flatnonzero(has_shingles))
    row = np.repeat(np.concatenate(rows), layout.bands)
    return pa.table(
        {
            "bucket": np.concatenate(keys).reshape(-1).view(np.int64),
            "node": docs.column("input_pos").to_numpy()[row],
            "block": np.full(len(row), block, np.int32),
            "row": row.astype(np.int32),
        },
        schema=LOCATED_SCHEMA,
    )


@ray.remote
def _text_bytes(block: pa.Table) -> int:
    return pc.sum(pc.binary_length(block.column("text"))).as_py() or 0 if block.num_rows else 0


def _largest_first(refs: list) -> list[int]:
    """Block indexes by decreasing text size: the per-block tasks start with the largest, so that a
    heavy block (sibling files sorted together) does not run alone while the other CPUs idle."""
    sizes = ray.get([_text_bytes.remote(ref) for ref in refs])
    return sorted(range(len(refs)), key=lambda index: -sizes[index])


@ray.remote(num_returns=3)
def _block_bands(block: pa.Table, index: int, config: NearDedupConfig, layout: LshLayout) -> tuple[pa.Table, pa.Table, int]:
    """A block of documents with exactly DOC_SCHEMA's columns (Ray Data may hand over empty blocks
    without any), its band rows, and its document count."""
    docs = block.select(DOC_SCHEMA.names).cast(DOC_SCHEMA) if block.num_rows else DOC_SCHEMA.empty_table()
    return docs, _band_rows(docs, index, config, layout), docs.num_rows


def _members_by_block(bands: pa.Table, num_blocks: int) -> tuple:
    """The bucket members of a partition of band keys, in one part per block of documents (the
    block their document lives in); then the largest bucket's size and the member count."""
    members, largest = bucket_members(bands)
    block = members.column("block").to_numpy()
    order = np.argsort(block, kind="stable")
    bounds = np.searchsorted(block[order], np.arange(num_blocks + 1))
    members = members.take(order)
    return (*(members.slice(lo, hi - lo) for lo, hi in zip(bounds[:-1], bounds[1:])), largest, members.num_rows)


def _shingled(texts: pa.Table, ngram_size: int) -> pa.Table:
    """(node, id, shingles): each document's sorted distinct shingle hashes, all that verification
    reads of it, computed once for every round."""
    sets = shingle_sets(texts.column("text"), ngram_size)
    shingles = pa.LargeListArray.from_arrays(pa.array(sets.offsets, pa.int64()), pa.array(sets.hashes, pa.uint64()))
    return pa.table({"node": texts.column("node"), "id": texts.column("id"), "shingles": shingles}, schema=SET_SCHEMA)


@ray.remote
def _block_members(docs: pa.Table, keep: str, ngram_size: int, num_partitions: int, *parts: pa.Table) -> tuple[pa.Table, ...]:
    """The bucket rows of the members living in this block with their policy keys, all undecided,
    split by bucket; and the members' shingle sets split by document (nothing else of the block
    leaves it)."""
    rows, texts = member_rows(as_table(parts, LOCATED_SCHEMA), docs, keep)
    rows = split_table(with_states(rows, None), "bucket", num_partitions)
    return (*rows, *split_table(_shingled(texts, ngram_size), "node", num_partitions))


def _by_node(sets: pa.Table) -> pa.Table:
    return sets.sort_by("node")


def _new_pairs(candidates: pa.Table, checked: pa.Table) -> tuple[pa.Table, pa.Table, int, pa.Table]:
    """Distinct candidate pairs not verified before, each in its smallest group; the (document,
    group) requests they make, their count, and every pair verified after them (checked and
    these, partitioned by a like both)."""
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
    requests = ends.group_by(["node", "group"]).aggregate([]).cast(REQUEST_SCHEMA)
    return pairs, requests, pairs.num_rows, pa.concat_tables([checked, pairs.select(ARC_SCHEMA.names)])


def _sets_for_groups(requests: pa.Table, sets: pa.Table, num_partitions: int) -> pa.Table:
    """The shingle set of every requested document, once per verification task that asks for it
    (under its smallest group there; the task verifies a document's pairs of every group with one
    copy); sets is the partition of the same documents."""
    group = requests.column("group").to_numpy()
    order = np.lexsort((group, partition_of(group, num_partitions), requests.column("node").to_numpy()))
    node, task = requests.column("node").to_numpy()[order], partition_of(group[order], num_partitions)
    first = np.ones(len(order), bool)
    first[1:] = (node[1:] != node[:-1]) | (task[1:] != task[:-1])
    requests = requests.take(order[first])
    found = pc.index_in(requests.column("node"), value_set=sets.column("node"))
    return pa.table(
        {
            "node": requests.column("node"),
            "group": requests.column("group"),
            "id": sets.column("id").take(found),
            "shingles": sets.column("shingles").take(found),
        },
        schema=GROUP_SET_SCHEMA,
    )


def _rows_of(nodes: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    rows = np.searchsorted(nodes, wanted)
    if len(wanted) and (rows.max() >= len(nodes) or not np.array_equal(nodes[rows], wanted)):
        raise ValueError("a pair to verify names a document without its shingle set")
    return rows


def _verify(sets: pa.Table, pairs: pa.Table, threshold: float) -> tuple[pa.Table, pa.Table, int]:
    """Exact Jaccard of every pair (a, b) from its documents' shingle sets (one row per document:
    a task gets each set once). Returns the pairs at or above the threshold (CHECKED_SCHEMA,
    sorted by a and b), their (a, b), and their count."""
    sets = sets.sort_by("node")
    nodes = sets.column("node").to_numpy()
    pairs = pairs.take(pc.sort_indices(pairs, [("a", "ascending"), ("b", "ascending")]))
    a, b = _rows_of(nodes, pairs.column("a").to_numpy()), _rows_of(nodes, pairs.column("b").to_numpy())
    shingles = sets.column("shingles").combine_chunks()
    similarity = jaccard_pairs(ShingleSets(shingles.values.to_numpy(), shingles.offsets.to_numpy()), a, b)
    similar = similarity >= threshold
    ids = sets.column("id")
    rows = pa.table(
        {
            "a": pairs.column("a").filter(similar),
            "b": pairs.column("b").filter(similar),
            "jaccard": similarity[similar],
            "similar": np.ones(similar.sum(), bool),
            "a_id": ids.take(a[similar]),
            "b_id": ids.take(b[similar]),
        },
        schema=CHECKED_SCHEMA,
    )
    return rows, rows.select(ARC_SCHEMA.names).cast(ARC_SCHEMA), rows.num_rows


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


@dataclass
class _Search:
    """What the verification rounds carry from one round to the next: refs and counters only.

    rows: bucket rows still in play, split by bucket with their states before the first round and
    by document after each (for its states); sets: bucket members' shingle sets (by document); states: the
    greedy's last states (by document); checked: (a, b) of every pair verified so far (by a);
    similar: the verified rows at or above the threshold, and arcs: their (a, b); counts: among
    others, candidate_pairs (verified so far) and verified_edges (similar so far)."""

    rows: list
    sets: list
    checked: list
    states: list | None = None
    similar: list = field(default_factory=list)
    arcs: list = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)


def _stateful_rows(search: _Search, partitions: int) -> list:
    """Bucket rows with their document's state, split by bucket (the first round's come so)."""
    if search.states is None:
        return search.rows
    stateful = shuffle(
        [],
        partitions,
        with_states,
        split=[(search.rows, ROW_SCHEMA)],
        aligned=[(search.states, STATE_SCHEMA)],
        split_by=["bucket"],
    )
    return [s[0] for s in stateful]


def _verify_new(search: _Search, candidates: list, config: NearDedupConfig) -> None:
    """Stages 4b and 4c: verify the candidate pairs not verified before."""
    partitions = config.num_partitions
    fresh = shuffle(
        [],
        partitions,
        _new_pairs,
        split=[(candidates, CANDIDATE_SCHEMA)],
        aligned=[(search.checked, ARC_SCHEMA)],
        split_by=["group", "node", None, None],
    )
    search.checked = [f[3] for f in fresh]
    new = sum(ray.get([f[2] for f in fresh]))
    if not new:
        return
    search.counts["candidate_pairs"] += new
    requests, pairs = [f[1] for f in fresh], [f[0] for f in fresh]
    sets = shuffle(
        [],
        partitions,
        partial(_sets_for_groups, num_partitions=partitions),
        split=[(requests, REQUEST_SCHEMA)],
        aligned=[(search.sets, SET_SCHEMA)],
        split_by=["group"],
    )
    verified = shuffle(
        [],
        partitions,
        partial(_verify, threshold=config.threshold),
        split=[([s[0] for s in sets], GROUP_SET_SCHEMA), (pairs, CANDIDATE_SCHEMA)],
        num_returns=3,
    )
    search.similar += [v[0] for v in verified]
    search.arcs += [v[1] for v in verified]
    search.counts["verified_edges"] += sum(ray.get([v[2] for v in verified]))


def _verify_round(search: _Search, config: NearDedupConfig, round_number: int) -> bool:
    """One verification round (stages 4a-4e); True when no document is left undecided."""
    partitions = config.num_partitions
    heads = config.heads_in_round(round_number)
    generated = shuffle(
        [],
        partitions,
        partial(head_pairs, heads=heads, at_cap=heads == config.max_heads, slice_size=config.max_cluster_slice),
        split=[(_stateful_rows(search, partitions), STATEFUL_SCHEMA)],
        split_by=["node", "a", None],
    )
    search.rows = [g[0] for g in generated]
    blocked = [g[2] for g in generated]
    _verify_new(search, [g[1] for g in generated], config)
    graph_rows = search.counts["verified_edges"] + _total(blocked)
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
    candidate_pairs, verified = search.counts["candidate_pairs"], search.counts["verified_edges"]
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
        "members_moved": search.counts["members_moved"],
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
    refs = ds.to_arrow_refs()
    largest_first = _largest_first(refs)
    blocks = [None] * len(refs)
    for index in largest_first:
        blocks[index] = _block_bands.remote(refs[index], index, config, layout)
    doc_refs = [b[0] for b in blocks]
    buckets = shuffle(
        [([b[1] for b in blocks], "bucket", LOCATED_SCHEMA)],
        partitions,
        partial(_members_by_block, num_blocks=len(doc_refs)),
        num_returns=len(doc_refs) + 2,
    )
    search = _Search(rows=[], sets=[], checked=[ray.put(ARC_SCHEMA.empty_table())] * partitions)
    search.counts["largest_bucket"] = max(ray.get([b[-2] for b in buckets]), default=0)
    search.counts["bucket_memberships"] = sum(ray.get([b[-1] for b in buckets]))
    if search.counts["bucket_memberships"]:
        located = [None] * len(doc_refs)
        for i in largest_first:
            located[i] = _block_members.options(num_returns=2 * partitions).remote(
                doc_refs[i], config.keep, config.ngram_size, partitions, *[b[i] for b in buckets]
            )
        search.rows = [m[:partitions] for m in located]
        search.sets = shuffle([], partitions, _by_node, split=[([m[partitions:] for m in located], SET_SCHEMA)])
        search.counts["members_moved"] = _total(search.sets)
        round_number = 1
        while not _verify_round(search, config, round_number):
            round_number += 1
        attributed = _attributed(search, partitions)
    else:
        attributed = []
    stats = _stats(search, attributed, sum(ray.get([b[2] for b in blocks])), config)
    pairs = ray.data.from_arrow_refs([_pairs_only.remote(ref) for ref in attributed] or [ray.put(PAIR_SCHEMA.empty_table())])
    return pairs, stats

"""Benchmark overlap: how much of a build overlaps, or leans toward, the benchmarks a team reports.

The matching rules are DESIGN.md's, implemented once in `curate.dedup.overlap`. The benchmarks are
read once, by a Ray task that builds their index; the index stays in Ray's object store and every
matching task reads it from there. Two stages use it:

- `Decontaminate` (with `--decontaminate`, after near dedup, before the seeded order) removes every
  document with evidence and keeps that evidence;
- `MeasureOverlap` (after the phases are written) matches every shard, one Ray task each, as the
  shards are: C's copies count as the rows they are, D's phase 1 as rewritten. Each task writes its
  evidence and returns a partial of fixed size (counters and per-item arrays, bounded by the
  benchmarks, not the corpus); partials merge in a tree of Ray tasks.

Evidence of both goes to `OUT/contamination/shard-NNNNN.arrow`, sorted by benchmark, document,
item and kind; the figures to the `contamination` section of stats.json and the manifest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from curate.curation.benchmarks import BenchmarkSpec, read_benchmark
from curate.curation.shards import read_shard
from curate.curation.storage import join, write_bytes_atomic
from curate.dedup.near import NearDedupConfig
from curate.dedup.overlap import (
    EVIDENCE_SCHEMA,
    BenchmarkIndex,
    build_index,
    match_documents,
)
from curate.jobs.datasets import exclude, has_files, read_parquet, write_parquet
from curate.jobs.reduce import tree_reduce
from curate.jobs.shard_writer import write_sorted

EVIDENCE_FOLDER = "contamination"
HOLDOUT = "holdout"
TOP_ITEMS = 10
# What is known of documents removed before they were tokenized and measured.
REMOVED_FIGURES = ("items", "items_ngram", "items_near", "documents")


@ray.remote
def _index(tables: list[tuple[str, pa.Table]], near: NearDedupConfig) -> BenchmarkIndex:
    """Near copies are verified with the build's own near-dedup settings."""
    return build_index(tables, near.threshold, near.num_perm, near.ngram_size, near.seed)


@dataclass(frozen=True)
class Benchmarks:
    """The benchmarks' index, held in Ray's object store, their item ids (for the figures), and what
    the build records of each: where it came from, its size and a fingerprint of its items."""

    index: "ray.ObjectRef"
    item_ids: dict
    described: dict

    def fingerprints(self) -> list[dict]:
        """For the resume check: a benchmark whose items changed since the build started is refused."""
        return [{"url": entry["url"], "token": f"sha256:{entry['sha256']}"} for entry in self.described.values()]


def _fingerprint(table: pa.Table) -> str:
    digest = hashlib.sha256()
    for item_id, text in zip(table["item_id"].to_pylist(), table["text"].to_pylist()):
        digest.update(f"{len(item_id)}:{item_id}{len(text)}:{text}".encode("utf-8"))
    return digest.hexdigest()


def read_benchmarks(specs: list[BenchmarkSpec]) -> list[tuple[BenchmarkSpec, pa.Table]]:
    """Each benchmark's items, read here (they are small; a memory:// or relative URL means what it
    means to the user); a benchmark that cannot be read fails with one line before any stage runs."""
    return [(spec, read_benchmark(spec)) for spec in specs]


def index_benchmarks(read: list[tuple[BenchmarkSpec, pa.Table]], near: NearDedupConfig) -> Benchmarks:
    """The benchmarks indexed in a Ray task, with near copies verified under `near`."""
    specs = [spec for spec, _ in read]
    tables = [(spec.name, table) for spec, table in read]
    described = {
        spec.name: {"url": spec.url, "fields": list(spec.fields) if spec.fields else None,
                    "items": table.num_rows, "sha256": _fingerprint(table)}
        for spec, (_, table) in zip(specs, tables)
    }
    item_ids = {name: table["item_id"].to_pylist() for name, table in tables}
    return Benchmarks(_index.remote(tables, near), item_ids, described)


def load_benchmarks(specs: list[BenchmarkSpec], near: NearDedupConfig) -> Benchmarks:
    return index_benchmarks(read_benchmarks(specs), near)


@dataclass
class OverlapPartial:
    """The figures of some rows against one benchmark: additive counters, and per item the rows with
    each kind of evidence and the first evidence's snippet (fixed size: the benchmark's items)."""

    ngram_rows: np.ndarray
    near_rows: np.ndarray
    snippets: dict = field(default_factory=dict)
    rows: int = 0
    documents: int = 0
    tokens: int = 0
    words: int = 0
    aligned_words: int = 0

    def merge(self, other: "OverlapPartial") -> "OverlapPartial":
        snippets = dict(self.snippets)
        for item, snippet in other.snippets.items():
            if item not in snippets or snippet < snippets[item]:
                snippets[item] = snippet
        return OverlapPartial(
            self.ngram_rows + other.ngram_rows, self.near_rows + other.near_rows, snippets,
            self.rows + other.rows, self.documents + other.documents, self.tokens + other.tokens,
            self.words + other.words, self.aligned_words + other.aligned_words,
        )


def _merge(parts: list[dict[str, OverlapPartial]]) -> dict[str, OverlapPartial]:
    merged: dict[str, OverlapPartial] = {}
    for part in parts:
        for name, partial in part.items():
            merged[name] = merged[name].merge(partial) if name in merged else partial
    return merged


def _item_rows(index: BenchmarkIndex, number: int, evidence: pa.Table) -> tuple[dict[str, np.ndarray], dict]:
    """Per item of benchmark `number`: the evidence rows of each kind, and the first evidence's snippet."""
    lo, hi = int(index.item_offsets[number]), int(index.item_offsets[number + 1])
    found = evidence.filter(pc.equal(evidence["benchmark"], index.names[number]))
    position = {item: k for k, item in enumerate(index.item_ids.slice(lo, hi - lo).to_pylist())}
    counts = {"ngram": np.zeros(hi - lo, np.int64), "near": np.zeros(hi - lo, np.int64)}
    snippets: dict[int, tuple] = {}
    for item, doc, kind, ngram, jaccard in zip(*(found[c].to_pylist() for c in ("item_id", "doc_id", "kind", "ngram", "jaccard"))):
        k = position[item]
        counts[kind][k] += 1
        snippet = (doc, kind, ngram if kind == "ngram" else f"near copy, Jaccard {jaccard:.3f}")
        if k not in snippets or snippet < snippets[k]:
            snippets[k] = snippet
    return counts, snippets


def _partials(index: BenchmarkIndex, evidence: pa.Table, measures: pa.Table, tokens: np.ndarray) -> dict[str, OverlapPartial]:
    """The partial of each benchmark from one shard's evidence and per-row measures."""
    result = {}
    for number, name in enumerate(index.names):
        mine = measures.filter(pc.equal(measures["benchmark"], name))
        matched = np.asarray(mine["ngram_items"]) + np.asarray(mine["near_items"]) > 0
        counts, snippets = _item_rows(index, number, evidence)
        result[name] = OverlapPartial(
            rows=mine.num_rows, documents=int(matched.sum()), tokens=int(tokens[np.asarray(mine["row"])[matched]].sum()),
            words=int(pc.sum(mine["words"]).as_py() or 0), aligned_words=int(pc.sum(mine["aligned_words"]).as_py() or 0),
            ngram_rows=counts["ngram"], near_rows=counts["near"], snippets=snippets,
        )
    return result


@ray.remote
def _evidence_partials(index: BenchmarkIndex, evidence: pa.Table) -> dict[str, OverlapPartial]:
    """The partial of each benchmark from evidence alone (documents removed before they had tokens)."""
    result = {}
    for number, name in enumerate(index.names):
        counts, snippets = _item_rows(index, number, evidence)
        documents = len(pc.unique(evidence.filter(pc.equal(evidence["benchmark"], name))["doc_id"]))
        result[name] = OverlapPartial(documents=documents, ngram_rows=counts["ngram"], near_rows=counts["near"], snippets=snippets)
    return result


def _token_counts(table: pa.Table) -> np.ndarray:
    if "input_ids" not in table.column_names:
        return np.zeros(table.num_rows, np.int64)
    return np.asarray(pc.list_value_length(table["input_ids"]).fill_null(0), np.int64)


@ray.remote
def _measure_shard(index: BenchmarkIndex, root: str, relpath: str, evidence_dir: str) -> dict[str, OverlapPartial]:
    """Match one shard; its evidence goes to `evidence_dir` as Parquet, its figures come back."""
    table = read_shard(root, relpath)
    evidence, measures = match_documents(index, table["id"], table["text"])
    if evidence.num_rows:
        sink = pa.BufferOutputStream()
        pq.write_table(evidence, sink)
        write_bytes_atomic(evidence_dir, relpath.replace("/", "-").replace(".arrow", ".parquet"), sink.getvalue().to_pybytes())
    return _partials(index, evidence, measures, _token_counts(table))


def figures(partial: OverlapPartial) -> dict:
    """DESIGN.md's figures of one benchmark over some rows."""
    return {
        "items": len(partial.ngram_rows),
        "items_ngram": int((partial.ngram_rows > 0).sum()),
        "items_near": int((partial.near_rows > 0).sum()),
        "documents": partial.documents,
        "rows": partial.rows,
        "tokens": partial.tokens,
        "alignment": round(partial.aligned_words / partial.words, 6) if partial.words else 0.0,
    }


def top_items(ids: list[str], partial: OverlapPartial) -> list[dict]:
    """The most-overlapped items (by rows with evidence), each with the first evidence's snippet."""
    total = partial.ngram_rows + partial.near_rows
    ranked = sorted((k for k in range(len(total)) if total[k]), key=lambda k: (-int(total[k]), ids[k]))[:TOP_ITEMS]
    return [
        {"item_id": ids[k], "rows_ngram": int(partial.ngram_rows[k]), "rows_near": int(partial.near_rows[k]),
         "doc_id": partial.snippets[k][0], "kind": partial.snippets[k][1], "evidence": partial.snippets[k][2]}
        for k in ranked
    ]


def _empty(items: int) -> OverlapPartial:
    return OverlapPartial(ngram_rows=np.zeros(items, np.int64), near_rows=np.zeros(items, np.int64))


def measure_parts(benchmarks: Benchmarks, root: str, parts: list[dict], evidence_dir: str) -> dict:
    """The `contamination` section of the shards of `parts` (manifest entries: the phases, then the
    holdout if any): per benchmark, overall (the phases) and per part, and the top items."""
    tasks = {
        part["name"]: [_measure_shard.remote(benchmarks.index, root, shard["path"], evidence_dir) for shard in part["shards"]]
        for part in parts
    }  # every part's shards are submitted before any is waited for
    measured = {name: tree_reduce(refs, _merge) for name, refs in tasks.items()}
    overall = _merge([partials for name, partials in measured.items() if name != HOLDOUT])
    section = {}
    for name, ids in benchmarks.item_ids.items():
        empty = _empty(len(ids))
        section[name] = benchmarks.described[name] | {
            "overall": figures(overall.get(name, empty)),
            "phases": {part: figures(partials.get(name, empty)) for part, partials in measured.items() if part != HOLDOUT},
            "top_items": top_items(ids, overall.get(name, empty)),
        }
        if HOLDOUT in measured:
            section[name][HOLDOUT] = figures(measured[HOLDOUT].get(name, empty))
    return section


def write_evidence(folders: list[str], out: str, shard_rows: int, folder: str = EVIDENCE_FOLDER) -> int:
    """`out/<folder>/shard-NNNNN.arrow`: every evidence row of `folders`, sorted; returns the rows."""
    parts = [read_parquet(folder) for folder in folders if has_files(folder)]
    dataset = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0] if parts else ray.data.from_arrow(EVIDENCE_SCHEMA.empty_table())
    shards = write_sorted(dataset, ["benchmark", "doc_id", "item_id", "kind"], out, folder, EVIDENCE_SCHEMA, shard_rows)
    return sum(shard.rows for shard in shards)


class _MatchBatches:
    """A Ray Data UDF that holds the benchmarks' index once per worker and returns each batch's evidence."""

    def __init__(self, index_ref: list):
        self.index = ray.get(index_ref[0])

    def __call__(self, table: pa.Table) -> pa.Table:
        evidence, _ = match_documents(self.index, table["id"], table["text"])
        return evidence


@dataclass(frozen=True)
class Decontaminated:
    docs: str
    evidence: str
    documents: int
    removed: int
    section: dict


@dataclass(frozen=True)
class Decontaminate:
    """Remove every document with evidence of overlap with a benchmark (`--decontaminate`)."""

    name: ClassVar[str] = "decontaminate"
    Result: ClassVar[type] = Decontaminated
    benchmarks: Benchmarks
    docs: str

    def run(self, work: str) -> Decontaminated:
        docs = read_parquet(self.docs)
        evidence = docs.select_columns(["id", "text"]).map_batches(
            _MatchBatches, fn_constructor_args=([self.benchmarks.index],), batch_format="pyarrow", concurrency=(1, _cpus())
        ).materialize()
        evidence_dir, kept = join(work, "evidence"), join(work, "docs")
        write_parquet(evidence, evidence_dir)
        removed = evidence.select_columns(["doc_id"]).map_batches(_distinct_ids, batch_format="pyarrow").materialize()
        write_parquet(exclude(docs, removed, "id"), kept)
        partials = tree_reduce([_evidence_partials.remote(self.benchmarks.index, ref) for ref in evidence.to_arrow_refs()], _merge)
        section = {
            name: {key: value for key, value in figures(partials.get(name, _empty(len(ids)))).items() if key in REMOVED_FIGURES}
            for name, ids in self.benchmarks.item_ids.items()
        }
        documents = docs.count()
        return Decontaminated(docs=kept, evidence=evidence_dir, documents=documents,
                              removed=documents - read_parquet(kept).count(), section=section)


def _distinct_ids(table: pa.Table) -> pa.Table:
    """The documents of a block's evidence (a document's evidence is never split across blocks)."""
    return pa.table({"id": pc.unique(table["doc_id"])})


def _cpus() -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


@dataclass(frozen=True)
class OverlapMeasured:
    section: dict
    evidence_rows: int
    documents: int


@dataclass(frozen=True)
class MeasureOverlap:
    """Match every written shard (phases and holdout) against the benchmarks; write the evidence and
    return the figures. `removed` carries what decontamination took out before the order."""

    name: ClassVar[str] = "overlap"
    Result: ClassVar[type] = OverlapMeasured
    benchmarks: Benchmarks
    out: str
    parts: list
    shard_rows: int
    removed: Decontaminated | None = None

    def run(self, work: str) -> OverlapMeasured:
        evidence_dir = join(work, "evidence")
        section = measure_parts(self.benchmarks, self.out, self.parts, evidence_dir)
        folders = [self.removed.evidence, evidence_dir] if self.removed else [evidence_dir]
        rows = write_evidence(folders, self.out, self.shard_rows)
        if self.removed:
            for name, removed in self.removed.section.items():
                section[name]["removed"] = removed
        return OverlapMeasured(section=section, evidence_rows=rows, documents=sum(part["rows"] for part in self.parts))

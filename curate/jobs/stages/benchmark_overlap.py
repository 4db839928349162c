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
SECTION = "contamination"
TOP_ITEMS = 10
# What is known of documents removed before they were tokenized and measured.
REMOVED_FIGURES = ("items", "items_ngram", "items_near", "documents")


@dataclass(frozen=True)
class NearSettings:
    """The near-dedup settings near copies are verified with (the build's own)."""

    threshold: float
    num_perm: int
    shingle_size: int
    seed: int


@ray.remote
def _index(specs: list[BenchmarkSpec], near: NearSettings) -> BenchmarkIndex:
    tables = [(spec.name, read_benchmark(spec)) for spec in specs]
    return build_index(tables, near.threshold, near.num_perm, near.shingle_size, near.seed)


@ray.remote
def _describe(index: BenchmarkIndex, specs: list[BenchmarkSpec]) -> dict:
    """What the manifest records of each benchmark: where it came from and a fingerprint of its items."""
    described = {}
    for number, spec in enumerate(specs):
        lo, hi = index.item_offsets[number], index.item_offsets[number + 1]
        ids = index.item_ids.slice(lo, hi - lo)
        digest = hashlib.sha256("\n".join(ids.to_pylist()).encode("utf-8")).hexdigest()
        described[spec.name] = {"url": spec.url, "fields": list(spec.fields) if spec.fields else None,
                                "items": int(hi - lo), "item_ids_sha256": digest}
    return described


@dataclass(frozen=True)
class Benchmarks:
    """The benchmarks' index, held in Ray's object store, and what the build records of them."""

    index: "ray.ObjectRef"
    described: dict


def load_benchmarks(specs: list[BenchmarkSpec], near: NearSettings) -> Benchmarks:
    """Read the benchmarks once and index them in a Ray task; a benchmark that cannot be read fails
    here, with one line, before any stage runs."""
    index = _index.remote(specs, near)
    return Benchmarks(index, ray.get(_describe.remote(index, specs)))


@dataclass
class OverlapPartial:
    """The figures of some rows against one benchmark: additive counters, and per item the rows with
    each kind of evidence and the first evidence's snippet (fixed size: the benchmark's items)."""

    rows: int = 0
    documents: int = 0
    tokens: int = 0
    words: int = 0
    aligned_words: int = 0
    ngram_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    near_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    snippets: dict = field(default_factory=dict)

    def merge(self, other: "OverlapPartial") -> "OverlapPartial":
        snippets = dict(self.snippets)
        for item, snippet in other.snippets.items():
            if item not in snippets or snippet < snippets[item]:
                snippets[item] = snippet
        return OverlapPartial(
            self.rows + other.rows, self.documents + other.documents, self.tokens + other.tokens,
            self.words + other.words, self.aligned_words + other.aligned_words,
            _add(self.ngram_rows, other.ngram_rows), _add(self.near_rows, other.near_rows), snippets,
        )


def _add(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return right.copy() if not len(left) else left if not len(right) else left + right


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
    for item, doc, kind, ngram in zip(*(found[c].to_pylist() for c in ("item_id", "doc_id", "kind", "ngram"))):
        k = position[item]
        counts[kind][k] += 1
        snippet = (doc, kind, ngram or "")
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


def top_items(index: BenchmarkIndex, name: str, partial: OverlapPartial) -> list[dict]:
    """The most-overlapped items (by rows with evidence), each with the first evidence's snippet."""
    number = index.names.index(name)
    lo = int(index.item_offsets[number])
    total = partial.ngram_rows + partial.near_rows
    ids = index.item_ids.slice(lo, len(total)).to_pylist()
    ranked = sorted((k for k in range(len(total)) if total[k]), key=lambda k: (-int(total[k]), ids[k]))[:TOP_ITEMS]
    return [
        {"item_id": ids[k], "rows_ngram": int(partial.ngram_rows[k]), "rows_near": int(partial.near_rows[k]),
         "doc_id": partial.snippets[k][0], "kind": partial.snippets[k][1], "ngram": partial.snippets[k][2]}
        for k in ranked
    ]


def measure_phases(index_ref: "ray.ObjectRef", root: str, phases: list[dict], evidence_dir: str) -> tuple[dict, dict]:
    """Figures of every phase's shards (as listed in `phases`, manifest entries) and the overall ones."""
    index = ray.get(index_ref)
    per_phase = {}
    for phase in phases:
        tasks = [_measure_shard.remote(index_ref, root, shard["path"], evidence_dir) for shard in phase["shards"]]
        per_phase[phase["name"]] = tree_reduce(tasks, _merge)
    overall = _merge([part for part in per_phase.values()])
    section = {}
    for number, name in enumerate(index.names):
        items = int(index.item_offsets[number + 1] - index.item_offsets[number])
        empty = OverlapPartial(ngram_rows=np.zeros(items, np.int64), near_rows=np.zeros(items, np.int64))
        section[name] = {
            "overall": figures(overall.get(name, empty)),
            "phases": {phase: figures(parts.get(name, empty)) for phase, parts in per_phase.items()},
            "top_items": top_items(index, name, overall[name]) if name in overall else [],
        }
    return section, overall


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
    index: "ray.ObjectRef"
    docs: str

    def run(self, work: str) -> Decontaminated:
        docs = read_parquet(self.docs)
        evidence = docs.select_columns(["id", "text"]).map_batches(
            _MatchBatches, fn_constructor_args=([self.index],), batch_format="pyarrow", concurrency=(1, _cpus())
        ).materialize()
        evidence_dir, kept = join(work, "evidence"), join(work, "docs")
        write_parquet(evidence, evidence_dir)
        removed = evidence.select_columns(["doc_id"]).map_batches(_distinct_ids, batch_format="pyarrow").materialize()
        write_parquet(exclude(docs, removed, "id"), kept)
        partials = tree_reduce([_evidence_partials.remote(self.index, ref) for ref in evidence.to_arrow_refs()], _merge)
        section = {name: {key: value for key, value in figures(partial).items() if key in REMOVED_FIGURES}
                   for name, partial in partials.items()}
        return Decontaminated(docs=kept, evidence=evidence_dir, documents=docs.count(), removed=removed.count(), section=section)


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
    """Match every written shard against the benchmarks; write the evidence and return the figures."""

    name: ClassVar[str] = "overlap"
    Result: ClassVar[type] = OverlapMeasured
    index: "ray.ObjectRef"
    benchmarks: dict
    out: str
    phases: list
    shard_rows: int
    removed: Decontaminated | None = None

    def run(self, work: str) -> OverlapMeasured:
        evidence_dir = join(work, "evidence")
        figures_by_benchmark, _ = measure_phases(self.index, self.out, self.phases, evidence_dir)
        folders = [self.removed.evidence, evidence_dir] if self.removed else [evidence_dir]
        rows = write_evidence(folders, self.out, self.shard_rows)
        section = {name: self.benchmarks[name] | values for name, values in figures_by_benchmark.items()}
        if self.removed:
            for name, removed in self.removed.section.items():
                section[name]["removed"] = removed
        documents = sum(phase["rows"] for phase in self.phases)
        return OverlapMeasured(section=section, evidence_rows=rows, documents=documents)

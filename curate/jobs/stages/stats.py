"""The stats stage: coverage statistics, one Ray task per shard, partials merged into `OUT/stats.json`.

Shards are discovered by listing `OUT/phase-*/shard-*.arrow` (the manifest is written after
this stage). Each task reads one shard and returns a fixed-size `CoveragePartial`; Ray tasks
merge them in a tree (jobs/reduce.py) and the driver receives one partial per phase. Partials
merge exactly, so `stats.json` is the same whatever order or grouping the merges take.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import pyarrow as pa

from curate.curation.errors import UserError
from curate.curation.manifest import write_json_atomic
from curate.curation.shards import read_shard
from curate.curation.stats import (
    STATS_NAME,
    CoveragePartial,
    finalize,
    merge_count_tables,
    merge_partials,
    table_partial,
    table_unigrams,
)
from curate.curation.storage import exists, join, locate, read_bytes
from curate.jobs.reduce import tree_reduce

STATS_FORMAT_VERSION = 1
_SHARD_PATH = re.compile(r"^(phase-\d+)/shard-\d+\.arrow$")


def discover_phases(out: str) -> dict[str, list[str]]:
    """{phase name: shard paths relative to `out`}, sorted, from the files on disk."""
    fs, base = locate(out)
    phases: dict[str, list[str]] = {}
    for path in sorted(fs.glob(join(base, "phase-*/shard-*.arrow"))):
        relpath = path[len(base) + 1 :] if path.startswith(base) else "/".join(path.split("/")[-2:])
        match = _SHARD_PATH.match(relpath)
        if match:
            phases.setdefault(match.group(1), []).append(relpath)
    return phases


def _vl_stats_counts(table: pa.Table) -> dict | None:
    """The VL build's own per-record counts (`vl_stats`), before and after its de-duplication."""
    if "vl_stats" not in table.column_names:
        return None
    import pyarrow.compute as pc

    stats = table.column("vl_stats")
    total = {name: int(pc.sum(pc.struct_field(stats, name)).as_py() or 0) for name in (
        "segments", "duplicate_segments", "segments_after", "duplicate_segments_after")}
    with_duplicates = int(pc.sum(pc.greater(pc.struct_field(stats, "duplicate_segments_after"), 0)).as_py() or 0)
    return {
        "records": table.num_rows,
        "segments": total["segments_after"],
        "duplicated": total["duplicate_segments_after"],
        "records_with_duplicates": with_duplicates,
        "segments_before": total["segments"],
        "duplicated_before": total["duplicate_segments"],
    }


def prompt_duplication(table: pa.Table) -> dict | None:
    """Prompt segments of VL records and how many are duplicated across fields.

    A VL build's shards (a JSON `record` column, see regimes/vl_prompt_dedup.py) carry the counts it measured
    before and after de-duplication in `vl_stats`; without them the records are measured here.
    """
    counted = _vl_stats_counts(table)
    if counted is not None or "record" not in table.column_names:
        return counted
    from curate.curation.vl import ShapeError, get_text, parse_vl_record
    from curate.dedup.prompt_dedup import PromptDedupConfig, dedup_texts

    config = PromptDedupConfig()
    measured = {"records": 0, "segments": 0, "duplicated": 0, "records_with_duplicates": 0}
    for value in table.column("record").to_pylist():
        try:
            record = json.loads(value or "{}")
            _, slots = parse_vl_record(record)
        except (ShapeError, ValueError, TypeError):
            continue
        texts = [(slot.field, get_text(record, slot.path)) for slot in slots if not slot.protected]
        _, stats = dedup_texts(texts, config)
        measured["records"] += 1
        measured["segments"] += stats.prompt.segments
        measured["duplicated"] += stats.prompt.duplicate_segments
        measured["records_with_duplicates"] += int(stats.prompt.duplicate_segments > 0)
    return measured if measured["records"] else None


def shard_partial(root: str, relpath: str) -> CoveragePartial:
    """The partial of one shard, read whole (shards are written to fit in memory)."""
    fs, path = locate(root, relpath)
    table = read_shard(root, relpath)
    partial = table_partial(table, prompt_duplication)
    partial.shard_bytes = int(fs.size(path))
    return partial


def shard_unigrams(root: str, relpath: str) -> tuple:
    return table_unigrams(read_shard(root, relpath))


def _reduced(function: Callable, merge: Callable[[list], Any], root: str, relpaths: list[str]) -> Any:
    """`function(root, relpath)` for every shard as one Ray task each, merged by a tree of Ray tasks."""
    import ray

    task = ray.remote(num_cpus=1)(function)
    return tree_reduce([task.remote(root, relpath) for relpath in relpaths], merge)


def _read_bytes(root: str, name: str) -> bytes | None:
    return read_bytes(root, name) if exists(root, name) else None


def check_reference(out: str, reference: str, reference_paths: list[str]) -> None:
    """A reference must have shards and share the build's tokenizer, or its ranking means nothing here."""
    if not reference_paths:
        raise UserError(f"the reference build {reference} has no phase-*/shard-*.arrow files")
    ours, theirs = _read_bytes(out, "tokenizer.json"), _read_bytes(reference, "tokenizer.json")
    if ours is not None and theirs is not None and ours != theirs:
        raise UserError(
            f"{out} and the reference {reference} use different tokenizers; tail mass and JS divergence "
            "compare token ids, so the reference must be from the same family of builds"
        )


def _near_duplicate_rate(dedup: dict) -> float | None:
    """Near duplicates removed among the documents that reached near de-duplication."""
    near = dedup.get("near_duplicates")
    kept = dedup.get("kept")
    if near is None or kept is None or near + kept == 0:
        return None
    return near / (near + kept)


def compute_build_stats(
    out: str, dedup: dict, reference: str | None = None, phases: dict[str, list[str]] | None = None
) -> dict:
    """Coverage statistics of the shards in `out`, without writing them.

    `reference` is the build whose unigram ranking defines tail mass and which the
    Jensen-Shannon divergence compares against (None: the build itself). `phases` names the
    shards per phase; None lists `out/phase-*/shard-*.arrow`.
    """
    phases = discover_phases(out) if phases is None else phases
    phase_partials = {name: _reduced(shard_partial, merge_partials, out, phases[name]) for name in sorted(phases)}
    overall = merge_partials(phase_partials.values())
    if reference is None:
        reference_unigrams = overall.unigrams
    else:
        reference_paths = [p for paths in discover_phases(reference).values() for p in paths]
        check_reference(out, reference, reference_paths)
        reference_unigrams = _reduced(shard_unigrams, merge_count_tables, reference, reference_paths)
    near_rate = _near_duplicate_rate(dedup)
    return {
        "format_version": STATS_FORMAT_VERSION,
        "reference": None if reference is None else os.path.basename(os.path.normpath(reference)),
        "dedup": dedup,
        "overall": finalize(overall, reference_unigrams, near_rate),
        "phases": {name: finalize(partial, reference_unigrams) for name, partial in phase_partials.items()},
    }


def write_stats(out: str, dedup: dict, reference: str | None, phases: list[dict], sections: dict) -> dict:
    """Write `out/stats.json`: coverage, plus what the phase-1 transform measured; return it.

    A phase entry's own keys beyond its shards (D's `teacher`) go into that phase's section;
    `sections` (VL's `vl`) sit at the top level, as in the manifest. The build and
    `curate stats --recompute` both write stats.json through here, from the same values.
    """
    stats = compute_build_stats(out, dedup, reference)
    for phase in phases:
        extra = {key: value for key, value in phase.items() if key not in ("name", "rows", "tokens", "shards")}
        stats["phases"][phase["name"]].update(extra)
    stats.update(sections)
    write_json_atomic(out, STATS_NAME, stats)
    return stats


@dataclass(frozen=True)
class StatsWritten:
    documents: int


@dataclass(frozen=True)
class CoverageStats:
    """stats.json of a build whose phases are written (the manifest comes after)."""

    name: ClassVar[str] = "stats"
    Result: ClassVar[type] = StatsWritten
    out: str
    dedup: dict
    reference: str | None
    phases: list
    sections: dict

    def run(self, work: str) -> StatsWritten:
        stats = write_stats(self.out, self.dedup, self.reference, self.phases, self.sections)
        return StatsWritten(documents=stats["overall"]["documents"])

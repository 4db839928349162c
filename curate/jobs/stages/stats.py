"""The stats stage: coverage statistics, one Ray task per shard, partials merged into `OUT/stats.json`.

Shards are discovered by listing `OUT/phase-*/shard-*.arrow` (the manifest is written after
this stage). Each task reads one shard and returns a fixed-size `CoveragePartial`; Ray tasks
merge them in a tree (jobs/reduce.py) and the driver receives one partial per phase. Partials
merge exactly, so `stats.json` is the same whatever order or grouping the merges take. What a
regime's shards carry of their own (D's rewrite statuses, VL's prompt segments) its transform
counts (`shard_counts`) and turns into stats.json keys (`statistics`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

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
from curate.curation.storage import join, locate, read_bytes_if_present
from curate.jobs.reduce import tree_reduce
from curate.regimes.base import Phase1Transform

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


def shard_partial(root: str, relpath: str, transform: Phase1Transform) -> CoveragePartial:
    """The partial of one shard, read whole (shards are written to fit in memory), with what the
    build's regime transform counts in it."""
    fs, path = locate(root, relpath)
    table = read_shard(root, relpath)
    partial = table_partial(table, transform.shard_counts)
    partial.shard_bytes = int(fs.size(path))
    return partial


def shard_unigrams(root: str, relpath: str) -> tuple:
    return table_unigrams(read_shard(root, relpath))


def _reduced(function: Callable, merge: Callable[[list], Any], root: str, relpaths: list[str], *args: Any) -> Any:
    """`function(root, relpath, *args)` for every shard as one Ray task each, merged by a tree of Ray tasks."""
    import ray

    task = ray.remote(num_cpus=1)(function)
    return tree_reduce([task.remote(root, relpath, *args) for relpath in relpaths], merge)


def check_reference(out: str, reference: str, reference_paths: list[str]) -> None:
    """A reference must have shards and share the build's tokenizer, or its ranking means nothing here."""
    if not reference_paths:
        raise UserError(f"the reference build {reference} has no phase-*/shard-*.arrow files")
    ours, theirs = read_bytes_if_present(out, "tokenizer.json"), read_bytes_if_present(reference, "tokenizer.json")
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
    out: str, transform: Phase1Transform, dedup: dict, reference: str | None = None, phases: dict[str, list[str]] | None = None
) -> dict:
    """Coverage statistics of the shards in `out`, a build whose phase 1 went through `transform`,
    without writing them.

    `reference` is the build whose unigram ranking defines tail mass and which the
    Jensen-Shannon divergence compares against (None: the build itself). `phases` names the
    shards per phase; None lists `out/phase-*/shard-*.arrow`.
    """
    phases = discover_phases(out) if phases is None else phases
    phase_partials = {name: _reduced(shard_partial, merge_partials, out, phases[name], transform) for name in sorted(phases)}
    overall = merge_partials(phase_partials.values())
    if reference is None:
        reference_unigrams = overall.unigrams
    else:
        reference_paths = [p for paths in discover_phases(reference).values() for p in paths]
        check_reference(out, reference, reference_paths)
        reference_unigrams = _reduced(shard_unigrams, merge_count_tables, reference, reference_paths)
    near_rate = _near_duplicate_rate(dedup)
    statistics = transform.statistics
    return {
        "format_version": STATS_FORMAT_VERSION,
        "reference": None if reference is None else os.path.basename(os.path.normpath(reference)),
        "dedup": dedup,
        "overall": finalize(overall, reference_unigrams, near_rate) | statistics(overall.regime_counts),
        "phases": {
            name: finalize(partial, reference_unigrams) | statistics(partial.regime_counts)
            for name, partial in phase_partials.items()
        },
    }


def write_stats(out: str, transform: Phase1Transform, dedup: dict, reference: str | None, phases: list[dict], sections: dict) -> dict:
    """Write `out/stats.json`: coverage, plus what the phase-1 transform measured; return it.

    A phase entry's own keys beyond its shards (D's `teacher`) go into that phase's section;
    `sections` (VL's `vl`) sit at the top level, as in the manifest. The build and
    `curate stats --recompute` both write stats.json through here, from the same values.
    """
    stats = compute_build_stats(out, transform, dedup, reference)
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
    transform: Phase1Transform
    dedup: dict
    reference: str | None
    phases: list
    sections: dict

    def run(self, work: str) -> StatsWritten:
        stats = write_stats(self.out, self.transform, self.dedup, self.reference, self.phases, self.sections)
        return StatsWritten(documents=stats["overall"]["documents"])

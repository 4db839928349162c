"""`curate contamination`: measure finished builds against benchmarks, without rebuilding them.

Each build's phases are matched shard by shard, as written (the same stage code as a build with
`--benchmark`), so C's copies count as the rows they are and D's phase 1 as rewritten. Near copies
are verified with each build's own near-dedup settings: the benchmarks are read once and indexed
once per distinct setting. Output:

  DIR/<label>/shard-NNNNN.arrow   the build's evidence (DESIGN.md's schema), sorted
  DIR/summary.json                per build: its URL, regime and `contamination` section
"""

from __future__ import annotations

import os

from curate.curation.benchmarks import BenchmarkSpec
from curate.curation.errors import UserError
from curate.curation.manifest import load_manifest, write_json_atomic
from curate.curation.storage import absolute, join, locate
from curate.dedup.near import NearDedupConfig
from curate.jobs.runner import WORK_DIR
from curate.jobs.stages.benchmark_overlap import (
    Benchmarks,
    index_benchmarks,
    measure_parts,
    read_benchmarks,
    write_evidence,
)

SUMMARY_NAME = "summary.json"
EVIDENCE_SHARD_ROWS = 10_000


def _labels(builds: list[str]) -> list[str]:
    """Each build's folder name, made unique by its position where two share one (again, until no
    two labels are the same: `a/A`, `b/A` and `c/A-1` give A-1-1, A-2 and A-1-3)."""
    labels = [os.path.basename(build.rstrip("/")) or "build" for build in builds]
    labels = [label if label != WORK_DIR else f"{label}-{number}" for number, label in enumerate(labels, start=1)]
    while len(set(labels)) < len(labels):
        labels = [label if labels.count(label) == 1 else f"{label}-{number}" for number, label in enumerate(labels, start=1)]
    return labels


def _compared(url: str) -> str:
    """A URL as the overlap check compares it: local paths (and file:// URLs) with links resolved."""
    if "://" in url and not url.startswith("file://"):
        return url.rstrip("/")
    return os.path.realpath(url.removeprefix("file://"))


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _check_apart(builds: list[str], labels: list[str], output: str) -> None:
    """The output must not write into a build, nor replace a folder that holds one (`DIR/<label>` and
    the scratch are emptied first)."""
    written = _compared(output)
    replaced = [_compared(join(output, folder)) for folder in [*labels, WORK_DIR]]
    for build in builds:
        where = _compared(build)
        if _within(written, where):
            raise UserError(f"--output {output} is inside the build {build}: write the measures to a folder of their own")
        for folder in replaced:
            if _within(where, folder):
                raise UserError(f"--output {output} would empty {folder}, and with it the build {build}: choose another --output")


def _near_settings(manifest: dict) -> NearDedupConfig:
    config = manifest["config"]
    return NearDedupConfig(threshold=config["near_threshold"], num_perm=config["num_perm"], ngram_size=config["ngram_size"],
                           seed=config["seed"])


def _remove(root: str, relpath: str) -> None:
    fs, path = locate(root, relpath)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def measure_builds(builds: list[str], specs: list[BenchmarkSpec], output: str) -> dict:
    """Measure every build against the benchmarks; write the evidence and the summary under `output`."""
    builds, output = [absolute(build).rstrip("/") for build in builds], absolute(output).rstrip("/")
    manifests = [load_manifest(build) for build in builds]
    labels = _labels(builds)
    _check_apart(builds, labels, output)
    read = read_benchmarks(specs)
    loaded: dict[NearDedupConfig, Benchmarks] = {}
    summary = {}
    for build, label, manifest in zip(builds, labels, manifests):
        near = _near_settings(manifest)
        if near not in loaded:
            loaded[near] = index_benchmarks(read, near)
        scratch = join(output, WORK_DIR, label)
        for stale in (label, join(WORK_DIR, label)):
            _remove(output, stale)
        parts = manifest["phases"] + ([manifest["holdout"]] if "holdout" in manifest else [])
        section = measure_parts(loaded[near], build, parts, scratch)
        rows = write_evidence([scratch], output, EVIDENCE_SHARD_ROWS, folder=label)
        summary[label] = {"build": build, "regime": manifest["regime"], "evidence_rows": rows, "contamination": section}
    write_json_atomic(output, SUMMARY_NAME, summary)
    _remove(output, WORK_DIR)
    return summary

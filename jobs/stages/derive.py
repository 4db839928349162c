"""Derive: a regime built from a complete A build (B, C, D).

The copy stage copies what the derived build shares with its source byte for byte (tokenizer,
dedup pairs, quarantine, phase 2), one Ray task per file; the derive stage hands A's phase 1 to
the regime's transform, which writes the new phase 1.
"""

from __future__ import annotations

import os
from functools import partial

import fsspec
import ray

from curation.manifest import manifest_phase
from jobs.datasets import read_shards
from jobs.stages.write import write_dataset
from regimes.base import Phase1Context, Phase1Transform

SHARED_FILES = ("tokenizer.json", "dedup/pairs.arrow")


@ray.remote
def _copy_file(source: str, out: str, relpath: str) -> None:
    """Byte copy of `source/relpath` to `out/relpath`, through a temporary name."""
    with fsspec.open(f"{source}/{relpath}", "rb") as handle:
        data = handle.read()
    fs, base = fsspec.core.url_to_fs(out)
    fs.makedirs(os.path.dirname(f"{base}/{relpath}"), exist_ok=True)
    with fs.open(f"{base}/{relpath}.tmp", "wb") as handle:
        handle.write(data)
    fs.mv(f"{base}/{relpath}.tmp", f"{base}/{relpath}")


def _quarantine_shards(root: str) -> list[str]:
    fs, base = fsspec.core.url_to_fs(root)
    return sorted(f"quarantine/{os.path.basename(p)}" for p in fs.glob(f"{base}/quarantine/shard-*.arrow"))


def copy_stage(source: str, source_manifest: dict, out: str) -> dict:
    """Copy the files a derived build shares with its source."""
    phase_two = [shard["path"] for shard in manifest_phase(source_manifest, "phase-2")["shards"]]
    relpaths = [*SHARED_FILES, *_quarantine_shards(source), *phase_two]
    ray.get([_copy_file.remote(source, out, relpath) for relpath in relpaths])
    return {"files": len(relpaths)}


def derive_stage(
    transform: Phase1Transform, settings: dict, seed: int, shard_rows: int, source: str, source_manifest: dict, out: str
) -> dict:
    """Phase 1 of the derived regime: the source's phase 1 through the regime's transform."""
    shards = tuple(shard["path"] for shard in manifest_phase(source_manifest, "phase-1")["shards"])
    with fsspec.open(f"{source}/tokenizer.json", "r", encoding="utf-8") as handle:
        tokenizer_json = handle.read()
    context = Phase1Context(
        settings=settings,
        seed=seed,
        out=out,
        tokenizer_json=tokenizer_json,
        phase1=lambda: read_shards(source, list(shards)),
        write=partial(write_dataset, root=out, folder="phase-1", shard_rows=shard_rows, tokenizer_json=tokenizer_json),
        source=source,
        source_shards=shards,
    )
    output = transform.apply(context)
    return {"documents": output.phase["rows"], "phase": output.phase, "sections": output.sections, "dropped": output.dropped}

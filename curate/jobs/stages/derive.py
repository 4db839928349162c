"""Derive: a regime built from a complete A build (B, C, D).

The copy stage copies what the derived build shares with its source byte for byte (tokenizer,
dedup pairs, quarantine, phase 2, holdout), one Ray task per file; the derive stage hands A's phase 1 to
the regime's transform, which writes the new phase 1.
"""

from __future__ import annotations

import os
import uuid
from functools import partial

import fsspec
import ray

from curate.curation.manifest import manifest_phase
from curate.jobs.datasets import read_shards
from curate.jobs.stages.write import write_dataset
from curate.regimes.base import Phase1Context, Phase1Transform

SHARED_FILES = ("tokenizer.json",)


@ray.remote
def _copy_file(source: str, out: str, relpath: str) -> None:
    """Byte copy of `source/relpath` to `out/relpath` through a temporary name; on one filesystem
    (a bucket to itself, a disk to itself) the copy is the filesystem's own, server-side for object stores."""
    source_fs, source_path = fsspec.core.url_to_fs(f"{source}/{relpath}")
    fs, final = fsspec.core.url_to_fs(f"{out}/{relpath}")
    temporary = f"{final}.tmp-{uuid.uuid4().hex}"
    fs.makedirs(os.path.dirname(final), exist_ok=True)
    if type(source_fs) is type(fs):
        fs.copy(source_path, temporary)
    else:
        fs.pipe_file(temporary, source_fs.cat_file(source_path))
    fs.mv(temporary, final)


def _shards(root: str, folder: str) -> list[str]:
    fs, base = fsspec.core.url_to_fs(root)
    return sorted(f"{folder}/{os.path.basename(p)}" for p in fs.glob(f"{base}/{folder}/shard-*.arrow"))


def copy_stage(source: str, source_manifest: dict, out: str) -> dict:
    """Copy the files a derived build shares with its source."""
    phase_two = [shard["path"] for shard in manifest_phase(source_manifest, "phase-2")["shards"]]
    holdout = [shard["path"] for shard in source_manifest.get("holdout", {}).get("shards", [])]
    relpaths = [*SHARED_FILES, *_shards(source, "quarantine"), *_shards(source, "dedup/pairs"), *phase_two, *holdout]
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

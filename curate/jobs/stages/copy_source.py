"""Copy what a derived build (B, C, D, `--from OUT_A`) shares with its source byte for byte: the
tokenizer, dedup pairs, quarantine, phase 2 and holdout, one Ray task per file.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import ClassVar

import ray

from curate.curation.manifest import manifest_phase
from curate.curation.storage import join, locate

SHARED_FILES = ("tokenizer.json",)


@ray.remote
def _copy_file(source: str, out: str, relpath: str) -> None:
    """Byte copy of `source/relpath` to `out/relpath` through a temporary name; on one filesystem
    (a bucket to itself, a disk to itself) the copy is the filesystem's own, server-side for object stores."""
    source_fs, source_path = locate(source, relpath)
    fs, final = locate(out, relpath)
    temporary = f"{final}.tmp-{uuid.uuid4().hex}"
    fs.makedirs(os.path.dirname(final), exist_ok=True)
    if type(source_fs) is type(fs):
        fs.copy(source_path, temporary)
    else:
        fs.pipe_file(temporary, source_fs.cat_file(source_path))
    fs.mv(temporary, final)


def _shards(root: str, folder: str) -> list[str]:
    fs, base = locate(root, folder)
    return sorted(f"{folder}/{os.path.basename(p)}" for p in fs.glob(join(base, "shard-*.arrow")))


@dataclass(frozen=True)
class Copied:
    files: int


@dataclass(frozen=True)
class CopySource:
    name: ClassVar[str] = "copy"
    Result: ClassVar[type] = Copied
    source: str
    source_manifest: dict
    out: str

    def run(self, work: str) -> Copied:
        phase_two = [shard["path"] for shard in manifest_phase(self.source_manifest, "phase-2")["shards"]]
        holdout = [shard["path"] for shard in self.source_manifest.get("holdout", {}).get("shards", [])]
        relpaths = [
            *SHARED_FILES, *_shards(self.source, "quarantine"), *_shards(self.source, "dedup/pairs"), *phase_two, *holdout
        ]
        ray.get([_copy_file.remote(self.source, self.out, relpath) for relpath in relpaths])
        return Copied(files=len(relpaths))

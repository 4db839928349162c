"""Phase 1 of a derived build: the source's phase 1 through the regime's transform, written as the new phase 1."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar

from curate.curation.manifest import manifest_phase
from curate.curation.storage import read_bytes
from curate.jobs.datasets import read_shards
from curate.jobs.shard_writer import write_dataset
from curate.regimes.base import Phase1Context, Phase1Transform


@dataclass(frozen=True)
class Derived:
    documents: int
    phase: dict
    sections: dict
    dropped: int


@dataclass(frozen=True)
class DerivePhase1:
    name: ClassVar[str] = "derive"
    Result: ClassVar[type] = Derived
    transform: Phase1Transform
    settings: dict
    seed: int
    shard_rows: int
    source: str
    source_manifest: dict
    out: str

    def run(self, work: str) -> Derived:
        shards = tuple(shard["path"] for shard in manifest_phase(self.source_manifest, "phase-1")["shards"])
        tokenizer_json = read_bytes(self.source, "tokenizer.json").decode("utf-8")
        context = Phase1Context(
            settings=self.settings,
            seed=self.seed,
            out=self.out,
            tokenizer_json=tokenizer_json,
            phase1=lambda: read_shards(self.source, list(shards)),
            write=partial(write_dataset, root=self.out, folder="phase-1", shard_rows=self.shard_rows, tokenizer_json=tokenizer_json),
            source=self.source,
            source_shards=shards,
        )
        output = self.transform.apply(context)
        return Derived(documents=output.phase["rows"], phase=output.phase, sections=output.sections, dropped=output.dropped)

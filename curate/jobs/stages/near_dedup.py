"""Near de-duplication: MinHash, LSH buckets, exact Jaccard of every candidate pair, keep-policy greedy
(`curate.dedup.near`).

Reads the documents exact de-duplication kept; writes the ones it keeps to `<stage>/docs` and each
removed one with the document kept for it and their Jaccard to `<stage>/pairs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from curate.curation.storage import join
from curate.dedup.near import NearDedupConfig, near_duplicates
from curate.jobs.datasets import exclude, read_parquet, write_parquet


@dataclass(frozen=True)
class NearDeduplicated:
    docs: str
    pairs: str
    documents: int
    removed: int
    measures: dict


@dataclass(frozen=True)
class NearDedup:
    name: ClassVar[str] = "near"
    Result: ClassVar[type] = NearDeduplicated
    config: NearDedupConfig
    docs: str

    def run(self, work: str) -> NearDeduplicated:
        docs = read_parquet(self.docs)
        pairs, measures = near_duplicates(docs.select_columns(["id", "text", "input_pos"]), self.config)
        pairs = pairs.materialize()
        kept_docs, pairs_dir = join(work, "docs"), join(work, "pairs")
        write_parquet(pairs, pairs_dir)
        write_parquet(exclude(docs, pairs.rename_columns({"removed_id": "id"}), "id"), kept_docs)
        return NearDeduplicated(docs=kept_docs, pairs=pairs_dir, documents=docs.count(), removed=pairs.count(), measures=measures)

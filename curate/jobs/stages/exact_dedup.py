"""Exact de-duplication: a document whose normalized text equals a document with a smaller id is removed.

Reads the documents ingest kept; writes the ones it keeps to `<stage>/docs` and each removed one
with the document kept for it to `<stage>/pairs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pyarrow as pa

from curate.curation.storage import join
from curate.dedup.exact import exact_duplicates, text_keys
from curate.jobs.datasets import attach_groups, exclude, read_parquet, write_parquet


@dataclass(frozen=True)
class ExactDeduplicated:
    docs: str
    pairs: str
    documents: int
    removed: int


def _with_text_key(table: pa.Table) -> pa.Table:
    return pa.table({"key": text_keys(table["text"]), "id": table["id"], "input_pos": table["input_pos"]})


@dataclass(frozen=True)
class ExactDedup:
    name: ClassVar[str] = "exact"
    Result: ClassVar[type] = ExactDeduplicated
    docs: str

    def run(self, work: str) -> ExactDeduplicated:
        docs = read_parquet(self.docs)
        keys = docs.map_batches(_with_text_key, batch_format="pyarrow").materialize()
        removed = attach_groups(keys, "key", "id", "kept_id").map_batches(exact_duplicates, batch_format="pyarrow")
        removed = removed.materialize()
        kept_docs, pairs = join(work, "docs"), join(work, "pairs")
        write_parquet(removed.select_columns(["removed_id", "kept_id"]), pairs)
        write_parquet(exclude(docs, removed, "input_pos"), kept_docs)
        return ExactDeduplicated(docs=kept_docs, pairs=pairs, documents=docs.count(), removed=removed.count())

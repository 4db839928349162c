"""The dedup pairs: `OUT/dedup/pairs/shard-NNNNN.arrow`, every removed duplicate with the document kept
for it, exact and near together, sorted by removed id across shards, written by Ray tasks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pyarrow as pa
import ray

from curate.dedup.verify import PAIR_SCHEMA
from curate.jobs.datasets import has_files, read_parquet
from curate.jobs.shard_writer import write_sorted

PAIRS_FOLDER = "dedup/pairs"


@dataclass(frozen=True)
class PairsWritten:
    rows: int


def _exact_pairs(table: pa.Table) -> pa.Table:
    rows = table.num_rows
    return pa.table(
        {
            "removed_id": table["removed_id"].cast(pa.string()),
            "kept_id": table["kept_id"].cast(pa.string()),
            "kind": pa.array(["exact"] * rows, pa.string()),
            "jaccard": pa.array([1.0] * rows, pa.float64()),
        }
    )


def _near_pairs(table: pa.Table) -> pa.Table:
    return table.select(PAIR_SCHEMA.names).cast(PAIR_SCHEMA)


@dataclass(frozen=True)
class WritePairs:
    name: ClassVar[str] = "pairs"
    Result: ClassVar[type] = PairsWritten
    out: str
    exact_pairs: str
    near_pairs: str | None
    shard_rows: int

    def run(self, work: str) -> PairsWritten:
        pairs = [read_parquet(self.exact_pairs).map_batches(_exact_pairs, batch_format="pyarrow")] if has_files(self.exact_pairs) else []
        if self.near_pairs is not None and has_files(self.near_pairs):
            pairs.append(read_parquet(self.near_pairs).map_batches(_near_pairs, batch_format="pyarrow"))
        if not pairs:
            pairs = [ray.data.from_arrow(PAIR_SCHEMA.empty_table())]
        dataset = pairs[0].union(*pairs[1:]) if len(pairs) > 1 else pairs[0]
        shards = write_sorted(dataset, ["removed_id", "kind"], self.out, PAIRS_FOLDER, PAIR_SCHEMA, self.shard_rows)
        return PairsWritten(rows=sum(shard.rows for shard in shards))

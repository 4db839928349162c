"""De-duplication stages: exact (normalized-text hash), near (MinHash, LSH, verified clusters), pairs.

Each stage reads the documents the previous one kept and writes the ones it keeps to its own
`<stage>/docs`, and the removed ones with the document kept for each to `<stage>/pairs`; the
pairs stage sorts both into `OUT/dedup/pairs/shard-NNNNN.arrow`.
"""

from __future__ import annotations

import pyarrow as pa
import ray

from curate.dedup.exact import exact_duplicates, text_keys
from curate.dedup.near import NearDedupConfig, near_duplicates
from curate.jobs.datasets import attach_groups, exclude, has_files, read_parquet, write_parquet
from curate.jobs.stages.write import write_sorted

PAIRS_FOLDER = "dedup/pairs"
PAIRS_SCHEMA = pa.schema(
    [("removed_id", pa.string()), ("kept_id", pa.string()), ("kind", pa.string()), ("jaccard", pa.float64())]
)


def _with_text_key(table: pa.Table) -> pa.Table:
    return pa.table({"key": text_keys(table["text"]), "id": table["id"], "input_pos": table["input_pos"]})


def exact_stage(stage_dir: str, docs_dir: str) -> dict:
    """Remove documents whose normalized text equals a document with a smaller id."""
    docs = read_parquet(docs_dir)
    keys = docs.map_batches(_with_text_key, batch_format="pyarrow").materialize()
    removed = attach_groups(keys, "key", "id", "kept_id").map_batches(exact_duplicates, batch_format="pyarrow")
    removed = removed.materialize()
    write_parquet(removed.select_columns(["removed_id", "kept_id"]), f"{stage_dir}/pairs")
    write_parquet(exclude(docs, removed, "input_pos"), f"{stage_dir}/docs")
    count = removed.count()
    return {"exact_duplicates": count, "documents": docs.count(), "removed": count}


def near_stage(config: NearDedupConfig, stage_dir: str, docs_dir: str) -> dict:
    """Remove verified near duplicates (MinHash, LSH buckets, exact Jaccard, keep-policy greedy)."""
    docs = read_parquet(docs_dir)
    pairs, stats = near_duplicates(docs.select_columns(["id", "text", "input_pos"]), config)
    pairs = pairs.materialize()
    write_parquet(pairs, f"{stage_dir}/pairs")
    write_parquet(exclude(docs, pairs.rename_columns({"removed_id": "id"}), "id"), f"{stage_dir}/docs")
    removed = pairs.count()
    return {"near_duplicates": removed, "documents": docs.count(), "removed": removed, "near": stats}


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


def write_pairs(out: str, exact_dir: str, near_dir: str | None, shard_rows: int) -> int:
    """OUT/dedup/pairs/shard-NNNNN.arrow: every removed duplicate with the document kept for it,
    sorted by removed id across shards, written by Ray tasks."""
    pairs = [read_parquet(exact_dir).map_batches(_exact_pairs, batch_format="pyarrow")] if has_files(exact_dir) else []
    if near_dir is not None and has_files(near_dir):
        pairs.append(read_parquet(near_dir).map_batches(lambda t: t.select(PAIRS_SCHEMA.names).cast(PAIRS_SCHEMA), batch_format="pyarrow"))
    if not pairs:
        pairs = [ray.data.from_arrow(PAIRS_SCHEMA.empty_table())]
    dataset = pairs[0].union(*pairs[1:]) if len(pairs) > 1 else pairs[0]
    shards = write_sorted(dataset, ["removed_id", "kind"], out, PAIRS_FOLDER, PAIRS_SCHEMA, shard_rows)
    return sum(shard.rows for shard in shards)


"""De-duplication stages: exact (normalized-text hash), near (MinHash, LSH, verified clusters), pairs.

Each stage reads the documents the previous one kept and writes the ones it keeps to its own
`<stage>/docs`, and the removed ones with the document kept for each to `<stage>/pairs`; the
pairs stage joins both into `OUT/dedup/pairs.arrow`.
"""

from __future__ import annotations

import pyarrow as pa
import ray

from curation.shards import write_shard
from dedup.exact import exact_duplicates, text_keys
from dedup.near import NearDedupConfig, near_duplicates
from jobs.datasets import attach_groups, exclude, read_parquet_table

PAIRS_SCHEMA = pa.schema(
    [("removed_id", pa.string()), ("kept_id", pa.string()), ("kind", pa.string()), ("jaccard", pa.float64())]
)


def _with_text_key(table: pa.Table) -> pa.Table:
    return pa.table({"key": text_keys(table["text"]), "id": table["id"], "input_pos": table["input_pos"]})


def exact_stage(stage_dir: str, docs_dir: str) -> dict:
    """Remove documents whose normalized text equals a document with a smaller id."""
    docs = ray.data.read_parquet(docs_dir)
    keys = docs.map_batches(_with_text_key, batch_format="pyarrow").materialize()
    removed = attach_groups(keys, "key", "id", "kept_id").map_batches(exact_duplicates, batch_format="pyarrow")
    removed = removed.materialize()
    removed.select_columns(["removed_id", "kept_id"]).write_parquet(f"{stage_dir}/pairs")
    exclude(docs, removed, "input_pos").write_parquet(f"{stage_dir}/docs")
    count = removed.count()
    return {"exact_duplicates": count, "documents": docs.count(), "removed": count}


def near_stage(config: NearDedupConfig, stage_dir: str, docs_dir: str) -> dict:
    """Remove verified near duplicates (MinHash, LSH, connected components, exact Jaccard)."""
    docs = ray.data.read_parquet(docs_dir)
    pairs, stats = near_duplicates(docs.select_columns(["id", "text", "input_pos"]), config)
    pairs = pairs.materialize()
    pairs.write_parquet(f"{stage_dir}/pairs")
    exclude(docs, pairs.rename_columns({"removed_id": "id"}), "id").write_parquet(f"{stage_dir}/docs")
    removed = pairs.count()
    return {"near_duplicates": removed, "documents": docs.count(), "removed": removed, "near": stats}


def write_pairs(out: str, exact_dir: str, near_dir: str | None) -> int:
    """OUT/dedup/pairs.arrow: every removed duplicate with the document kept for it, sorted by removed id."""
    exact = read_parquet_table(exact_dir, ["removed_id", "kept_id"])
    parts = [
        pa.table(
            {
                "removed_id": exact["removed_id"].cast(pa.string()),
                "kept_id": exact["kept_id"].cast(pa.string()),
                "kind": pa.array(["exact"] * exact.num_rows, pa.string()),
                "jaccard": pa.array([1.0] * exact.num_rows, pa.float64()),
            }
        )
    ]
    if near_dir is not None:
        near = read_parquet_table(near_dir, PAIRS_SCHEMA.names)
        if near.num_rows:
            parts.append(near.cast(PAIRS_SCHEMA))
    pairs = pa.concat_tables(parts).sort_by([("removed_id", "ascending"), ("kind", "ascending")])
    write_shard(pairs, out, "dedup/pairs.arrow")
    return pairs.num_rows

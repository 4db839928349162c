"""Ray Data helpers the stages share: semi- and anti-joins, group attachment, shard and Parquet reads.

Joins broadcast small key sets (up to BROADCAST_KEYS, one Arrow array shipped to every task) and
fall back to Ray Data's distributed join beyond; both give the same rows.
"""

from __future__ import annotations

from typing import Iterator

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import ray

from curation.shards import read_shard
from jobs.ray_cluster import shuffle_partitions

BROADCAST_KEYS = 1_000_000


def _filter_by_keys(left: "ray.data.Dataset", keys: "ray.data.Dataset", key: str, keep_matches: bool) -> "ray.data.Dataset":
    """Rows of `left` whose `key` is (keep_matches) or is not among `keys`'s."""
    keys = keys.select_columns([key]).materialize()
    if keys.count() > BROADCAST_KEYS:
        join_type = "left_semi" if keep_matches else "left_anti"
        return left.join(keys, join_type, shuffle_partitions(), on=(key,))
    tables = [table for table in ray.get(keys.to_arrow_refs()) if table.num_rows]
    values = pa.concat_tables(tables).column(key).combine_chunks() if tables else pa.array([], pa.int64())

    def keep(table: pa.Table, values: pa.Array) -> pa.Table:
        member = pc.is_in(table[key], value_set=values.cast(table.schema.field(key).type))
        return table.filter(member if keep_matches else pc.invert(member))

    return left.map_batches(keep, fn_kwargs={"values": values}, batch_format="pyarrow")


def exclude(left: "ray.data.Dataset", removed: "ray.data.Dataset", key: str) -> "ray.data.Dataset":
    """Rows of `left` whose `key` is not among `removed`'s (an anti-join)."""
    return _filter_by_keys(left, removed, key, keep_matches=False)


def only(left: "ray.data.Dataset", chosen: "ray.data.Dataset", key: str) -> "ray.data.Dataset":
    """Rows of `left` whose `key` is among `chosen`'s (a semi-join)."""
    return _filter_by_keys(left, chosen, key, keep_matches=True)


def attach_groups(rows: "ray.data.Dataset", key: str, survivor: str, name: str) -> "ray.data.Dataset":
    """`rows` of groups (by `key`) with more than one member, each with its group's min(`survivor`) as `name`.

    The per-group aggregate is vectorised; only the groups with duplicates are attached to the
    rows, by broadcast up to BROADCAST_KEYS groups and by a distributed join beyond.
    """
    from ray.data.aggregate import Count, Min

    groups = rows.groupby(key).aggregate(Count(), Min(survivor)).rename_columns({f"min({survivor})": name})
    groups = groups.map_batches(
        lambda t: t.filter(pc.greater(t["count()"], 1)).select([key, name]), batch_format="pyarrow"
    ).materialize()
    if groups.count() > BROADCAST_KEYS:
        return rows.join(groups, "inner", shuffle_partitions(), on=(key,))
    tables = [table for table in ray.get(groups.to_arrow_refs()) if table.num_rows]
    if not tables:
        return rows.limit(0)
    table = pa.concat_tables(tables)
    return rows.map_batches(
        lambda batch, groups: batch.join(groups.cast(pa.schema([batch.schema.field(key), groups.schema.field(name)])), key, join_type="inner"),
        fn_kwargs={"groups": table},
        batch_format="pyarrow",
    )


def read_shards(root: str, relpaths: list[str]) -> "ray.data.Dataset":
    """A dataset over existing shards, one read task per shard, in shard order."""

    def read(batch: dict) -> Iterator[pa.Table]:
        for relpath in batch["relpath"]:
            yield read_shard(root, str(relpath))

    listing = ray.data.from_items([{"relpath": p} for p in relpaths], override_num_blocks=max(1, len(relpaths)))
    return listing.map_batches(read, batch_size=1, batch_format="numpy")


def read_parquet_table(path: str, columns: list[str]) -> pa.Table:
    """A small stage output read on the driver; a stage that wrote no rows left no files."""
    import pyarrow.parquet as pq

    fs, base = fsspec.core.url_to_fs(path)
    files = sorted(fs.glob(f"{base}/*.parquet")) if fs.exists(base) else []
    tables = [pq.read_table(f, columns=columns, filesystem=fs) for f in files]
    return pa.concat_tables(tables) if tables else pa.table({c: pa.array([], pa.string()) for c in columns})

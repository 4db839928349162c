"""Ray Data helpers the stages share: semi- and anti-joins, group attachment, shard and Parquet I/O.

Joins broadcast small key sets (up to BROADCAST_KEYS, one Arrow array shipped to every task) and
fall back to Ray Data's distributed join beyond; both give the same rows. Stage outputs are read
and written through the filesystem of their URL (fsspec, so object stores take their endpoint
and credentials from the environment as every other part of curate does), never a node's disk
unless the URL is a local path.
"""

from __future__ import annotations

from typing import Iterator

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import ray
from pyarrow.fs import FSSpecHandler, PyFileSystem

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


class _ObjectStoreHandler(FSSpecHandler):
    """fsspec under Ray Data. An object store has no empty folders: Ray Data deletes the folder of a
    write that had no rows, which was never created there, and that is no error."""

    def delete_dir(self, path: str) -> None:
        try:
            super().delete_dir(path)
        except FileNotFoundError:
            pass


def _arrow_filesystem(url: str) -> tuple[PyFileSystem | None, str]:
    """(filesystem, path) for Ray Data: its own for local paths, fsspec's for any other URL."""
    if "://" not in url or url.startswith("file://"):
        return None, url.removeprefix("file://")
    fs, path = fsspec.core.url_to_fs(url)
    return PyFileSystem(_ObjectStoreHandler(fs)), path


def read_parquet(url: str) -> "ray.data.Dataset":
    filesystem, path = _arrow_filesystem(url)
    return ray.data.read_parquet(path, filesystem=filesystem)


def write_parquet(ds: "ray.data.Dataset", url: str) -> None:
    filesystem, path = _arrow_filesystem(url)
    ds.write_parquet(path, filesystem=filesystem)


def read_shards(root: str, relpaths: list[str]) -> "ray.data.Dataset":
    """A dataset over existing shards, one read task per shard, in shard order."""

    def read(batch: dict) -> Iterator[pa.Table]:
        for relpath in batch["relpath"]:
            yield read_shard(root, str(relpath))

    listing = ray.data.from_items([{"relpath": p} for p in relpaths], override_num_blocks=max(1, len(relpaths)))
    return listing.map_batches(read, batch_size=1, batch_format="numpy")


def has_files(url: str) -> bool:
    """Whether a stage output folder holds anything (Ray Data writes no file for a stage without rows)."""
    fs, path = fsspec.core.url_to_fs(url)
    return fs.exists(path) and bool(fs.ls(path))

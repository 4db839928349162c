"""Ray Data helpers the stages share: semi- and anti-joins, group attachment, shard and Parquet I/O.

Joins broadcast small key sets (up to BROADCAST_KEYS, one Arrow array shipped to every task) and
fall back to Ray Data's distributed join beyond; sorts and group aggregates of up to
SINGLE_TASK_BYTES run as one Ray task, beyond as Ray Data's distributed sort and groupby (whose
sampling and shuffle rounds cost seconds even for a handful of rows). Either way gives the same
rows in the same order. Stage outputs are read and written through the filesystem of their URL
(fsspec, so object stores take their endpoint and credentials from the environment as every other
part of curate does), never a node's disk unless the URL is a local path.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Iterator

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
from pyarrow.fs import FSSpecHandler, PyFileSystem

from curate.curation.shards import read_shard
from curate.curation.storage import is_remote, join, locate
from curate.dedup.components import returned_parts
from curate.jobs.ray_cluster import shuffle_partitions

BROADCAST_KEYS = 1_000_000
SINGLE_TASK_BYTES = 64 * 1024 * 1024


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


def _fits_one_task(ds: "ray.data.MaterializedDataset") -> bool:
    return ds.size_bytes() <= SINGLE_TASK_BYTES


@ray.remote
def _sorted_parts(keys: list[str], parts: int, *tables: pa.Table) -> tuple[pa.Table, ...] | pa.Table:
    table = pa.concat_tables(tables, promote_options="permissive").sort_by([(key, "ascending") for key in keys])
    step = max(1, -(-table.num_rows // parts))
    return returned_parts(tuple(table.slice(start * step, step) for start in range(parts)))


def sort_rows(ds: "ray.data.Dataset", keys: str | list[str]) -> "ray.data.MaterializedDataset":
    """`ds` sorted by `keys` (unique together, so the order is total), materialized; sorted in one
    task when small, and then cut into as many blocks as shuffle partitions, so the work after a
    sort still has every CPU."""
    keys = [keys] if isinstance(keys, str) else list(keys)
    ds = ds.materialize()
    if not _fits_one_task(ds):
        return ds.sort(keys).materialize()
    refs = ds.to_arrow_refs()
    if not refs:
        return ds
    parts = shuffle_partitions()
    sorted_refs = _sorted_parts.options(num_returns=parts).remote(keys, parts, *refs)
    return ray.data.from_arrow_refs(sorted_refs if parts > 1 else [sorted_refs]).materialize()


@ray.remote
def _shared_groups(key: str, survivor: str, name: str, *tables: pa.Table) -> pa.Table:
    grouped = pa.concat_tables(tables, promote_options="permissive").group_by(key).aggregate(
        [(survivor, "count"), (survivor, "min")]
    )
    shared = grouped.filter(pc.greater(grouped[f"{survivor}_count"], 1))
    return pa.table({key: shared[key], name: shared[f"{survivor}_min"]})


def _duplicate_groups(
    rows: "ray.data.MaterializedDataset", key: str, survivor: str, name: str
) -> "ray.data.MaterializedDataset":
    """(key, min(survivor) as name) of every group of `rows` with more than one member."""
    from ray.data.aggregate import Count, Min

    if _fits_one_task(rows):
        refs = rows.to_arrow_refs()
        return ray.data.from_arrow_refs([_shared_groups.remote(key, survivor, name, *refs)]).materialize()
    groups = rows.groupby(key).aggregate(Count(), Min(survivor)).rename_columns({f"min({survivor})": name})
    return groups.map_batches(
        lambda t: t.filter(pc.greater(t["count()"], 1)).select([key, name]), batch_format="pyarrow"
    ).materialize()


def attach_groups(rows: "ray.data.Dataset", key: str, survivor: str, name: str) -> "ray.data.Dataset":
    """`rows` of groups (by `key`) with more than one member, each with its group's min(`survivor`) as `name`.

    Only the groups with duplicates are attached to the rows, by broadcast up to BROADCAST_KEYS
    groups and by a distributed join beyond.
    """
    rows = rows.materialize()
    groups = _duplicate_groups(rows, key, survivor, name)
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
    if not is_remote(url):
        return None, url.removeprefix("file://")
    fs, path = fsspec.core.url_to_fs(url)
    return PyFileSystem(_ObjectStoreHandler(fs)), path


def _per_file(names: list[str], read: Callable[[str], pa.Table]) -> "ray.data.Dataset":
    """A dataset with one read task per file, `read(name)` each, in `names` order."""

    def read_each(batch: dict) -> Iterator[pa.Table]:
        for name in batch["name"]:
            yield read(str(name))

    listing = ray.data.from_items([{"name": name} for name in names], override_num_blocks=max(1, len(names)))
    return listing.map_batches(read_each, batch_size=1, batch_format="numpy")


def _read_parquet_file(url: str, columns: list[str] | None = None) -> pa.Table:
    with fsspec.open(url, "rb") as handle:
        return pq.read_table(handle, columns=columns)


def parquet_files(url: str) -> list[str]:
    """The Parquet files a stage wrote under `url`, in name order."""
    fs, path = locate(url)
    return [fs.unstrip_protocol(file) for file in sorted(fs.glob(join(path, "*.parquet")))]


def read_parquet(url: str, columns: list[str] | None = None) -> "ray.data.Dataset":
    """The Parquet files a stage wrote under `url`, one read task per file, in name order; only
    `columns` when given (a pass over ids or reasons then leaves the texts on disk).

    Ray Data's own reader first samples the files in extra tasks to size its blocks: seconds per
    read on a small build, where a stage's files are already block-sized.
    """
    return _per_file(parquet_files(url), partial(_read_parquet_file, columns=columns))


def write_parquet(ds: "ray.data.Dataset", url: str) -> None:
    filesystem, path = _arrow_filesystem(url)
    ds.write_parquet(path, filesystem=filesystem)


def read_shards(root: str, relpaths: list[str]) -> "ray.data.Dataset":
    """A dataset over existing shards, one read task per shard, in shard order."""
    return _per_file(relpaths, lambda relpath: read_shard(root, relpath))


def has_files(url: str) -> bool:
    """Whether a stage output folder holds anything (Ray Data writes no file for a stage without rows)."""
    fs, path = fsspec.core.url_to_fs(url)
    return fs.exists(path) and bool(fs.ls(path))

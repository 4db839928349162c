"""Writing an ordered Ray dataset as shards with exact row boundaries, one Ray task per shard.

After the seeded sort, the dataset's blocks are in order. Their row counts give every row a
global index, so shard k holds exactly rows [k*shard_rows, (k+1)*shard_rows) of its phase
whatever Ray's block layout was. Texts are tokenized block by block first; each shard task
fetches the slices of the blocks it needs and writes its shard atomically. No stage gathers
the data on the driver.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import ray

from curate.curation.manifest import phase_entry
from curate.curation.shards import ShardInfo, shard_name, write_shard
from curate.jobs.datasets import sort_rows

LEADING_COLUMNS = ("id", "text", "input_ids")
# Columns the stages add to documents for their own use; never written to a shard.
INTERNAL_COLUMNS = ("input_pos", "origin", "order_key")


@dataclass(frozen=True)
class BlockSpan:
    ref: "ray.ObjectRef"
    start: int
    rows: int


@ray.remote
def _measure(table: pa.Table) -> tuple[int, pa.Schema]:
    return table.num_rows, table.schema


def ordered_blocks(ds: "ray.data.Dataset") -> tuple[list[BlockSpan], pa.Schema]:
    """The blocks of an ordered dataset with their global start rows, and one schema for all."""
    refs = ds.to_arrow_refs()
    measured = ray.get([_measure.remote(ref) for ref in refs])
    spans: list[BlockSpan] = []
    start = 0
    for ref, (rows, _) in zip(refs, measured):
        if rows:
            spans.append(BlockSpan(ref, start, rows))
            start += rows
    schemas = [schema for rows, schema in measured if rows]
    schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])
    return spans, schema


def canonical_schema(schema: pa.Schema, drop: tuple[str, ...] = ()) -> pa.Schema:
    """Leading columns first, then regime columns and input metadata in name order."""
    names = [name for name in schema.names if name not in drop]
    order = [name for name in LEADING_COLUMNS if name in names] + sorted(n for n in names if n not in LEADING_COLUMNS)
    return pa.schema([schema.field(name) for name in order])


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns and types (missing columns become nulls)."""
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


@ray.remote
def _write_shard_task(slices: list[tuple["ray.ObjectRef", int, int]], schema: pa.Schema, root: str, relpath: str) -> ShardInfo:
    parts = [conform(ray.get(ref).slice(offset, length), schema) for ref, offset, length in slices]
    table = pa.concat_tables(parts) if parts else schema.empty_table()
    return write_shard(table, root, relpath)


def write_spans(spans: list[BlockSpan], schema: pa.Schema, root: str, folder: str, shard_rows: int) -> list[ShardInfo]:
    """Write every row of `spans` as `folder/shard-XXXXX.arrow`, `shard_rows` rows each."""
    end_row = spans[-1].start + spans[-1].rows if spans else 0
    pending = []
    for index, shard_start in enumerate(range(0, end_row, shard_rows)):
        shard_end = min(shard_start + shard_rows, end_row)
        slices = []
        for span in spans:
            lo, hi = max(span.start, shard_start), min(span.start + span.rows, shard_end)
            if lo < hi:
                slices.append((span.ref, lo - span.start, hi - lo))
        pending.append(_write_shard_task.remote(slices, schema, root, f"{folder}/{shard_name(index)}"))
    return ray.get(pending)


def _with_token_ids(table: pa.Table, tokenizer_json: str) -> pa.Table:
    """`table` with the token ids of its texts as `input_ids`; rows that came with them keep theirs."""
    if "input_ids" in table.column_names:
        return table
    from tokenizers import Tokenizer

    from curate.curation.tokenizer import token_id_array

    return table.append_column("input_ids", token_id_array(Tokenizer.from_str(tokenizer_json), table.column("text").to_pylist()))


def write_dataset(
    ds: "ray.data.Dataset",
    root: str,
    folder: str,
    shard_rows: int,
    tokenizer_json: str | None = None,
    drop: tuple[str, ...] = (),
    like: pa.Schema | None = None,
) -> dict:
    """Write `ds` in its row order as `folder/shard-NNNNN.arrow` and return the manifest's phase entry.

    With `tokenizer_json`, texts are tokenized block by block (as many tasks as blocks, not as
    shards) before the shards are cut. Internal columns and `drop` are left out. `like` gives the
    types of the columns the rows share with a larger dataset they came from, so a part of P is
    written with P's types whatever its own blocks hold.
    """
    if tokenizer_json is not None:
        ds = ds.map_batches(_with_token_ids, fn_kwargs={"tokenizer_json": tokenizer_json}, batch_size=None, batch_format="pyarrow")
    ordered = ds.materialize()
    spans, schema = ordered_blocks(ordered)
    if like is not None:
        unified = pa.unify_schemas([schema, like], promote_options="permissive")
        schema = pa.schema([unified.field(name) for name in schema.names])
    schema = canonical_schema(schema, drop=INTERNAL_COLUMNS + drop)
    return phase_entry(folder, write_spans(spans, schema, root, folder, shard_rows))


def write_sorted(
    ds: "ray.data.Dataset", key: str | list[str], root: str, folder: str, schema: pa.Schema, shard_rows: int
) -> list[ShardInfo]:
    """Sort `ds` by `key` and write it with exactly `schema`; an empty dataset still gets one (empty) shard."""
    ordered = sort_rows(ds, key)
    if not ordered.count():
        return [write_shard(schema.empty_table(), root, f"{folder}/{shard_name(0)}")]
    spans, _ = ordered_blocks(ordered)
    return write_spans(spans, schema, root, folder, shard_rows)

"""Arrow IPC shards: deterministic names, atomic writes, per-shard fingerprints.

Every shard is written in the Arrow IPC *file* format (`pyarrow.ipc.new_file`) to a
temporary name and renamed, so a reader never sees a half-written shard. The bytes
depend only on the table's contents: the table is copied into fresh, compact buffers and
written in fixed-size record batches, whatever slicing and chunking Ray handed us.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import pyarrow as pa

from curate.curation.storage import read_bytes, write_bytes_atomic

RECORD_BATCH_ROWS = 8192


def shard_name(index: int) -> str:
    """The deterministic file name of shard `index`."""
    return f"shard-{index:05d}.arrow"


@dataclass(frozen=True)
class ShardInfo:
    """What the manifest records of one shard; `path` is relative to the build root."""

    path: str
    rows: int
    tokens: int
    bytes: int
    sha256: str

    @classmethod
    def of(cls, relpath: str, table: pa.Table, data: bytes) -> "ShardInfo":
        """The fingerprint of `table`, whose IPC file bytes are `data`."""
        return cls(relpath, table.num_rows, count_tokens(table), len(data), hashlib.sha256(data).hexdigest())

    def to_dict(self) -> dict:
        return asdict(self)


def count_tokens(table: pa.Table) -> int:
    """Number of tokens in a table's `input_ids` column (0 when untokenized)."""
    if "input_ids" not in table.column_names:
        return 0
    import pyarrow.compute as pc

    lengths = pc.list_value_length(table.column("input_ids"))
    return int(pc.sum(lengths).as_py() or 0)


def table_to_ipc_bytes(table: pa.Table) -> bytes:
    """Serialize a table as an Arrow IPC file whose bytes depend on its contents only.

    `take` copies every column, nested children included, into buffers holding exactly the
    selected values: a slice of a larger block otherwise drags its unused bytes into the file.
    """
    table = table.take(pa.array(range(table.num_rows), pa.int64())).combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=RECORD_BATCH_ROWS)
    return sink.getvalue().to_pybytes()


def write_shard(table: pa.Table, root: str, relpath: str) -> ShardInfo:
    """Write `table` to `root/relpath` atomically (temporary name, then rename)."""
    data = table_to_ipc_bytes(table)
    write_bytes_atomic(root, relpath, data)
    return ShardInfo.of(relpath, table, data)


def read_shard(root: str, relpath: str) -> pa.Table:
    """Read one shard (local path or any fsspec URL) into memory."""
    return pa.ipc.open_file(pa.BufferReader(read_bytes(root, relpath))).read_all()


def shard_info(root: str, relpath: str) -> ShardInfo:
    """Fingerprint a shard already on disk (used when a resumed build skips finished shards)."""
    data = read_bytes(root, relpath)
    table = pa.ipc.open_file(pa.BufferReader(data)).read_all()
    return ShardInfo.of(relpath, table, data)

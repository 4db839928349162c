"""Shard bytes depend on the table's contents only."""

from __future__ import annotations

import pyarrow as pa

from curate.curation.shards import table_to_ipc_bytes


def test_a_slice_of_a_larger_block_gives_the_same_bytes_as_a_fresh_table():
    records = [{"id": f"d{i}", "meta": {"source": "x" * i, "n": i}, "ids": list(range(i % 5))} for i in range(100)]
    block = pa.Table.from_pylist(records)
    fresh = pa.Table.from_pylist(records[10:30])
    assert table_to_ipc_bytes(block.slice(10, 20)) == table_to_ipc_bytes(fresh)


def test_chunking_does_not_change_the_bytes():
    table = pa.Table.from_pylist([{"id": f"d{i}", "text": "t" * i} for i in range(50)])
    rechunked = pa.concat_tables([table.slice(0, 7), table.slice(7, 30), table.slice(37)])
    assert table_to_ipc_bytes(rechunked) == table_to_ipc_bytes(table)

"""Seeded keys that order documents: functions of the id and the seed only.

They never depend on Ray's block order, the number of CPUs or Python's `hash()`, so a
sort by them is the same on a laptop and on a cluster, and scales to billions of rows.
"""

from __future__ import annotations

import pyarrow as pa
import xxhash


def keyed_hash(values: list[str], salt: str) -> pa.Array:
    """63 bits of xxh3 of `salt` and each value, as int64 (non-negative, so it sorts as unsigned)."""
    return pa.array([xxhash.xxh3_64_intdigest(f"{salt}\x00{value}".encode("utf-8", "surrogatepass")) >> 1 for value in values], pa.int64())


def order_keys(ids: pa.Array | pa.ChunkedArray, salt: str) -> pa.Array:
    return keyed_hash(ids.to_pylist(), salt)

"""Regime C's transform: a seeded subset of phase 1, each document repeated, copies shuffled.

Selection and placement are keyed hashes of the id (and copy index) with the seed, so they
do not change with Ray's block layout or the number of CPUs, and need no global sort of
the text: only of two integer keys.

Row count: with n phase-1 rows, k = ceil(n * fraction) documents are selected (the k
smallest selection keys) and each is copied `times` times; fraction * times == 1, so
k * times >= n, and the k * times - n copies with the largest placement keys are dropped.
At most `times - 1` copies go, so every selected document keeps at least one copy and
phase 1 has exactly n rows.
"""

from __future__ import annotations

import math

import pyarrow as pa

from curation.errors import UserError
from curation.order import keyed_hash

TOLERANCE = 1e-9


def check_repetition(fraction: float, times: int) -> None:
    if not 0 < fraction <= 1:
        raise UserError(f"--repeat-fraction must be in (0, 1], got {fraction}")
    if times < 1:
        raise UserError(f"--repeat-times must be at least 1, got {times}")
    if abs(fraction * times - 1) > TOLERANCE:
        raise UserError(
            f"--repeat-fraction x --repeat-times must be 1 so phase 1 keeps its size; got {fraction} x {times} = {fraction * times:g}"
        )


def selected_count(rows: int, fraction: float) -> int:
    return math.ceil(rows * fraction - TOLERANCE)


def with_selection_key(table: pa.Table, seed: int) -> pa.Table:
    return table.append_column("selection_key", keyed_hash(table["id"].to_pylist(), f"{seed}:select"))


def expand_copies(table: pa.Table, times: int, seed: int) -> pa.Table:
    """Each row `times` times with `copy_index` 0..times-1 and a seeded `placement_key`."""
    repeated = table.take(pa.array([row for row in range(table.num_rows) for _ in range(times)], pa.int64()))
    copy_index = pa.array([copy for _ in range(table.num_rows) for copy in range(times)], pa.int32())
    ids = repeated["id"].to_pylist()
    placement = keyed_hash([f"{i}\x00{c}" for i, c in zip(ids, copy_index.to_pylist())], f"{seed}:place")
    return repeated.append_column("copy_index", copy_index).append_column("placement_key", placement)

"""Regime C: a seeded tenth of phase 1, each document ten times, copies spread by a seeded shuffle.

With n phase-1 rows and `times` copies per document, floor(n / times) documents are repeated
exactly `times` times and one more document fills the n mod times remaining rows, so phase 1
keeps A's row count and every selected document but at most one appears exactly `times` times.
Selection and placement are keyed hashes of the id (and copy index) with the seed: they do not
change with Ray's block layout or the number of CPUs, and only two integer keys are sorted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import pyarrow as pa

from curate.curation.errors import UserError
from curate.curation.order import keyed_hash
from curate.regimes.base import (
    Phase1Context,
    Phase1Output,
    Phase1Transform,
    Regime,
    register,
)

TOLERANCE = 1e-9
REMAINDER_RULE = (
    "floor(rows / repeat_times) documents with the smallest seeded selection keys appear repeat_times "
    "times each; the next document appears rows mod repeat_times times"
)


@dataclass(frozen=True)
class RepetitionSettings:
    repeat_fraction: float = field(default=0.1, metadata={"help": "Share of phase 1 that is repeated."})
    repeat_times: int = field(default=10, metadata={"help": "Copies of each repeated document."})

    def __post_init__(self) -> None:
        fraction, times = self.repeat_fraction, self.repeat_times
        if not 0 < fraction <= 1:
            raise UserError(f"--repeat-fraction must be in (0, 1], got {fraction}")
        if times < 1:
            raise UserError(f"--repeat-times must be at least 1, got {times}")
        if abs(fraction * times - 1) > TOLERANCE:
            raise UserError(
                f"--repeat-fraction x --repeat-times must be 1 so phase 1 keeps its size; got {fraction} x {times} = {fraction * times:g}"
            )


def with_selection_key(table: pa.Table, seed: int) -> pa.Table:
    return table.append_column("selection_key", keyed_hash(table["id"].to_pylist(), f"{seed}:select"))


def expand_copies(table: pa.Table, times: int, seed: int) -> pa.Table:
    """Each row `times` times with `copy_index` 0..times-1 and a seeded `placement_key`."""
    table = table.drop_columns(["selection_key"])
    repeated = table.take(pa.array([row for row in range(table.num_rows) for _ in range(times)], pa.int64()))
    copy_index = pa.array([copy for _ in range(table.num_rows) for copy in range(times)], pa.int32())
    ids = repeated["id"].to_pylist()
    placement = keyed_hash([f"{i}\x00{c}" for i, c in zip(ids, copy_index.to_pylist())], f"{seed}:place")
    return repeated.append_column("copy_index", copy_index).append_column("placement_key", placement)


class Repetition(Phase1Transform):
    name = "repeat"
    settings_type = RepetitionSettings
    columns = ("copy_index",)

    def check(self, settings: Mapping[str, Any]) -> dict:
        return super().check(settings) | {"remainder": REMAINDER_RULE}

    def apply(self, context: Phase1Context) -> Phase1Output:
        times = context.settings["repeat_times"]
        phase1 = context.phase1().materialize()
        full, remainder = divmod(phase1.count(), times)
        keyed = phase1.map_batches(with_selection_key, fn_kwargs={"seed": context.seed}, batch_format="pyarrow")
        selected = keyed.sort(["selection_key", "id"]).limit(full + (1 if remainder else 0)).materialize()
        repeated, last = selected.split_at_indices([full])
        copies = repeated.map_batches(expand_copies, fn_kwargs={"times": times, "seed": context.seed}, batch_format="pyarrow")
        if remainder:
            copies = copies.union(
                last.map_batches(expand_copies, fn_kwargs={"times": remainder, "seed": context.seed}, batch_format="pyarrow")
            )
        ordered = copies.sort(["placement_key", "id", "copy_index"])
        return Phase1Output(context.write(ordered, drop=("placement_key",)))

    def copies(self, settings: Mapping[str, Any]) -> int:
        return settings["repeat_times"]


register(
    Regime(
        "C",
        "repetition-concentrated: a seeded 10% of A's phase 1, each repeated 10 times",
        Repetition(),
        {"lr_decay_style": "cosine"},
        derived_from="A",
    )
)

"""The stage helpers give the same rows whether a sort or a group count runs as one task or distributed."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

import curate.jobs.datasets
from curate.jobs.datasets import attach_groups, sort_rows
from curate.jobs.ray_cluster import init_ray


def _blocks(rows: list[dict], blocks: int):
    import ray

    step = len(rows) // blocks + 1
    return ray.data.from_arrow([pa.Table.from_pylist(rows[i : i + step]) for i in range(0, len(rows), step)])


@pytest.mark.parametrize("one_task_bytes", [curate.jobs.datasets.SINGLE_TASK_BYTES, 0], ids=["one-task", "distributed"])
def test_sort_and_group_give_the_same_rows_in_one_task_and_distributed(ray_local, monkeypatch, one_task_bytes):
    init_ray()
    monkeypatch.setattr(curate.jobs.datasets, "SINGLE_TASK_BYTES", one_task_bytes)
    rng = random.Random(5)
    rows = [{"key": rng.randrange(40), "id": f"doc-{i:04d}", "pos": i} for i in range(300)]
    rng.shuffle(rows)

    ordered = sort_rows(_blocks(rows, 7), ["key", "id"]).take_all()
    assert [(r["key"], r["id"]) for r in ordered] == sorted((r["key"], r["id"]) for r in rows)

    grouped = attach_groups(_blocks(rows, 7), "key", "pos", "first_pos").take_all()
    first = {}
    for row in rows:
        first[row["key"]] = min(first.get(row["key"], row["pos"]), row["pos"])
    sizes = {key: sum(1 for r in rows if r["key"] == key) for key in first}
    expected = sorted((r["pos"], first[r["key"]]) for r in rows if sizes[r["key"]] > 1)
    assert sorted((r["pos"], r["first_pos"]) for r in grouped) == expected

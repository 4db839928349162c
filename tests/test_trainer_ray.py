"""Ray Train: two DDP workers on a local Ray train on the same data as one process."""

from __future__ import annotations

import json

import pytest

from test_trainer_support import TEST_MODEL, make_build, one_torch_thread, stdlib_documents
from curate.trainer.config import resolve_config


def test_two_ray_workers_match_one_process(ray_local, tmp_path):
    from curate.trainer.ray_train import train_on_ray
    from curate.trainer.train import train

    build = make_build(tmp_path / "build", stdlib_documents(8))
    config = resolve_config("tiny", {**TEST_MODEL, "train_samples": 8 * 3, "lr_warmup_samples": 8})
    result = train_on_ray(config, str(build), tmp_path / "ray-run", resume=False, workers=2, gpus_per_worker=0)
    with one_torch_thread():
        alone = train(config, str(build), tmp_path / "one-run", echo=lambda line: None)
    assert result.iteration == alone.iteration == 3
    distributed = [json.loads(line) for line in (tmp_path / "ray-run" / "log.jsonl").read_text().splitlines()]
    single = [json.loads(line) for line in (tmp_path / "one-run" / "log.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in distributed] == [1, 2, 3]
    # Same global batches, same initial weights: only the order of floating-point sums differs.
    assert [e["loss"] for e in distributed] == pytest.approx([e["loss"] for e in single], rel=1e-5)
    assert result.last_loss == pytest.approx(alone.last_loss, rel=1e-5)

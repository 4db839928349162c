"""The same training loop on Ray Train: TorchTrainer starts the workers and their process group.

Each worker runs `curate.trainer.train.train` unchanged; it finds the process group Ray made and
wraps the model in DDP. Rank 0 writes the run folder itself (checkpoints, log), so on a
cluster `--output` is object storage (s3://, gs://: `curate.trainer.storage` pushes every checkpoint
there and pulls the newest on resume) or a folder every node mounts. Ray Train's storage path is
`OUTPUT/ray` on the same filesystem; its own checkpoint upload is not used, because our
checkpoints already are the durable state.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import fsspec
from pyarrow.fs import FSSpecHandler, PyFileSystem

from curate.trainer.config import TrainConfig
from curate.trainer.storage import RunStorage
from curate.trainer.train import TrainResult, run_result


def _worker_loop(loop_config: dict) -> None:
    import ray.train.torch

    from curate.trainer.train import train

    train(
        TrainConfig(**loop_config["config"]),
        loop_config["data"],
        loop_config["output"],
        resume=loop_config["resume"],
        device=ray.train.torch.get_device(),
    )


def train_on_ray(
    config: TrainConfig, data: str, output: str | Path, resume: bool, workers: int, gpus_per_worker: float
) -> TrainResult:
    """Run `train()` on `workers` Ray Train workers (DDP); the result is read back from the run folder."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    storage = RunStorage(output)
    output = storage.url or str(storage.local)
    if "://" not in data:
        data = str(Path(data).resolve())
    resources = {"GPU": gpus_per_worker} if gpus_per_worker > 0 else {"CPU": 1}
    filesystem = PyFileSystem(FSSpecHandler(storage.fs)) if storage.fs is not None else None
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"config": dataclasses.asdict(config), "data": data, "output": output, "resume": resume},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus_per_worker > 0,
                                     resources_per_worker=resources),
        run_config=RunConfig(
            name=f"curate-train-{Path(output).name}",
            storage_path=f"{fsspec.core.url_to_fs(output)[1]}/ray",
            storage_filesystem=filesystem,
        ),
    )
    trainer.fit()
    storage.pull()
    return run_result(storage)

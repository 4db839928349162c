"""The run's iteration-0 checkpoint: the initial weights every later checkpoint is diagnosed against.

`train()` saves milestones only. An experiment needs the weights before the first step, in
the run's own `checkpoints/` folder, so it writes `iter_0000000` exactly as `train()` would
have started (same seed, same model, same resolved configuration and data fingerprint) and
then trains with `resume=True`: the resumed run is the run that would have been trained
from scratch, and the checkpoint is an ordinary one that `curate diagnose` reads. A run on
object storage gets it as training would: written in a local copy, then pushed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from curate.trainer.checkpoint import newest_checkpoint, save_checkpoint
from curate.trainer.config import TrainConfig
from curate.trainer.data import data_fingerprint, load_packed_phases
from curate.trainer.model import GPT
from curate.trainer.storage import RunStorage
from curate.trainer.train import build_optimizer


def save_initial_checkpoint(config: TrainConfig, data: str, output: str | Path) -> str:
    """Write `output/checkpoints/iter_0000000` unless the run already has a checkpoint; returns the newest one
    where the run lives (a local path or URL)."""
    existing = newest_checkpoint(output)
    if existing is not None:
        return existing
    storage = RunStorage(output)
    samples = config.train_iters * config.global_batch_size
    packed, manifest = load_packed_phases(data, config.seq_length, samples, config.seed)
    if config.vocab_size == 0:
        config = dataclasses.replace(config, vocab_size=config.padded_vocab_size(int(manifest["tokenizer"]["vocab_size"])))
    torch.manual_seed(config.seed)
    model = GPT(config)
    state = {"iteration": 0, "consumed_samples": 0, "lr": 0.0,
             "data_fingerprint": data_fingerprint(manifest, config.seed, config.seq_length),
             "config": dataclasses.asdict(config), "epochs": packed.epochs()}
    checkpoint = save_checkpoint(storage.local, model, build_optimizer(model, config), state)
    storage.push(checkpoint)
    return storage.location(checkpoint)

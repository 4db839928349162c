"""Learning rate as a pure function of consumed samples (Megatron's sample-based schedule).

Linear warmup from 0 to `lr` over `lr_warmup_samples`, then either cosine decay to
`min_lr` at `train_samples` (regimes A, C, D) or constant `lr` (regime B). A step's rate
is taken at the samples consumed *including* its own batch, so the first step does not
waste its batch at rate 0. Being stateless, the schedule needs nothing restored on resume.
"""

from __future__ import annotations

import math

from curate.trainer.config import TrainConfig


def learning_rate(config: TrainConfig, consumed_samples: int) -> float:
    if config.lr_warmup_samples > 0 and consumed_samples <= config.lr_warmup_samples:
        return config.lr * consumed_samples / config.lr_warmup_samples
    if config.lr_decay_style == "constant":
        return config.lr
    decay_samples = config.train_samples - config.lr_warmup_samples
    progress = min(1.0, (consumed_samples - config.lr_warmup_samples) / max(1, decay_samples))
    return config.min_lr + (config.lr - config.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

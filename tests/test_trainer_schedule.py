"""Learning-rate schedules (A's cosine, B's constant) and the configuration layers."""

from __future__ import annotations

import math

import pytest

from curate.curation.errors import UserError
from curate.trainer.config import resolve_config
from curate.trainer.schedule import learning_rate

SCHEDULE = {"lr": 1e-3, "min_lr": 1e-4, "lr_warmup_samples": 100, "train_samples": 1100, "global_batch_size": 10,
            "micro_batch_size": 5}


def test_cosine_warms_up_linearly_then_decays_to_the_minimum():
    config = resolve_config("tiny", {**SCHEDULE, "lr_decay_style": "cosine"})
    assert learning_rate(config, 50) == pytest.approx(5e-4)
    assert learning_rate(config, 100) == pytest.approx(1e-3)
    assert learning_rate(config, 600) == pytest.approx(1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert learning_rate(config, 1100) == pytest.approx(1e-4)
    rates = [learning_rate(config, samples) for samples in range(100, 1101, 10)]
    assert all(a > b for a, b in zip(rates, rates[1:]))


def test_constant_keeps_the_peak_after_warmup():
    config = resolve_config("tiny", {**SCHEDULE, "lr_decay_style": "constant"})
    assert learning_rate(config, 50) == pytest.approx(5e-4)
    assert {learning_rate(config, samples) for samples in range(100, 1101, 10)} == {1e-3}


def test_later_layers_override_earlier_ones_and_bad_values_are_user_errors():
    config = resolve_config("paper-0.6b", {"lr_decay_style": "constant"}, {"lr_decay_style": "cosine", "lr": 1e-4})
    assert (config.lr_decay_style, config.lr, config.num_layers) == ("cosine", 1e-4, 32)
    assert config.checkpoint_iterations() == [2034, 20345, 40690, 61035, 73242]
    with pytest.raises(UserError, match="lr-decay-style"):
        resolve_config("tiny", {"lr_decay_style": "linear"})
    with pytest.raises(UserError, match="unknown training option"):
        resolve_config("tiny", {"learning_rate": 1})
    with pytest.raises(UserError, match="unknown preset"):
        resolve_config("huge")

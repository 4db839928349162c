"""One seed of one regime of an experiment, as one Ray task: train, then diagnose and evaluate every
checkpoint.

Everything here skips what a marker says is finished: a run whose newest checkpoint is its
last iteration is not trained again, a checkpoint with a diagnostics `summary.json` is not
analysed again (the watcher beside training writes most of them), one with an evaluation file
is not evaluated again. The run's combined `diagnostics/<regime>/seed-<n>/summary.json` is
written last; `eval/<regime>.json` gathers every seed once all have run.
The experiment folder may be local or on object storage: every file goes through its filesystem.
"""

from __future__ import annotations

import os

from curate.curation.manifest import canonical_json, read_json
from curate.curation.storage import exists, join
from curate.diagnostics.checkpoints import resolve_checkpoints, run_iterations
from curate.diagnostics.diagnose import SUMMARY_FILE, diagnose
from curate.diagnostics.summary import build_summary
from curate.diagnostics.watch import AgainstBase, watching
from curate.jobs.experiment_layout import Layout, write_if_changed
from curate.trainer.checkpoint import read_state
from curate.trainer.config import TrainConfig
from curate.trainer.evaluate import evaluate_checkpoint, load_holdout
from curate.trainer.initial import save_initial_checkpoint
from curate.trainer.train import train


def train_regime(config: TrainConfig, layout: Layout, regime: str, seed: int) -> None:
    """Train from the iteration-0 checkpoint to the end, continuing a run that stopped midway; a watcher
    diagnoses each checkpoint against iteration 0 as it is written (diagnose_regime then finds it done)."""
    run, data = layout.run(regime, seed), layout.build(regime)
    if read_state(save_initial_checkpoint(config, data, run))["iteration"] < config.train_iters:
        against = AgainstBase(base=run_iterations(run)[0], folder=layout.diagnostics(regime, seed))
        with watching(run, against):
            train(config, data, run, resume=True, echo=lambda line: None)


def diagnose_regime(layout: Layout, regime: str, seed: int) -> list[str]:
    """Diagnose each checkpoint against iteration 0 (one folder per checkpoint) unless the watcher did;
    returns the checkpoints."""
    checkpoints = [checkpoint.path for checkpoint in resolve_checkpoints([layout.run(regime, seed)])]
    base = checkpoints[0]
    summaries, skipped = [], []
    for checkpoint in checkpoints:
        folder = layout.diagnostics(regime, seed, os.path.basename(checkpoint))
        if not exists(folder, SUMMARY_FILE):
            diagnose([checkpoint], folder, base=base)
        summary = read_json(folder, SUMMARY_FILE)
        summaries.extend(summary["checkpoints"])
        skipped = summary["skipped"]
    combined = build_summary(summaries, skipped, base)
    write_if_changed(join(layout.diagnostics(regime, seed), SUMMARY_FILE), canonical_json(combined))
    return checkpoints


def evaluate_regime(layout: Layout, regime: str, seed: int, checkpoints: list[str], slice_field: str | None) -> None:
    """Held-out loss of each of the seed's checkpoints on the holdout (the base build's, copied into every
    derived one)."""
    held_out = None
    for checkpoint in checkpoints:
        path = layout.evaluation(regime, seed, os.path.basename(checkpoint))
        if not exists(path):
            held_out = held_out or load_holdout(layout.build(regime), slice_field)
            write_if_changed(path, canonical_json(evaluate_checkpoint(checkpoint, held_out)))


def write_evaluation(layout: Layout, regime: str, seeds: int, slice_field: str | None) -> None:
    """`eval/<regime>.json`: every seed's checkpoint evaluations, in seed and step order."""
    runs = []
    for seed in range(seeds):
        checkpoints = [os.path.basename(path) for path in run_iterations(layout.run(regime, seed))]
        runs.append({"seed": seed, "checkpoints": [read_json(layout.evaluation(regime, seed, c)) for c in checkpoints]})
    record = {"regime": regime, "holdout": "builds/A/holdout", "slice_field": slice_field, "seeds": runs}
    write_if_changed(layout.evaluation(regime), canonical_json(record))


def run_regime(config: TrainConfig, root: str, regime: str, seed: int, slice_field: str | None) -> None:
    """Train, diagnose and evaluate one seed of one regime of the experiment in `root`."""
    layout = Layout(root)
    train_regime(config, layout, regime, seed)
    checkpoints = diagnose_regime(layout, regime, seed)
    evaluate_regime(layout, regime, seed, checkpoints, slice_field)

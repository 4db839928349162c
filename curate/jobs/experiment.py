"""`curate experiment`: the paper's controlled study (section 4) in one resumable command.

EXP/builds/A is built from the input (by default a seeded sample of the preset's size of its
deduplicated documents) and the other regimes are derived from it. Every regime then trains with
the same preset, tokenizer and sample budget (only the build's recipe overrides and phase 1
differ) and with each of `seeds` seeds (different initialisation and data order, the same for every
regime), from an iteration-0 checkpoint to the paper's milestones. The budget is one pass over the
base build's tokens, phase 1 in the first half, as in the paper; `--train-option train_samples=N`
sets another. Each checkpoint is diagnosed against iteration 0 while the run trains and evaluated
on the holdout every build shares. summary.json and report.html come last.

Each run (one regime, one seed) is one Ray task: with `gpus_per_run` the task asks for that many
GPUs, so a cluster with enough of them trains the runs at once; without, it asks for every CPU
of the largest node and at most one runs per such node, so a laptop trains them one after
another, every regime's first seed first.

Resume: every part leaves a marker that says it finished (a build's manifest, the run's
final checkpoint, each checkpoint's diagnostics summary and evaluation file); a rerun skips
what is marked and finishes the rest, and rewrites summary.json and report.html only when
their bytes would change. EXP is a local path or an fsspec URL (s3://, gs://): every part reads
and writes through its filesystem, markers included, so a rerun on object storage resumes too.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, replace
from typing import Callable

import ray

from curate.curation.errors import UserError
from curate.curation.manifest import (
    canonical_json,
    is_complete,
    load_manifest,
    read_json,
)
from curate.curation.storage import absolute, exists, isdir, join, listdir
from curate.jobs.build import BuildConfig, RunOptions, run_build
from curate.jobs.experiment_layout import Layout, write_if_changed
from curate.jobs.experiment_regime import run_regime, write_evaluation
from curate.jobs.ray_cluster import init_ray
from curate.regimes import default_study, get_regime

CONFIG_FILE = "experiment.json"


@dataclass(frozen=True)
class ExperimentConfig:
    """What decides an experiment's results: the base regime's build configuration, the regimes (the
    base first), the preset and the training options every regime shares, each regime's settings
    given on the command line, the evaluation slice field, and how many seeds every regime trains with."""

    base: BuildConfig
    regimes: tuple[str, ...]
    preset: str = "small"
    train_overrides: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    slice_field: str | None = "meta.source"
    seeds: int = 3


@dataclass(frozen=True)
class ExperimentOptions:
    """Where and how it runs; nothing here changes a result."""

    output: str
    gpus_per_run: float = 0.0
    num_cpus: int | None = None
    address: str | None = None


def parse_regimes(text: str) -> tuple[str, ...]:
    """Regimes in the order given, checked: a regime built from its input first, then regimes derived
    from it, each once."""
    regimes = tuple(get_regime(part.strip()).name for part in text.split(",") if part.strip())
    if not regimes or len(set(regimes)) != len(regimes):
        raise UserError("--regimes names each regime once, the base regime first")
    base = get_regime(regimes[0])
    strays = [name for name in regimes[1:] if get_regime(name).derived_from != base.name]
    if base.derived_from is not None or strays:
        family = ", ".join(regime.name for regime in default_study())
        raise UserError(f"--regimes must start with a base regime and name regimes derived from it (e.g. {family})")
    return regimes


def check_config(config: ExperimentConfig) -> None:
    """Refuse, with one line, what cannot run: evaluation without a holdout, settings that cannot work."""
    if not 0 < config.base.holdout < 1:
        raise UserError("the experiment evaluates on held-out data: --holdout must be in (0, 1)")
    if config.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {config.seeds}")
    for name in config.regimes:
        get_regime(name).transform.check(config.settings.get(name, {}))


def _record(config: ExperimentConfig) -> dict:
    return json.loads(canonical_json(dataclasses.asdict(config)))


def claim_folder(layout: Layout, config: ExperimentConfig) -> None:
    """Write EXP/experiment.json on the first run; a rerun must have the same configuration, and may
    ask for more seeds: seed n's runs do not depend on how many seeds there are, so those already
    there are kept and only the new ones train."""
    record = _record(config)
    if exists(layout.root, CONFIG_FILE):
        recorded = read_json(layout.root, CONFIG_FILE)
        if recorded | {"seeds": config.seeds} != record:
            raise UserError(f"{layout.root} holds an experiment with another configuration; choose a new --output")
        if config.seeds < recorded["seeds"]:
            raise UserError(
                f"{layout.root} holds {recorded['seeds']} seeds and this run asks for {config.seeds} (the preset's "
                "default when --seeds is not given): --seeds may add seeds, not drop them"
            )
        write_if_changed(join(layout.root, CONFIG_FILE), canonical_json(record))
        return
    if listdir(layout.root):
        raise UserError(f"{layout.root} exists, is not empty and holds no {CONFIG_FILE}; choose a new --output")
    write_if_changed(join(layout.root, CONFIG_FILE), canonical_json(record))


def build_regimes(config: ExperimentConfig, layout: Layout, echo: Callable[[str], None]) -> None:
    """The base regime from the input, then each other regime derived from it; complete builds are skipped."""
    for regime in config.regimes:
        out = layout.build(regime)
        if is_complete(out):
            continue
        settings = config.settings.get(regime, {})
        if regime == config.base.regime:
            build = replace(config.base, settings=settings)
        else:
            build = replace(config.base, regime=regime, inputs=(), source=layout.build(config.base.regime), settings=settings,
                            sample_docs=0)
        echo(f"building {regime} -> {out}")
        run_build(build, RunOptions(output=out, resume=isdir(out), quiet=True))


def sample_budget(config: ExperimentConfig, layout: Layout) -> dict:
    """One pass over the base build's packed sequences (phase 1 in the first half), with the preset's
    share of warmup; nothing when the user set `train_samples` (their budget wins)."""
    from curate.trainer.config import resolve_config
    from curate.trainer.data import phase_sequences

    if "train_samples" in config.train_overrides:
        return {}
    preset = resolve_config(config.preset, config.train_overrides)
    manifest = load_manifest(layout.build(config.base.regime))
    sequences = sum(phase_sequences(phase, preset.seq_length) for phase in manifest["phases"])
    samples = max(1, sequences // preset.global_batch_size) * preset.global_batch_size
    budget = {"train_samples": samples}
    if "lr_warmup_samples" not in config.train_overrides:
        budget["lr_warmup_samples"] = round(preset.lr_warmup_samples * samples / preset.train_samples)
    return budget


def train_config(config: ExperimentConfig, layout: Layout, regime: str, budget: dict):
    """The regime's training configuration: the shared preset, budget and overrides under its build's recipe."""
    from curate.trainer.config import resolve_config

    recipe = load_manifest(layout.build(regime)).get("recipe", {}).get("train_overrides", {})
    return resolve_config(config.preset, recipe, budget | config.train_overrides)


def run_done(layout: Layout, regime: str, seed: int, train_iters: int) -> bool:
    """The run's last part (its last checkpoint's evaluation, written after its diagnostics) exists."""
    from curate.trainer.checkpoint import checkpoint_name

    return exists(layout.diagnostics(regime, seed), "summary.json") and exists(
        layout.evaluation(regime, seed, checkpoint_name(train_iters))
    )


def _node_cpus() -> list[float]:
    return [node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node["Alive"]]


def _run_all(pending: list[tuple[str, int]], submit: Callable[[tuple[str, int]], "ray.ObjectRef"], limit: int,
            echo: Callable[[str], None]) -> None:
    """Submit the runs in order, at most `limit` in flight, and wait for each."""
    waiting, in_flight = list(pending), {}
    while waiting or in_flight:
        while waiting and len(in_flight) < limit:
            run = waiting.pop(0)
            in_flight[submit(run)] = run
        (done,), _ = ray.wait(list(in_flight), num_returns=1)
        regime, seed = in_flight.pop(done)
        ray.get(done)
        echo(f"{regime} seed {seed}: trained, diagnosed and evaluated")


def run_experiment(config: ExperimentConfig, options: ExperimentOptions, echo: Callable[[str], None] = print) -> dict:
    """Build, train, diagnose and evaluate every regime (skipping finished parts); returns the summary."""
    from curate.diagnostics.experiment_report import render_experiment_report
    from curate.diagnostics.experiment_summary import experiment_summary

    check_config(config)
    layout = Layout(absolute(options.output))
    claim_folder(layout, config)
    init_ray(options.address, options.num_cpus)
    build_regimes(config, layout, echo)
    runs = [(regime, seed) for seed in range(config.seeds) for regime in config.regimes]
    budget = sample_budget(config, layout)
    regime_configs = {regime: train_config(config, layout, regime, budget) for regime in config.regimes}
    # Seed n trains with the configuration's seed plus n.
    configs = {(regime, seed): replace(regime_configs[regime], seed=regime_configs[regime].seed + seed) for regime, seed in runs}
    pending = [run for run in runs if not run_done(layout, *run, configs[run].train_iters)]
    if pending:
        echo(f"training, diagnosing and evaluating {len(pending)} runs: {', '.join(f'{r} seed {s}' for r, s in pending)}")
        if options.gpus_per_run > 0:
            task = ray.remote(run_regime).options(num_gpus=options.gpus_per_run, num_cpus=1)
            limit = len(pending)
        else:
            # A CPU run takes every CPU of the largest node. A run waiting in ray.get inside its task
            # lends its CPUs back, and Ray would start the next run beside it, so the driver keeps at
            # most one run per such node in flight: on a laptop the runs follow each other.
            node_cpus = _node_cpus()
            largest = max(node_cpus, default=1.0) or 1.0
            task = ray.remote(run_regime).options(num_cpus=largest)
            limit = sum(cpus >= largest for cpus in node_cpus) or 1
        _run_all(pending, lambda run: task.remote(configs[run], layout.root, *run, config.slice_field), limit, echo)
    for regime in config.regimes:
        write_evaluation(layout, regime, config.seeds, config.slice_field)
    summary = experiment_summary(layout.root, list(config.regimes), config.preset, config.slice_field, config.seeds)
    write_if_changed(join(layout.root, "summary.json"), canonical_json(summary))
    write_if_changed(join(layout.root, "report.html"), render_experiment_report(summary))
    return summary

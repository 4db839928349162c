"""`curate experiment`: the paper's controlled study (section 4) in one resumable command.

EXP/builds/A is built from the input and the other regimes are derived from it; every regime
then trains with the same preset, seed, tokenizer and sample budget (only the build's recipe
overrides and phase 1 differ), from an iteration-0 checkpoint to the paper's milestones. Each
checkpoint is diagnosed against iteration 0 and evaluated on A's holdout. summary.json and
report.html come last.

Each regime's training, diagnostics and evaluation are one Ray task: with `gpus_per_run` the
task asks for that many GPUs, so a cluster with enough of them trains the regimes at once;
without, it asks for every CPU of the largest node, so a laptop trains them one after another.

Resume: every part leaves a marker that says it finished (a build's manifest, the run's
final checkpoint, each checkpoint's diagnostics summary and evaluation file); a rerun skips
what is marked and finishes the rest, and rewrites summary.json and report.html only when
their bytes would change.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field, replace
from typing import Callable

import ray

from curate.curation.errors import UserError
from curate.curation.manifest import canonical_json, is_complete, load_manifest
from curate.jobs.build import BuildConfig, RunOptions, run_build
from curate.jobs.ray_cluster import init_ray

REGIMES = ("A", "B", "C", "D")
CONFIG_FILE = "experiment.json"


@dataclass(frozen=True)
class ExperimentConfig:
    """What decides an experiment's results: A's build configuration, the regimes, the preset and
    the training options every regime shares, D's teacher settings and the evaluation slice field."""

    base: BuildConfig
    regimes: tuple[str, ...] = REGIMES
    preset: str = "small"
    train_overrides: dict = field(default_factory=dict)
    teacher: dict = field(default_factory=dict)
    slice_field: str | None = "meta.source"


@dataclass(frozen=True)
class ExperimentOptions:
    """Where and how it runs; nothing here changes a result."""

    output: str
    gpus_per_run: float = 0.0
    num_cpus: int | None = None
    address: str | None = None


@dataclass(frozen=True)
class Layout:
    """The experiment folder's paths (DESIGN.md, "Output layout of an experiment")."""

    root: str

    def build(self, regime: str) -> str:
        return os.path.join(self.root, "builds", regime)

    def run(self, regime: str) -> str:
        return os.path.join(self.root, "runs", regime)

    def diagnostics(self, regime: str, checkpoint: str | None = None) -> str:
        return os.path.join(self.root, "diagnostics", regime, *([checkpoint] if checkpoint else []))

    def evaluation(self, regime: str, checkpoint: str | None = None) -> str:
        if checkpoint is None:
            return os.path.join(self.root, "eval", f"{regime}.json")
        return os.path.join(self.root, "eval", regime, f"{checkpoint}.json")


def parse_regimes(text: str) -> tuple[str, ...]:
    """`A,B,C,D` in the order given, checked: A first and each regime once."""
    regimes = tuple(part.strip().upper() for part in text.split(",") if part.strip())
    unknown = [regime for regime in regimes if regime not in REGIMES]
    if unknown:
        raise UserError(f"--regimes takes {', '.join(REGIMES)}; not {', '.join(unknown)}")
    if not regimes or regimes[0] != "A" or len(set(regimes)) != len(regimes):
        raise UserError("--regimes must start with A (the others derive from it) and name each regime once")
    return regimes


def check_config(config: ExperimentConfig) -> None:
    """Refuse, with one line, what cannot run: D without a teacher, evaluation without a holdout."""
    if "D" in config.regimes and not (config.teacher.get("model") or config.teacher.get("endpoint")):
        raise UserError("regime D needs a teacher: pass --teacher-model (vLLM) or --teacher-endpoint (OpenAI-compatible)")
    if not 0 < config.base.holdout < 1:
        raise UserError("the experiment evaluates on held-out data: --holdout must be in (0, 1)")


def _record(config: ExperimentConfig) -> dict:
    return json.loads(canonical_json(dataclasses.asdict(config)))


def claim_folder(layout: Layout, config: ExperimentConfig) -> None:
    """Write EXP/experiment.json on the first run; a rerun must have the same configuration."""
    path = os.path.join(layout.root, CONFIG_FILE)
    record = _record(config)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            if json.load(handle) != record:
                raise UserError(f"{layout.root} holds an experiment with another configuration; choose a new --output")
        return
    if os.path.isdir(layout.root) and os.listdir(layout.root):
        raise UserError(f"{layout.root} exists, is not empty and holds no {CONFIG_FILE}; choose a new --output")
    write_if_changed(path, canonical_json(record))


def write_if_changed(path: str, text: str) -> bool:
    """Write `path` atomically unless it already holds `text`; True when written."""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            if handle.read() == text:
                return False
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)
    return True


def build_regimes(config: ExperimentConfig, layout: Layout, echo: Callable[[str], None]) -> None:
    """A from the input, then each other regime derived from A; complete builds are skipped."""
    for regime in config.regimes:
        out = layout.build(regime)
        if is_complete(out):
            continue
        if regime == "A":
            build = config.base
        else:
            settings = config.teacher if regime == "D" else {}
            build = replace(config.base, regime=regime, inputs=(), source=layout.build("A"), settings=settings)
        echo(f"building {regime} -> {out}")
        run_build(build, RunOptions(output=out, resume=os.path.isdir(out), quiet=True))


def train_config(config: ExperimentConfig, layout: Layout, regime: str):
    """The regime's training configuration: the shared preset and overrides, under its build's recipe."""
    from curate.trainer.config import resolve_config

    recipe = load_manifest(layout.build(regime)).get("recipe", {}).get("train_overrides", {})
    return resolve_config(config.preset, recipe, config.train_overrides)


def regime_done(layout: Layout, regime: str) -> bool:
    """The regime's last part (its evaluation file, written after its diagnostics) exists."""
    return os.path.exists(layout.evaluation(regime)) and os.path.exists(os.path.join(layout.diagnostics(regime), "summary.json"))


def _largest_node_cpus() -> float:
    """The CPUs of the largest node: a CPU run takes a whole node, so runs on one node follow each other."""
    return max((node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node["Alive"]), default=1.0) or 1.0


def run_experiment(config: ExperimentConfig, options: ExperimentOptions, echo: Callable[[str], None] = print) -> dict:
    """Build, train, diagnose and evaluate every regime (skipping finished parts); returns the summary."""
    from curate.diagnostics.experiment_report import render_experiment_report
    from curate.diagnostics.experiment_summary import experiment_summary

    check_config(config)
    layout = Layout(os.path.abspath(options.output))
    claim_folder(layout, config)
    init_ray(options.address, options.num_cpus)
    build_regimes(config, layout, echo)
    configs = {regime: train_config(config, layout, regime) for regime in config.regimes}
    pending = [regime for regime in config.regimes if not regime_done(layout, regime)]
    if pending:
        resources = ({"num_gpus": options.gpus_per_run, "num_cpus": 1} if options.gpus_per_run > 0
                     else {"num_cpus": _largest_node_cpus()})
        echo(f"training, diagnosing and evaluating {', '.join(pending)}")
        from curate.jobs.experiment_regime import run_regime

        task = ray.remote(run_regime).options(**resources)
        refs = {regime: task.remote(configs[regime], layout.root, regime, config.slice_field) for regime in pending}
        for regime, ref in refs.items():
            ray.get(ref)
            echo(f"{regime}: trained, diagnosed and evaluated")
    summary = experiment_summary(layout.root, list(config.regimes), config.preset, config.slice_field)
    write_if_changed(os.path.join(layout.root, "summary.json"), canonical_json(summary))
    write_if_changed(os.path.join(layout.root, "report.html"), render_experiment_report(summary))
    return summary

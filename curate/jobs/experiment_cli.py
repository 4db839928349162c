"""`curate experiment`: build, train, diagnose and evaluate several regimes side by side (jobs/experiment.py)."""

from __future__ import annotations

import inspect
from typing import Any, Optional

import typer

from curate.curation.errors import UserError
from curate.jobs.build_cli import (
    refuse_other_regimes_options,
    regime_parameters,
    regime_settings,
)
from curate.jobs.options import command, parse_value
from curate.regimes import default_study, get_regime

# A CPU preset scales the corpus, not the pass: each run makes one pass over a sample this size of
# the deduplicated documents (on the mixed corpus, `small` trains about 5 minutes per run on 2 CPUs).
PRESET_DOCS = {"tiny": 200, "small": 1000, "paper-0.6b": 0}
# A verdict needs the seed noise, which CPU runs can afford; a paper-0.6b seed is thousands of GPU-hours.
PRESET_SEEDS = {"tiny": 3, "small": 3, "paper-0.6b": 1}


def parse_train_options(pairs: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` pairs of trainer options (TrainConfig field names), typed as the field is."""
    from curate.trainer.config import config_fields

    fields = {f.name: f for f in config_fields()}
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or key not in fields:
            raise UserError(f"--train-option takes KEY=VALUE with a trainer option as KEY (e.g. train_samples=3200), not {pair!r}")
        overrides[key] = parse_value(fields[key], text)
    return overrides


def _experiment_parameters() -> list[inspect.Parameter]:
    keyword = inspect.Parameter.KEYWORD_ONLY

    def option(name: str, annotation: Any, declaration: Any) -> inspect.Parameter:
        return inspect.Parameter(name, keyword, annotation=annotation, default=declaration)

    study = default_study()
    return [
        option("inputs", Optional[list[str]], typer.Option(None, "--input", "-i", help="Input URL(s); default: the embedded corpus.")),
        option("regimes", str, typer.Option(
            ",".join(regime.name for regime in study), "--regimes", help="Comma-separated regimes, the base regime first."
        )),
        option("preset", str, typer.Option("small", "--preset", help="Trainer preset every regime uses (small on CPUs, paper-0.6b on GPUs).")),
        option("output", str, typer.Option(..., "--output", "-o", help="The experiment folder EXP (local path or fsspec URL).")),
        option("holdout", float, typer.Option(0.05, help="Seeded share of the deduplicated documents held out for evaluation.")),
        option("docs", Optional[int], typer.Option(None, help=(
            "Build from a seeded sample of this many deduplicated documents (0: all); default: the preset's ("
            + ", ".join(f"{preset} {docs or 'all'}" for preset, docs in PRESET_DOCS.items()) + ").")
        )),
        option("seeds", Optional[int], typer.Option(None, help=(
            "Train every regime with this many seeds (initialisation and data order); default: the preset's ("
            + ", ".join(f"{preset} {seeds}" for preset, seeds in PRESET_SEEDS.items()) + "). "
            "Rerun with more to add seeds: only the new ones train.")
        )),
        option("slice_field", Optional[str], typer.Option("meta.source", help="Input metadata field to slice held-out loss by (column.key).")),
        option("train_option", Optional[list[str]], typer.Option(None, "--train-option", help="KEY=VALUE trainer option for every regime.")),
        option("text_field", str, typer.Option("text", help="Field holding the document text.")),
        option("seed", int, typer.Option(0, help="Seed of the build's order and seeded choices.")),
        option("shard_rows", int, typer.Option(10_000, help="Rows per output shard.")),
        option("vocab_size", int, typer.Option(16_384, help="Vocabulary size of the trained tokenizer.")),
        option("near_dedup", bool, typer.Option(True, "--near-dedup/--no-near-dedup", help="MinHash near-duplicate removal.")),
        *regime_parameters(study),
        option("gpus_per_run", float, typer.Option(0.0, help="GPUs per regime's run; 0 trains the regimes one after another on the CPUs.")),
        option("num_cpus", Optional[int], typer.Option(None, help="CPUs of the local Ray (default: all).")),
        option("address", Optional[str], typer.Option(None, help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray).")),
    ]


def experiment(**values: Any) -> None:
    """The paper's controlled study: build the base regime and derive the others, train each regime to the
    paper's milestones, diagnose and evaluate every checkpoint, write EXP/summary.json and EXP/report.html.
    Rerun to resume."""
    from curate.jobs.build import BuildConfig
    from curate.jobs.experiment import (
        ExperimentConfig,
        ExperimentOptions,
        parse_regimes,
        run_experiment,
    )

    chosen = parse_regimes(values["regimes"])
    refuse_other_regimes_options([get_regime(name) for name in chosen], values)
    settings = {name: regime_settings(get_regime(name), values) for name in chosen}
    docs = PRESET_DOCS.get(values["preset"], 0) if values["docs"] is None else values["docs"]
    base = BuildConfig(regime=chosen[0], inputs=tuple(values["inputs"] or ()), text_field=values["text_field"],
                       seed=values["seed"], shard_rows=values["shard_rows"], vocab_size=values["vocab_size"],
                       near_dedup=values["near_dedup"], holdout=values["holdout"], sample_docs=docs)
    config = ExperimentConfig(base=base, regimes=chosen, preset=values["preset"],
                              train_overrides=parse_train_options(values["train_option"] or []),
                              settings={name: given for name, given in settings.items() if given},
                              slice_field=values["slice_field"] or None,
                              seeds=PRESET_SEEDS.get(values["preset"], 1) if values["seeds"] is None else values["seeds"])
    output = values["output"]
    summary = run_experiment(config, ExperimentOptions(output, values["gpus_per_run"], values["num_cpus"], values["address"]),
                             echo=lambda line: typer.echo(line, err=True))
    for verdict in summary["verdicts"]:
        typer.echo(f"{verdict['finding']}: {verdict['status']}")
    typer.echo(f"wrote {output}/summary.json and {output}/report.html")


def register(app: typer.Typer) -> None:
    """Add `curate experiment`."""
    app.command("experiment")(command(experiment, _experiment_parameters(), experiment.__doc__))

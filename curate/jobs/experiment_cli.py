"""`curate experiment`: build, train, diagnose and evaluate several regimes side by side (jobs/experiment.py)."""

from __future__ import annotations

from typing import Any, Optional

import typer

from curate.curation.errors import UserError
from curate.jobs.build_cli import (
    MAX_TEACHER_FAILURE_FRACTION,
    ON_TEACHER_FAILURE,
    TEACHER_BACKEND,
    TEACHER_CONCURRENCY,
    TEACHER_ENDPOINT,
    TEACHER_ENFORCE_EAGER,
    TEACHER_KV_CACHE_BYTES,
    TEACHER_MAX_MODEL_LEN,
    TEACHER_REPLICAS,
    TEACHER_RETRIES,
    TEACHER_STRUCTURED_OUTPUT,
    TEACHER_TIMEOUT,
    TEACHER_TP,
)


def parse_train_options(pairs: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` pairs of trainer options (TrainConfig field names), typed as the field is."""
    from curate.trainer.config import config_fields

    kinds = {f.name: str(f.type) for f in config_fields()}
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or key not in kinds:
            raise UserError(f"--train-option takes KEY=VALUE with a trainer option as KEY (e.g. train_samples=3200), not {pair!r}")
        kind = kinds[key]
        try:
            if kind in ("int", "float"):
                overrides[key] = {"int": int, "float": float}[kind](text)
            elif kind == "bool":
                overrides[key] = text.strip().lower() in ("1", "true", "yes")
            elif key == "save_fractions":
                overrides[key] = tuple(float(part) for part in text.split(","))
            else:
                overrides[key] = text
        except ValueError:
            raise UserError(f"--train-option {pair!r}: {text!r} is not a valid {kind}") from None
    return overrides


def experiment(
    inputs: Optional[list[str]] = typer.Option(None, "--input", "-i", help="Input URL(s); default: the embedded corpus."),
    regimes: str = typer.Option("A,B,C,D", "--regimes", help="Comma-separated regimes, A first."),
    preset: str = typer.Option("small", "--preset", help="Trainer preset every regime uses (small on CPUs, paper-0.6b on GPUs)."),
    output: str = typer.Option(..., "--output", "-o", help="The experiment folder EXP (local path)."),
    holdout: float = typer.Option(0.05, help="Seeded share of the deduplicated documents held out for evaluation."),
    slice_field: Optional[str] = typer.Option("meta.source", help="Input metadata field to slice held-out loss by (column.key)."),
    train_option: Optional[list[str]] = typer.Option(None, "--train-option", help="KEY=VALUE trainer option for every regime."),
    text_field: str = typer.Option("text", help="Field holding the document text."),
    seed: int = typer.Option(0, help="Seed of the build's order and seeded choices."),
    shard_rows: int = typer.Option(10_000, help="Rows per output shard."),
    vocab_size: int = typer.Option(16_384, help="Vocabulary size of the trained tokenizer."),
    near_dedup: bool = typer.Option(True, "--near-dedup/--no-near-dedup", help="MinHash near-duplicate removal."),
    teacher_backend: str = TEACHER_BACKEND,
    teacher_model: Optional[str] = typer.Option(None, help="Regime D: model id or local directory (D needs a teacher)."),
    teacher_replicas: int = TEACHER_REPLICAS,
    teacher_tp: int = TEACHER_TP,
    teacher_endpoint: Optional[str] = TEACHER_ENDPOINT,
    teacher_concurrency: int = TEACHER_CONCURRENCY,
    teacher_kv_cache_bytes: Optional[int] = TEACHER_KV_CACHE_BYTES,
    teacher_max_model_len: Optional[int] = TEACHER_MAX_MODEL_LEN,
    teacher_retries: int = TEACHER_RETRIES,
    teacher_timeout: float = TEACHER_TIMEOUT,
    teacher_enforce_eager: bool = TEACHER_ENFORCE_EAGER,
    teacher_structured_output: Optional[str] = TEACHER_STRUCTURED_OUTPUT,
    on_teacher_failure: str = ON_TEACHER_FAILURE,
    max_teacher_failure_fraction: float = MAX_TEACHER_FAILURE_FRACTION,
    gpus_per_run: float = typer.Option(0.0, help="GPUs per regime's run; 0 trains the regimes one after another on the CPUs."),
    num_cpus: Optional[int] = typer.Option(None, help="CPUs of the local Ray (default: all)."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)."),
) -> None:
    """The paper's controlled study: build A and derive the others, train each regime to the paper's milestones,
    diagnose and evaluate every checkpoint, write EXP/summary.json and EXP/report.html. Rerun to resume."""
    options = dict(locals())
    from curate.jobs.build import BuildConfig
    from curate.jobs.experiment import ExperimentConfig, ExperimentOptions, parse_regimes, run_experiment
    from curate.regimes import get_regime

    chosen = parse_regimes(regimes)
    teacher = get_regime("D").transform.settings_from_options(options) if teacher_model or teacher_endpoint else {}
    base = BuildConfig(inputs=tuple(inputs or ()), text_field=text_field, seed=seed, shard_rows=shard_rows,
                       vocab_size=vocab_size, near_dedup=near_dedup, holdout=holdout)
    config = ExperimentConfig(base=base, regimes=chosen, preset=preset, train_overrides=parse_train_options(train_option or []),
                              teacher=teacher if "D" in chosen else {}, slice_field=slice_field or None)
    summary = run_experiment(config, ExperimentOptions(output, gpus_per_run, num_cpus, address),
                             echo=lambda line: typer.echo(line, err=True))
    for verdict in summary["verdicts"]:
        typer.echo(f"{verdict['finding']}: {verdict['status']}")
    typer.echo(f"wrote {output}/summary.json and {output}/report.html")


def register(app: typer.Typer) -> None:
    """Add `curate experiment`."""
    app.command("experiment")(experiment)

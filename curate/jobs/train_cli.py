"""`curate train` and `curate export megatron|hf`.

Every field of `curate.trainer.config.TrainConfig` is an option of `curate train`, named as
Megatron-LM names it (`num_layers` -> `--num-layers`), so the options cannot drift from
the configuration. Only options given on the command line override the preset and the
build's `recipe.train_overrides`.
"""

from __future__ import annotations

import inspect
import os
from typing import TYPE_CHECKING, Any

import typer

from curate.jobs.options import command, given_values, option_parameter

if TYPE_CHECKING:
    from curate.trainer.config import TrainConfig
    from curate.trainer.train import TrainResult


def train_command(
    data: str,
    output: str,
    preset: str,
    resume: bool,
    workers: int,
    gpus_per_worker: float,
    **options: Any,
) -> None:
    """Train the paper's decoder on a build: phase 1 in the first half of training, phase 2 in the second.

    A Ray actor beside the training diagnoses each checkpoint as it is written, into
    OUTPUT/diagnostics.jsonl (`curate diagnose OUTPUT --watch` prints it).
    """
    from curate.curation.manifest import load_manifest
    from curate.trainer.config import config_fields, resolve_config
    from curate.trainer.train import refuse_overwrite

    manifest = load_manifest(data)
    build_overrides = manifest.get("recipe", {}).get("train_overrides", {})
    config = resolve_config(preset, build_overrides, given_values(config_fields(), options))
    refuse_overwrite(output, resume)  # before the watcher starts: it must not write into a run training refuses
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun's other workers: rank 0 watches and reports
        _train(config, data, output, resume, workers, gpus_per_worker)
        return
    from curate.curation.storage import join
    from curate.diagnostics.watch import WATCH_FILE, watching
    from curate.jobs.ray_cluster import init_ray

    init_ray(ray_train=workers > 1 or gpus_per_worker > 0)
    with watching(output):
        result = _train(config, data, output, resume, workers, gpus_per_worker)
        typer.echo(f"done: iteration {result.iteration}, loss {result.last_loss:.4f}, checkpoint {result.checkpoint}")
    typer.echo(f"diagnostics of every checkpoint: {join(output, WATCH_FILE)}")


def _train(
    config: TrainConfig, data: str, output: str, resume: bool, workers: int, gpus_per_worker: float
) -> TrainResult:
    """One process, or Ray Train workers (DDP) when there are several or they use GPUs."""
    if workers > 1 or gpus_per_worker > 0:
        from curate.trainer.ray_train import train_on_ray

        return train_on_ray(config, data, output, resume, workers, gpus_per_worker)
    from curate.trainer.train import train

    return train(config, data, output, resume=resume)


def _train_parameters() -> list[inspect.Parameter]:
    from curate.trainer.config import PRESETS, config_fields

    keyword = inspect.Parameter.KEYWORD_ONLY
    fixed = [
        inspect.Parameter("data", keyword, annotation=str,
                          default=typer.Option(..., "--data", help="A complete build folder (local or fsspec URL).")),
        inspect.Parameter("output", keyword, annotation=str,
                          default=typer.Option(..., "--output", help="The run folder to write (local path, s3:// or gs://).")),
        inspect.Parameter("preset", keyword, annotation=str,
                          default=typer.Option("tiny", "--preset", help=f"One of {', '.join(PRESETS)}.")),
        inspect.Parameter("resume", keyword, annotation=bool,
                          default=typer.Option(False, "--resume", help="Continue from the run's newest checkpoint.")),
        inspect.Parameter("workers", keyword, annotation=int,
                          default=typer.Option(1, "--workers", help="Ray Train workers (DDP); 1 runs in this process.")),
        inspect.Parameter("gpus_per_worker", keyword, annotation=float,
                          default=typer.Option(0.0, "--gpus-per-worker", help="GPUs per Ray Train worker.")),
    ]
    return fixed + [option_parameter(field, show_default=False) for field in config_fields()]


def export_megatron_command(
    build: str = typer.Argument(..., help="A complete build folder (local or fsspec URL)."),
    output: str = typer.Option(..., "--output", help="Path prefix; writes PREFIX_phase-N_text_document.bin/.idx."),
) -> None:
    """Write each phase as Megatron-LM's indexed dataset (.bin/.idx), one document per row."""
    from curate.trainer.export import export_megatron

    for prefix in export_megatron(build, output):
        typer.echo(f"wrote {prefix}.bin and {prefix}.idx")


def export_hf_command(
    checkpoint: str = typer.Argument(..., help="A checkpoint folder, or a run folder (its newest checkpoint); local or fsspec URL."),
    output: str = typer.Option(..., "--output", help="Folder (local or fsspec URL) for config.json, model.safetensors, tokenizer."),
) -> None:
    """Write a Hugging Face Llama checkpoint that transformers and vLLM load."""
    from curate.trainer.export import export_hf

    typer.echo(f"wrote {export_hf(checkpoint, output)}")


def register(app: typer.Typer) -> None:
    """Add `curate train` and `curate export megatron|hf`."""
    app.command("train")(command(train_command, _train_parameters(), train_command.__doc__))
    export = typer.Typer(help="Export a build or a checkpoint for other trainers and servers.", no_args_is_help=True)
    export.command("megatron")(export_megatron_command)
    export.command("hf")(export_hf_command)
    app.add_typer(export, name="export")

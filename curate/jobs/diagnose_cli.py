"""`curate diagnose`: spectral and rank diagnostics of checkpoints (see diagnostics/)."""

from __future__ import annotations

import typer

from curate.curation.errors import UserError


def diagnose_command(
    checkpoints: list[str] = typer.Argument(
        ...,
        help="Checkpoint folders (trainer iter_* or Hugging Face safetensors, single or sharded), "
        ".safetensors files, or trainer RUN folders (all their checkpoints in order); local or fsspec URLs.",
    ),
    output: str | None = typer.Option(
        None, "--output", "-o",
        help="Folder (local or fsspec URL) for matrices.jsonl, summary.json and report.html; required without --watch.",
    ),
    base: str | None = typer.Option(None, "--base", help="Checkpoint to compare every checkpoint with."),
    max_side: int = typer.Option(
        50000, "--max-side", help="Skip (and list) matrices with a side longer than this, e.g. large embeddings."
    ),
    watch: bool = typer.Option(
        False, "--watch",
        help="Print the lines `curate train` writes to RUN/diagnostics.jsonl, one per checkpoint, as they come, "
        "until the line of the run's last iteration, or until the training stops short (an error, or killed: "
        "its watcher's heartbeat stands still for a minute); takes one RUN, writes nothing, no --output or --base.",
    ),
) -> None:
    """Per-matrix heavy-tail alpha, ranks and changes against a base, with a summary and an HTML report."""
    if watch:
        if len(checkpoints) != 1 or output is not None or base is not None:
            raise UserError("--watch takes one RUN folder and neither --output nor --base")
        watch_run(checkpoints[0])
        return
    if output is None:
        raise UserError("--output is required (or --watch, to follow a training run)")
    from curate.diagnostics.analysis import MatrixLimits
    from curate.diagnostics.diagnose import diagnose

    summary = diagnose(
        checkpoints,
        output,
        base=base,
        limits=MatrixLimits(max_side=max_side),
        on_checkpoint=lambda label, count: typer.echo(f"analysed {label}: {count} matrices", err=True),
    )
    for row in summary["trajectory"]:
        shares = " ".join("-" if share is None else f"{100.0 * share:.1f}%" for share in row["share_alpha_in_range"])
        typer.echo(f"{row['series'] or 'checkpoints'}: alpha in [2, 6] for {shares} of fitted matrices ({row['trend']})")
    typer.echo(f"wrote {output}/matrices.jsonl, summary.json and report.html")


def watch_run(run: str) -> None:
    """Print the run's watch-file lines as the training's watcher writes them, up to the final one."""
    from curate.curation.storage import exists
    from curate.diagnostics.watch import WATCH_FILE, describe, follow

    if not exists(run, WATCH_FILE):
        typer.echo(f"waiting for {run}/{WATCH_FILE} (written by `curate train` at each checkpoint)", err=True)
    for line in follow(run):
        typer.echo(describe(line))


def register(app: typer.Typer) -> None:
    """Add `curate diagnose` to the `curate` app."""
    app.command("diagnose")(diagnose_command)

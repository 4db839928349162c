"""`curate diagnose`: spectral and rank diagnostics of checkpoints (see diagnostics/)."""

from __future__ import annotations

import typer


def diagnose_command(
    checkpoints: list[str] = typer.Argument(
        ...,
        help="Checkpoint folders (trainer iter_* or Hugging Face safetensors, single or sharded), "
        ".safetensors files, or trainer RUN folders (all their checkpoints in order); local or fsspec URLs.",
    ),
    output: str = typer.Option(
        ..., "--output", "-o", help="Folder (local or fsspec URL) for matrices.jsonl, summary.json and report.html."
    ),
    base: str | None = typer.Option(None, "--base", help="Checkpoint to compare every checkpoint with."),
    max_side: int = typer.Option(
        50000, "--max-side", help="Skip (and list) matrices with a side longer than this, e.g. large embeddings."
    ),
) -> None:
    """Per-matrix heavy-tail alpha, ranks and changes against a base, with a summary and an HTML report."""
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


def register(app: typer.Typer) -> None:
    """Add `curate diagnose` to the `curate` app."""
    app.command("diagnose")(diagnose_command)

"""`curate diagnose`: analyse checkpoints and write matrices.jsonl, summary.json and report.html."""

from __future__ import annotations

import json
from collections.abc import Callable

from curate.curation.errors import UserError
from curate.curation.manifest import write_json_atomic
from curate.curation.storage import write_text_atomic
from curate.diagnostics.analysis import Baseline, MatrixLimits, analyse_checkpoint
from curate.diagnostics.checkpoints import resolve_checkpoints
from curate.diagnostics.report import render_report
from curate.diagnostics.summary import build_summary, checkpoint_summary

MATRICES_FILE = "matrices.jsonl"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"


def analyse(
    checkpoints: list[str],
    base: str | None = None,
    limits: MatrixLimits = MatrixLimits(),
    on_checkpoint: Callable[[str, int], None] | None = None,
) -> tuple[list[dict], dict]:
    """Per-matrix records of every checkpoint (in order) and the summary, without writing anything;
    `on_checkpoint(label, matrices)` is called as each checkpoint finishes (the CLI prints progress)."""
    resolved = resolve_checkpoints(checkpoints)
    baseline = None
    if base is not None:
        bases = resolve_checkpoints([base])
        if len(bases) != 1:
            raise UserError(f"--base {base} must be one checkpoint, not a run with {len(bases)} checkpoints")
        baseline = Baseline(bases[0])
    records, skipped, summaries = [], [], []
    for checkpoint in resolved:
        checkpoint_records, checkpoint_skipped = analyse_checkpoint(checkpoint, limits, baseline)
        records.extend(checkpoint_records)
        skipped.extend(checkpoint_skipped)
        if on_checkpoint is not None:
            on_checkpoint(checkpoint.label, len(checkpoint_records))
        figures = checkpoint_summary(checkpoint.label, checkpoint_records, baseline is not None)
        summaries.append({"path": checkpoint.path, "series": checkpoint.series, "step": checkpoint.step, **figures})
    return records, build_summary(summaries, skipped, base)


def write_outputs(output: str, records: list[dict], summary: dict) -> None:
    """matrices.jsonl, summary.json and report.html in `output` (a folder or URL), each written atomically."""
    lines = "".join(json.dumps(r, sort_keys=True, allow_nan=False) + "\n" for r in records)
    write_text_atomic(output, MATRICES_FILE, lines)
    write_json_atomic(output, SUMMARY_FILE, summary)
    write_text_atomic(output, REPORT_FILE, render_report(records, summary))


def diagnose(
    checkpoints: list[str],
    output: str,
    base: str | None = None,
    limits: MatrixLimits = MatrixLimits(),
    on_checkpoint: Callable[[str, int], None] | None = None,
) -> dict:
    """Analyse `checkpoints` (optionally against `base`) and write the three outputs; return the summary."""
    records, summary = analyse(checkpoints, base, limits, on_checkpoint)
    write_outputs(output, records, summary)
    return summary

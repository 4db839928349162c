"""`curate stats OUT` and `curate report OUT... -o report.html [--json]`."""

from __future__ import annotations

from typing import List, Optional

import typer

from curate.curation.errors import UserError


def stats_command(
    out: str = typer.Argument(..., help="A build folder (local path or fsspec URL)."),
    recompute: bool = typer.Option(False, "--recompute", help="Measure the shards again and rewrite stats.json."),
    reference: Optional[str] = typer.Option(
        None, "--reference", help="Build whose unigram ranking defines tail mass and JS divergence (default: OUT)."
    ),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)."),
) -> None:
    """Print the coverage statistics of a build (its stats.json), measuring them first when missing."""
    from curate.curation.manifest import canonical_json, load_manifest, read_json
    from curate.jobs.stages.stats import STATS_NAME, write_build_stats

    manifest = load_manifest(out)
    present = _exists(out, STATS_NAME)
    if present and not recompute and reference is None:
        typer.echo(canonical_json(read_json(out, STATS_NAME)), nl=False)
        return
    from curate.jobs.ray_cluster import init_ray

    init_ray(address)
    dedup = manifest.get("dedup") or (read_json(out, STATS_NAME).get("dedup") if present else None) or manifest.get("counts", {})
    typer.echo(canonical_json(write_build_stats(out, dedup, reference)), nl=False)


def report_command(
    builds: List[str] = typer.Argument(..., help="Build folders to compare, e.g. out/A out/C out/D."),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Where to write the HTML report."),
    as_json: bool = typer.Option(False, "--json", help="Also print the compared statistics as JSON."),
) -> None:
    """Render one self-contained HTML page comparing the coverage of builds side by side."""
    from curate.curation.manifest import canonical_json
    from curate.curation.report import load_builds, render_report

    if output is None and not as_json:
        raise UserError("give -o report.html, --json, or both")
    loaded = load_builds(builds)
    if output is not None:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(render_report(loaded))
    if as_json:
        typer.echo(canonical_json({build.label: build.stats for build in loaded}), nl=False)


def _exists(out: str, name: str) -> bool:
    import fsspec

    fs, base = fsspec.core.url_to_fs(out)
    return fs.exists(f"{base.rstrip('/')}/{name}")


def register(app: typer.Typer) -> None:
    """Add `stats` and `report` to the `curate` app."""
    app.command("stats")(stats_command)
    app.command("report")(report_command)

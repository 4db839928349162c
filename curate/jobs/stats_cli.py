"""`curate stats OUT` and `curate report OUT... -o report.html [--json]`."""

from __future__ import annotations

from typing import List, Optional

import typer

from curate.curation.errors import UserError


def stats_command(
    out: str = typer.Argument(..., help="A build folder (local path or fsspec URL)."),
    recompute: bool = typer.Option(False, "--recompute", help="Measure the shards again and rewrite stats.json."),
    reference: Optional[str] = typer.Option(
        None, "--reference", help="Build whose unigram ranking defines tail mass and JS divergence (default: a derived build's source, else OUT)."
    ),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)."),
) -> None:
    """Print the coverage statistics of a build (its stats.json), measuring them first when missing."""
    from curate.curation.benchmarks import CONTAMINATION_SECTION
    from curate.curation.manifest import canonical_json, load_manifest, read_json
    from curate.curation.stats import STATS_NAME
    from curate.curation.storage import exists

    manifest = load_manifest(out)
    if exists(out, STATS_NAME) and not recompute and reference is None:
        typer.echo(canonical_json(read_json(out, STATS_NAME)), nl=False)
        return
    from curate.jobs.ray_cluster import init_ray
    from curate.jobs.stages.stats import write_stats
    from curate.regimes import get_regime

    reference = reference or _source_url(manifest)
    transform = get_regime(manifest["regime"]).transform
    carried = (*transform.sections, CONTAMINATION_SECTION)
    sections = {name: manifest[name] for name in carried if name in manifest}
    init_ray(address)
    typer.echo(canonical_json(write_stats(out, transform, manifest.get("dedup", {}), reference, manifest["phases"], sections)), nl=False)


def _source_url(manifest: dict) -> str | None:
    """A derived build's statistics rank its unigrams by its source's, as the build did."""
    from curate.curation.manifest import is_complete

    url = manifest.get("source", {}).get("url")
    if url is not None and not is_complete(url):
        raise UserError(f"this build's statistics compare it with its source {url}, which is gone; pass --reference")
    return url


def report_command(
    builds: List[str] = typer.Argument(..., help="Build folders to compare, e.g. out/A out/C out/D."),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Where to write the HTML report (local path or fsspec URL)."),
    as_json: bool = typer.Option(False, "--json", help="Also print the compared statistics as JSON."),
) -> None:
    """Render one self-contained HTML page comparing the coverage of builds side by side."""
    from curate.curation.manifest import canonical_json
    from curate.curation.report import load_builds, render_report
    from curate.curation.storage import absolute, write_text_atomic

    if output is None and not as_json:
        raise UserError("give -o report.html, --json, or both")
    loaded = load_builds(builds)
    if output is not None:
        write_text_atomic(absolute(output), "", render_report(loaded))
    if as_json:
        typer.echo(canonical_json({build.label: build.stats for build in loaded}), nl=False)


def register(app: typer.Typer) -> None:
    """Add `stats` and `report` to the `curate` app."""
    app.command("stats")(stats_command)
    app.command("report")(report_command)

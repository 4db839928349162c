"""`curate contamination BUILD... --benchmark NAME=URL --output DIR [--json]`."""

from __future__ import annotations

from typing import Any, Optional

import typer

from curate.jobs.build_cli import (
    benchmark_parameters,
    benchmarks_given,
    shared_output_option,
)
from curate.jobs.options import command


def contamination(
    builds: list[str], output: str, as_json: bool, shared_output: bool, address: Optional[str], **benchmark_values: Any
) -> None:
    """Measure finished builds against benchmarks: n-gram overlap, verified near copies and alignment,
    per benchmark, overall and per phase, with the evidence of every match."""
    from curate.curation.errors import UserError
    from curate.curation.manifest import canonical_json
    from curate.curation.storage import absolute
    from curate.jobs.build import check_shared_output
    from curate.jobs.contamination import measure_builds
    from curate.jobs.ray_cluster import init_ray

    specs = list(benchmarks_given(benchmark_values))
    if not specs:
        raise UserError("give at least one --benchmark NAME=URL")
    init_ray(address)
    check_shared_output(absolute(output), shared_output)
    summary = measure_builds(builds, specs, output)
    if as_json:
        typer.echo(canonical_json(summary), nl=False)
    else:
        for label, entry in summary.items():
            for name, figures in entry["contamination"].items():
                overall = figures["overall"]
                typer.echo(
                    f"{label} ({entry['regime']}) vs {name}: {overall['items_ngram']} items by n-gram, "
                    f"{overall['items_near']} near, of {overall['items']}; {overall['documents']:,} documents, "
                    f"{overall['tokens']:,} tokens; alignment {100 * overall['alignment']:.3f}%"
                )
        typer.echo(f"wrote {output}/summary.json and the evidence under {output}/")


def register(app: typer.Typer) -> None:
    import inspect

    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter("builds", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=list[str],
                          default=typer.Argument(..., help="Complete build folders (local or fsspec URLs).")),
        *benchmark_parameters(),
        inspect.Parameter("output", keyword, annotation=str,
                          default=typer.Option(..., "--output", "-o", help="Folder for the evidence and summary.json.")),
        inspect.Parameter("as_json", keyword, annotation=bool,
                          default=typer.Option(False, "--json", help="Print the summary as JSON on stdout.")),
        inspect.Parameter("shared_output", keyword, annotation=bool, default=shared_output_option()),
        inspect.Parameter("address", keyword, annotation=Optional[str],
                          default=typer.Option(None, help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray).")),
    ]
    app.command("contamination")(command(contamination, parameters, contamination.__doc__))

"""The `curate` command line: parses arguments and calls the job entrypoints.

Each command group lives in its own `jobs/*_cli.py` module with a `register(app)`
function, and imports its heavy dependencies (Ray, torch, vLLM) only when run, so
`curate --help` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import typer

from curate.curation.errors import user_error
from curate.jobs.failure import summary_line, write_log

COMMAND_MODULES = (
    "curate.jobs.build_cli",
    "curate.jobs.teacher_cli",
    "curate.jobs.stats_cli",
    "curate.jobs.contamination_cli",
    "curate.jobs.train_cli",
    "curate.jobs.diagnose_cli",
    "curate.jobs.experiment_cli",
)



def make_app() -> typer.Typer:
    """The `curate` app with every command; regime options come from the regimes registered now."""
    app = typer.Typer(
        name="curate",
        help="Build, measure and train on the data regimes of the benchmark-shadows paper.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(app)
    return app


app = make_app()


def main() -> None:
    """Entry point: user errors end with one line and exit code 2, anything else with one line, a log and 1."""
    try:
        app()
    except KeyboardInterrupt:
        print("curate: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as error:
        known = user_error(error)
        if known is not None:
            print(f"curate: error: {known}", file=sys.stderr)
            sys.exit(2)
        print(summary_line(error, write_log(error)), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

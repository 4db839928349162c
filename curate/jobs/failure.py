"""What the terminal shows when a command fails: one line, and where the full log is.

User errors (`UserError`, also when raised inside a Ray task) are one line and exit code 2.
Anything else is unexpected: its traceback goes to a log file (under the build's output folder
when that is a local path, else the system temp folder), and the terminal gets one line naming
the error, the stage it happened in and the log.
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback

from curate.curation.errors import error_line

STAGE_NOTE = "curate-stage: "
OUTPUT_NOTE = "curate-output: "
LOG_NAME = "curate-error.log"


def note_stage(error: BaseException, stage: str, output: str) -> None:
    """Mark an exception with the stage it escaped from and the build's output folder (first mark wins)."""
    if not any(note.startswith(STAGE_NOTE) for note in getattr(error, "__notes__", [])):
        error.add_note(STAGE_NOTE + stage)
        error.add_note(OUTPUT_NOTE + output)


def _note(error: BaseException, prefix: str) -> str | None:
    return next((n[len(prefix) :] for n in getattr(error, "__notes__", []) if n.startswith(prefix)), None)


def write_log(error: BaseException) -> str:
    """Write the full traceback to a log file and return its path."""
    output = _note(error, OUTPUT_NOTE)
    folder = output if output and "://" not in output and os.path.isdir(output) else tempfile.gettempdir()
    path = os.path.join(folder, LOG_NAME if folder == output else f"curate-error-{os.getpid()}-{int(time.time())}.log")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("".join(traceback.format_exception(error)))
    return path


def summary_line(error: BaseException, log: str) -> str:
    """One line: what failed, in which stage, and where the full log is."""
    stage = _note(error, STAGE_NOTE)
    where = f" in stage {stage}" if stage else ""
    return f"curate: unexpected failure{where}: {error_line(error)} (full log: {log})"

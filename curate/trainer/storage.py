"""Run folders on object storage: train in a local copy, push every checkpoint to the URL, pull on resume.

A run folder given as a URL (s3://, gs://) lives on that storage; the training loop keeps working
in a local folder of the same layout. After each checkpoint the main worker uploads it with the
log, config and `latest` pointer, so the URL always holds a resumable run; a resumed or
evaluated run first downloads the small files and the newest checkpoint. A local run folder is
used as it is.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import fsspec

from curate.curation.storage import is_remote
from curate.trainer.checkpoint import CHECKPOINTS, LATEST

RUN_FILES = ("config.json", "log.jsonl", "tokenizer.json")


class RunStorage:
    """Where a run folder lives (`url`) and the local folder the loop reads and writes (`local`)."""

    def __init__(self, output: str | Path):
        output = str(output)
        self.url = output if is_remote(output) else None
        self.local = Path(tempfile.mkdtemp(prefix="curate-run-")) if self.url else Path(output).resolve()
        self.fs = fsspec.core.url_to_fs(self.url)[0] if self.url else None

    def pull(self) -> None:
        """Download the run's small files and its newest checkpoint, when the URL holds a run."""
        if self.url is None:
            return
        for relpath in (*RUN_FILES, f"{CHECKPOINTS}/{LATEST}"):
            if self.fs.exists(f"{self.url}/{relpath}"):
                (self.local / relpath).parent.mkdir(parents=True, exist_ok=True)
                self.fs.get(f"{self.url}/{relpath}", str(self.local / relpath))
        pointer = self.local / CHECKPOINTS / LATEST
        if pointer.exists():
            name = pointer.read_text().strip()
            self.fs.get(f"{self.url}/{CHECKPOINTS}/{name}/", str(self.local / CHECKPOINTS / name), recursive=True)

    def push(self, checkpoint: Path | None = None) -> None:
        """Upload the run's small files and `checkpoint` (then its `latest` pointer, so it names a whole one)."""
        if self.url is None:
            return
        for relpath in RUN_FILES:
            if (self.local / relpath).exists():
                self.fs.put(str(self.local / relpath), f"{self.url}/{relpath}")
        if checkpoint is not None:
            self.fs.put(str(checkpoint), f"{self.url}/{CHECKPOINTS}/{checkpoint.name}", recursive=True)
            self.fs.put(str(self.local / CHECKPOINTS / LATEST), f"{self.url}/{CHECKPOINTS}/{LATEST}")

    def location(self, local_path: str | Path) -> str:
        """Where a file of the local copy lives in the run folder the user named."""
        if self.url is None:
            return str(local_path)
        return f"{self.url}/{Path(local_path).relative_to(self.local).as_posix()}"

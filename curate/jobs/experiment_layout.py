"""The experiment folder: where each part of `curate experiment` lives (DESIGN.md, "Output layout of
an experiment"), and the one way its files are written. The folder is a local path or an fsspec URL."""

from __future__ import annotations

import os
from dataclasses import dataclass

from curate.curation.storage import exists, join, read_bytes, write_text_atomic


@dataclass(frozen=True)
class Layout:
    """The experiment folder's paths (DESIGN.md, "Output layout of an experiment")."""

    root: str

    def build(self, regime: str) -> str:
        return join(self.root, "builds", regime)

    def run(self, regime: str, seed: int) -> str:
        return join(self.root, "runs", regime, f"seed-{seed}")

    def diagnostics(self, regime: str, seed: int, checkpoint: str | None = None) -> str:
        return join(self.root, "diagnostics", regime, f"seed-{seed}", *([checkpoint] if checkpoint else []))

    def evaluation(self, regime: str, seed: int | None = None, checkpoint: str | None = None) -> str:
        """`eval/<regime>.json` (every seed), or one checkpoint's `eval/<regime>/seed-<n>/<checkpoint>.json`."""
        if seed is None:
            return join(self.root, "eval", f"{regime}.json")
        return join(self.root, "eval", regime, f"seed-{seed}", f"{checkpoint}.json")


def write_if_changed(path: str, text: str) -> bool:
    """Write `path` atomically unless it already holds `text`; True when written."""
    if exists(path) and read_bytes(path) == text.encode("utf-8"):
        return False
    write_text_atomic(os.path.dirname(path), os.path.basename(path), text)
    return True

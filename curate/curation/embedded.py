"""The embedded default corpus: the running Python's own standard library and docs.

Every machine with Python has it, so `curate build` with no `--input` works anywhere:
standard-library modules (code) plus the `pydoc_data` documentation topics (prose).
Tests, vendored tool packages and GUI demos are left out. Ids are relative paths, so they
do not depend on where Python is installed.
"""

from __future__ import annotations

import json
import pathlib
import sys
import sysconfig
from typing import Iterator

import fsspec

EMBEDDED_URL = "embedded:python-stdlib"
_SKIPPED_PARTS = {
    "test", "tests", "idlelib", "site-packages", "dist-packages", "lib2to3", "turtledemo",
    "__pycache__", "ensurepip", "tkinter",
}


def embedded_records() -> Iterator[dict]:
    stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.rglob("*.py")):
        relative = path.relative_to(stdlib)
        if set(relative.parts) & _SKIPPED_PARTS or relative.parts[0].startswith("config-"):
            continue
        text = path.read_bytes().decode("utf-8", "surrogateescape")
        yield {"id": f"stdlib/{relative.as_posix()}", "text": text, "meta": {"source": "python-stdlib"}}
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield {"id": f"pydoc/{name}", "text": topics[name], "meta": {"source": "pydoc_data"}}


def write_embedded_corpus(path: str) -> str:
    """Write the embedded corpus as JSONL at `path` and return a description of it."""
    with fsspec.open(path, "w", encoding="utf-8", errors="surrogatepass") as handle:
        for record in embedded_records():
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return f"{EMBEDDED_URL} (Python {sys.version_info.major}.{sys.version_info.minor})"

"""`manifest.json`: the last file a build writes; its presence means the build is complete.

Other tools (the trainer, `curate stats`, `curate report`, derived builds) read it, so
its keys are fixed by DESIGN.md. It is serialized with sorted keys and no wall-clock
time, so the same build gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from curate.curation.errors import UserError
from curate.curation.storage import exists, read_bytes, write_text_atomic

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and fixed separators: equal values give equal bytes."""
    return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def config_hash(config: dict) -> str:
    """A short, stable fingerprint of a configuration."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]


def write_json_atomic(root: str, name: str, value: Any) -> None:
    """Write `root/name` as canonical JSON, atomically."""
    write_text_atomic(root, name, canonical_json(value))


def read_json(root: str, name: str = "") -> Any:
    return json.loads(read_bytes(root, name))


def read_jsonl(root: str, name: str = "") -> list[Any]:
    """The records of a JSON Lines file (blank lines skipped), local or on object storage."""
    return [json.loads(line) for line in read_bytes(root, name).decode("utf-8").splitlines() if line.strip()]


def is_complete(root: str) -> bool:
    """A build is complete exactly when its manifest exists."""
    return exists(root, MANIFEST_NAME)


def load_manifest(root: str) -> dict:
    """Read a complete build's manifest, or fail with a one-line user error."""
    if not is_complete(root):
        raise UserError(f"{root} is not a complete curate build (no {MANIFEST_NAME})")
    return read_json(root, MANIFEST_NAME)


def write_manifest(root: str, manifest: dict) -> None:
    write_json_atomic(root, MANIFEST_NAME, manifest)


def phase_entry(name: str, shards: list) -> dict:
    """The manifest's entry of one phase from the `ShardInfo` of its shards."""
    return {
        "name": name,
        "rows": sum(s.rows for s in shards),
        "tokens": sum(s.tokens for s in shards),
        "shards": [s.to_dict() for s in shards],
    }


def manifest_phase(manifest: dict, name: str) -> dict:
    """The `phases` entry of a manifest called `name` ("phase-1" or "phase-2")."""
    return next(phase for phase in manifest["phases"] if phase["name"] == name)

"""`manifest.json`: the last file a build writes; its presence means the build is complete.

Other tools (the trainer, `curate stats`, `curate report`, derived builds) read it, so
its keys are fixed by DESIGN.md. It is serialized with sorted keys and no wall-clock
time, so the same build gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import fsspec

from curate.curation.errors import UserError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and fixed separators: equal values give equal bytes."""
    return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def config_hash(config: dict) -> str:
    """A short, stable fingerprint of a configuration."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]


def write_json_atomic(root: str, name: str, value: Any) -> None:
    """Write `root/name` as canonical JSON through a temporary name and a rename."""
    fs, base = fsspec.core.url_to_fs(root)
    final = f"{base.rstrip('/')}/{name}"
    temporary = f"{final}.tmp-{uuid.uuid4().hex}"
    with fs.open(temporary, "w", encoding="utf-8") as handle:
        handle.write(canonical_json(value))
    fs.mv(temporary, final)


def read_json(root: str, name: str) -> Any:
    fs, base = fsspec.core.url_to_fs(root)
    with fs.open(f"{base.rstrip('/')}/{name}", "r", encoding="utf-8") as handle:
        return json.load(handle)


def is_complete(root: str) -> bool:
    """A build is complete exactly when its manifest exists."""
    fs, base = fsspec.core.url_to_fs(root)
    return fs.exists(f"{base.rstrip('/')}/{MANIFEST_NAME}")


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

"""The rows every teacher backend consumes and produces, so the job does not care which runs.

A request row: `shard`, `row` (position in its shard), `language`, `prompt` (the whole
user message), `max_tokens`, `seed`. A response row keeps `shard`, `row` and `language`
and adds `generated_text`, `generated_tokens` (in the teacher's tokenizer), `truncated`
(stopped by `max_tokens`) and `error` ("" if none).
"""

from __future__ import annotations

import xxhash

RESPONSE_COLUMNS = ["shard", "row", "language", "generated_text", "generated_tokens", "truncated", "error"]
# The light stages around a teacher (requests, chat template, responses) reserve this much
# CPU each, so they fit beside a CPU engine on a two-core machine instead of starving it
# of its placement group.
LIGHT_STAGE_CPUS = 0.25


def document_seed(base_seed: int, doc_id: str) -> int:
    """A sampling seed per document: stable across runs, independent of batching and order."""
    return xxhash.xxh64_intdigest(f"{base_seed}:{doc_id}".encode()) & 0x7FFFFFFF

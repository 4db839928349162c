"""Benchmarks for overlap measurement: the `--benchmark` options and reading a benchmark's items.

A benchmark is a JSONL (plain, .gz, .zst) or Parquet file at any fsspec URL whose records are its
items (DESIGN.md, "Benchmark overlap"): an item is named by its `id` field, else `task_id`, else
its 0-based position; its text is its string fields other than that one joined by newlines in the
record's order, or the fields `--benchmark-fields` gives, in that order. Benchmarks are small and
read whole by the driver before any work starts, so every problem with one is a one-line
UserError that names it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import fsspec
import pyarrow as pa

from curate.curation.errors import UserError
from curate.curation.readers import InputFile, detect_format, read_raw_records
from curate.curation.storage import reaching

CONTAMINATION_SECTION = "contamination"  # the stats.json and manifest section of the overlap figures
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
ID_FIELDS = ("id", "task_id")
ITEM_SCHEMA = pa.schema([("item_id", pa.string()), ("text", pa.string())])


@dataclass(frozen=True)
class BenchmarkSpec:
    """One `--benchmark`: the name evidence and statistics use, where its file is, and the fields that
    make an item's text (None: every string field but the id, in record order)."""

    name: str
    url: str
    fields: tuple[str, ...] | None = None


def _split(option: str, value: str, what: str) -> tuple[str, str]:
    name, equals, rest = value.partition("=")
    if not equals or not NAME_PATTERN.fullmatch(name) or not rest:
        raise UserError(f"{option} expects NAME={what} with NAME of letters, digits, '-', '_' or '.', got {value!r}")
    return name, rest


def parse_benchmarks(benchmarks: list[str], fields: list[str]) -> list[BenchmarkSpec]:
    """The benchmarks of `--benchmark NAME=URL` (repeatable) and `--benchmark-fields NAME=f1,f2`
    values, in the order given."""
    urls: dict[str, str] = {}
    for value in benchmarks:
        name, url = _split("--benchmark", value, "URL")
        if name in urls:
            raise UserError(f"--benchmark {name} is given twice")
        urls[name] = url
    chosen: dict[str, tuple[str, ...]] = {}
    for value in fields:
        name, listed = _split("--benchmark-fields", value, "FIELD,FIELD,...")
        if name not in urls:
            raise UserError(f"--benchmark-fields names {name!r}, which no --benchmark defines")
        if name in chosen:
            raise UserError(f"--benchmark-fields {name} is given twice")
        names = tuple(listed.split(","))
        if not all(names) or len(set(names)) < len(names):
            raise UserError(f"--benchmark-fields {name} needs distinct non-empty field names, got {listed!r}")
        chosen[name] = names
    return [BenchmarkSpec(name, url, chosen.get(name)) for name, url in urls.items()]


def _item(spec: BenchmarkSpec, obj: dict, position: int, origin: str) -> tuple[str, str]:
    """(id, text) of one record."""
    id_field = next((f for f in ID_FIELDS if obj.get(f) is not None), None)
    item_id = str(obj[id_field]) if id_field else str(position)
    if spec.fields is None:
        parts = [v for k, v in obj.items() if k != id_field and isinstance(v, str)]
        if not parts:
            raise UserError(f"benchmark {spec.name} ({spec.url}): record {origin} has no string field")
        return item_id, "\n".join(parts)
    for field in spec.fields:
        if not isinstance(obj.get(field), str):
            state = "lacks" if obj.get(field) is None else "has a non-string"
            raise UserError(f"benchmark {spec.name} ({spec.url}): record {origin} {state} field {field!r}")
    return item_id, "\n".join(obj[field] for field in spec.fields)


def read_benchmark(spec: BenchmarkSpec) -> pa.Table:
    """The benchmark's items in file order: `item_id` and `text` (ITEM_SCHEMA)."""
    file_format = detect_format(spec.url)
    if file_format == "text":
        raise UserError(f"benchmark {spec.name} ({spec.url}): not JSONL (.jsonl, .jsonl.gz, .jsonl.zst) or Parquet")
    with reaching(spec.url, f"benchmark {spec.name}"):  # an unknown protocol, missing credentials, ...
        fs, path = fsspec.core.url_to_fs(spec.url)
        try:  # `info`, not `isfile`: s3fs's isfile says False for a store it cannot reach
            found = fs.info(path)["type"] == "file"
        except FileNotFoundError:
            found = False
    if not found:
        raise UserError(f"benchmark {spec.name}: {spec.url} not found")
    ids, texts = [], []
    file = InputFile(spec.url, spec.url.rstrip("/").rsplit("/", 1)[-1], file_format, 0)
    for position, record in enumerate(read_raw_records(file, 0)):
        if record.obj is None:
            why = " ".join(record.raw.decode("utf-8", "replace").split()) if record.reason == "unreadable_file" else record.reason
            raise UserError(f"benchmark {spec.name} ({spec.url}): cannot read {record.origin}: {why}")
        item_id, text = _item(spec, record.obj, position, record.origin)
        ids.append(item_id)
        texts.append(text)
    if not ids:
        raise UserError(f"benchmark {spec.name} ({spec.url}) has no items")
    if len(set(ids)) < len(ids):
        repeated = next(item for item, count in Counter(ids).items() if count > 1)
        raise UserError(f"benchmark {spec.name} ({spec.url}): item id {repeated!r} names more than one item")
    return pa.table({"item_id": pa.array(ids, pa.string()), "text": pa.array(texts, pa.string())}, schema=ITEM_SCHEMA)

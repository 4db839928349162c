"""Validation of raw records into documents, with a reason code for every rejection.

A document is `id`, `text`, `input_pos` (its place in the input: file index and line) and
the record's other fields as they came. Anything else becomes a quarantine row with its
origin, a reason code and the raw bytes, so nothing is lost and the job never crashes on
bad data.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

import pyarrow as pa

from curation.readers import InputFile, RawRecord, read_raw_records

REASONS = {
    "invalid_json": "the line is not valid JSON",
    "invalid_utf8": "the bytes are not valid UTF-8 (or the text holds lone surrogates)",
    "not_an_object": "the JSON value is not an object",
    "missing_text": "the record has no text field",
    "text_not_string": "the text field is not a string",
    "empty_text": "the text is empty or whitespace only",
    "nul_byte": "the text contains a NUL byte",
    "too_large": "the text is larger than --max-doc-bytes",
    "invalid_id": "the id field is neither a string nor an integer",
    "duplicate_id": "another record earlier in the input has the same id",
}
RESERVED_COLUMNS = (
    "id", "text", "input_ids", "input_pos", "origin", "reason", "raw",
    "copy_index", "rewrite_status", "language", "original_tokens",
)
QUARANTINE_SCHEMA = pa.schema([("origin", pa.string()), ("reason", pa.string()), ("raw", pa.binary())])


@dataclass(frozen=True)
class IngestConfig:
    text_field: str = "text"
    max_doc_bytes: int = 8 * 1024 * 1024


def record_id(record: RawRecord) -> tuple[str | None, str | None]:
    """The document id: the record's `id` field when present, else its origin; or the reason it is invalid."""
    value = record.obj.get("id", record.origin)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None, "invalid_id"
    return str(value), None


def validate(record: RawRecord, config: IngestConfig) -> tuple[dict | None, str | None]:
    """The document a raw record holds, or the reason code it is quarantined with."""
    if record.obj is None:
        return None, record.reason
    obj = record.obj
    text = obj.get(config.text_field)
    if text is None:
        return None, "missing_text"
    if not isinstance(text, str):
        return None, "text_not_string"
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None, "invalid_utf8"
    if not text.strip():
        return None, "empty_text"
    if "\x00" in text:
        return None, "nul_byte"
    if size > config.max_doc_bytes:
        return None, "too_large"
    doc_id, reason = record_id(record)
    if reason is not None:
        return None, reason
    document = {"id": doc_id, "text": text, "input_pos": record.position}
    for key, value in obj.items():
        if key in (config.text_field, "id"):
            continue
        document[f"input_{key}" if key in RESERVED_COLUMNS else key] = value
    return document, None


Validator = Callable[[RawRecord], tuple[dict | None, str | None]]
TEXT_DOCUMENT_TYPES = {"id": pa.string(), "text": pa.string()}


def ingest_file(
    file: InputFile,
    file_index: int,
    validator: Validator,
    document_types: Mapping[str, pa.DataType] = TEXT_DOCUMENT_TYPES,
    batch_rows: int = 4096,
) -> Iterator[pa.Table]:
    """Tables of documents and quarantine rows (told apart by a null `reason`) for one file.

    `validator` turns a raw record into a document or a reason; `document_types` fixes the
    types of the columns every document of the build has, so blocks of quarantine rows alone
    still carry them.
    """
    rows: list[dict] = []
    for record in read_raw_records(file, file_index):
        document, reason = validator(record)
        if document is None:
            rows.append({"input_pos": record.position, "origin": record.origin, "reason": reason, "raw": record.raw})
        else:
            rows.append(document | {"origin": record.origin, "reason": None, "raw": record.raw})
        if len(rows) == batch_rows:
            yield _to_table(rows, document_types)
            rows = []
    if rows:
        yield _to_table(rows, document_types)


def _to_table(rows: list[dict], document_types: Mapping[str, pa.DataType]) -> pa.Table:
    table = pa.Table.from_pylist(rows)
    for name, kind in [("reason", pa.string()), ("raw", pa.binary()), *document_types.items()]:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, kind))
        elif table.schema.field(name).type != kind:
            table = table.set_column(table.schema.get_field_index(name), name, table.column(name).cast(kind))
    return table


def reason_summary(reasons: Counter) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in reasons.most_common(4))

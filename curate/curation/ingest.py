"""Validation of raw records into documents, with a reason code for every rejection.

A document is `id`, `text`, `input_pos` (its place in the input: file index and line) and
the record's other fields as they came. Anything else becomes a quarantine row with its
origin, a reason code and the raw bytes, so nothing is lost and the job never crashes on
bad data. Each metadata field gets one Arrow type for the whole build; a field whose values
have none in common (`"score": 3` here, `"score": "3"` there) is kept as JSON text.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

import pyarrow as pa

from curate.curation.readers import InputFile, RawRecord, Span, read_raw_records

REASONS = {
    "unreadable_file": "the file could not be read past this point (truncated or corrupt, or no permission)",
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
# Columns every build writes or uses; input metadata of these names (or of a regime's own columns,
# `IngestConfig.regime_columns`) is kept as `input_<name>`.
BUILD_COLUMNS = ("id", "text", "input_ids", "input_pos", "origin", "reason", "raw")
# Field metadata of a column whose values in one block had no common Arrow type.
MIXED = b"curate.mixed_types"
ARROW_TYPE_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError)
QUARANTINE_SCHEMA = pa.schema([("origin", pa.string()), ("reason", pa.string()), ("raw", pa.binary())])


@dataclass(frozen=True)
class IngestConfig:
    """How records become documents; `regime_columns` are the shard columns the registered regimes add."""

    text_field: str = "text"
    max_doc_bytes: int = 8 * 1024 * 1024
    regime_columns: tuple[str, ...] = ()

    @property
    def reserved(self) -> tuple[str, ...]:
        return BUILD_COLUMNS + self.regime_columns


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
        document[f"input_{key}" if key in config.reserved else key] = value
    return document, None


Validator = Callable[[RawRecord], tuple[dict | None, str | None]]
TEXT_DOCUMENT_TYPES = {"id": pa.string(), "text": pa.string()}


def ingest_file(
    file: InputFile,
    file_index: int,
    validator: Validator,
    document_types: Mapping[str, pa.DataType] = TEXT_DOCUMENT_TYPES,
    batch_rows: int = 4096,
    span: Span | None = None,
) -> Iterator[pa.Table]:
    """Tables of documents and quarantine rows (told apart by a null `reason`) for one file, or one span of it.

    `validator` turns a raw record into a document or a reason; `document_types` fixes the
    types of the columns every document of the build has, so blocks of quarantine rows alone
    still carry them.
    """
    rows: list[dict] = []
    for record in read_raw_records(file, file_index, span):
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
    table = _table_by_column(rows)
    for name, kind in [("reason", pa.string()), ("raw", pa.binary()), *document_types.items()]:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, kind))
        elif table.schema.field(name).type != kind:
            table = table.set_column(table.schema.get_field_index(name), name, table.column(name).cast(kind))
    return table


def _table_by_column(rows: list[dict]) -> pa.Table:
    """One column per field any row has (`Table.from_pylist` would take the first row's fields only).

    A field whose values have no common Arrow type gets a column marked mixed, holding no values;
    `conform_metadata` fills it with JSON text from the raw records.
    """
    names = list(dict.fromkeys(name for row in rows for name in row))
    fields, arrays = [], []
    for name in names:
        try:
            array = pa.array([row.get(name) for row in rows])
            fields.append(pa.field(name, array.type))
        except ARROW_TYPE_ERRORS:
            array = pa.nulls(len(rows))
            fields.append(pa.field(name, pa.null(), metadata={MIXED: b"1"}))
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def metadata_types(schemas: list[pa.Schema], fixed: set[str]) -> dict[str, pa.DataType | None]:
    """Per metadata field, the one Arrow type all its values take, or None when they have none.

    `schemas` are those of every block of documents, in input order; a field is None (JSON text
    in every document) when a block marked it mixed or two blocks' types do not unify, so the
    decision does not depend on how records were split into blocks.
    """
    types: dict[str, pa.DataType | None] = {}
    for schema in schemas:
        for field in schema:
            if field.name in fixed or types.get(field.name, 0) is None:
                continue
            if field.metadata and MIXED in field.metadata:
                types[field.name] = None
            elif field.name not in types:
                types[field.name] = field.type
            else:
                try:
                    both = [pa.schema([pa.field(field.name, types[field.name])]), pa.schema([field.remove_metadata()])]
                    types[field.name] = pa.unify_schemas(both, promote_options="permissive").field(0).type
                except ARROW_TYPE_ERRORS:
                    types[field.name] = None
    return types


def _record_key(column: str, reserved: tuple[str, ...]) -> str:
    """The input field a metadata column came from (reserved names were prefixed with `input_`)."""
    bare = column.removeprefix("input_")
    return bare if column != bare and bare in reserved else column


def conform_metadata(table: pa.Table, types: Mapping[str, pa.DataType | None], reserved: tuple[str, ...]) -> pa.Table:
    """Every metadata column with its build-wide type; fields of no common type as JSON text from `raw`."""
    records = None
    for name, kind in types.items():
        if kind is None:
            if records is None:
                records = [json.loads(raw) for raw in table["raw"].to_pylist()]
            key = _record_key(name, reserved)
            values = [None if record.get(key) is None else json.dumps(record[key], ensure_ascii=False) for record in records]
            column = pa.array(values, pa.string())
        elif name in table.column_names:
            column = table[name].cast(kind)
        else:
            column = pa.nulls(table.num_rows, kind)
        if name in table.column_names:
            table = table.set_column(table.schema.get_field_index(name), pa.field(name, column.type), column)
        else:
            table = table.append_column(name, column)
    return table


def reason_summary(reasons: Counter) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in reasons.most_common(4))

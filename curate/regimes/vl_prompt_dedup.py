"""Regime VL: prompt segments repeated across the fields of a vision-language record reduced to one.

A VL document is a whole record (llava, messages or flat shape, see `curate.curation.vl`), validated at
ingest like any document and kept as JSON with its `bytes` values beside it. Nothing is removed
as a duplicate (the paper keeps the dataset's size and task mix), P is not split (one phase) and
nothing is tokenized. The transform de-duplicates each record's prompt text
(`curate.dedup.prompt_dedup`); images and targets pass through untouched.

Shard columns: `id`; `text` (all of the record's text after de-duplication, one slot per line,
for coverage statistics); `record` (the whole record as JSON, key order kept); `blobs` (its
bytes values); `shape`; `vl_stats` (segments and tokens before and after, per field).
`curate.curation.vl.read_vl_records(out)` gives the records back as dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import pyarrow as pa
import pyarrow.compute as pc

from curate.curation.coverage_metrics import ratio
from curate.curation.errors import UserError
from curate.curation.ingest import IngestConfig, record_id
from curate.curation.readers import RawRecord
from curate.curation.vl import (
    DEFAULT_FIELDS,
    ShapeError,
    decode_record,
    encode_record,
    parse_vl_record,
    render_text,
    text_slots,
)
from curate.dedup.prompt_dedup import (
    DEFAULT_PRECEDENCE,
    PromptDedupConfig,
    RecordStats,
    dedup_record,
)
from curate.regimes.base import (
    Phase1Context,
    Phase1Output,
    Phase1Transform,
    Regime,
    register,
)

FIELD_STATS_TYPE = pa.struct(
    [
        ("field", pa.string()),
        ("segments", pa.int64()),
        ("duplicate_segments", pa.int64()),
        ("tokens", pa.int64()),
        ("removed_tokens", pa.int64()),
    ]
)
VL_STATS_TYPE = pa.struct(
    [
        ("segments", pa.int64()),
        ("duplicate_segments", pa.int64()),
        ("segments_after", pa.int64()),
        ("duplicate_segments_after", pa.int64()),
        ("tokens", pa.int64()),
        ("removed_tokens", pa.int64()),
        ("changed", pa.bool_()),
        ("fields", pa.list_(FIELD_STATS_TYPE)),
    ]
)
SHARD_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("blobs", pa.list_(pa.binary())),
        ("record", pa.string()),
        ("shape", pa.string()),
        ("vl_stats", VL_STATS_TYPE),
    ]
)
SUMMED = ("segments", "duplicate_segments", "segments_after", "duplicate_segments_after", "tokens", "removed_tokens")
TOTALS_SCHEMA = pa.schema(
    [("kind", pa.string()), ("name", pa.string()), ("records", pa.int64()), ("records_changed", pa.int64())]
    + [(name, pa.int64()) for name in SUMMED]
)


def _stats_row(stats: RecordStats) -> dict:
    return {
        "segments": stats.prompt.segments,
        "duplicate_segments": stats.prompt.duplicate_segments,
        "segments_after": stats.segments_after,
        "duplicate_segments_after": stats.duplicate_segments_after,
        "tokens": stats.prompt.tokens,
        "removed_tokens": stats.prompt.removed_tokens,
        "changed": stats.changed,
        "fields": [
            {"field": name, "segments": f.segments, "duplicate_segments": f.duplicate_segments,
             "tokens": f.tokens, "removed_tokens": f.removed_tokens}
            for name, f in stats.fields.items()
        ],
    }


def dedup_batch(table: pa.Table, fields: list[str], precedence: list[str]) -> pa.Table:
    """De-duplicate every record of a block (their shapes were checked at ingest)."""
    config = PromptDedupConfig(precedence=tuple(precedence))
    field_names = tuple(fields)
    rows = []
    for doc_id, text, blobs in zip(table["id"].to_pylist(), table["record"].to_pylist(), table["blobs"].to_pylist()):
        record, shape, stats = dedup_record(decode_record(text, blobs), config, field_names)
        encoded, new_blobs = encode_record(record)
        rows.append({
            "id": doc_id,
            "text": render_text(record, text_slots(record, shape, field_names)),
            "blobs": new_blobs,
            "record": encoded,
            "shape": shape,
            "vl_stats": _stats_row(stats),
        })
    return pa.Table.from_pylist(rows, schema=SHARD_SCHEMA)


def _sums(table: pa.Table) -> pa.Table:
    """Group rows by (kind, name) and sum every count."""
    names = [name for name in table.column_names if name not in ("kind", "name")]
    summed = table.group_by(["kind", "name"]).aggregate([(name, "sum") for name in names])
    return summed.rename_columns([name.removesuffix("_sum") for name in summed.column_names])


def partial_totals(table: pa.Table) -> pa.Table:
    """One block's counts: kind "record" sums whole records, "field" each field."""
    stats = pa.Table.from_struct_array(table["vl_stats"].combine_chunks())
    per_field = pa.Table.from_struct_array(pc.list_flatten(stats["fields"].combine_chunks())) if table.num_rows else None
    parts = []
    for kind, source, names in (
        ("record", stats, pa.nulls(stats.num_rows, pa.string())),
        ("field", per_field, per_field["field"] if per_field is not None else None),
    ):
        if source is None or not source.num_rows:
            continue
        columns = {
            "kind": pa.array([kind] * source.num_rows, pa.string()),
            "name": names,
            "records": pa.array([1] * source.num_rows, pa.int64()),
        }
        for name in SUMMED:
            columns[name] = source[name] if name in source.column_names else pa.nulls(source.num_rows, pa.int64())
        columns["records_changed"] = pc.cast(pc.greater(columns["duplicate_segments"], 0), pa.int64())
        parts.append(pa.table({key: columns[key] for key in TOTALS_SCHEMA.names}, schema=TOTALS_SCHEMA))
    return _sums(pa.concat_tables(parts)) if parts else TOTALS_SCHEMA.empty_table()


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def vl_summary(totals: list[dict], config: PromptDedupConfig) -> dict:
    """The build's VL statistics from the summed counts: rates before and after, tokens removed, per field."""
    rows = {row["name"]: row for row in totals if row["kind"] == "field"}
    whole = next((row for row in totals if row["kind"] == "record"), None)
    whole = whole or {name: 0 for name in ("records", "records_changed") + SUMMED}
    return {
        "records": whole["records"],
        "records_changed": whole["records_changed"],
        "segments_before": whole["segments"],
        "duplicate_segments_before": whole["duplicate_segments"],
        "duplication_rate_before": _share(whole["duplicate_segments"], whole["segments"]),
        "segments_after": whole["segments_after"],
        "duplicate_segments_after": whole["duplicate_segments_after"],
        "duplication_rate_after": _share(whole["duplicate_segments_after"], whole["segments_after"]),
        "tokens_before": whole["tokens"],
        "tokens_removed": whole["removed_tokens"],
        "token_share_removed": _share(whole["removed_tokens"], whole["tokens"]),
        "token_count": "whitespace-separated runs, every CJK character one token",
        "precedence": list(config.precedence),
        "min_tokens": config.min_tokens,
        "min_width": config.min_width,
        "fields": {
            name: {
                "records": row["records"],
                "records_changed": row["records_changed"],
                "segments": row["segments"],
                "duplicate_segments": row["duplicate_segments"],
                "duplication_rate": _share(row["duplicate_segments"], row["segments"]),
                "tokens": row["tokens"],
                "tokens_removed": row["removed_tokens"],
                "token_share_removed": _share(row["removed_tokens"], row["tokens"]),
            }
            for name, row in sorted(rows.items())
        },
    }


@dataclass(frozen=True)
class VLSettings:
    """Which text fields flat records have, which field keeps the canonical copy, how long an instruction is."""

    fields: tuple[str, ...] = field(default=DEFAULT_FIELDS, metadata={"help": "Text fields of flat records."})
    precedence: tuple[str, ...] = field(
        default=DEFAULT_PRECEDENCE, metadata={"help": "Field order that keeps the canonical copy."}
    )
    min_tokens: int = PromptDedupConfig.min_tokens
    min_width: int = PromptDedupConfig.min_width

    def __post_init__(self) -> None:
        if not self.fields or not self.precedence:
            raise UserError("--fields and --precedence name at least one field each")


class VLPromptDedup(Phase1Transform):
    name = "prompt-dedup"
    settings_type = VLSettings
    columns = ("vl_stats",)
    sections = ("vl",)
    deduplicates = False
    tokenizes = False
    phases = 1
    embedded_input = False
    document_types = {"id": pa.string(), "record": pa.string(), "blobs": pa.list_(pa.binary()), "shape": pa.string()}

    def validate(self, record: RawRecord, ingest: IngestConfig, settings: dict) -> tuple[dict | None, str | None]:
        if record.obj is None:
            return None, record.reason
        doc_id, reason = record_id(record)
        if reason is not None:
            return None, reason
        try:
            encoded, blobs = encode_record(record.obj)
            shape, _ = parse_vl_record(record.obj, tuple(settings["fields"]))
        except ShapeError as error:
            return None, error.reason
        return {"id": doc_id, "input_pos": record.position, "record": encoded, "blobs": blobs, "shape": shape}, None

    def apply(self, context: Phase1Context) -> Phase1Output:
        settings = context.settings
        deduped = context.phase1().map_batches(
            dedup_batch, fn_kwargs={"fields": settings["fields"], "precedence": settings["precedence"]},
            batch_format="pyarrow",
        ).materialize()
        phase = context.write(deduped)
        partials = [t for t in deduped.map_batches(partial_totals, batch_format="pyarrow").iter_batches(batch_format="pyarrow", batch_size=None) if t.num_rows]
        totals = _sums(pa.concat_tables(partials)).to_pylist() if partials else []
        config = PromptDedupConfig(tuple(settings["precedence"]), settings["min_tokens"], settings["min_width"])
        return Phase1Output(phase, {"vl": vl_summary(totals, config)})

    def shard_counts(self, table: pa.Table) -> dict[str, int]:
        """Records, and their prompt segments and duplicated segments after and before
        de-duplication (from `vl_stats`)."""
        if "vl_stats" not in table.column_names:
            return {}
        stats = table.column("vl_stats")

        def total(name: str) -> int:
            return int(pc.sum(pc.struct_field(stats, name)).as_py() or 0)

        changed = pc.greater(pc.struct_field(stats, "duplicate_segments_after"), 0)
        return {
            "records": table.num_rows,
            "segments": total("segments_after"),
            "duplicated": total("duplicate_segments_after"),
            "records_with_duplicates": int(pc.sum(changed).as_py() or 0),
            "segments_before": total("segments"),
            "duplicated_before": total("duplicate_segments"),
        }

    def statistics(self, counts: Mapping[str, int]) -> dict:
        if not counts.get("records"):
            return {}
        return {
            "prompt_records": counts["records"],
            "prompt_duplication_share": ratio(counts["duplicated"], counts["segments"]),
            "prompt_duplication_share_before_dedup": ratio(counts["duplicated_before"], counts["segments_before"]),
            "prompt_records_with_duplicates": counts["records_with_duplicates"],
        }


register(
    Regime(
        "VL",
        "vision-language: prompt segments repeated across fields reduced to one instance",
        VLPromptDedup(),
        {"lr_decay_style": "cosine"},
    )
)

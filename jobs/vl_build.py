"""`curate build --regime VL`: multi-field prompt de-duplication of vision-language records on Ray.

Stages (resumable, see `jobs.runner`):

    vl-dedup (read, de-duplicate) -> vl-write (one seeded sort: phase-1 and quarantine shards, totals)
    -> stats.json, manifest.json

No document is dropped as a duplicate: the paper keeps the dataset size and task distribution, so
`input = quarantined + kept`. There is one phase, "phase-1", holding every kept record in a seeded
order (VL has no phase 2). Records are not tokenized.

Shard columns (Arrow needs one type per column, and VL records of one input disagree on theirs):
- `id`: the record's origin, "file:line" (or "file:row N" for Parquet); unique per input record.
  The record's own `id`, if any, stays inside `record`;
- `text`: all of the record's text (prompt and target) after de-duplication, one slot per line,
  for coverage statistics;
- `record`: the whole record as JSON, key order kept (`curation.vl.encode_record`);
- `blobs`: the record's `bytes` values (inline images from Parquet), which JSON cannot hold;
- `shape`: `llava`, `messages` or `flat`;
- `vl_stats`: per-record statistics (segments and tokens, before and after, per field).
`curation.vl.read_vl_records(out)` gives the records back as dicts.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import ray

from curation.errors import UserError
from curation.ingest import QUARANTINE_SCHEMA
from curation.manifest import FORMAT_VERSION, config_hash, write_json_atomic, write_manifest
from curation.order import order_keys
from curation.readers import InputFile, list_input_files, read_raw_records
from curation.shards import ShardInfo, shard_name, write_shard
from curation.vl import DEFAULT_FIELDS, ShapeError, decode_record, encode_record, render_text, text_slots
from dedup.prompt_dedup import DEFAULT_PRECEDENCE, PromptDedupConfig, RecordStats, dedup_record
from jobs.build import TOOL_VERSION, RunOptions, init_ray, phase_entry
from jobs.runner import Progress, StageRunner, prepare_output
from jobs.shard_writer import ordered_blocks, write_range
from regimes import get_recipe, recipe_record

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
INGEST_SCHEMA = pa.schema(
    [
        ("input_pos", pa.int64()),
        ("origin", pa.string()),
        ("reason", pa.string()),
        ("raw", pa.binary()),
        ("record", pa.string()),
        ("blobs", pa.list_(pa.binary())),
    ]
)
# A row of the dedup stage: a shard row or a quarantine row. Sorting by (bucket, sort_key, origin)
# puts the kept records first, in seeded order (sort_key: the order key of the id), then the
# quarantined ones in input order (sort_key: input_pos), so one sort serves both outputs.
ROW_SCHEMA = pa.schema(
    list(SHARD_SCHEMA)
    + [INGEST_SCHEMA.field(n) for n in ("input_pos", "origin", "reason", "raw")]
    + [("bucket", pa.int8()), ("sort_key", pa.int64())]
)
SORT_KEYS = ["bucket", "sort_key", "origin"]
DEDUP_BLOCK_ROWS = 2048
SUMMED = ("segments", "duplicate_segments", "segments_after", "duplicate_segments_after", "tokens", "removed_tokens")
TOTALS_SCHEMA = pa.schema(
    [("kind", pa.string()), ("name", pa.string()), ("records", pa.int64()), ("records_changed", pa.int64())]
    + [(name, pa.int64()) for name in SUMMED]
)


# ------------------------------------------------------------------ row blocks (run in Ray tasks)


def _read_files(batch: dict) -> Iterator[pa.Table]:
    """Raw records of the listed files, each JSON-encoded with its bytes values beside it."""
    for index, url, name, fmt, size in zip(batch["index"], batch["url"], batch["name"], batch["format"], batch["size"]):
        rows: list[dict] = []
        for raw in read_raw_records(InputFile(url, name, fmt, int(size)), int(index)):
            row = {"input_pos": raw.position, "origin": raw.origin, "reason": raw.reason, "raw": raw.raw,
                   "record": None, "blobs": []}
            if raw.obj is not None:
                try:
                    row["record"], row["blobs"] = encode_record(raw.obj)
                except ShapeError as error:
                    row["reason"] = error.reason
            rows.append(row)
            if len(rows) == DEDUP_BLOCK_ROWS:
                yield pa.Table.from_pylist(rows, schema=INGEST_SCHEMA)
                rows = []
        if rows:
            yield pa.Table.from_pylist(rows, schema=INGEST_SCHEMA)


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


def _dedup_batch(table: pa.Table, fields: list[str], precedence: list[str], salt: str) -> pa.Table:
    """De-duplicate every parsed record of a block; records of no known shape get their reason."""
    config = PromptDedupConfig(precedence=tuple(precedence))
    field_names = tuple(fields)
    rows = []
    for row in table.to_pylist():
        out = {name: None for name in ROW_SCHEMA.names} | {key: row[key] for key in ("input_pos", "origin", "reason", "raw")}
        out["blobs"] = []
        if row["reason"] is None:
            try:
                record, shape, stats = dedup_record(decode_record(row["record"], row["blobs"]), config, field_names)
                out["record"], out["blobs"] = encode_record(record)
            except ShapeError as error:
                out["reason"] = error.reason
            else:
                out["id"] = row["origin"]
                out["text"] = render_text(record, text_slots(record, shape, field_names))
                out["shape"] = shape
                out["vl_stats"] = _stats_row(stats)
                out["raw"] = None
        rows.append(out)
    rows_table = pa.Table.from_pylist(rows, schema=ROW_SCHEMA)
    kept = pc.is_null(rows_table["reason"])
    order = order_keys(pc.fill_null(rows_table["id"], ""), salt)
    rows_table = rows_table.set_column(ROW_SCHEMA.get_field_index("bucket"), "bucket", pc.cast(pc.invert(kept), pa.int8()))
    return rows_table.set_column(
        ROW_SCHEMA.get_field_index("sort_key"), "sort_key", pc.if_else(kept, order, rows_table["input_pos"])
    )


def _sums(table: pa.Table) -> pa.Table:
    """Group rows by (kind, name) and sum every count."""
    names = [name for name in table.column_names if name not in ("kind", "name")]
    summed = table.group_by(["kind", "name"]).aggregate([(name, "sum") for name in names])
    return summed.rename_columns([name.removesuffix("_sum") for name in summed.column_names])


def _partial_totals(table: pa.Table) -> pa.Table:
    """One block's counts: kind "record" sums whole records, "field" each field, "reason" quarantine reasons."""
    kept = table.filter(pc.equal(table["bucket"], 0))
    quarantined = table.filter(pc.equal(table["bucket"], 1))
    stats = pa.Table.from_struct_array(kept["vl_stats"].combine_chunks())
    per_field = pa.Table.from_struct_array(pc.list_flatten(stats["fields"].combine_chunks())) if kept.num_rows else None
    parts = []
    for kind, source, names in (
        ("record", stats, pa.nulls(stats.num_rows, pa.string())),
        ("field", per_field, per_field["field"] if per_field is not None else None),
        ("reason", quarantined, quarantined["reason"]),
    ):
        if source is None or not source.num_rows:
            continue
        columns = {
            "kind": pa.array([kind] * source.num_rows, pa.string()),
            "name": names,
            "records": pa.array([1] * source.num_rows, pa.int64()),
        }
        for name in ("duplicate_segments",) + SUMMED:
            present = kind != "reason" and name in source.column_names
            columns[name] = source[name] if present else pa.nulls(source.num_rows, pa.int64())
        columns["records_changed"] = pc.cast(pc.greater(columns["duplicate_segments"], 0), pa.int64())
        parts.append(pa.table({key: columns[key] for key in TOTALS_SCHEMA.names}, schema=TOTALS_SCHEMA))
    return _sums(pa.concat_tables(parts)) if parts else TOTALS_SCHEMA.empty_table()


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def summarize(totals: list[dict], config: PromptDedupConfig) -> dict:
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


# ------------------------------------------------------------------ stages


def _unique_names(files: list[InputFile]) -> list[InputFile]:
    """Origins must tell records apart: when two inputs share a relative name, use full URLs."""
    names = [f.name for f in files]
    if len(set(names)) == len(names):
        return files
    return [replace(f, name=f.url) for f in files]


def dedup_stage(inputs: list[str], fields: list[str], precedence: list[str], seed: int, stage_dir: str) -> dict:
    """Read every input record (a Ray task per file) and de-duplicate it (a task per block of records)."""
    files = _unique_names(list_input_files(inputs))
    listing = [{"index": i, "url": f.url, "name": f.name, "format": f.format, "size": f.size} for i, f in enumerate(files)]
    files_ds = ray.data.from_items(listing, override_num_blocks=max(1, min(len(listing), 1000)))
    # Reading is mostly I/O and JSON parsing (half a CPU); streaming the records on in blocks of
    # DEDUP_BLOCK_ROWS lets the blocks of one large file be de-duplicated in parallel.
    records = files_ds.map_batches(_read_files, batch_size=1, batch_format="numpy", num_cpus=0.5)
    records = records.repartition(target_num_rows_per_block=DEDUP_BLOCK_ROWS)
    rows = records.map_batches(
        _dedup_batch,
        batch_format="pyarrow",
        fn_kwargs={"fields": fields, "precedence": precedence, "salt": f"{seed}:order"},
        num_cpus=1,
    )
    rows.write_parquet(f"{stage_dir}/rows")
    return {
        "bytes": sum(f.size for f in files),
        "inputs": [{"url": f.url, "bytes": f.size} for f in files],
    }


def _write_rows(spans: list, schema: pa.Schema, first: int, end: int, out: str, folder: str, shard_rows: int) -> list[ShardInfo]:
    if first == end:
        return [write_shard(schema.empty_table(), out, f"{folder}/{shard_name(0)}")]
    return write_range(spans, schema, first, end, out, folder, shard_rows)


def write_stage(rows_dir: str, out: str, shard_rows: int, config: PromptDedupConfig) -> dict:
    """One seeded sort; phase-1 shards from its kept rows, quarantine shards from the rest; the totals."""
    fs, path = fsspec.core.url_to_fs(rows_dir)
    if not fs.exists(path) or not fs.ls(path):
        raise UserError("the input holds no records")
    ordered = ray.data.read_parquet(rows_dir).sort(SORT_KEYS).materialize()
    partials = [t for t in ray.get(ordered.map_batches(_partial_totals, batch_format="pyarrow").to_arrow_refs()) if t.num_rows]
    totals = _sums(pa.concat_tables(partials)).to_pylist() if partials else []
    kept = sum(row["records"] for row in totals if row["kind"] == "record")
    rows = ordered.count()
    spans, _ = ordered_blocks(ordered)
    shards = _write_rows(spans, SHARD_SCHEMA, 0, kept, out, "phase-1", shard_rows)
    quarantine = _write_rows(spans, QUARANTINE_SCHEMA, kept, rows, out, "quarantine", shard_rows)
    reasons = {row["name"]: row["records"] for row in totals if row["kind"] == "reason"}
    return {
        "documents": rows,
        "input": rows,
        "kept": kept,
        "quarantined": rows - kept,
        "phase": phase_entry("phase-1", shards),
        "quarantine_shards": len(quarantine),
        "reasons": dict(sorted(reasons.items())),
        "vl": summarize(totals, config),
    }


def run_vl_build(
    inputs: list[str],
    output: str,
    *,
    fields: list[str] | None = None,
    precedence: list[str] | None = None,
    shard_rows: int = 10_000,
    seed: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    num_cpus: int | None = None,
    address: str | None = None,
    quiet: bool = False,
) -> dict:
    """Build the VL regime from `inputs` into `output`; returns the manifest (written last)."""
    if not inputs:
        raise UserError("--regime VL needs --input: the vision-language records to de-duplicate")
    if shard_rows < 1:
        raise UserError(f"--shard-rows must be at least 1, got {shard_rows}")
    fields = list(fields) if fields else list(DEFAULT_FIELDS)
    dedup_config = PromptDedupConfig(precedence=tuple(precedence) if precedence else DEFAULT_PRECEDENCE)
    config = {
        "regime": "VL",
        "inputs": list(inputs),
        "fields": fields,
        "precedence": list(dedup_config.precedence),
        "min_tokens": dedup_config.min_tokens,
        "min_width": dedup_config.min_width,
        "seed": seed,
        "shard_rows": shard_rows,
    }
    prepare_output(output, resume, overwrite)
    progress = Progress(quiet)
    runner = StageRunner(output, progress)
    init_ray(RunOptions(output=output, resume=resume, overwrite=overwrite, num_cpus=num_cpus, address=address, quiet=quiet))
    runner.check_config({"config": config})
    progress.line(f"curate build --regime VL -> {output}")
    precedence_list = list(dedup_config.precedence)
    deduped = runner.run("vl-dedup", lambda d: dedup_stage(list(inputs), fields, precedence_list, seed, d))
    rows_dir = f"{runner.path('vl-dedup')}/rows"
    written = runner.run("vl-write", lambda d: write_stage(rows_dir, output, shard_rows, dedup_config))
    counts = {
        "input": written["input"],
        "quarantined": written["quarantined"],
        "exact_duplicates": 0,
        "near_duplicates": 0,
        "kept": written["kept"],
    }
    if written["phase"]["rows"] != counts["kept"]:
        raise RuntimeError(f"phase-1 holds {written['phase']['rows']} rows, expected {counts['kept']}")
    from jobs.stats_job import compute_build_stats

    write_json_atomic(output, "stats.json", compute_build_stats(output, counts) | {"vl": written["vl"]})
    recipe = get_recipe("VL")
    manifest = {
        "format_version": FORMAT_VERSION,
        "regime": recipe.name,
        "recipe": recipe_record(recipe, {"fields": fields, "precedence": list(dedup_config.precedence)}),
        "phases": [written["phase"]],
        "counts": counts,
        "quarantine_reasons": written["reasons"],
        "tokenizer": None,
        "vl": written["vl"],
        "config": config,
        "config_hash": config_hash(config),
        "inputs": deduped["inputs"],
        "tool_version": TOOL_VERSION,
    }
    write_manifest(output, manifest)
    return manifest

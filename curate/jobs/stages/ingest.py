"""Ingest: read every input file in Ray tasks, validate each record into a document or a quarantine row.

A large plain JSONL file is read by several tasks, one per byte span, after a first pass of Ray tasks
counts the newlines before each span; the records come out as from one read of the whole file.

Documents go to `<stage>/docs` (Parquet), bad records and reused ids to `OUT/quarantine/` in input
order. What a valid document is belongs to the regime's transform (text by default, whole records
for VL); the id rule, reused-id check and quarantine are the same for every regime.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from functools import partial
from typing import ClassVar, Iterator

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from curate.curation.embedded import EMBEDDED_URL, write_embedded_corpus
from curate.curation.errors import UserError
from curate.curation.ingest import (
    QUARANTINE_SCHEMA,
    IngestConfig,
    conform_metadata,
    ingest_file,
    metadata_types,
    reason_summary,
)
from curate.curation.readers import (
    InputFile,
    Span,
    byte_ranges,
    byte_spans,
    count_newlines,
    process_local,
    splittable,
)
from curate.curation.storage import join
from curate.dedup.exact import reused_ids
from curate.jobs.datasets import (
    attach_groups,
    exclude,
    has_files,
    only,
    parquet_files,
    read_parquet,
    write_parquet,
)
from curate.jobs.reduce import tree_reduce
from curate.jobs.shard_writer import write_sorted
from curate.regimes.base import Phase1Transform

FIXED_COLUMNS = {"input_pos", "origin", "raw", "reason"}
DUPLICATE_ID = "duplicate_id"
REASON_COUNTS = pa.schema([("reason", pa.string()), ("count", pa.int64())])


def _document_schema(url: str) -> tuple[int, bytes]:
    """One records file's first document position (-1 with none) and its documents' schema (the file's,
    less `reason`), serialized."""
    with fsspec.open(url, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        schema = parquet.schema_arrow
        keys = parquet.read(columns=["input_pos", "reason"])
    positions = keys["input_pos"].filter(pc.is_null(keys["reason"]))
    first = pc.min(positions).as_py() if len(positions) else -1
    return first, schema.remove(schema.get_field_index("reason")).serialize().to_pybytes()


_remote_document_schema = ray.remote(num_cpus=1)(_document_schema)


def _document_schemas(records: str) -> list[pa.Schema]:
    """The distinct schemas of the documents, in input order (first position of each records file), read
    from the files' footers and two small columns."""
    found = sorted(ray.get([_remote_document_schema.remote(url) for url in parquet_files(records)]))
    return [pa.ipc.read_schema(pa.py_buffer(schema)) for schema in dict.fromkeys(schema for _, schema in found)]


def _valid_rows(table: pa.Table) -> pa.Table:
    return table.filter(pc.is_null(table["reason"])).drop_columns(["reason"])


def _invalid_rows(table: pa.Table) -> pa.Table:
    return table.filter(pc.is_valid(table["reason"])).select(["origin", "reason", "raw", "input_pos"])


def _as_reused_id(table: pa.Table) -> pa.Table:
    """Quarantine rows for documents whose id an earlier record already used."""
    reason = pa.array([DUPLICATE_ID] * table.num_rows, pa.string())
    return pa.table({"origin": table["origin"], "reason": reason, "raw": table["raw"], "input_pos": table["input_pos"]})


def _block_reason_counts(table: pa.Table) -> pa.Table:
    counts = pc.value_counts(table["reason"])
    return pa.table({"reason": counts.field("values"), "count": counts.field("counts").cast(pa.int64())})


def _summed_reason_counts(tables: list[pa.Table]) -> pa.Table:
    counted = [table for table in tables if table.num_rows]  # an empty block may have no columns
    if not counted:
        return REASON_COUNTS.empty_table()
    summed = pa.concat_tables(counted).group_by("reason").aggregate([("count", "sum")])
    return pa.table({"reason": summed["reason"], "count": summed["count_sum"]}, schema=REASON_COUNTS)


def reason_counts(reasons: "ray.data.Dataset") -> dict[str | None, int]:
    """How many records give each reason (None: a document), counted per block and summed by a tree reduction."""
    counted = reasons.map_batches(_block_reason_counts, batch_format="pyarrow")
    table = tree_reduce(counted.to_arrow_refs(), _summed_reason_counts)
    return dict(zip(table["reason"].to_pylist(), table["count"].to_pylist()))


def _input_files(files: list[InputFile], stage_dir: str) -> tuple[list[InputFile], list[dict]]:
    """The input files and their fingerprints for the manifest; no files means the embedded corpus."""
    if files:
        return files, [f.fingerprint() for f in files]
    corpus = join(stage_dir, "embedded.jsonl")
    description = write_embedded_corpus(corpus)
    fs, path = fsspec.core.url_to_fs(corpus)
    files = [InputFile(corpus, "python-stdlib.jsonl", "jsonl", fs.size(path))]
    return files, [{"url": EMBEDDED_URL, "description": description, "bytes": files[0].size}]


@ray.remote
def _newlines(file: InputFile, start: int, end: int) -> int | None:
    """The newlines in a range, or None when the file cannot be read: it is then read whole, so its
    fault is quarantined as any unreadable file's."""
    try:
        return count_newlines(file, start, end)
    except Exception:
        return None


def _plan_spans(files: list[InputFile]) -> dict[int, list[Span]]:
    """The spans of every file large enough to split, by file index; one Ray task counts each range's newlines."""
    ranges = {index: byte_ranges(file) for index, file in enumerate(files) if splittable(file)}
    counting = {index: [_newlines.remote(files[index], start, end) for start, end in ranges[index][:-1]] for index in ranges}
    spans: dict[int, list[Span]] = {}
    for index, refs in counting.items():
        newlines = ray.get(refs)
        if None not in newlines:
            spans[index] = byte_spans(ranges[index], newlines)
    return spans


def _read_items(files: list[InputFile]) -> list[dict]:
    """One read task's item per file, or per span of a file read in spans; a process-local file carries
    its bytes, which Ray workers could not see otherwise."""
    spans = _plan_spans(files)
    return [
        {
            "index": index, "url": file.url, "name": file.name, "format": file.format, "size": file.size,
            "data": fsspec.filesystem("memory").cat(file.url) if process_local(file.url) else None,
            "span": asdict(span) if span else None,
        }
        for index, file in enumerate(files)
        for span in spans.get(index, [None])
    ]


@dataclass(frozen=True)
class Ingested:
    """What ingest read: records in, quarantined, their reasons, the inputs' fingerprints, and where
    the valid documents are."""

    docs: str
    documents: int
    bytes: int
    input: int
    quarantined: int
    reasons: dict
    inputs: list

    def check_bad_fraction(self, max_bad_fraction: float) -> None:
        """A mostly broken input is a user error, not a silently empty build."""
        if self.input == 0:
            raise UserError("the input holds no records")
        fraction = self.quarantined / self.input
        if fraction > max_bad_fraction:
            reasons = reason_summary(Counter(self.reasons))
            raise UserError(
                f"{self.quarantined} of {self.input} records ({fraction:.0%}) are invalid ({reasons}); "
                f"check --text-field and the input format, or raise --max-bad-fraction"
            )


@dataclass(frozen=True)
class Ingest:
    """Read and validate every input record; quarantine the bad ones and reused ids."""

    name: ClassVar[str] = "ingest"
    Result: ClassVar[type] = Ingested
    files: list[InputFile]
    config: IngestConfig
    transform: Phase1Transform
    settings: dict
    shard_rows: int
    out: str

    def run(self, work: str) -> Ingested:
        files, described = _input_files(self.files, work)
        validator = partial(self.transform.validate, ingest=self.config, settings=self.settings)
        document_types = self.transform.document_types

        def read_files(batch: pa.Table) -> Iterator[pa.Table]:
            for item in batch.to_pylist():
                if item["data"] is not None:
                    fsspec.filesystem("memory").pipe(item["url"], item["data"])
                file = InputFile(item["url"], item["name"], item["format"], item["size"])
                span = Span(**item["span"]) if item["span"] else None
                yield from ingest_file(file, item["index"], validator, document_types, span=span)

        listing = _read_items(files)
        listed = ray.data.from_items(listing, override_num_blocks=min(len(listing), 1000))
        records_dir, docs_dir = join(work, "records"), join(work, "docs")
        write_parquet(listed.map_batches(read_files, batch_size=1, batch_format="pyarrow"), records_dir)
        if not has_files(records_dir):
            raise UserError("the input holds no records")
        # Only the pass that writes the documents reads every column; the others read what they use.
        types = metadata_types(_document_schemas(records_dir), FIXED_COLUMNS | set(document_types))
        valid = read_parquet(records_dir).map_batches(_valid_rows, batch_format="pyarrow").map_batches(
            conform_metadata, fn_kwargs={"types": types, "reserved": self.config.reserved}, batch_format="pyarrow"
        )
        keys = read_parquet(records_dir, columns=["id", "input_pos", "reason"]).materialize()  # ids and reasons
        shared_ids = attach_groups(keys.map_batches(_valid_rows, batch_format="pyarrow"), "id", "input_pos", "first_pos")
        reused = shared_ids.map_batches(reused_ids, batch_format="pyarrow").materialize()
        write_parquet(exclude(valid, reused, "input_pos").drop_columns(["raw"]), docs_dir)

        sources = read_parquet(records_dir, columns=["input_pos", "origin", "reason", "raw"])
        quarantine = sources.map_batches(_invalid_rows, batch_format="pyarrow").union(
            only(sources.map_batches(_valid_rows, batch_format="pyarrow"), reused, "input_pos").map_batches(
                _as_reused_id, batch_format="pyarrow"
            )
        )
        shards = write_sorted(quarantine, "input_pos", self.out, "quarantine", QUARANTINE_SCHEMA, self.shard_rows)
        counts = reason_counts(keys.select_columns(["reason"]))
        reasons = Counter({reason: count for reason, count in counts.items() if reason is not None})
        reasons[DUPLICATE_ID] += reused.count()
        total = sum(counts.values())
        return Ingested(
            docs=docs_dir,
            documents=total,
            bytes=sum(f.size for f in files),
            input=total,
            quarantined=sum(s.rows for s in shards),
            reasons=dict(sorted((reason, count) for reason, count in reasons.items() if count)),
            inputs=described,
        )

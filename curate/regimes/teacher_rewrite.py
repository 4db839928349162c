"""Regime D: every phase-1 document rewritten by the teacher LLM with the appendix prompt, shard by shard.

Ray reads the pending source shards and builds one request per document; the teacher
backend answers them (a fixed pool of engines or an endpoint); the driver groups the answers
by shard and, once a shard is complete, a Ray task writes it with the rewrites, re-tokenized,
and a small stats file beside it. A shard whose output and stats already
exist is never sent to the teacher again, so a crash loses at most the shards in flight.

Output of shard `phase-1/shard-00000.arrow`:
  OUT/phase-1/shard-00000.arrow         the source's columns, `text` and `input_ids` replaced,
                                        plus `rewrite_status`, `language`, `original_tokens`
  OUT/teacher/phase-1/shard-00000.json  rows in and out, counts by status, dropped ids,
                                        tokens before and after, languages
"""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from typing import Iterator, Mapping

import pyarrow as pa
import pyarrow.compute as pc
import ray

from curate.curation.detect import detect_language
from curate.curation.errors import UserError, user_error
from curate.curation.manifest import phase_entry, read_json, write_json_atomic
from curate.curation.shards import ShardInfo, read_shard, shard_info, write_shard
from curate.curation.storage import exists, join, locate
from curate.curation.teacher.config import TeacherConfig
from curate.curation.teacher.parse import ERROR, REWRITTEN, STATUSES, parse_rewrite
from curate.curation.teacher.prompt import build_prompt, prompt_variant
from curate.curation.teacher.requests import LIGHT_STAGE_CPUS, document_seed
from curate.curation.tokenizer import load_tokenizer, token_id_array
from curate.regimes.base import (
    Phase1Context,
    Phase1Output,
    Phase1Transform,
    Regime,
    register,
)

TEACHER_STATS_DIR = "teacher"
REGIME_COLUMNS = ("rewrite_status", "language", "original_tokens")
EMPTY_RESPONSES = pa.table(
    {
        "row": pa.array([], pa.int64()),
        "language": pa.array([], pa.string()),
        "generated_text": pa.array([], pa.string()),
        "generated_tokens": pa.array([], pa.int64()),
        "truncated": pa.array([], pa.bool_()),
        "error": pa.array([], pa.string()),
    }
)


def shard_stats_name(relpath: str) -> str:
    """Where the stats of an output shard live, relative to the output root."""
    return f"{TEACHER_STATS_DIR}/{relpath.removesuffix('.arrow')}.json"


def is_finished(out_root: str, relpath: str) -> bool:
    """A shard is finished when its stats and then its shard file were written."""
    return exists(out_root, shard_stats_name(relpath)) and exists(out_root, relpath)


def source_rows(root: str, relpath: str) -> int:
    """Rows of a source shard (from the Arrow footer), refusing one that has D's columns already."""
    fs, path = locate(root, relpath)
    with fs.open(path, "rb") as handle:
        reader = pa.ipc.open_file(handle)
        taken = [name for name in REGIME_COLUMNS if name in reader.schema.names]
        if taken:
            raise UserError(f"{relpath} already has column(s) {', '.join(taken)} that regime D writes")
        return reader.count_rows()


class ShardRequests:
    """Reads one source shard on a Ray worker and makes one teacher request per document."""

    def __init__(self, source_root: str, config: TeacherConfig):
        self.source_root = source_root
        self.config = config

    def __call__(self, item: dict) -> list[dict]:
        table = read_shard(self.source_root, item["shard"]).select(["id", "text"])
        requests = []
        for row, (doc_id, text) in enumerate(zip(table.column("id").to_pylist(), table.column("text").to_pylist())):
            language = detect_language(text)
            requests.append(
                {
                    "shard": item["shard"],
                    "row": row,
                    "language": language,
                    "prompt": build_prompt(text, language),
                    "max_tokens": self.config.max_tokens(text),
                    "seed": document_seed(self.config.seed, doc_id),
                }
            )
        return requests


def teacher_responses(source_root: str, shards: list[str], config: TeacherConfig) -> Iterator[pa.Table]:
    """Response batches for every document of `shards`, in no particular order."""
    from curate.curation.teacher.backends import generate

    if not shards:
        return

    requests = ray.data.from_items([{"shard": shard} for shard in shards]).flat_map(
        ShardRequests(source_root, config), num_cpus=LIGHT_STAGE_CPUS
    )
    try:
        yield from generate(requests, config).iter_batches(batch_format="pyarrow", batch_size=None)
        return
    except Exception as error:
        known = user_error(error)  # a dead endpoint, found by the backend on a Ray worker
        if known is None:
            raise
    raise known  # outside the handler: the failed stream's frames (and its actors) are not kept as context


class FailureBudget:
    """Ends the rewrite with one line when the teacher fails too often.

    A failure is a request that got no answer (status `error`). The build stops as soon as the
    failures exceed `max_fraction` of the phase, counted as blocks of answers arrive (an endpoint
    that answers nothing at all is stopped sooner, by its backend).
    """

    def __init__(self, max_fraction: float, rows: int, failed: int):
        """`rows` of the whole phase; `failed` among the shards a resumed build finished before."""
        self.max_fraction = max_fraction
        self.rows = rows
        self.failed = failed
        self.first_error: str | None = None

    def add(self, responses: pa.Table) -> None:
        error = responses.column("error")
        errors = error.filter(pc.fill_null(pc.not_equal(error, ""), False))
        self.failed += len(errors)
        if self.first_error is None and len(errors):
            self.first_error = errors[0].as_py()
        if self.failed > self.max_fraction * self.rows:
            raise UserError(
                f"the teacher failed on {self.failed} of {self.rows} phase-1 documents, over the budget of "
                f"{self.max_fraction:g} (first error: {self.first_error}); check the teacher options, "
                f"or raise --max-teacher-failure-fraction"
            )


def complete_shards(
    batches: Iterator[pa.Table], expected_rows: dict[str, int], budget: FailureBudget
) -> Iterator[tuple[str, pa.Table]]:
    """(shard, its responses sorted by row) as soon as every row of a shard has been answered."""
    pending: dict[str, list[pa.Table]] = {}
    received: Counter = Counter()
    for batch in batches:
        budget.add(batch)
        for shard in pc.unique(batch.column("shard")).to_pylist():
            part = batch.filter(pc.equal(batch.column("shard"), shard))
            pending.setdefault(shard, []).append(part)
            received[shard] += part.num_rows
            if received[shard] == expected_rows[shard]:
                responses = pa.concat_tables(pending.pop(shard)).sort_by("row")
                yield shard, responses
    if pending:
        missing = {shard: expected_rows[shard] - received[shard] for shard in pending}
        raise RuntimeError(f"teacher answered only part of some shards (rows missing: {missing})")


def rewritten_shard(source: pa.Table, responses: pa.Table, tokenizer, config: TeacherConfig) -> tuple[pa.Table, dict]:
    """The output shard for one source shard and its teacher responses, and its stats."""
    if responses.column("row").to_pylist() != list(range(source.num_rows)):
        raise RuntimeError("teacher responses do not match the shard's rows one to one")
    originals = source.column("text").to_pylist()
    texts, statuses = [], []
    for original, generated, truncated, error in zip(
        originals,
        responses.column("generated_text").to_pylist(),
        responses.column("truncated").to_pylist(),
        responses.column("error").to_pylist(),
    ):
        rewrite, status = parse_rewrite(generated, truncated, error)
        texts.append(original if rewrite is None else rewrite)
        statuses.append(status)
    if "input_ids" in source.column_names:
        original_tokens = pc.list_value_length(source.column("input_ids")).cast(pa.int32())
        ids_type = source.schema.field("input_ids").type
    else:
        original_tokens = pc.list_value_length(token_id_array(tokenizer, originals))
        ids_type = pa.list_(pa.int32())
    languages = responses.column("language")

    table = source.set_column(source.schema.get_field_index("text"), "text", pa.array(texts, pa.string()))
    input_ids = token_id_array(tokenizer, texts).cast(ids_type)
    if "input_ids" in table.column_names:
        table = table.set_column(table.schema.get_field_index("input_ids"), "input_ids", input_ids)
    else:
        table = table.append_column("input_ids", input_ids)
    table = table.append_column("rewrite_status", pa.array(statuses, pa.string()))
    table = table.append_column("language", languages.cast(pa.string()))
    table = table.append_column("original_tokens", original_tokens)

    keep = [True] * table.num_rows
    if config.on_failure == "drop":
        keep = [status == REWRITTEN for status in statuses]
    dropped_ids = [doc_id for doc_id, kept in zip(source.column("id").to_pylist(), keep) if not kept]
    table = table.filter(pa.array(keep, pa.bool_()))
    stats = {
        "rows_in": source.num_rows,
        "rows_out": table.num_rows,
        "status_counts": dict(Counter(statuses)),
        "dropped": dict(Counter(status for status, kept in zip(statuses, keep) if not kept)),
        "dropped_ids": dropped_ids,
        "tokens_before": int(pc.sum(original_tokens).as_py() or 0),
        "tokens_after": int(pc.sum(pc.list_value_length(table.column("input_ids"))).as_py() or 0),
        "languages": dict(Counter(languages.to_pylist())),
        "generated_tokens": int(pc.sum(responses.column("generated_tokens")).as_py() or 0),
    }
    return table, stats


def teacher_summary(shard_stats: list[dict], config: TeacherConfig) -> dict:
    """The phase's teacher stats for manifest and stats.json: sums over its shards."""
    status_counts = {status: sum(s["status_counts"].get(status, 0) for s in shard_stats) for status in STATUSES}
    dropped = {status: sum(s["dropped"].get(status, 0) for s in shard_stats) for status in STATUSES}
    languages: Counter = Counter()
    for stats in shard_stats:
        languages.update(stats["languages"])
    prompt_variants: Counter = Counter()
    for language, count in languages.items():
        prompt_variants[prompt_variant(language)] += count
    return {
        "rows_in": sum(s["rows_in"] for s in shard_stats),
        "rows_out": sum(s["rows_out"] for s in shard_stats),
        "status_counts": status_counts,
        "dropped": dropped,
        "tokens_before": sum(s["tokens_before"] for s in shard_stats),
        "tokens_after": sum(s["tokens_after"] for s in shard_stats),
        "generated_tokens": sum(s["generated_tokens"] for s in shard_stats),
        "languages": dict(sorted(languages.items())),
        "prompt_variants": dict(sorted(prompt_variants.items())),
        "teacher": {"backend": config.backend, "model": config.model, "on_failure": config.on_failure},
    }


def write_finished_shard(out_root: str, relpath: str, table: pa.Table, stats: dict) -> None:
    """Stats first, shard last: the shard's presence then means both are complete."""
    write_json_atomic(out_root, shard_stats_name(relpath), stats)
    write_shard(table, out_root, relpath)


def finish_shard(
    source_root: str, out_root: str, relpath: str, responses: pa.Table, tokenizer_path: str, config: TeacherConfig
) -> None:
    """A Ray task: one rewritten shard, re-tokenized and written with its stats."""
    source = read_shard(source_root, relpath)
    table, stats = rewritten_shard(source, responses, load_tokenizer(tokenizer_path), config)
    write_finished_shard(out_root, relpath, table, stats)


def rewrite_phase1(
    source_root: str, source_shards: list[str], out_root: str, tokenizer_path: str, config: TeacherConfig
) -> tuple[list[ShardInfo], dict]:
    """Rewrite A's phase-1 shards into `out_root` (same relative paths, ids and order).

    Shards already finished in `out_root` are not sent to the teacher again. Returns the
    ShardInfo of every shard in source order and the phase's teacher stats.
    """
    pending = [relpath for relpath in source_shards if not is_finished(out_root, relpath)]
    if pending:
        expected_rows = {relpath: source_rows(source_root, relpath) for relpath in pending}
        finished = [read_json(out_root, shard_stats_name(p)) for p in source_shards if p not in expected_rows]
        budget = FailureBudget(
            config.max_failure_fraction,
            sum(expected_rows.values()) + sum(stats["rows_in"] for stats in finished),
            sum(stats["status_counts"].get(ERROR, 0) for stats in finished),
        )
        to_teacher = [relpath for relpath in pending if expected_rows[relpath] > 0]
        responses = teacher_responses(source_root, to_teacher, config)
        empty = ((relpath, EMPTY_RESPONSES) for relpath in pending if expected_rows[relpath] == 0)
        finish = ray.remote(finish_shard)
        # Closed however the rewrite ends: a stopped stream that stayed open would keep the teacher's
        # actors (and their CPUs or GPUs) until the driver exits.
        with contextlib.closing(responses):
            written = [
                finish.remote(source_root, out_root, relpath, answer, tokenizer_path, config)
                for relpath, answer in itertools.chain(empty, complete_shards(responses, expected_rows, budget))
            ]
        ray.get(written)
    infos = [shard_info(out_root, relpath) for relpath in source_shards]
    stats = teacher_summary([read_json(out_root, shard_stats_name(relpath)) for relpath in source_shards], config)
    return infos, stats


class TeacherRewrite(Phase1Transform):
    """Works on the source build's shards, not on a dataset, so a resumed build skips finished ones."""

    name = "teacher"
    settings_type = TeacherConfig
    teacher = True
    columns = REGIME_COLUMNS

    def apply(self, context: Phase1Context) -> Phase1Output:
        if context.source is None:
            raise UserError("the teacher rewrites the phase 1 of a complete A build; build D with --from OUT_A")
        shards, stats = rewrite_phase1(
            context.source, list(context.source_shards), context.out, join(context.source, "tokenizer.json"),
            TeacherConfig(**context.settings),
        )
        return Phase1Output(phase_entry("phase-1", shards) | {"teacher": stats}, dropped=stats["rows_in"] - stats["rows_out"])

    def shard_counts(self, table: pa.Table) -> dict[str, int]:
        """Documents per `rewrite_status` (phase 2, A's as it is, has none)."""
        if "rewrite_status" not in table.column_names:
            return {}
        return dict(Counter(str(status) for status in table.column("rewrite_status").to_pylist()))

    def statistics(self, counts: Mapping[str, int]) -> dict:
        return {"rewrite_status": dict(sorted(counts.items()))} if counts else {}


register(
    Regime(
        "D",
        "frequency-concentrated: every phase-1 document rewritten by the teacher LLM",
        TeacherRewrite(),
        {"lr_decay_style": "cosine"},
        derived_from="A",
    )
)

"""The VL build on a real local Ray: records come back as the library de-duplicated them, images and
inline bytes byte-identical, counts add up, bad records quarantined, deterministic, resumable."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash

from curate.curation.errors import UserError
from curate.curation.manifest import read_json
from curate.curation.shards import read_shard
from curate.curation.vl import decode_record, encode_record, read_vl_records
from curate.dedup.prompt_dedup import PromptDedupConfig, dedup_record
from vl_samples import FLAT, LLAVA, MESSAGES_PARTS, SHAREGPT_STRING

NO_DUPLICATES = {
    "id": "plain-1",
    "image": ["img/a.jpg", "img/b.jpg"],
    "conversations": [
        {"from": "human", "value": "<image>\n<image>\nWhich of the two photos was taken at night?"},
        {"from": "gpt", "value": "The second one."},
    ],
    "caption": "Two photos of the same bridge, one by day and one by night.",
}
BAD_LINES = [
    ("{not json", "invalid_json"),
    (json.dumps({"text": "a plain pretraining document"}), "unknown_shape"),
    (json.dumps({"conversations": "Describe the image."}), "bad_conversations"),
]
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
PARQUET_ROWS = [
    {
        "image": {"bytes": PNG, "path": "chart-17.png"},
        "user": "Summarize the chart in two sentences.\nWhat trend does it show?",
        "caption": "Summarize the chart in two sentences. A line chart of monthly rainfall.",
        "answer": "Rainfall peaks in July. It is lowest in February.",
    },
    {
        "image": {"bytes": JPEG, "path": None},
        "user": "Read the sign in the photo aloud.",
        "caption": "A street sign at a crossing.",
        "answer": "MAIN ST",
    },
]


@pytest.fixture(scope="module")
def vl_inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("vl-in")
    good = [LLAVA, MESSAGES_PARTS, SHAREGPT_STRING, FLAT, NO_DUPLICATES]
    lines = [json.dumps(r, ensure_ascii=False) for r in good[:3]] + [BAD_LINES[0][0], ""]
    lines += [json.dumps(r, ensure_ascii=False) for r in good[3:]] + [line for line, _ in BAD_LINES[1:]]
    (folder / "chat.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(PARQUET_ROWS), folder / "docs.parquet")
    return folder


def _expected_records() -> list[dict]:
    config = PromptDedupConfig()
    records = [LLAVA, MESSAGES_PARTS, SHAREGPT_STRING, FLAT, NO_DUPLICATES] + PARQUET_ROWS
    return [dedup_record(copy.deepcopy(r), config)[0] for r in records]


def run_vl_build(inputs: list[str], out: str, precedence: list[str] | None = None, resume: bool = False) -> dict:
    """`curate build --regime VL` through the build entry point every regime takes."""
    from curate.jobs.build import BuildConfig, RunOptions, run_build

    settings = {"precedence": precedence} if precedence else {}
    config = BuildConfig(regime="VL", inputs=tuple(inputs), shard_rows=3, settings=settings)
    return run_build(config, RunOptions(output=out, resume=resume, quiet=True, keep_work=True))["manifest"]


def _build(inputs: Path, out: Path, **options) -> dict:
    return run_vl_build([str(inputs)], str(out), **options)


def _files(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and "_work" not in p.parts
    }


@pytest.fixture(scope="module")
def built(ray_local, vl_inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vl-out") / "build"
    _build(vl_inputs, out)
    return out


def test_records_come_back_deduplicated_with_images_and_bytes_identical(built):
    records = read_vl_records(str(built))
    assert sorted(map(repr, records)) == sorted(map(repr, _expected_records()))
    by_image = {r["image"]["path"]: r for r in records if isinstance(r.get("image"), dict)}
    assert by_image["chart-17.png"]["image"]["bytes"] == PNG
    assert by_image["chart-17.png"]["caption"] == "A line chart of monthly rainfall."
    assert by_image[None]["image"]["bytes"] == JPEG
    llava = next(r for r in records if r.get("id") == LLAVA["id"])
    assert llava["image"] == LLAVA["image"] and llava["caption"] != LLAVA["caption"]
    assert [t for t in llava["conversations"] if t["from"] == "gpt"] == [
        t for t in LLAVA["conversations"] if t["from"] == "gpt"]


def test_manifest_counts_add_up_and_quarantine_keeps_origin_reason_raw(built):
    manifest = read_json(str(built), "manifest.json")
    assert manifest["regime"] == "VL"
    assert manifest["counts"] == {"input": 10, "quarantined": 3, "exact_duplicates": 0, "near_duplicates": 0, "kept": 7}
    assert [p["name"] for p in manifest["phases"]] == ["phase-1"]
    phase = manifest["phases"][0]
    assert phase["rows"] == 7 and [s["rows"] for s in phase["shards"]] == [3, 3, 1]
    quarantine = read_shard(str(built), "quarantine/shard-00000.arrow").to_pylist()
    assert [(q["origin"], q["reason"]) for q in quarantine] == [
        ("chat.jsonl:4", "invalid_json"), ("chat.jsonl:8", "unknown_shape"), ("chat.jsonl:9", "bad_conversations")]
    assert [q["raw"].decode() for q in quarantine] == [line for line, _ in BAD_LINES]
    shard = read_shard(str(built), phase["shards"][0]["path"])
    assert shard.column_names == ["id", "text", "blobs", "record", "shape", "vl_stats"]
    ids = [i for s in phase["shards"] for i in read_shard(str(built), s["path"])["id"].to_pylist()]
    records = [json.loads(r) for s in phase["shards"] for r in read_shard(str(built), s["path"])["record"].to_pylist()]
    for doc_id, record in zip(ids, records):
        # The same id rule as text: the record's own `id` when it has one, else its origin.
        assert doc_id == record["id"] if "id" in record else doc_id.startswith(("chat.jsonl:", "docs.parquet:row "))
    assert LLAVA["id"] in ids


def test_statistics_sum_the_per_record_numbers(built):
    manifest = read_json(str(built), "manifest.json")
    vl = manifest["vl"]
    assert read_json(str(built), "stats.json")["vl"] == vl
    config = PromptDedupConfig()
    records = [LLAVA, MESSAGES_PARTS, SHAREGPT_STRING, FLAT, NO_DUPLICATES] + PARQUET_ROWS
    stats = [dedup_record(copy.deepcopy(r), config)[2] for r in records]
    assert vl["records"] == 7
    assert vl["records_changed"] == sum(s.changed for s in stats) == 4
    assert vl["segments_before"] == sum(s.prompt.segments for s in stats)
    assert vl["duplicate_segments_before"] == sum(s.prompt.duplicate_segments for s in stats)
    assert vl["duplication_rate_before"] == round(vl["duplicate_segments_before"] / vl["segments_before"], 6)
    assert vl["duplicate_segments_after"] == 0 and vl["duplication_rate_after"] == 0.0
    assert vl["tokens_removed"] == sum(s.prompt.removed_tokens for s in stats)
    assert vl["fields"]["user"]["duplicate_segments"] == 0
    assert vl["fields"]["caption"] == {
        "records": 6, "records_changed": 3, "segments": 9, "duplicate_segments": 3, "duplication_rate": 0.333333,
        "tokens": sum(s.fields["caption"].tokens for s in stats if "caption" in s.fields),
        "tokens_removed": 8 + 9 + 6, "token_share_removed": vl["fields"]["caption"]["token_share_removed"]}
    per_record = {}
    for shard in manifest["phases"][0]["shards"]:
        table = read_shard(str(built), shard["path"])
        per_record.update(zip(table["id"].to_pylist(), table["vl_stats"].to_pylist()))
    assert sum(r["duplicate_segments"] for r in per_record.values()) == vl["duplicate_segments_before"]


def test_same_inputs_give_the_same_bytes_whatever_the_block_layout(built, vl_inputs, tmp_path):
    import ray

    context = ray.data.DataContext.get_current()
    previous = context.target_max_block_size
    context.target_max_block_size = 2048
    try:
        _build(vl_inputs, tmp_path / "again")
    finally:
        context.target_max_block_size = previous
    assert _files(tmp_path / "again") == _files(built)


def test_resume_finishes_a_killed_build_and_keeps_finished_shards(built, vl_inputs, tmp_path):
    import shutil

    out = tmp_path / "resumed"
    shutil.copytree(built, out)
    (out / "manifest.json").unlink()
    shard = out / "phase-1" / "shard-00000.arrow"
    written_at = shard.stat().st_mtime_ns
    with pytest.raises(UserError, match="--resume"):
        _build(vl_inputs, out)
    _build(vl_inputs, out, resume=True)
    assert shard.stat().st_mtime_ns == written_at, "a finished stage's shards are not rewritten"
    assert _files(out) == _files(built)
    shutil.rmtree(out / "_work" / "phases")
    (out / "manifest.json").unlink()
    _build(vl_inputs, out, resume=True)
    assert _files(out) == _files(built)
    with pytest.raises(UserError, match="another configuration"):
        _build(vl_inputs, out, resume=True, precedence=["system", "user"])


def test_phase_one_is_in_the_seeded_order_of_the_ids(built):
    manifest = read_json(str(built), "manifest.json")
    ids = [i for s in manifest["phases"][0]["shards"] for i in read_shard(str(built), s["path"])["id"].to_pylist()]
    seeded = sorted(ids, key=lambda i: xxhash.xxh3_64_intdigest(f"0:order\x00{i}".encode()) >> 1)
    assert ids == seeded and ids != sorted(ids)


def test_dedup_blocks_take_fields_and_precedence(built):
    from curate.regimes.vl_prompt_dedup import dedup_batch

    text, blobs = encode_record(FLAT)
    block = pa.table({"id": ["f.jsonl:1"], "record": [text], "blobs": pa.array([blobs], pa.list_(pa.binary()))})
    out = dedup_batch(block, fields=["system", "user", "caption"], precedence=["system", "user"])
    record = decode_record(out["record"][0].as_py(), out["blobs"][0].as_py())
    assert record["system"] == FLAT["system"]
    assert record["user"] == "What is the invoice total?"
    assert record["ocr"] == FLAT["ocr"], "ocr is not a listed field here"
    assert read_json(str(built), "manifest.json")["config"]["settings"]["precedence"][:2] == ["user", "system"]


def test_user_errors(ray_local, tmp_path):
    with pytest.raises(UserError, match="needs --input"):
        run_vl_build([], str(tmp_path / "x"))
    with pytest.raises(UserError, match="not found"):
        run_vl_build([str(tmp_path / "missing.jsonl")], str(tmp_path / "y"))
    assert not os.path.exists(tmp_path / "y" / "manifest.json")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(UserError, match="no records"):
        run_vl_build([str(tmp_path / "empty.jsonl")], str(tmp_path / "z"))
    assert not os.path.exists(tmp_path / "z" / "manifest.json")

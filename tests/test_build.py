"""`curate build --regime A` end to end on a real local Ray: ingest, quarantine, exact dedup,
phases, shards, manifest, resume and determinism."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash
import zstandard

from curate.curation.errors import UserError
from curate.curation.shards import read_shard
from curate.jobs.build import BuildConfig, RunOptions, run_build

REPO = Path(__file__).resolve().parents[1]
CURATE = [sys.executable, "-m", "curate.jobs.cli"]


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def corpus(n: int, prefix: str = "doc") -> list[dict]:
    """Distinct documents with enough words to be realistic, plus metadata."""
    return [
        {
            "id": f"{prefix}-{i:04d}",
            "text": f"Document {i} of {prefix}: " + " ".join(f"word{(i * 7 + j) % 97}" for j in range(40)),
            "meta": {"source": prefix, "n": i},
        }
        for i in range(n)
    ]


def build(inputs: list, out: Path, **overrides) -> dict:
    settings = {"inputs": tuple(str(i) for i in inputs), "near_dedup": False, "vocab_size": 300} | overrides
    config = BuildConfig(**settings)
    return run_build(config, RunOptions(output=str(out), quiet=True))["manifest"]


def phase_table(out: Path, manifest: dict, name: str) -> pa.Table:
    phase = next(p for p in manifest["phases"] if p["name"] == name)
    return pa.concat_tables([read_shard(str(out), s["path"]) for s in phase["shards"]])


def tree_digest(out: Path) -> dict[str, str]:
    """sha256 of every output file except the work folder."""
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file() and "_work" not in p.parts
    }


def run_cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CURATE, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env or os.environ.copy()
    )


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory) -> Path:
    """Every defect ingest must quarantine, between good records."""
    folder = tmp_path_factory.mktemp("bad")
    good = corpus(6, "good")
    lines = [json.dumps(r).encode() for r in good[:3]]
    lines += [
        b'{"id": "broken", "text": "no closing brace"',
        b'{"id": "latin1", "text": "caf\xe9"}',
        b'["an", "array"]',
        b'{"id": "no-text", "body": "text is elsewhere"}',
        b'{"id": "number", "text": 42}',
        b'{"id": "empty", "text": ""}',
        b'{"id": "blank", "text": " \\n\\t "}',
        b'{"id": "nul", "text": "a\\u0000b"}',
        b'{"id": "surrogate", "text": "lone \\ud800 half"}',
        json.dumps({"id": "huge", "text": "x" * 5000}).encode(),
        json.dumps({"id": "good-0000", "text": "same id as the first record, other text"}).encode(),
        json.dumps({"id": ["list"], "text": "an id that is a list"}).encode(),
    ]
    lines += [json.dumps(r).encode() for r in good[3:]]
    (folder / "bad.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return folder / "bad.jsonl"


def test_every_defect_is_quarantined_with_origin_and_reason(ray_local, bad_corpus, tmp_path):
    manifest = build([bad_corpus], tmp_path / "out", max_doc_bytes=4096, max_bad_fraction=0.9)
    quarantine = read_shard(str(tmp_path / "out"), "quarantine/shard-00000.arrow")
    reasons = dict(zip(quarantine["origin"].to_pylist(), quarantine["reason"].to_pylist()))
    assert reasons == {
        "bad.jsonl:4": "invalid_json",
        "bad.jsonl:5": "invalid_utf8",
        "bad.jsonl:6": "not_an_object",
        "bad.jsonl:7": "missing_text",
        "bad.jsonl:8": "text_not_string",
        "bad.jsonl:9": "empty_text",
        "bad.jsonl:10": "empty_text",
        "bad.jsonl:11": "nul_byte",
        "bad.jsonl:12": "invalid_utf8",
        "bad.jsonl:13": "too_large",
        "bad.jsonl:14": "duplicate_id",
        "bad.jsonl:15": "invalid_id",
    }
    raws = quarantine["raw"].to_pylist()
    assert raws[1] == b'{"id": "latin1", "text": "caf\xe9"}'
    assert raws[10] == json.dumps({"id": "good-0000", "text": "same id as the first record, other text"}).encode()
    assert manifest["counts"] == {"input": 18, "quarantined": 12, "exact_duplicates": 0, "near_duplicates": 0, "kept": 6}
    kept = phase_table(tmp_path / "out", manifest, "phase-1").to_pylist() + phase_table(tmp_path / "out", manifest, "phase-2").to_pylist()
    by_id = {row["id"]: row for row in kept}
    assert by_id["good-0000"]["text"] == corpus(6, "good")[0]["text"], "the first use of an id wins"


def test_mostly_broken_input_is_a_one_line_error(ray_local, tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text("not json\n" * 8 + json.dumps({"text": "fine"}) + "\n")
    with pytest.raises(UserError, match=r"8 of 9 records \(89%\) are invalid \(invalid_json 8\)"):
        build([path], tmp_path / "out")


def test_formats_globs_directories_and_ids(ray_local, tmp_path):
    data = tmp_path / "data"
    (data / "nested").mkdir(parents=True)
    records = corpus(12)
    write_jsonl(data / "a.jsonl", records[:3])
    (data / "b.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in records[3:6]).encode()))
    (data / "c.jsonl.zst").write_bytes(
        zstandard.ZstdCompressor().compress("".join(json.dumps(r) + "\n" for r in records[6:9]).encode())
    )
    pq.write_table(pa.Table.from_pylist(records[9:12]), data / "d.parquet")
    (data / "nested" / "essay.txt").write_text("A plain text file is one document.\nIt has two lines.\n")
    no_ids = tmp_path / "noids.jsonl"
    write_jsonl(no_ids, [{"body": "the text lives in body", "lang": "en"}, {"body": "second body", "lang": "fr"}])

    manifest = build([data, str(tmp_path / "no*.jsonl")], tmp_path / "out", text_field="text")
    rows = phase_table(tmp_path / "out", manifest, "phase-1").to_pylist() + phase_table(tmp_path / "out", manifest, "phase-2").to_pylist()
    ids = {row["id"] for row in rows}
    assert {r["id"] for r in records} <= ids
    assert "nested/essay.txt" in ids
    by_id = {row["id"]: row for row in rows}
    assert by_id["doc-0004"]["meta"] == {"source": "doc", "n": 4}
    assert by_id["nested/essay.txt"]["text"] == "A plain text file is one document.\nIt has two lines.\n"
    # the JSONL without a "text" field is quarantined as missing_text; with --text-field body it is read
    assert manifest["counts"]["quarantined"] == 2

    manifest = build([no_ids], tmp_path / "out-body", text_field="body")
    rows = phase_table(tmp_path / "out-body", manifest, "phase-1").to_pylist() + phase_table(tmp_path / "out-body", manifest, "phase-2").to_pylist()
    assert sorted((r["id"], r["text"], r["lang"]) for r in rows) == [
        ("noids.jsonl:1", "the text lives in body", "en"),
        ("noids.jsonl:2", "second body", "fr"),
    ]


def test_memory_filesystem(ray_local, tmp_path):
    import fsspec

    with fsspec.open("memory://curate-test/in.jsonl", "w") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in corpus(4)))
    manifest = build(["memory://curate-test/in.jsonl"], tmp_path / "out")
    assert manifest["counts"]["kept"] == 4


def test_exact_dedup_keeps_smallest_id_and_the_text_as_it_came(ray_local, tmp_path):
    records = corpus(4) + [
        {"id": "z-copy", "text": corpus(1)[0]["text"]},
        {"id": "a-copy", "text": "  " + corpus(1)[0]["text"].replace(" ", "   ") + "\n"},
        {"id": "nfc", "text": "Cafe\u0301 au lait, " * 5},
        {"id": "nfc-composed", "text": "Caf\u00e9 au lait, " * 5},
    ]
    out = tmp_path / "out"
    manifest = build([write_jsonl(tmp_path / "in.jsonl", records)], out, shard_rows=2)
    assert manifest["counts"]["exact_duplicates"] == 3
    shards = sorted(p.name for p in (out / "dedup" / "pairs").iterdir())
    assert shards == ["shard-00000.arrow", "shard-00001.arrow"], "pairs are cut into shards of --shard-rows"
    pairs = [row for name in shards for row in read_shard(str(out), f"dedup/pairs/{name}").to_pylist()]
    assert pairs == [
        {"removed_id": "doc-0000", "kept_id": "a-copy", "kind": "exact", "jaccard": 1.0},
        {"removed_id": "nfc-composed", "kept_id": "nfc", "kind": "exact", "jaccard": 1.0},
        {"removed_id": "z-copy", "kept_id": "a-copy", "kind": "exact", "jaccard": 1.0},
    ]
    rows = phase_table(out, manifest, "phase-1").to_pylist() + phase_table(out, manifest, "phase-2").to_pylist()
    kept = {r["id"]: r["text"] for r in rows}
    assert kept["a-copy"] == records[5]["text"]
    assert kept["nfc"] == records[6]["text"]


def test_phases_shards_manifest_and_readers(ray_local, tmp_path):
    out = tmp_path / "out"
    manifest = build([write_jsonl(tmp_path / "in.jsonl", corpus(25))], out, shard_rows=5)
    phase1, phase2 = manifest["phases"]
    assert (phase1["rows"], phase2["rows"]) == (13, 12)
    assert [s["path"] for s in phase1["shards"]] == [f"phase-1/shard-0000{i}.arrow" for i in range(3)]
    assert [s["rows"] for s in phase1["shards"]] == [5, 5, 3]
    counts = manifest["counts"]
    assert counts["input"] == counts["quarantined"] + counts["exact_duplicates"] + counts["near_duplicates"] + counts["kept"]
    assert manifest["recipe"]["train_overrides"] == {"lr_decay_style": "cosine"}
    tokenizer_eod = manifest["tokenizer"]["eod_token_id"]
    assert json.loads((out / "tokenizer.json").read_text())["added_tokens"][0]["id"] == tokenizer_eod
    assert manifest["tokenizer"]["encoder"] == "tiktoken", "a trained byte-level BPE is encoded by tiktoken (same ids)"
    texts = [text for phase in manifest["phases"] for s in phase["shards"] for text in read_shard(str(out), s["path"])["text"].to_pylist()]
    trained = {"trainer": f"rustbpe {version('rustbpe')}", "documents": len(texts), "characters": sum(map(len, texts))}
    assert manifest["tokenizer"]["trained"] == trained, "a corpus under the sample size is trained on whole"
    for phase in manifest["phases"]:
        for shard in phase["shards"]:
            data = (out / shard["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == shard["sha256"]
            assert len(data) == shard["bytes"]
            table = pa.ipc.open_file(out / shard["path"]).read_all()
            assert table.num_rows == shard["rows"]
            assert table.schema.field("input_ids").type == pa.list_(pa.int32())
            assert sum(len(ids) for ids in table["input_ids"].to_pylist()) == shard["tokens"] > 0
            assert table.column_names[:3] == ["id", "text", "input_ids"]
    # the seeded order is a permutation of ids, not the input order
    ids = phase_table(out, manifest, "phase-1")["id"].to_pylist()
    assert ids != sorted(ids)
    import datasets

    paths = [str(out / s["path"]) for s in phase1["shards"]]
    hf = datasets.load_dataset("arrow", data_files=paths, split="train", cache_dir=str(tmp_path / "hf"))
    assert hf["id"] == ids
    assert (out / "manifest.json").read_text() == json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def test_given_tokenizer_is_used(ray_local, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", corpus(10))
    result = run_cli("tokenizer", "train", "--input", str(source), "--vocab-size", "400", "--output", str(tmp_path / "tok.json"))
    assert result.returncode == 0, result.stderr
    manifest = build([source], tmp_path / "out", tokenizer=str(tmp_path / "tok.json"))
    assert (tmp_path / "out" / "tokenizer.json").read_text() == (tmp_path / "tok.json").read_text()
    trained = json.loads((tmp_path / "tok.json").read_text())
    assert manifest["tokenizer"]["vocab_size"] == len(trained["model"]["vocab"]) + len(trained["added_tokens"]) - 1
    assert "trained" not in manifest["tokenizer"]


def test_same_seed_same_bytes_other_seed_other_order(ray_local, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", corpus(30))
    build([source], tmp_path / "one", shard_rows=7)
    build([source], tmp_path / "two", shard_rows=7)
    assert tree_digest(tmp_path / "one") == tree_digest(tmp_path / "two")
    other = build([source], tmp_path / "three", shard_rows=7, seed=1)
    first = phase_table(tmp_path / "one", json.loads((tmp_path / "one" / "manifest.json").read_text()), "phase-1")
    assert first["id"].to_pylist() != phase_table(tmp_path / "three", other, "phase-1")["id"].to_pylist()


def test_docs_keeps_a_seeded_sample_of_the_deduplicated_documents_and_counts_the_rest(ray_local, tmp_path):
    """--docs N keeps the first N deduplicated documents of the seeded order (the N smallest keyed hashes of
    their ids), holdout included; the rest are counted as not_sampled, so the counts still add up."""
    records = corpus(60)
    source = write_jsonl(tmp_path / "in.jsonl", records + [dict(r, id=r["id"] + "-copy") for r in records[:5]])
    manifests = {seed: build([source], tmp_path / f"seed-{seed}", shard_rows=7, holdout=0.2, sample_docs=20, seed=seed)
                 for seed in (0, 1)}
    for seed, manifest in manifests.items():
        out = tmp_path / f"seed-{seed}"
        counts = manifest["counts"]
        assert counts["exact_duplicates"] == 5 and counts["not_sampled"] == 40
        assert counts["kept"] + counts["held_out"] == 20 and counts["held_out"] > 0
        assert sum(v for k, v in counts.items() if k != "input") == counts["input"] == 65
        kept = [i for name in ("phase-1", "phase-2") for i in phase_table(out, manifest, name)["id"].to_pylist()]
        held = pa.concat_tables([read_shard(str(out), s["path"]) for s in manifest["holdout"]["shards"]])["id"].to_pylist()
        order = sorted((xxhash.xxh3_64_intdigest(f"{seed}:order\x00{r['id']}".encode()) >> 1, r["id"]) for r in records)
        assert sorted(kept + held) == sorted(doc for _, doc in order[:20])
        assert manifest["config"]["sample_docs"] == 20
    assert set(phase_table(tmp_path / "seed-0", manifests[0], "phase-1")["id"].to_pylist()) != set(
        phase_table(tmp_path / "seed-1", manifests[1], "phase-1")["id"].to_pylist())
    whole = build([source], tmp_path / "all", shard_rows=7, sample_docs=100)
    assert whole["counts"]["not_sampled"] == 0 and whole["counts"]["kept"] == 60
    assert "sample_docs" not in build([source], tmp_path / "none", shard_rows=7)["config"], "a build without --docs hashes as before"


def test_existing_output_is_refused_without_resume_or_overwrite(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    result = run_cli("build", "--input", str(write_jsonl(tmp_path / "in.jsonl", corpus(3))), "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"curate: error: {tmp_path / 'out'} exists and is not empty; use --resume to finish it or --overwrite to replace it"
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input", "/nonexistent/input.jsonl"], "curate: error: input not found: /nonexistent/input.jsonl"),
        (["--regime", "Z"], "curate: error: unknown regime 'Z'; valid regimes: A, B, C, D, VL"),
        (["--repeat-fraction", "0.2"], "curate: error: --repeat-fraction is an option of regime C, which is not built here (A)"),
        (["--keep", "oldest"], "curate: error: --keep must be one of min-id, longest, first, got 'oldest'"),
        (["--docs", "-1"], "curate: error: --docs must be 0 (every document) or more, got -1"),
        (["--vocab-size", "10"], "curate: error: --vocab-size must be at least 300 (256 bytes plus merges), got 10"),
        (["--regime", "C", "--docs", "5"],
         "curate: error: --docs samples the input: give it to the build of regime A (derived builds keep its documents)"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(tmp_path, args, message):
    result = run_cli("build", "--output", str(tmp_path / "out"), *args)
    assert result.returncode == 2
    assert result.stderr.strip() == message


def test_unreadable_tokenizer_is_a_user_error(tmp_path):
    (tmp_path / "tok.json").write_text("{not a tokenizer")
    source = write_jsonl(tmp_path / "in.jsonl", corpus(3))
    result = run_cli("build", "--input", str(source), "--output", str(tmp_path / "out"), "--tokenizer", str(tmp_path / "tok.json"), "--no-near-dedup")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"curate: error: cannot read tokenizer {tmp_path / 'tok.json'}")


def test_one_and_two_cpus_and_kill_then_resume_give_identical_bytes(ray_local, tmp_path):
    """The reference build runs in this process (2 CPUs); the others are separate `curate` processes."""
    source = write_jsonl(tmp_path / "in.jsonl", corpus(200))
    common = ["build", "--input", str(source), "--shard-rows", "40", "--vocab-size", "300", "--quiet"]
    reference = tmp_path / "reference"
    build([source], reference, shard_rows=40, near_dedup=True)
    expected = tree_digest(reference)

    one_cpu = run_cli(*common, "--output", str(tmp_path / "one-cpu"), "--num-cpus", "1")
    assert one_cpu.returncode == 0, one_cpu.stderr
    assert tree_digest(tmp_path / "one-cpu") == expected

    killed = tmp_path / "killed"
    process = subprocess.Popen([*CURATE, *common, "--output", str(killed)], cwd=REPO, start_new_session=True)
    deadline = time.monotonic() + 240
    while not (killed / "_work" / "exact" / "_DONE.json").exists():
        assert process.poll() is None and time.monotonic() < deadline, "build ended before it could be killed"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "manifest.json").exists()

    finished = {stage: (killed / "_work" / stage / "_DONE.json").stat().st_mtime_ns for stage in ("ingest", "exact")}
    resumed = run_cli(*common, "--output", str(killed), "--resume", "--keep-work")
    assert resumed.returncode == 0, resumed.stderr
    assert tree_digest(killed) == expected
    assert finished == {stage: (killed / "_work" / stage / "_DONE.json").stat().st_mtime_ns for stage in finished}


def test_s3_input_from_a_real_s3_api_server_on_localhost(s3_server, tmp_path):
    """The session's S3 server on 127.0.0.1; the build runs as `curate`, whose Ray workers inherit the endpoint."""
    s3_server.create_bucket(Bucket="corpus")
    body = gzip.compress("".join(json.dumps(r) + "\n" for r in corpus(8)).encode())
    s3_server.put_object(Bucket="corpus", Key="web/part-0.jsonl.gz", Body=body)
    out = tmp_path / "out"
    result = run_cli("build", "--input", "s3://corpus/web/", "--output", str(out), "--no-near-dedup", "--vocab-size", "300", "--quiet")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["kept"] == 8
    etag = s3_server.head_object(Bucket="corpus", Key="web/part-0.jsonl.gz")["ETag"].strip('"')
    assert manifest["inputs"] == [{"url": "s3://corpus/web/part-0.jsonl.gz", "bytes": len(body), "token": f"etag:{etag}"}]


@pytest.mark.parametrize(
    "where, url",
    [("input", "s3://corpus/x.jsonl"), ("output", "s3://corpus/x"), ("output", "s3://corpus"), ("benchmark", "s3://corpus/x.jsonl")],
)
def test_object_storage_without_credentials_is_one_line_naming_what_cannot_be_reached(s3_server, tmp_path, where, url):
    source = str(write_jsonl(tmp_path / "in.jsonl", corpus(3)))
    urls = {"input": source, "output": str(tmp_path / "out"), "benchmark": None} | {where: url}
    benchmark = ["--benchmark", f"he={urls['benchmark']}"] if urls["benchmark"] else []
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    missing = str(tmp_path / "none")
    env |= {"AWS_SHARED_CREDENTIALS_FILE": missing, "AWS_CONFIG_FILE": missing, "AWS_EC2_METADATA_DISABLED": "true"}
    result = run_cli("build", "--input", urls["input"], "--output", urls["output"], *benchmark, "--quiet", env=env)
    assert result.returncode == 2, result.stderr
    named = f"he {urls['benchmark']}" if where == "benchmark" else urls[where]
    assert result.stderr.strip() == f"curate: error: cannot reach {where} {named}: NoCredentialsError: Unable to locate credentials"


def test_a_finished_build_removes_its_work_folder_unless_asked_to_keep_it(ray_local, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", corpus(20))
    build([source], tmp_path / "plain")
    assert (tmp_path / "plain" / "manifest.json").exists() and not (tmp_path / "plain" / "_work").exists()
    config = BuildConfig(inputs=(str(source),), near_dedup=False, vocab_size=300)
    run_build(config, RunOptions(output=str(tmp_path / "kept"), quiet=True, keep_work=True))
    assert (tmp_path / "kept" / "_work" / "ingest" / "_DONE.json").exists()
    assert tree_digest(tmp_path / "kept") == tree_digest(tmp_path / "plain")


def test_resume_refuses_an_input_that_changed_since_the_build_started(ray_local, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", corpus(20))
    config = BuildConfig(inputs=(str(source),), near_dedup=False, vocab_size=300)
    run_build(config, RunOptions(output=str(tmp_path / "out"), quiet=True, keep_work=True))
    (tmp_path / "out" / "manifest.json").unlink()
    write_jsonl(source, corpus(21))
    with pytest.raises(UserError, match=f"input {source} changed since"):
        run_build(config, RunOptions(output=str(tmp_path / "out"), quiet=True, resume=True))

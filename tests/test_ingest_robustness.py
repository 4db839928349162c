"""What real crawls hold, on a real local Ray: metadata whose type changes, truncated compressed files,
the same file name under two inputs, every defect at once in random order, and an unexpected failure."""

from __future__ import annotations

import gzip
import json
import random
import zlib
from pathlib import Path

import fsspec
import zstandard

from curate.curation.readers import list_input_files
from curate.curation.shards import read_shard
from test_build import build, phase_table, run_cli, tree_digest, write_jsonl


def kept_rows(out: Path, manifest: dict) -> list[dict]:
    return [row for phase in ("phase-1", "phase-2") for row in phase_table(out, manifest, phase).to_pylist()]


def quarantine_rows(out: Path) -> list[dict]:
    return [row for path in sorted((out / "quarantine").glob("shard-*.arrow")) for row in read_shard(str(out), f"quarantine/{path.name}").to_pylist()]


def adds_up(counts: dict) -> bool:
    return counts["input"] == sum(value for name, value in counts.items() if name != "input")


def test_metadata_whose_type_changes_within_and_across_files_is_kept_as_json(ray_local, tmp_path):
    first = [{"id": f"a{i}", "text": f"first file document {i} " * 4, "score": i if i % 2 else str(i), "lang": "en"} for i in range(30)]
    second = [{"id": f"b{i}", "text": f"second file document {i} " * 4, "score": 2.5, "tags": [1, 2] if i % 3 else {"k": "v"}, "lang": "en"} for i in range(30)]
    folder = tmp_path / "in"
    folder.mkdir()
    write_jsonl(folder / "one.jsonl", first)
    write_jsonl(folder / "two.jsonl", second)
    manifest = build([folder], tmp_path / "out")
    assert manifest["counts"]["kept"] == 60 and adds_up(manifest["counts"])
    rows = {row["id"]: row for row in kept_rows(tmp_path / "out", manifest)}
    for record in first + second:
        row = rows[record["id"]]
        assert json.loads(row["score"]) == record["score"], "a field of several types is JSON text of the value as it came"
        assert row["tags"] is None if "tags" not in record else json.loads(row["tags"]) == record["tags"]
        assert row["lang"] == "en", "a field of one type keeps it"

    import ray

    context = ray.data.DataContext.get_current()
    previous = context.target_max_block_size
    context.target_max_block_size = 1024
    try:
        build([folder], tmp_path / "small-blocks")
    finally:
        context.target_max_block_size = previous
    assert tree_digest(tmp_path / "small-blocks") == tree_digest(tmp_path / "out")


def _zstd_readable(frames: list[bytes], cut: int) -> bytes:
    """What a zstd stream of `frames` cut after `cut` bytes can give back: every whole frame, then
    what decompresses of the cut one."""
    out, start = [], 0
    for frame in frames:
        if start + len(frame) <= cut:
            out.append(zstandard.ZstdDecompressor().decompress(frame))
        elif start < cut:
            out.append(zstandard.ZstdDecompressor().decompressobj().decompress(frame[: cut - start]))
        start += len(frame)
    return b"".join(out)


def test_truncated_gzip_and_zstd_keep_every_record_before_the_cut(ray_local, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    readable = {}
    for name in ("cut.jsonl.gz", "cut.jsonl.zst"):
        prefix = name.split(".")[-1]
        records = [{"id": f"{prefix}-{i}", "text": f"record number {i} of the {prefix} file, padded with words " * 3} for i in range(4000)]
        data = "".join(json.dumps(r) + "\n" for r in records).encode()
        if prefix == "gz":
            whole = gzip.compress(data)
            cut = whole[: len(whole) * 9 // 10]
            readable[name] = zlib.decompressobj(wbits=31).decompress(cut).count(b"\n")
        else:
            frames = [zstandard.ZstdCompressor().compress(data[start : start + 40_000]) for start in range(0, len(data), 40_000)]
            whole = b"".join(frames)
            cut = whole[: len(whole) * 9 // 10]
            readable[name] = _zstd_readable(frames, len(cut)).count(b"\n")
            assert len(frames) > 10, "a stream of many frames, cut late"
        (folder / name).write_bytes(cut)
        assert 3000 < readable[name] < 4000
    write_jsonl(folder / "good.jsonl", [{"id": f"g{i}", "text": f"an intact document {i} " * 4} for i in range(20)])
    manifest = build([folder], tmp_path / "out")

    faults = {row["origin"].split(":")[0]: row for row in quarantine_rows(tmp_path / "out") if row["reason"] == "unreadable_file"}
    assert sorted(faults) == ["cut.jsonl.gz", "cut.jsonl.zst"]
    assert all(b"EOFError" in row["raw"] for row in faults.values())
    kept = {row["id"] for row in kept_rows(tmp_path / "out", manifest)}
    assert {f"g{i}" for i in range(20)} <= kept
    for name, lines in readable.items():
        prefix = name.split(".")[-1]
        assert {i for i in kept if i.startswith(f"{prefix}-")} == {f"{prefix}-{i}" for i in range(lines)}, \
            f"{name}: every record before the cut is kept, the last complete one included, and none after"
        assert faults[name]["origin"] == f"{name}:{lines + 1}", "the quarantine row names the position of the fault"
    assert adds_up(manifest["counts"])
    assert manifest["counts"]["quarantined"] == len(quarantine_rows(tmp_path / "out"))


def test_the_same_file_name_under_two_inputs_gives_distinct_ids(ray_local, tmp_path):
    for crawl in ("crawl-1", "crawl-2"):
        (tmp_path / crawl).mkdir()
        write_jsonl(tmp_path / crawl / "part-0.jsonl", [{"text": f"{crawl} page {i} " * 5} for i in range(150)])
    manifest = build([tmp_path / "crawl-1", tmp_path / "crawl-2"], tmp_path / "out")
    assert manifest["counts"]["kept"] == 300 and manifest["counts"]["quarantined"] == 0
    ids = [row["id"] for row in kept_rows(tmp_path / "out", manifest)]
    assert len(set(ids)) == 300
    assert {i.rsplit("/", 2)[-2] for i in ids} == {"crawl-1", "crawl-2"}


def fuzz_lines(seed: int) -> tuple[list[bytes], set[str]]:
    """A few hundred JSONL lines: every defect ingest knows between valid records, in random order."""
    rng = random.Random(seed)
    valid = [
        {"id": f"ok-{i}", "text": f"valid record {i}: " + " ".join(rng.choice("abcdefghij") * rng.randint(1, 6) for _ in range(12)),
         "meta": rng.choice([{"source": "web"}, {"source": "code", "n": i}]), "score": rng.choice([i, str(i), None, 1.5])}
        for i in range(200)
    ]
    defects = [
        b'{"id": "x", "text": "unterminated', b'{"text": "caf\xe9"}', b"[1, 2, 3]", b'"a string"', b'{"body": "no text"}',
        b'{"text": 17}', b'{"text": ""}', b'{"text": "   "}', b'{"text": "nul \\u0000 inside"}',
        b'{"text": "lone \\ud800 surrogate"}', json.dumps({"text": "y" * 3000}).encode(),
        b'{"id": ["not", "an", "id"], "text": "bad id"}', b'{"id": true, "text": "boolean id"}',
    ]
    lines = [json.dumps(record).encode() for record in valid]
    lines += [rng.choice(defects) for _ in range(120)]
    lines += [json.dumps({"id": f"ok-{rng.randrange(200)}", "text": f"reused id {i}"}).encode() for i in range(20)]
    rng.shuffle(lines)
    first_use = {}
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("id"), str):
            first_use.setdefault(record["id"], record.get("text", ""))
    kept = {f"ok-{i}" for i in range(200) if first_use[f"ok-{i}"].startswith("valid record")}
    return lines, kept


def test_fuzzed_input_gives_the_same_bytes_on_one_and_two_cpus(ray_local, tmp_path):
    lines, valid_ids = fuzz_lines(seed=7)
    source = tmp_path / "fuzz.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    options = dict(max_doc_bytes=2048, max_bad_fraction=0.9)
    manifest = build([source], tmp_path / "two", **options)
    one = run_cli("build", "--input", str(source), "--output", str(tmp_path / "one"), "--no-near-dedup", "--vocab-size", "300",
                  "--max-doc-bytes", "2048", "--max-bad-fraction", "0.9", "--num-cpus", "1", "--quiet", timeout=600)
    assert one.returncode == 0, one.stderr
    assert tree_digest(tmp_path / "one") == tree_digest(tmp_path / "two")
    counts = manifest["counts"]
    assert counts["input"] == len(lines) and adds_up(counts)
    assert {row["id"] for row in kept_rows(tmp_path / "two", manifest)} >= valid_ids
    reasons = {row["reason"] for row in quarantine_rows(tmp_path / "two")}
    assert reasons == {"invalid_json", "invalid_utf8", "not_an_object", "missing_text", "text_not_string", "empty_text",
                       "nul_byte", "too_large", "invalid_id", "duplicate_id"}


def test_an_unexpected_failure_is_one_line_with_the_log_path(ray_local, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": f"d{i}", "text": f"document {i} " * 6} for i in range(30)])
    build([source], tmp_path / "A")
    (tmp_path / "A" / "phase-1" / "shard-00000.arrow").write_bytes(b"not an arrow file")
    result = run_cli("build", "--regime", "C", "--from", str(tmp_path / "A"), "--output", str(tmp_path / "C"), "--quiet")
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("curate: unexpected failure in stage derive: ArrowInvalid")
    assert "Traceback" not in result.stderr
    log = Path(line.rsplit("full log: ", 1)[1].rstrip(")"))
    assert log == tmp_path / "C" / "curate-error.log" and "Traceback" in log.read_text()


def test_listing_an_object_store_prefix_in_parallel_finds_what_one_listing_finds():
    fs = fsspec.filesystem("memory")
    for path in ("corpus/a.jsonl", "corpus/x/b.jsonl", "corpus/x/y/c.jsonl.gz", "corpus/z/d.parquet", "other/e.jsonl"):
        fs.pipe(f"/{path}", b'{"text": "t"}\n')
    listed = list_input_files(["memory://corpus", "memory://other/e.jsonl", "memory://corpus/x/*.jsonl"])
    assert [f.url for f in listed] == [
        "memory:///corpus/a.jsonl", "memory:///corpus/x/b.jsonl", "memory:///corpus/x/y/c.jsonl.gz",
        "memory:///corpus/z/d.parquet", "memory:///other/e.jsonl",
    ]  # fmt: skip
    assert [f.name for f in listed] == ["a.jsonl", "x/b.jsonl", "x/y/c.jsonl.gz", "z/d.parquet", "e.jsonl"]
    assert [f.format for f in listed] == ["jsonl", "jsonl", "jsonl.gz", "parquet", "jsonl"]
    fs.rm("/corpus", recursive=True)
    fs.rm("/other", recursive=True)

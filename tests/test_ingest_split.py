"""A large plain JSONL file read in byte spans by several tasks gives the very records, quarantine and
build of the file read whole: same origins, positions and order, wherever the spans cut its lines."""

from __future__ import annotations

import json
from pathlib import Path

from curate.curation import readers
from curate.curation.readers import InputFile, byte_ranges, byte_spans, count_newlines, read_raw_records
from test_build import build, tree_digest


def awkward_jsonl(path: Path) -> Path:
    """Valid records of varied length, blank lines, CRLF lines, invalid JSON and a last line without newline."""
    lines = []
    for i in range(40):
        lines.append(json.dumps({"id": f"d{i}", "text": f"document {i} " + "word " * (i * 7 % 23)}).encode())
        if i % 5 == 0:
            lines.append(b"")
        if i % 7 == 0:
            lines.append(b"   \r")
        if i % 6 == 0:
            lines.append(json.dumps({"id": f"c{i}", "text": f"carriage return {i}"}).encode() + b"\r")
        if i % 9 == 0:
            lines.append(b'{"id": "broken", "text": ')
        if i % 11 == 0:
            lines.append(b"[1, 2]")
    path.write_bytes(b"\n".join(lines) + b'\n\n{"id": "last", "text": "no newline after me"}')
    return path


def as_read(records) -> list[tuple]:
    return [(r.origin, r.position, r.raw, r.obj, r.reason) for r in records]


def split_read(file: InputFile) -> list[tuple]:
    ranges = byte_ranges(file)
    spans = byte_spans(ranges, [count_newlines(file, start, end) for start, end in ranges[:-1]])
    assert len(spans) == len(ranges)
    return as_read(record for span in spans for record in read_raw_records(file, 3, span))


def test_spans_read_exactly_the_records_of_the_whole_file(tmp_path, monkeypatch):
    path = awkward_jsonl(tmp_path / "big.jsonl")
    data = path.read_bytes()
    file = InputFile(str(path), "big.jsonl", "jsonl", len(data))
    whole = as_read(read_raw_records(file, 3))
    assert {reason for *_, reason in whole} == {None, "invalid_json", "not_an_object"}
    lines = data.count(b"\n") + 1
    assert whole[-1][0] == f"big.jsonl:{lines}", "the last line, without newline, is read"

    after_newline = [end for end in range(1, len(data)) if data[end - 1 : end] == b"\n"]
    sizes = [*range(1, 120), *after_newline[::10], len(data) - 1, len(data), len(data) + 1]
    for size in sizes:
        monkeypatch.setattr(readers, "READ_SPLIT_BYTES", size)
        assert split_read(file) == whole, f"split size {size}"


def test_a_build_over_split_files_is_byte_identical_to_the_unsplit_build(ray_local, tmp_path, monkeypatch):
    path = awkward_jsonl(tmp_path / "big.jsonl")
    whole = build([path], tmp_path / "whole")
    assert whole["counts"]["quarantined"] > 0

    planned = []

    def planning(ranges: list, newlines: list) -> list:
        spans = byte_spans(ranges, newlines)
        planned.extend(spans)
        return spans

    monkeypatch.setattr(readers, "READ_SPLIT_BYTES", 97)
    monkeypatch.setattr("curate.jobs.stages.ingest.byte_spans", planning)
    split = build([path], tmp_path / "split")
    assert len(planned) > 20, "the file was read in spans"
    assert split["counts"] == whole["counts"]
    assert tree_digest(tmp_path / "split") == tree_digest(tmp_path / "whole")

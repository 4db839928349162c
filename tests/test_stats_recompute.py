"""`curate stats --recompute` rewrites stats.json byte for byte as the build wrote it, for every kind of build."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from test_build import corpus, write_jsonl
from test_teacher_openai import teacher_server  # noqa: F401  (a fixture)
from typer.testing import CliRunner
from vl_samples import FLAT, LLAVA, MESSAGES_PARTS, SHAREGPT_STRING

from curate.jobs.build import BuildConfig, RunOptions, run_build
from curate.jobs.cli import app

OPTIONS = dict(near_dedup=False, vocab_size=300, shard_rows=16)


@pytest.fixture(scope="module")
def build_a(ray_local, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("recompute")
    source = write_jsonl(root / "in.jsonl", corpus(80))
    run_build(BuildConfig(inputs=(str(source),), holdout=0.1, **OPTIONS), RunOptions(output=str(root / "A"), quiet=True))
    return root / "A"


def recomputed(out: Path) -> tuple[bytes, bytes]:
    """stats.json as the build wrote it, and after `curate stats OUT --recompute`."""
    written = (out / "stats.json").read_bytes()
    result = CliRunner().invoke(app, ["stats", str(out), "--recompute"])
    assert result.exit_code == 0, result.output
    return written, (out / "stats.json").read_bytes()


def test_recompute_reproduces_a(build_a):
    written, again = recomputed(build_a)
    assert again == written


def test_recompute_reproduces_c_against_its_source(build_a, tmp_path):
    out = tmp_path / "C"
    run_build(BuildConfig(regime="C", source=str(build_a), **OPTIONS), RunOptions(output=str(out), quiet=True))
    written, again = recomputed(out)
    assert json.loads(written)["reference"] == "A"
    assert again == written


def test_recompute_reproduces_d_with_its_teacher_section(build_a, teacher_server, tmp_path):  # noqa: F811
    out = tmp_path / "D"
    settings = {"backend": "openai", "endpoint": teacher_server.endpoint, "model": "tiny", "max_failure_fraction": 0.5}
    run_build(BuildConfig(regime="D", source=str(build_a), settings=settings, **OPTIONS), RunOptions(output=str(out), quiet=True))
    written, again = recomputed(out)
    assert "teacher" in json.loads(written)["phases"]["phase-1"]
    assert again == written


def test_recompute_reproduces_vl_with_its_vl_section(ray_local, tmp_path):
    records = []
    for index in range(24):
        record = copy.deepcopy([LLAVA, MESSAGES_PARTS, SHAREGPT_STRING, FLAT][index % 4])
        record["id"] = f"r{index}"
        records.append(record)
    source = write_jsonl(tmp_path / "vl.jsonl", records)
    out = tmp_path / "VL"
    run_build(BuildConfig(regime="VL", inputs=(str(source),), shard_rows=5), RunOptions(output=str(out), quiet=True))
    written, again = recomputed(out)
    assert "vl" in json.loads(written)
    assert again == written

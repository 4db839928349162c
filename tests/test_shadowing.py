"""A user's own modules in the folder where `curate` runs cannot shadow the project's.

Ray starts its workers in that folder with it first on `sys.path`; every part of curate imports
under `curate.`, so a `trainer.py` or `regimes.py` of the user's is never imported. Each file here
fails loudly if anything imports it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_build import corpus, write_jsonl
from vl_samples import FLAT, LLAVA

SHADOWS = ("trainer", "jobs", "dedup", "regimes", "curation", "diagnostics")
CURATE = str(Path(sys.executable).with_name("curate"))
FAST = ["--num-cpus", "2", "--quiet"]


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("user-project")
    for name in SHADOWS:
        (folder / f"{name}.py").write_text(f'raise RuntimeError("the user\'s own {name}.py was imported")\n')
    write_jsonl(folder / "docs.jsonl", corpus(60))
    write_jsonl(folder / "vl.jsonl", [dict(record, id=f"r{i}") for i, record in enumerate([LLAVA, FLAT] * 5)])
    return folder


def curate(folder: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([CURATE, *args], cwd=folder, capture_output=True, text=True, timeout=600,
                            env=os.environ | {"RAY_ADDRESS": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "was imported" not in result.stdout + result.stderr
    return result


def test_builds_of_a_c_and_vl_run_beside_a_users_own_modules(user_folder):
    small = ["--no-near-dedup", "--vocab-size", "300", "--shard-rows", "20", *FAST]
    curate(user_folder, "build", "--regime", "A", "--input", "docs.jsonl", "--output", "out/A", *small)
    curate(user_folder, "build", "--regime", "C", "--from", "out/A", "--output", "out/C", *small)
    curate(user_folder, "build", "--regime", "VL", "--input", "vl.jsonl", "--output", "out/VL", *FAST)
    for regime in ("A", "C", "VL"):
        assert json.loads((user_folder / "out" / regime / "manifest.json").read_text())["regime"] == regime


def test_an_experiment_runs_beside_a_users_own_modules(user_folder):
    curate(
        user_folder, "experiment", "--input", "docs.jsonl", "--regimes", "A,B", "--preset", "tiny", "--output", "exp",
        "--holdout", "0.2", "--no-near-dedup", "--vocab-size", "300", "--shard-rows", "20", "--num-cpus", "2",
        "--train-option", "train_samples=64",
    )
    assert (user_folder / "exp" / "summary.json").exists()

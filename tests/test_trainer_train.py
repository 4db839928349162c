"""Training runs: loss falls, kill and --resume is bit-exact, the build's recipe applies, CLI errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_trainer_support import (
    TEST_MODEL,
    cli_options,
    make_build,
    one_torch_thread,
    stdlib_documents,
)

from curate.curation.errors import UserError

CURATE = [sys.executable, "-c", "from curate.jobs.cli import main; main()"]
# `curate train` runs its checkpoint watcher on Ray: in this process, on the session's Ray.
pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return make_build(tmp_path_factory.mktemp("trainer-train"), stdlib_documents(12))


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def curate(*args: str) -> None:
    """Run a `curate` command in this process (one torch thread, as the subprocesses use)."""
    from typer.testing import CliRunner

    from curate.jobs.cli import app

    with one_torch_thread():
        result = CliRunner().invoke(app, list(args))
    if result.exception is not None:
        raise result.exception


def single_thread_env() -> dict:
    """One torch thread in a subprocess too, so it computes the very same floating-point sums."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def test_loss_falls_on_the_fixture_build(build, tmp_path):
    from curate.trainer.config import resolve_config
    from curate.trainer.train import train

    config = resolve_config("tiny", {**TEST_MODEL, "train_samples": 8 * 40, "lr_warmup_samples": 16, "lr": 3e-3})
    with one_torch_thread():
        result = train(config, str(build), tmp_path / "run", echo=lambda line: None)
    log = read_log(tmp_path / "run")
    assert [entry["iteration"] for entry in log] == list(range(1, 41))
    first, last = sum(e["loss"] for e in log[:5]) / 5, sum(e["loss"] for e in log[-5:]) / 5
    assert last < first - 0.5
    assert {"consumed_samples", "phase", "lr", "grad_norm", "tokens_per_s", "mfu"} <= set(log[0])
    assert [e["phase"] for e in log] == ["phase-1"] * 20 + ["phase-2"] * 20
    assert result.iteration == 40 and Path(result.checkpoint).name == "iter_0000040"
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text().strip() == "iter_0000040"


def test_kill_and_resume_matches_an_uninterrupted_run(build, tmp_path):
    options = ["--data", str(build), *cli_options({**TEST_MODEL, "train_samples": 8 * 60,
                                                   "lr_warmup_samples": 16, "save_interval": 10})]
    curate("train", *options, "--output", str(tmp_path / "whole"))

    killed = subprocess.Popen([*CURATE, "train", *options, "--output", str(tmp_path / "killed")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=single_thread_env())
    log = tmp_path / "killed" / "log.jsonl"
    while killed.poll() is None and not (log.exists() and log.read_text().count("\n") >= 20):
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "killed" / "checkpoints" / "iter_0000060").exists()

    curate("train", *options, "--output", str(tmp_path / "killed"), "--resume")
    whole, resumed = read_log(tmp_path / "whole"), read_log(tmp_path / "killed")
    assert [e["iteration"] for e in resumed] == list(range(1, 61))
    assert [(e["loss"], e["lr"], e["grad_norm"]) for e in resumed] == [(e["loss"], e["lr"], e["grad_norm"]) for e in whole]
    for name in ("model.safetensors", "optimizer.safetensors"):
        expected = load_file(tmp_path / "whole" / "checkpoints" / "iter_0000060" / name)
        actual = load_file(tmp_path / "killed" / "checkpoints" / "iter_0000060" / name)
        assert expected.keys() == actual.keys()
        assert all(torch.equal(expected[key], actual[key]) for key in expected)


def test_build_recipe_sets_the_schedule_unless_the_command_line_overrides_it(tmp_path):
    build_b = make_build(tmp_path / "b", stdlib_documents(8), train_overrides={"lr_decay_style": "constant"})
    options = ["--data", str(build_b), *cli_options({**TEST_MODEL, "train_samples": 8 * 6, "lr_warmup_samples": 16})]
    curate("train", *options, "--output", str(tmp_path / "run-b"))
    lrs = [e["lr"] for e in read_log(tmp_path / "run-b")]
    assert lrs == pytest.approx([1e-3, 2e-3, 2e-3, 2e-3, 2e-3, 2e-3])
    assert json.loads((tmp_path / "run-b" / "config.json").read_text())["lr_decay_style"] == "constant"
    curate("train", *options, "--output", str(tmp_path / "run-a"), "--lr-decay-style", "cosine")
    lrs = [e["lr"] for e in read_log(tmp_path / "run-a")]
    assert lrs[1] == pytest.approx(2e-3) and lrs[-1] == pytest.approx(2e-4) and lrs[2] > lrs[3] > lrs[4]


def test_user_errors_are_one_line(build, tmp_path):
    missing = subprocess.run([*CURATE, "train", "--data", str(tmp_path / "nothing"), "--output", str(tmp_path / "run")],
                             capture_output=True, text=True, env=single_thread_env())
    assert missing.returncode == 2 and missing.stderr.strip().startswith("curate: error:")
    assert len(missing.stderr.strip().splitlines()) == 1
    options = ["--data", str(build), "--output", str(tmp_path / "run"),
               *cli_options({**TEST_MODEL, "train_samples": 8, "lr_warmup_samples": 0})]
    curate("train", *options)
    with pytest.raises(UserError, match="--resume"):
        curate("train", *options)
    with pytest.raises(UserError, match="hidden_size"):
        curate("train", *options, "--resume", "--hidden-size", "128")

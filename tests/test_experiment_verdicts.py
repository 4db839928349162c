"""What `curate experiment` concludes and measures, checked against a computation of its own.

Every finding's rule on constructed summaries (seen, not seen, not measurable), and on one small
regime-A experiment (tiny preset, a few iterations): the change metrics against iteration 0 by
hand with NumPy, the held-out tokens against the holdout shards, a held-out loss against a direct
forward pass of the trainer's model, and a run killed in the middle of training that resumes
without redoing anything finished and ends with the same summary.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file

from curate.diagnostics.experiment_summary import (
    ATTENTION,
    MIN_FITTED,
    MIN_LAYERS,
    MLP,
    NOT_MEASURABLE,
    NOT_SEEN,
    SEEN,
    VERDICT_RULES,
    verdicts,
)
from tests.test_experiment import corpus


def run(shares: list[float], fitted: int = MIN_FITTED, layers: int = MIN_LAYERS, change_variance: dict | None = None,
        delta_rank: float | None = 1.0, attention: float | None = 3.0, mlp: float | None = 3.0) -> dict:
    """The parts of one regime's run record (`experiment_summary.run_record`) that the rules read."""
    return {
        "training": {"num_layers": layers},
        "table1": {"shares": shares, "fitted": [fitted] * len(shares)},
        "final": {
            "change_variance": {"mlp.up_proj": 0.2, "self_attn.v_proj": 0.4} if change_variance is None else change_variance,
            "delta_effective_rank_mean": delta_rank,
            "module_alpha_mean": {ATTENTION: attention, MLP: mlp},
        },
    }


def status(finding: str, runs: dict) -> str:
    (verdict,) = [v for v in verdicts(runs) if v["finding"] == finding]
    assert verdict["rule"] == VERDICT_RULES[finding]
    return verdict["status"]


STEADY = [0.5, 0.82, 0.80, 0.79, 0.78]
CASES = {
    "A stable": [
        ({"A": run(STEADY)}, SEEN),
        ({"A": run([0.5, 0.82, 0.90, 0.77, 0.85])}, SEEN),  # 5 points below the second milestone is still stable
        ({"A": run([0.9, 0.80, 0.79, 0.749, 0.80])}, NOT_SEEN),  # more than 5 below it, once
        ({"A": run([0.9, 0.80, 0.70])}, NOT_SEEN),
        ({"A": run([0.2, 0.80, 0.84])}, SEEN),  # the first milestone does not count
        ({"A": run([0.95, 0.80, 0.79, 0.78])}, SEEN),
        ({"A": run(STEADY, fitted=MIN_FITTED - 1)}, NOT_MEASURABLE),
        ({"A": run([0.8])}, NOT_MEASURABLE),
        ({"A": run([0.5, None, 0.8])}, NOT_MEASURABLE),
        ({"B": run(STEADY)}, NOT_MEASURABLE),
    ],
    "B differs from A in change variance, not in delta effective rank": [
        ({"A": run(STEADY), "B": run(STEADY, change_variance={"x": 0.3, "y": 0.5}, delta_rank=1.05)}, SEEN),
        ({"A": run(STEADY), "B": run(STEADY, change_variance={"x": 0.2, "y": 0.4}, delta_rank=1.05)}, NOT_SEEN),
        ({"A": run(STEADY), "B": run(STEADY, change_variance={"x": 0.31, "y": 0.33}, delta_rank=1.0)}, NOT_SEEN),  # within 10%
        ({"A": run(STEADY), "B": run(STEADY, change_variance={"x": 0.5, "y": 0.5}, delta_rank=1.2)}, NOT_SEEN),
        # the bounds, in numbers binary floating point holds exactly: a change variance 10% off is not
        # "more than 10%", a delta effective rank 10% off the larger is "at most 10%"
        ({"A": run(STEADY, change_variance={"x": 10.0}, delta_rank=9.0),
          "B": run(STEADY, change_variance={"x": 11.0}, delta_rank=9.0)}, NOT_SEEN),
        ({"A": run(STEADY, change_variance={"x": 10.0}, delta_rank=9.0),
          "B": run(STEADY, change_variance={"x": 12.0}, delta_rank=10.0)}, SEEN),
        ({"A": run(STEADY), "B": run(STEADY, change_variance={"x": 0.5, "y": None}, delta_rank=1.1)}, SEEN),
        ({"A": run(STEADY, layers=MIN_LAYERS - 1),
          "B": run(STEADY, change_variance={"x": 0.5}, layers=MIN_LAYERS - 1)}, NOT_MEASURABLE),
        ({"A": run(STEADY, change_variance={}), "B": run(STEADY, change_variance={"x": 0.5})}, NOT_MEASURABLE),
        ({"A": run(STEADY), "B": run(STEADY, delta_rank=None)}, NOT_MEASURABLE),
        ({"A": run(STEADY)}, NOT_MEASURABLE),
    ],
    "C recovers toward A by the end": [
        ({"A": run(STEADY), "C": run([0.5, 0.6, 0.7, 0.75, 0.77])}, SEEN),  # 1 point below A at the end
        ({"A": run(STEADY), "C": run([0.5, 0.6, 0.7, 0.75, 0.765])}, SEEN),
        ({"A": run(STEADY), "C": run([0.5, 0.9, 0.9, 0.9, 0.75])}, NOT_SEEN),  # 3 points, above A before
        ({"A": run(STEADY), "C": run([0.5, 0.6, 0.7, 0.75, 0.90])}, SEEN),
        ({"A": run(STEADY), "C": run(STEADY, fitted=MIN_FITTED - 1)}, NOT_MEASURABLE),
        ({"A": run(STEADY, fitted=MIN_FITTED - 1), "C": run(STEADY)}, NOT_MEASURABLE),
        ({"A": run(STEADY), "C": run([0.5, 0.6, 0.7, 0.75, None])}, NOT_MEASURABLE),
        ({"A": run(STEADY)}, NOT_MEASURABLE),
    ],
    "D keeps a gap": [
        ({"A": run(STEADY), "D": run([0.5, 0.7, 0.7, 0.7, 0.70])}, SEEN),
        ({"A": run(STEADY), "D": run([0.5, 0.7, 0.7, 0.7, 0.78])}, NOT_SEEN),  # equal is no gap
        ({"A": run(STEADY), "C": run([0.5, 0.7, 0.7, 0.7, 0.72]), "D": run([0.5, 0.7, 0.7, 0.7, 0.74])}, NOT_SEEN),
        ({"A": run(STEADY), "C": run([0.5, 0.7, 0.7, 0.7, 0.76]), "D": run([0.5, 0.7, 0.7, 0.7, 0.74])}, SEEN),
        ({"A": run(STEADY), "C": run(STEADY, fitted=1), "D": run([0.5, 0.7, 0.7, 0.7, 0.70])}, NOT_MEASURABLE),
        ({"A": run(STEADY), "D": run([0.5, 0.7, 0.7, 0.7, None])}, NOT_MEASURABLE),
        ({"A": run(STEADY), "C": run([0.5, 0.7])}, NOT_MEASURABLE),
    ],
    "attention/MLP asymmetry": [
        ({"A": run(STEADY, attention=3.0, mlp=3.0), "D": run(STEADY, attention=4.0, mlp=3.5)}, SEEN),
        ({"A": run(STEADY, attention=3.0, mlp=3.0), "D": run(STEADY, attention=3.5, mlp=4.0)}, NOT_SEEN),
        ({"A": run(STEADY, attention=3.0, mlp=3.0), "D": run(STEADY, attention=3.5, mlp=3.5)}, NOT_SEEN),
        ({"A": run(STEADY, attention=3.0, mlp=3.0), "C": run(STEADY, attention=1.5, mlp=3.2),
          "D": run(STEADY, attention=3.2, mlp=3.8)}, SEEN),  # the spread over every regime, not D against A
        ({"A": run(STEADY, attention=3.0, mlp=3.0), "D": run(STEADY, attention=4.0, mlp=None)}, NOT_MEASURABLE),
        ({"A": run(STEADY, attention=3.0), "D": run(STEADY, attention=4.0, layers=MIN_LAYERS - 1)}, NOT_MEASURABLE),
        ({"A": run(STEADY, attention=3.0, mlp=3.0)}, NOT_MEASURABLE),
    ],
}


@pytest.mark.parametrize(
    "finding, runs, expected",
    [(finding, runs, expected) for finding, cases in CASES.items() for runs, expected in cases],
    ids=[f"{finding}-{index}-{expected}" for finding, cases in CASES.items() for index, (_, expected) in enumerate(cases)],
)
def test_each_finding_follows_its_rule(finding, runs, expected):
    assert status(finding, runs) == expected


def test_every_finding_has_a_case_of_each_status():
    assert list(CASES) == list(VERDICT_RULES) == [v["finding"] for v in verdicts({})]
    for finding, cases in CASES.items():
        assert {expected for _, expected in cases} == {SEEN, NOT_SEEN, NOT_MEASURABLE}, finding


ITERATIONS = 24
SAVE_FRACTIONS = "0.25"
SEQ_LENGTH = 64  # the held-out documents have 54 to 117 tokens: some are scored in one window, some in two
CHECKPOINTS = ["iter_0000000", "iter_0000006", "iter_0000024"]


def arguments(root: Path, output: Path) -> list[str]:
    return [
        "experiment", "--input", str(root / "corpus.jsonl"), "--regimes", "A", "--preset", "tiny", "--output", str(output),
        "--holdout", "0.2", "--no-near-dedup", "--vocab-size", "300", "--shard-rows", "8", "--num-cpus", "2",
        "--train-option", f"train_samples={16 * ITERATIONS}", "--train-option", f"save_fractions={SAVE_FRACTIONS}",
        "--train-option", f"seq_length={SEQ_LENGTH}",
    ]  # fmt: skip


def files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def experiment(ray_local, tmp_path_factory) -> Path:
    """One uninterrupted regime-A experiment with the tiny preset; returns its folder."""
    from typer.testing import CliRunner

    from curate.jobs.cli import app

    root = tmp_path_factory.mktemp("experiment-a")
    corpus(root / "corpus.jsonl")
    result = CliRunner().invoke(app, arguments(root, root / "exp"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (root / "exp" / "runs" / "A" / "checkpoints").glob("iter_*")) == CHECKPOINTS
    return root / "exp"


def effective_rank(matrix: np.ndarray) -> float:
    s = np.linalg.svd(matrix, compute_uv=False)
    p = s[s > 0] / s.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def test_change_metrics_against_iteration_0_match_numpy(experiment):
    checkpoints = experiment / "runs" / "A" / "checkpoints"
    base = {name: w.astype(np.float64) for name, w in load_file(str(checkpoints / CHECKPOINTS[0] / "model.safetensors")).items()}
    summary = json.loads((experiment / "summary.json").read_text())
    diagnosis = json.loads((experiment / "diagnostics" / "A" / "summary.json").read_text())
    for checkpoint in CHECKPOINTS[1:]:
        weights = load_file(str(checkpoints / checkpoint / "model.safetensors"))
        records = [json.loads(line) for line in (experiment / "diagnostics" / "A" / checkpoint / "matrices.jsonl").open()]
        assert {r["name"] for r in records} == {name for name, w in weights.items() if w.ndim == 2}
        changes, by_module = [], {}
        for record in records:
            w1, w0 = weights[record["name"]].astype(np.float64), base[record["name"]]
            assert record["base_name"] == record["name"]
            change = np.linalg.norm(w1 - w0) / np.linalg.norm(w0)
            assert record["relative_change"] == pytest.approx(change, rel=1e-9)
            changes.append(change)
            assert record["correlation"] == pytest.approx(np.corrcoef(w1.ravel(), w0.ravel())[0, 1], rel=1e-9)
            assert record["delta_effective_rank"] == pytest.approx(effective_rank(w1) - effective_rank(w0), rel=1e-6, abs=1e-6)
            assert record["update_effective_rank"] == pytest.approx(effective_rank(w1 - w0), rel=1e-6)
            by_module.setdefault(record["module"], []).extend([change] if record["layer"] is not None else [])
        (figures,) = [c for c in diagnosis["checkpoints"] if c["checkpoint"] == checkpoint]
        # across layers: a module outside the layers (the embedding) has none
        variances = {module: float(np.std(layers) / np.mean(layers)) if layers else None for module, layers in by_module.items()}
        assert figures["change_variance"].keys() == variances.keys()
        for module, variance in variances.items():
            assert figures["change_variance"][module] == (None if variance is None else pytest.approx(variance, rel=1e-9))
        assert figures["relative_change_mean"] == pytest.approx(np.mean(changes), rel=1e-9)
    assert summary["runs"]["A"]["final"]["change_variance"] == figures["change_variance"]
    assert summary["runs"]["A"]["final"]["delta_effective_rank_mean"] == figures["delta_effective_rank_mean"]


def holdout_documents(build: Path) -> tuple[list[list[int]], int, int]:
    """The holdout shards' token ids read with pyarrow alone, the manifest's holdout tokens and EOD id."""
    manifest = json.loads((build / "manifest.json").read_text())
    documents = []
    for shard in manifest["holdout"]["shards"]:
        with pa.OSFile(str(build / shard["path"])) as handle:
            documents += pa.ipc.open_file(handle).read_all().column("input_ids").to_pylist()
    return documents, manifest["holdout"]["tokens"], manifest["tokenizer"]["eod_token_id"]


def test_evaluated_tokens_are_the_holdout_shards_tokens(experiment):
    documents, tokens, _ = holdout_documents(experiment / "builds" / "A")
    assert len(documents) > 0 and sum(len(ids) for ids in documents) == tokens
    evaluation = json.loads((experiment / "eval" / "A.json").read_text())
    assert [e["iteration"] for e in evaluation["checkpoints"]] == [int(c[5:]) for c in CHECKPOINTS]
    for entry in evaluation["checkpoints"]:
        assert entry["overall"]["tokens"] == tokens
        for slices in entry["slices"].values():
            assert sum(s["tokens"] for s in slices.values()) == tokens


def test_a_held_out_loss_equals_a_direct_forward_pass(experiment):
    """The final checkpoint's overall loss: each document after an EOD token, one window of at most
    seq_length predicted tokens at a time, with the trainer's model and nothing batched or padded."""
    from curate.trainer.config import TrainConfig
    from curate.trainer.model import GPT

    checkpoint = experiment / "runs" / "A" / "checkpoints" / CHECKPOINTS[-1]
    values = json.loads((checkpoint / "state.json").read_text())["config"]
    config = TrainConfig(**values | {"save_fractions": tuple(values["save_fractions"])})
    model = GPT(config)
    model.load_state_dict({name: torch.from_numpy(w) for name, w in load_file(str(checkpoint / "model.safetensors")).items()})
    model.eval()
    documents, tokens, eod = holdout_documents(experiment / "builds" / "A")
    assert min(map(len, documents)) <= config.seq_length < max(map(len, documents))
    total = 0.0
    with torch.no_grad():
        for ids in documents:
            sequence = torch.tensor([eod, *ids])
            for start in range(0, len(ids), config.seq_length):
                inputs = sequence[start : start + config.seq_length]
                targets = sequence[start + 1 : start + config.seq_length + 1]
                logits = model(inputs[None, : len(targets)])[0]
                total += F.cross_entropy(logits.double(), targets, reduction="sum").item()
    (entry,) = [e for e in json.loads((experiment / "eval" / "A.json").read_text())["checkpoints"] if e["iteration"] == ITERATIONS]
    assert entry["overall"]["loss"] == pytest.approx(total / tokens, rel=1e-5)


def test_killed_in_the_middle_of_training_it_resumes_and_ends_with_the_same_summary(experiment, tmp_path):
    """A second experiment of the same configuration, its complete build copied in, killed (with its
    local Ray) once training has written a milestone, then rerun: nothing finished is written again,
    and the summary is byte-identical to the uninterrupted one's."""
    from typer.testing import CliRunner

    from curate.jobs.cli import app

    root = experiment.parent
    killed = tmp_path / "exp"
    killed.mkdir()
    shutil.copy2(experiment / "experiment.json", killed / "experiment.json")
    shutil.copytree(experiment / "builds", killed / "builds")
    command = [sys.executable, "-m", "curate.jobs.cli", *arguments(root, killed)]
    log = tmp_path / "killed.log"
    with log.open("w") as output:
        process = subprocess.Popen(command, start_new_session=True, stdout=output, stderr=subprocess.STDOUT)
    milestone = killed / "runs" / "A" / "checkpoints" / CHECKPOINTS[1] / "state.json"
    deadline = time.monotonic() + 240
    try:
        while not milestone.exists():
            assert process.poll() is None and time.monotonic() < deadline, f"not killed in training: {log.read_text()[-2000:]}"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not (killed / "runs" / "A" / "checkpoints" / CHECKPOINTS[-1]).exists(), "training finished before the kill"
    assert not (killed / "summary.json").exists()
    before = {path: stamp for path, stamp in files(killed).items()
              if path.startswith(("experiment.json", "builds/", *(f"runs/A/checkpoints/{c}/" for c in CHECKPOINTS[:2])))}

    result = CliRunner().invoke(app, arguments(root, killed))
    assert result.exit_code == 0, result.output
    assert "building" not in result.output
    after = files(killed)
    assert {path: after[path] for path in before} == before
    assert (killed / "summary.json").read_bytes() == (experiment / "summary.json").read_bytes()
    assert (killed / "eval" / "A.json").read_bytes() == (experiment / "eval" / "A.json").read_bytes()

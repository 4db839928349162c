"""What `curate experiment` concludes and measures, checked against a computation of its own.

Every finding's rule on constructed per-seed summaries (seen, not seen, within noise, one seed, not
measurable), the mean and spread over seeds and the data exposure, and on one small
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
    ONE_SEED,
    SEEN,
    VERDICT_RULES,
    WITHIN_NOISE,
    aggregate,
    exposure,
    verdicts,
)
from tests.test_experiment import corpus


def run(shares: list[float], fitted: int = MIN_FITTED, layers: int = MIN_LAYERS, change_variance: dict | None = None,
        delta_rank: float | None = 1.0, attention: float | None = 3.0, mlp: float | None = 3.0) -> dict:
    """The parts of one seed's run record (`experiment_summary.run_record`) that the rules read."""
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


# Margins are chosen so binary floating point holds them exactly: with two seeds of margins 3 and 1
# the mean is 2.0 and SE = sd / sqrt(2) = sqrt(2) / sqrt(2) = 1.0, so the mean is exactly 2 SE:
# not beyond noise, and neither is -2 SE (margins -3 and -1). Equal margins have SE 0.
STEADY = [0.5, 0.82, 0.80, 0.79, 0.78]  # A's largest fall is 4 points: margin 1 on every seed
END = [0.5, 0.7, 0.75]  # a final share of 75 points
CV, RANK = {"x": 10.0}, 10.0  # A's change variance and delta effective rank: 10% of each is exactly 1.0


def b_run(change_variance: float, delta_rank: float = RANK) -> dict:
    return run(STEADY, change_variance={"x": change_variance}, delta_rank=delta_rank)


def alpha_runs(*seeds: tuple[float, float]) -> dict:
    """A (attention 3, MLP 3) and D with the given (attention, MLP) mean alpha per seed."""
    return {"A": [run(STEADY)] * len(seeds), "D": [run(STEADY, attention=a, mlp=m) for a, m in seeds]}


A2 = [run(END)] * 2
CASES = {
    "A stable": [
        ({"A": [run(STEADY)] * 3}, SEEN),
        ({"A": [run([0.5, 0.5, 0.48]), run([0.5, 0.5, 0.48])]}, SEEN),  # margins 3, 3: SE 0
        ({"A": [run([0.5, 0.5, 0.48]), run([0.5, 0.5, 0.46])]}, WITHIN_NOISE),  # margins 3, 1: mean = 2 SE
        ({"A": [run([0.5, 0.5, 0.42]), run([0.5, 0.5, 0.44])]}, WITHIN_NOISE),  # margins -3, -1: mean = -2 SE
        ({"A": [run([0.5, 0.5, 0.42]), run([0.5, 0.5, 0.42])]}, NOT_SEEN),
        ({"A": [run([0.9, 0.80, 0.70])] * 3}, NOT_SEEN),
        ({"A": [run([0.2, 0.80, 0.84])] * 2}, SEEN),  # the first milestone does not count
        ({"A": [run(STEADY)]}, ONE_SEED),
        ({"A": [run([0.9, 0.80, 0.70])]}, ONE_SEED),  # one seed says nothing about noise, either way
        ({"A": [run(STEADY), run(STEADY, fitted=MIN_FITTED - 1), run(STEADY)]}, NOT_MEASURABLE),  # any seed
        ({"A": [run([0.8])] * 2}, NOT_MEASURABLE),
        ({"A": [run([0.5, None, 0.8])] * 2}, NOT_MEASURABLE),
        ({"A": []}, NOT_MEASURABLE),
        ({"B": [run(STEADY)] * 2}, NOT_MEASURABLE),
    ],
    "B differs from A in change variance, not in delta effective rank": [
        ({"A": [b_run(10.0)] * 2, "B": [b_run(12.0)] * 2}, SEEN),  # margins 1 and 1 on both seeds
        ({"A": [b_run(10.0)] * 2, "B": [b_run(14.0), b_run(12.0)]}, WITHIN_NOISE),  # change variance: 3, 1
        ({"A": [b_run(10.0)] * 2, "B": [b_run(10.5)] * 2}, NOT_SEEN),  # within 10%
        ({"A": [b_run(10.0)] * 2, "B": [b_run(12.0, 8.0)] * 2}, NOT_SEEN),  # and the delta effective rank differs
        ({"A": [b_run(10.0)] * 2, "B": [b_run(11.0)] * 2}, WITHIN_NOISE),  # exactly 10%: margin 0, SE 0
        ({"A": [b_run(10.0)], "B": [b_run(12.0)]}, ONE_SEED),
        ({"A": [run(STEADY, layers=MIN_LAYERS - 1)] * 2,
          "B": [run(STEADY, change_variance={"x": 0.5}, layers=MIN_LAYERS - 1)] * 2}, NOT_MEASURABLE),
        ({"A": [b_run(10.0), run(STEADY, change_variance={})], "B": [b_run(12.0)] * 2}, NOT_MEASURABLE),
        ({"A": [b_run(10.0)] * 2, "B": [b_run(12.0), b_run(12.0, None)]}, NOT_MEASURABLE),
        ({"A": [b_run(10.0)] * 2}, NOT_MEASURABLE),
    ],
    "C recovers toward A by the end": [
        ({"A": A2, "C": [run([0.5, 0.6, 0.76])] * 2}, SEEN),  # above A: margin 3
        ({"A": A2, "C": [run([0.5, 0.6, 0.76]), run([0.5, 0.6, 0.74])]}, WITHIN_NOISE),  # margins 3, 1
        ({"A": A2, "C": [run([0.5, 0.6, 0.70])] * 2}, NOT_SEEN),  # 5 points below: margin -3
        ({"A": A2, "C": [run([0.5, 0.9, 0.70]), run([0.5, 0.9, 0.72])]}, WITHIN_NOISE),  # margins -3, -1
        ({"A": A2[:1], "C": [run([0.5, 0.6, 0.70])]}, ONE_SEED),
        ({"A": A2, "C": [run(END), run(END, fitted=MIN_FITTED - 1)]}, NOT_MEASURABLE),
        ({"A": [run(END, fitted=MIN_FITTED - 1)] * 2, "C": [run(END)] * 2}, NOT_MEASURABLE),
        ({"A": A2, "C": [run([0.5, 0.6, None])] * 2}, NOT_MEASURABLE),
        ({"A": A2}, NOT_MEASURABLE),
    ],
    "D keeps a gap": [
        ({"A": A2, "D": [run([0.5, 0.7, 0.70])] * 2}, SEEN),
        ({"A": A2, "D": [run([0.5, 0.7, 0.72]), run([0.5, 0.7, 0.74])]}, WITHIN_NOISE),  # margins 3, 1
        ({"A": A2, "D": [run(END)] * 2}, WITHIN_NOISE),  # equal on every seed: no gap, but nothing against it
        ({"A": A2, "D": [run([0.5, 0.7, 0.78])] * 2}, NOT_SEEN),
        ({"A": A2, "C": [run([0.5, 0.7, 0.72])] * 2, "D": [run([0.5, 0.7, 0.74])] * 2}, NOT_SEEN),  # above C
        ({"A": A2, "C": [run([0.5, 0.7, 0.76])] * 2, "D": [run([0.5, 0.7, 0.74])] * 2}, SEEN),
        # paired by seed: D is 2 points below the A run of its own seed every time (SE 0); the same
        # D runs in another order are -8, -8 and 22 points off: mean 2, SE 10
        ({"A": [run([0.5, 0.7, s]) for s in (0.70, 0.80, 0.90)], "D": [run([0.5, 0.7, s]) for s in (0.68, 0.78, 0.88)]}, SEEN),
        ({"A": [run([0.5, 0.7, s]) for s in (0.70, 0.80, 0.90)], "D": [run([0.5, 0.7, s]) for s in (0.78, 0.88, 0.68)]},
         WITHIN_NOISE),
        ({"A": A2[:1], "D": [run([0.5, 0.7, 0.70])]}, ONE_SEED),
        ({"A": A2, "C": [run(END, fitted=1)] * 2, "D": [run([0.5, 0.7, 0.70])] * 2}, NOT_MEASURABLE),
        ({"A": A2, "D": [run([0.5, 0.7, 0.70]), run([0.5, 0.7, None])]}, NOT_MEASURABLE),
        ({"A": A2, "C": [run([0.5, 0.7])] * 2}, NOT_MEASURABLE),
    ],
    "attention/MLP asymmetry": [
        (alpha_runs((4.0, 3.5), (4.0, 3.5)), SEEN),
        (alpha_runs((6.0, 3.0), (4.0, 3.0)), WITHIN_NOISE),  # margins 3, 1
        (alpha_runs((3.0, 6.0), (3.0, 4.0)), WITHIN_NOISE),  # margins -3, -1
        (alpha_runs((3.5, 4.0), (3.5, 4.0)), NOT_SEEN),
        ({"A": [run(STEADY)] * 2, "C": [run(STEADY, attention=1.5, mlp=3.25)] * 2,
          "D": [run(STEADY, attention=3.25, mlp=3.75)] * 2}, SEEN),  # the spread over every regime, not D against A
        (alpha_runs((4.0, 3.5)), ONE_SEED),
        (alpha_runs((4.0, 3.5), (4.0, None)), NOT_MEASURABLE),
        ({"A": [run(STEADY)] * 2, "D": [run(STEADY, attention=4.0, layers=MIN_LAYERS - 1)] * 2}, NOT_MEASURABLE),
        ({"A": [run(STEADY)] * 2}, NOT_MEASURABLE),
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
        assert {expected for _, expected in cases} == {SEEN, NOT_SEEN, WITHIN_NOISE, ONE_SEED, NOT_MEASURABLE}, finding


def test_each_part_shows_its_margins_against_the_noise_rule():
    (verdict,) = [v for v in verdicts({"A": A2, "C": [run(END)] * 2, "D": [run([0.5, 0.7, 0.72]), run([0.5, 0.7, 0.74])]})
                  if v["finding"] == "D keeps a gap"]
    assert verdict["parts"] == {
        "A - D final share (points)": {"margins": [3.0, 1.0], "mean": 2.0, "se": 1.0, "2se": 2.0, "result": WITHIN_NOISE},
        "C - D final share (points)": {"margins": [3.0, 1.0], "mean": 2.0, "se": 1.0, "2se": 2.0, "result": WITHIN_NOISE},
    }


def test_aggregate_mean_and_sd_are_numpys_with_ddof_1():
    seeds = [(0.1, [0.5, 0.8], 0.3, 2.0, 1.5, 3.0, 2.5), (0.2, [0.6, 0.7], 0.5, 1.0, 2.5, 3.5, 2.0),
             (0.4, [0.9, 0.75], 0.1, None, 0.5, 4.5, 2.25)]  # the third seed has no v_proj change variance
    records = []
    for initial, shares, up, v, rank, attention, loss in seeds:
        record = run(shares, change_variance={"mlp.up_proj": up, "self_attn.v_proj": v}, delta_rank=rank, attention=attention)
        slices = {"lang": {"en": {"loss": loss + 1, "tokens": 7}}}
        evaluation = [{"iteration": 10, "fraction": 1.0, "overall": {"loss": loss, "tokens": 9}, "slices": slices}]
        records.append(record | {"initial_share": initial, "eval": evaluation})
    summary = aggregate(records)

    def check(figures: dict, values: list[float]) -> None:
        assert figures["n"] == len(values)
        assert figures["mean"] == pytest.approx(np.mean(values), rel=1e-12)
        assert figures["sd"] == pytest.approx(np.std(values, ddof=1), rel=1e-12)

    for index in range(2):
        check(summary["table1"]["shares"][index], [s[1][index] for s in seeds])
    assert summary["table1"]["trend"] == "Rising"  # the trend word of the mean shares: 66.7, then 75 points
    check(summary["initial_share"], [s[0] for s in seeds])
    check(summary["change_variance"]["mlp.up_proj"], [s[2] for s in seeds])
    check(summary["change_variance"]["self_attn.v_proj"], [2.0, 1.0])
    check(summary["change_variance_mean"], [(0.3 + 2.0) / 2, (0.5 + 1.0) / 2, 0.1])
    check(summary["delta_effective_rank_mean"], [s[4] for s in seeds])
    check(summary["module_alpha_mean"][ATTENTION], [s[5] for s in seeds])
    check(summary["eval"][0]["overall"]["loss"], [s[6] for s in seeds])
    check(summary["eval"][0]["slices"]["lang"]["en"]["loss"], [s[6] + 1 for s in seeds])
    assert summary["module_alpha_mean"][MLP] == {"mean": 3.0, "sd": 0.0, "n": 3}
    assert summary["eval"][0]["overall"]["tokens"] == 9 and summary["eval"][0]["slices"]["lang"]["en"]["tokens"] == 7
    assert aggregate(records[:1])["initial_share"] == {"mean": 0.1, "sd": None, "n": 1}


def test_layer_figures_draw_each_layer_as_the_mean_over_seeds():
    from curate.diagnostics.experiment_report import _layer_points

    runs = [
        {"final": {"layerwise": {"v_proj": {"layers": [0, 1, 2], "alpha": [2.0, None, 1.0]}}}},
        {"final": {"layerwise": {"v_proj": {"layers": [0, 1, 2], "alpha": [4.0, 5.0, float("nan")]}}}},
    ]
    summary = {"regimes": ["A"], "runs": {"A": runs}}
    assert _layer_points(summary, "v_proj", "alpha") == {"A": [(0, 3.0), (1, 5.0), (2, 1.0)]}
    assert _layer_points(summary, "up_proj", "alpha") == {"A": []}


def test_exposure_counts_epochs_and_the_times_each_repeated_document_was_seen():
    # packed sequences = (tokens + one EOD per row - 1) // seq_length: 40 // 10 = 4 and 20 // 10 = 2;
    # 16 samples, 8 per phase: 2 epochs of phase 1 and 4 of phase 2
    phases = [{"name": "phase-1", "rows": 4, "tokens": 37}, {"name": "phase-2", "rows": 2, "tokens": 19}]
    training = {"seq_length": 10, "train_samples": 16}
    plain = {"regime": "A", "phases": phases, "recipe": {"settings": {}}}
    assert exposure(plain, training) == {"epochs": {"phase-1": 2.0, "phase-2": 4.0}}
    repeated = {"regime": "C", "phases": phases, "recipe": {"settings": {"repeat_fraction": 0.1, "repeat_times": 7}}}
    assert exposure(repeated, training) == {"epochs": {"phase-1": 2.0, "phase-2": 4.0}, "copies": 7, "times_seen": 14.0}


ITERATIONS = 24
SAVE_FRACTIONS = "0.25"
SEQ_LENGTH = 64  # the held-out documents have 54 to 117 tokens: some are scored in one window, some in two
CHECKPOINTS = ["iter_0000000", "iter_0000006", "iter_0000024"]


def arguments(root: Path, output: Path) -> list[str]:
    return [
        "experiment", "--input", str(root / "corpus.jsonl"), "--regimes", "A", "--preset", "tiny", "--output", str(output),
        "--holdout", "0.2", "--no-near-dedup", "--vocab-size", "300", "--shard-rows", "8", "--num-cpus", "2", "--seeds", "1",
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
    assert sorted(p.name for p in (root / "exp" / "runs" / "A" / "seed-0" / "checkpoints").glob("iter_*")) == CHECKPOINTS
    return root / "exp"


def effective_rank(matrix: np.ndarray) -> float:
    s = np.linalg.svd(matrix, compute_uv=False)
    p = s[s > 0] / s.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def test_change_metrics_against_iteration_0_match_numpy(experiment):
    checkpoints = experiment / "runs" / "A" / "seed-0" / "checkpoints"
    base = {name: w.astype(np.float64) for name, w in load_file(str(checkpoints / CHECKPOINTS[0] / "model.safetensors")).items()}
    summary = json.loads((experiment / "summary.json").read_text())
    diagnosis = json.loads((experiment / "diagnostics" / "A" / "seed-0" / "summary.json").read_text())
    for checkpoint in CHECKPOINTS[1:]:
        weights = load_file(str(checkpoints / checkpoint / "model.safetensors"))
        records = [json.loads(line) for line in (experiment / "diagnostics" / "A" / "seed-0" / checkpoint / "matrices.jsonl").open()]
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
    assert summary["runs"]["A"][0]["final"]["change_variance"] == figures["change_variance"]
    assert summary["runs"]["A"][0]["final"]["delta_effective_rank_mean"] == figures["delta_effective_rank_mean"]


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
    assert [e["iteration"] for e in evaluation["seeds"][0]["checkpoints"]] == [int(c[5:]) for c in CHECKPOINTS]
    for entry in evaluation["seeds"][0]["checkpoints"]:
        assert entry["overall"]["tokens"] == tokens
        for slices in entry["slices"].values():
            assert sum(s["tokens"] for s in slices.values()) == tokens


def test_a_held_out_loss_equals_a_direct_forward_pass(experiment):
    """The final checkpoint's overall loss: each document after an EOD token, one window of at most
    seq_length predicted tokens at a time, with the trainer's model and nothing batched or padded."""
    from curate.trainer.config import TrainConfig
    from curate.trainer.model import GPT

    checkpoint = experiment / "runs" / "A" / "seed-0" / "checkpoints" / CHECKPOINTS[-1]
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
    (entry,) = [e for e in json.loads((experiment / "eval" / "A.json").read_text())["seeds"][0]["checkpoints"] if e["iteration"] == ITERATIONS]
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
    milestone = killed / "runs" / "A" / "seed-0" / "checkpoints" / CHECKPOINTS[1] / "state.json"
    deadline = time.monotonic() + 240
    try:
        while not milestone.exists():
            assert process.poll() is None and time.monotonic() < deadline, f"not killed in training: {log.read_text()[-2000:]}"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not (killed / "runs" / "A" / "seed-0" / "checkpoints" / CHECKPOINTS[-1]).exists(), "training finished before the kill"
    assert not (killed / "summary.json").exists()
    before = {path: stamp for path, stamp in files(killed).items()
              if path.startswith(("experiment.json", "builds/", *(f"runs/A/seed-0/checkpoints/{c}/" for c in CHECKPOINTS[:2])))}

    result = CliRunner().invoke(app, arguments(root, killed))
    assert result.exit_code == 0, result.output
    assert "building" not in result.output
    after = files(killed)
    assert {path: after[path] for path in before} == before
    assert (killed / "summary.json").read_bytes() == (experiment / "summary.json").read_bytes()
    assert (killed / "eval" / "A.json").read_bytes() == (experiment / "eval" / "A.json").read_bytes()

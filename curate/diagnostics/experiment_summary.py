"""An experiment's numbers in one place (`EXP/summary.json`), and the verdict on each finding of the paper.

Every regime trains with several seeds. Per regime: its build's counts and coverage statistics
(the rows `curate report` shows), how often a run met each phase's data (`exposure`), and per
seed the training recipe, the paper's Table 1 (share of fitted matrices with alpha in [2, 6] at
each milestone, with the trend word of `curate.diagnostics.summary`), the final checkpoint's
alphas and layer-wise profiles (Figures 1, 2, 3 and 7) and the held-out loss at every checkpoint;
`aggregate` gives the mean and sample standard deviation over seeds of what the report shows as
one number per regime.

Each verdict applies the condition stated in VERDICT_RULES seed by seed, as a margin that is
positive when the condition holds, and calls a finding seen only when it holds beyond the seed
noise (NOISE_RULE): one seed's difference between regimes can be the initialisation's doing.
A finding is "not measurable at this scale" when any seed is: a share moves in steps of one
matrix, so with fewer than MIN_FITTED fitted matrices one matrix is more than the 2-point
tolerance, and layer-wise figures need at least MIN_LAYERS layers to have a shape.
"""

from __future__ import annotations

import math
import statistics
from typing import Callable, Iterable

from curate.curation.manifest import read_json, read_jsonl
from curate.curation.report import SUMMARY_ROWS, load_builds, metric, section
from curate.curation.storage import join
from curate.diagnostics.summary import ALPHA_RANGE, TREND_RULE, trend_word
from curate.regimes import get_regime
from curate.trainer.data import manifest_epochs

MIN_FITTED = 50
MIN_LAYERS = 4
POINTS = 2.0
STABLE_POINTS = 5.0
RELATIVE = 0.1
NOISE_FACTOR = 2.0
ATTENTION, MLP = "self_attn.v_proj", "mlp.up_proj"
SEEN, NOT_SEEN, WITHIN_NOISE = "seen", "not seen", "within noise"
ONE_SEED, NOT_MEASURABLE = "one seed: noise unknown", "not measurable at this scale"
HOLDS, FAILS = "holds beyond noise", "fails beyond noise"
VERDICT_RULES = {
    "A stable": f"from its second milestone on, A's share never falls more than {STABLE_POINTS:g} points below "
    "its value there (the paper: 81.7 at 20k, 78.6 at 72k)",
    "B differs from A in change variance, not in delta effective rank": "at the last checkpoint, the mean change "
    f"variance over module types differs by more than {RELATIVE:.0%} of A's, and the mean delta effective rank by "
    f"at most {RELATIVE:.0%} of the larger of the two",
    "C recovers toward A by the end": f"C's share at the last milestone is at most {POINTS:g} points below A's",
    "D keeps a gap": "D's share at the last milestone is below A's and below C's (when C ran)",
    "attention/MLP asymmetry": f"at the last checkpoint, the spread over regimes (max - min) of the mean alpha of "
    f"{ATTENTION} is larger than that of {MLP}",
}
NOISE_RULE = (
    "runs of different regimes with the same seed index are paired (same initialisation); each finding has one or "
    "more parts, each with a margin per seed that is positive when the part of its rule holds; a part holds beyond "
    f"noise when the mean margin over seeds is above {NOISE_FACTOR:g} standard errors (SE = sample standard deviation "
    f"/ sqrt(seeds)), fails beyond noise when it is below -{NOISE_FACTOR:g} SE, and is within noise otherwise; a "
    f"finding is \"{NOT_SEEN}\" when any part fails beyond noise, \"{SEEN}\" when every part holds beyond noise, "
    f"otherwise \"{WITHIN_NOISE}\"; with one seed there is no noise estimate and the finding is \"{ONE_SEED}\""
)


def coverage(build: str) -> list[dict]:
    """The summary rows of `curate report` for one build: metric label, phase 1 and overall."""
    loaded = load_builds([build])[0]
    return [
        {"metric": label, "key": key, "phase-1": metric(section(loaded, "phase-1"), key),
         "overall": metric(section(loaded, "overall"), key)}
        for key, label, _ in SUMMARY_ROWS
    ]


def build_record(build: str) -> dict:
    manifest = read_json(join(build, "manifest.json"))
    holdout = manifest.get("holdout", {})
    return {
        "counts": manifest["counts"],
        "phases": {phase["name"]: {"rows": phase["rows"], "tokens": phase["tokens"]} for phase in manifest["phases"]},
        "holdout": {"rows": holdout.get("rows", 0), "tokens": holdout.get("tokens", 0)},
        "coverage": coverage(build),
    }


def exposure(manifest: dict, training: dict) -> dict:
    """How many times a run met each phase's data, and for a regime that repeats phase-1 documents
    (its transform's `copies`) how many times each repeated document was seen: copies x phase-1
    epochs, the number the repetition regime is about, which epochs alone hide."""
    epochs = manifest_epochs(manifest, training["seq_length"], training["train_samples"])
    copies = get_regime(manifest["regime"]).transform.copies(manifest["recipe"]["settings"])
    if copies is None:
        return {"epochs": epochs}
    return {"epochs": epochs, "copies": copies, "times_seen": copies * epochs["phase-1"]}


def layerwise(records: list[dict]) -> dict:
    """Per module type with layers: the layer indices and each figure by layer."""
    modules: dict[str, dict] = {}
    for record in sorted((r for r in records if r["layer"] is not None), key=lambda r: (r["module"], r["layer"])):
        entry = modules.setdefault(record["module"], {"layers": [], "alpha": [], "relative_change": [], "delta_effective_rank": []})
        entry["layers"].append(record["layer"])
        for key in ("alpha", "relative_change", "delta_effective_rank"):
            entry[key].append(record.get(key))
    return modules


def run_record(root: str, regime: str, seed: int) -> dict:
    """Table 1, the final checkpoint's figures and the held-out losses of one regime's run with seed index `seed`."""
    folder = f"seed-{seed}"
    config = read_json(join(root, "runs", regime, folder, "config.json"))
    total = config["train_samples"] // config["global_batch_size"]
    diagnosis = read_json(join(root, "diagnostics", regime, folder, "summary.json"))
    checkpoints = diagnosis["checkpoints"]
    milestones = [c for c in checkpoints if c["step"]]
    shares = [c["share_alpha_in_range"] for c in milestones]
    final = checkpoints[-1]
    final_records = read_jsonl(join(root, "diagnostics", regime, folder, final["checkpoint"], "matrices.jsonl"))
    (evaluation,) = [s for s in read_json(join(root, "eval", f"{regime}.json"))["seeds"] if s["seed"] == seed]
    return {
        "training": {key: config[key] for key in
                     ("lr_decay_style", "lr", "min_lr", "train_samples", "seq_length", "seed", "num_layers")},
        "table1": {
            "checkpoints": [c["checkpoint"] for c in milestones],
            "steps": [c["step"] for c in milestones],
            "fractions": [c["step"] / total for c in milestones],
            "shares": shares,
            "fitted": [c["fitted"] for c in milestones],
            "trend": trend_word(shares),
        },
        "initial_share": checkpoints[0]["share_alpha_in_range"],
        "final": {
            "checkpoint": final["checkpoint"],
            "alphas": sorted(r["alpha"] for r in final_records if r.get("alpha") is not None),
            "module_alpha_mean": {module: stats["alpha"]["mean"] for module, stats in final["modules"].items()},
            "change_variance": final.get("change_variance", {}),
            "delta_effective_rank_mean": final.get("delta_effective_rank_mean"),
            "layerwise": layerwise(final_records),
        },
        "eval": [{**entry, "fraction": entry["iteration"] / total} for entry in evaluation["checkpoints"]],
    }


def _mean(values: Iterable) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def spread(values: Iterable) -> dict:
    """Mean and sample standard deviation (ddof=1) of the values present, and how many there are."""
    present = [v for v in values if v is not None]
    return {"mean": statistics.fmean(present) if present else None,
            "sd": statistics.stdev(present) if len(present) > 1 else None, "n": len(present)}


def _loss_spread(entries: tuple[dict, ...]) -> dict:
    """One checkpoint's held-out losses over seeds (the seeds share their checkpoints and holdout)."""
    first = entries[0]
    return {
        "iteration": first["iteration"],
        "fraction": first["fraction"],
        "overall": {"loss": spread(e["overall"]["loss"] for e in entries), "tokens": first["overall"]["tokens"]},
        "slices": {kind: {name: {"loss": spread(e["slices"].get(kind, {}).get(name, {}).get("loss") for e in entries),
                                 "tokens": figures["tokens"]} for name, figures in slices.items()}
                   for kind, slices in first["slices"].items()},
    }


def aggregate(records: list[dict]) -> dict:
    """Mean and spread over one regime's seeds of each number the report shows once per regime;
    the seeds share their milestones and checkpoints, only the seed differs."""
    finals = [r["final"] for r in records]
    shares = [spread(values) for values in zip(*(r["table1"]["shares"] for r in records))]

    def by_module(key: str) -> dict:
        return {m: spread(f[key].get(m) for f in finals) for m in sorted({m for f in finals for m in f[key]})}

    return {
        "table1": {"shares": shares, "trend": trend_word([s["mean"] for s in shares])},
        "initial_share": spread(r["initial_share"] for r in records),
        "change_variance": by_module("change_variance"),
        "change_variance_mean": spread(_mean(f["change_variance"].values()) for f in finals),
        "delta_effective_rank_mean": spread(f["delta_effective_rank_mean"] for f in finals),
        "module_alpha_mean": by_module("module_alpha_mean"),
        "eval": [_loss_spread(entries) for entries in zip(*(r["eval"] for r in records))],
    }


def _points(share: float | None) -> float | None:
    return None if share is None else 100.0 * share


def _final_points(run: dict) -> float | None:
    return _points(run["table1"]["shares"][-1]) if run["table1"]["shares"] else None


def _shares_measurable(seed: dict, regimes: Iterable[str]) -> bool:
    return all(min(seed[regime]["table1"]["fitted"], default=0) >= MIN_FITTED for regime in regimes)


def _part(margins: list[float]) -> dict:
    """One part's per-seed margins against their noise: the mean beyond NOISE_FACTOR standard errors or not."""
    mean = statistics.fmean(margins)
    if len(margins) < 2:
        return {"margins": margins, "mean": mean, "se": None, "2se": None, "result": ONE_SEED}
    se = statistics.stdev(margins) / math.sqrt(len(margins))
    bound = NOISE_FACTOR * se
    result = HOLDS if mean > bound else FAILS if mean < -bound else WITHIN_NOISE
    return {"margins": margins, "mean": mean, "se": se, "2se": bound, "result": result}


def _judge(finding: str, runs: dict, regimes: list[str], margins: Callable[[dict], dict | None]) -> dict:
    """The verdict on a finding from `margins`, which maps one seed's runs ({regime: record}, the
    records of `regimes` with the same seed index) to {part: margin}, or to None when not measurable."""
    verdict = {"finding": finding, "rule": VERDICT_RULES[finding], "parts": {}, "unmeasurable_seeds": []}
    if not regimes or any(not runs.get(regime) for regime in regimes):
        return verdict | {"status": NOT_MEASURABLE}
    per_seed = [margins(dict(zip(regimes, records))) for records in zip(*(runs[r] for r in regimes))]
    unmeasurable = [index for index, m in enumerate(per_seed) if m is None]
    if unmeasurable:
        return verdict | {"status": NOT_MEASURABLE, "unmeasurable_seeds": unmeasurable}
    parts = {part: _part([m[part] for m in per_seed]) for part in per_seed[0]}
    results = [p["result"] for p in parts.values()]
    if len(per_seed) < 2:
        status = ONE_SEED
    else:
        status = NOT_SEEN if FAILS in results else SEEN if all(r == HOLDS for r in results) else WITHIN_NOISE
    return verdict | {"status": status, "parts": parts}


def _stable(seed: dict) -> dict | None:
    points = [_points(s) for s in seed["A"]["table1"]["shares"]]
    if not _shares_measurable(seed, "A") or len(points) < 2 or None in points:
        return None
    return {f"{STABLE_POINTS:g} - A's largest fall after its second milestone (points)": STABLE_POINTS - (points[1] - min(points[1:]))}


def _optimizer_signal(seed: dict) -> dict | None:
    cv = {r: _mean(seed[r]["final"]["change_variance"].values()) for r in "AB"}
    der = {r: seed[r]["final"]["delta_effective_rank_mean"] for r in "AB"}
    if seed["A"]["training"]["num_layers"] < MIN_LAYERS or None in cv.values() or None in der.values():
        return None
    return {
        f"|change variance B - A| - {RELATIVE:.0%} of A's": abs(cv["B"] - cv["A"]) - RELATIVE * abs(cv["A"]),
        f"{RELATIVE:.0%} of the larger delta effective rank - |B - A|":
            RELATIVE * max(abs(der["A"]), abs(der["B"])) - abs(der["B"] - der["A"]),
    }


def _recovers(seed: dict) -> dict | None:
    a, c = _final_points(seed["A"]), _final_points(seed["C"])
    if not _shares_measurable(seed, "AC") or a is None or c is None:
        return None
    return {f"{POINTS:g} - (A - C final share) (points)": POINTS - (a - c)}


def _keeps_gap(seed: dict) -> dict | None:
    finals = {r: _final_points(run) for r, run in seed.items()}
    if not _shares_measurable(seed, seed) or None in finals.values():
        return None
    return {f"{r} - D final share (points)": finals[r] - finals["D"] for r in seed if r != "D"}


def _asymmetry(seed: dict) -> dict | None:
    spreads = []
    for module in (ATTENTION, MLP):
        values = [v for run in seed.values() if (v := run["final"]["module_alpha_mean"].get(module)) is not None]
        spreads.append(max(values) - min(values) if len(values) >= 2 else None)
    if min(run["training"]["num_layers"] for run in seed.values()) < MIN_LAYERS or None in spreads:
        return None
    return {f"spread of {ATTENTION} mean alpha - spread of {MLP}'s": spreads[0] - spreads[1]}


def verdicts(runs: dict) -> list[dict]:
    """One row per finding of the paper, in the paper's order; `runs` is {regime: [record per seed]}."""
    findings = list(VERDICT_RULES)
    return [
        _judge(findings[0], runs, ["A"], _stable),
        _judge(findings[1], runs, ["A", "B"], _optimizer_signal),
        _judge(findings[2], runs, ["A", "C"], _recovers),
        _judge(findings[3], runs, ["A", *(["C"] if "C" in runs else []), "D"], _keeps_gap),
        _judge(findings[4], runs, list(runs), _asymmetry),
    ]


def experiment_summary(root: str, regimes: list[str], preset: str, slice_field: str | None, seeds: int) -> dict:
    """Everything the experiment's report shows, read from the experiment folder `root` (a local path
    or URL) where every regime ran with seed indices 0..seeds-1."""
    runs = {regime: [run_record(root, regime, seed) for seed in range(seeds)] for regime in regimes}
    return {
        "preset": preset,
        "regimes": regimes,
        "seeds": seeds,
        "slice_field": slice_field,
        "alpha_range": list(ALPHA_RANGE),
        "trend_rule": TREND_RULE,
        "builds": {regime: build_record(join(root, "builds", regime)) for regime in regimes},
        "exposure": {regime: exposure(read_json(join(root, "builds", regime, "manifest.json")), runs[regime][0]["training"])
                     for regime in regimes},
        "runs": runs,
        "aggregate": {regime: aggregate(records) for regime, records in runs.items()},
        "verdicts": verdicts(runs),
        "verdict_rules": VERDICT_RULES,
        "noise_rule": NOISE_RULE,
        "scale_rule": f"shares need at least {MIN_FITTED} fitted matrices per checkpoint and layer-wise figures "
        f"at least {MIN_LAYERS} layers to be measurable, on every seed",
    }

"""An experiment's numbers in one place (`EXP/summary.json`), and the verdict on each finding of the paper.

Per regime: its build's counts and coverage statistics (the rows `curate report` shows), the
training recipe, the paper's Table 1 (share of fitted matrices with alpha in [2, 6] at each
milestone, with the trend word of `curate.diagnostics.summary`), the final checkpoint's alphas and
layer-wise profiles (Figures 1, 2, 3 and 7), and the held-out loss at every checkpoint.

Each verdict is computed from those numbers by a rule stated in VERDICT_RULES, and is "seen",
"not seen" or "not measurable at this scale": a share moves in steps of one matrix, so with
fewer than MIN_FITTED fitted matrices one matrix is more than the 2-point tolerance, and
layer-wise figures need at least MIN_LAYERS layers to have a shape.
"""

from __future__ import annotations

from curate.curation.manifest import read_json, read_jsonl
from curate.curation.report import SUMMARY_ROWS, load_builds, metric, section
from curate.curation.storage import join
from curate.diagnostics.summary import ALPHA_RANGE, TREND_RULE, trend_word

MIN_FITTED = 50
MIN_LAYERS = 4
POINTS = 2.0
STABLE_POINTS = 5.0
RELATIVE = 0.1
ATTENTION, MLP = "self_attn.v_proj", "mlp.up_proj"
SEEN, NOT_SEEN, NOT_MEASURABLE = "seen", "not seen", "not measurable at this scale"
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


def layerwise(records: list[dict]) -> dict:
    """Per module type with layers: the layer indices and each figure by layer."""
    modules: dict[str, dict] = {}
    for record in sorted((r for r in records if r["layer"] is not None), key=lambda r: (r["module"], r["layer"])):
        entry = modules.setdefault(record["module"], {"layers": [], "alpha": [], "relative_change": [], "delta_effective_rank": []})
        entry["layers"].append(record["layer"])
        for key in ("alpha", "relative_change", "delta_effective_rank"):
            entry[key].append(record.get(key))
    return modules


def run_record(root: str, regime: str) -> dict:
    """Table 1, the final checkpoint's figures and the held-out losses of one regime's run."""
    config = read_json(join(root, "runs", regime, "config.json"))
    total = config["train_samples"] // config["global_batch_size"]
    diagnosis = read_json(join(root, "diagnostics", regime, "summary.json"))
    checkpoints = diagnosis["checkpoints"]
    milestones = [c for c in checkpoints if c["step"]]
    shares = [c["share_alpha_in_range"] for c in milestones]
    final = checkpoints[-1]
    final_records = read_jsonl(join(root, "diagnostics", regime, final["checkpoint"], "matrices.jsonl"))
    evaluation = read_json(join(root, "eval", f"{regime}.json"))
    return {
        "training": {key: config[key] for key in ("lr_decay_style", "lr", "min_lr", "train_samples", "seed", "num_layers")},
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


def _points(share: float | None) -> float | None:
    return None if share is None else 100.0 * share


def _final_points(runs: dict, regime: str) -> float | None:
    return _points(runs[regime]["table1"]["shares"][-1]) if regime in runs else None


def _shares_measurable(runs: dict, regimes: list[str]) -> bool:
    return all(regime in runs and min(runs[regime]["table1"]["fitted"], default=0) >= MIN_FITTED for regime in regimes)


def _verdict(finding: str, status: str, figures: dict) -> dict:
    return {"finding": finding, "status": status, "figures": figures, "rule": VERDICT_RULES[finding]}


def _stable(runs: dict) -> dict:
    finding = "A stable"
    if "A" not in runs:
        return _verdict(finding, NOT_MEASURABLE, {})
    points = [_points(s) for s in runs["A"]["table1"]["shares"]]
    figures = {"A shares (%)": points}
    if not _shares_measurable(runs, ["A"]) or len(points) < 2 or None in points:
        return _verdict(finding, NOT_MEASURABLE, figures)
    drop = points[1] - min(points[1:])
    return _verdict(finding, SEEN if drop <= STABLE_POINTS else NOT_SEEN, figures | {"largest fall (points)": drop})


def _mean(values) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _optimizer_signal(runs: dict) -> dict:
    finding = "B differs from A in change variance, not in delta effective rank"
    if "A" not in runs or "B" not in runs:
        return _verdict(finding, NOT_MEASURABLE, {})
    cv = {r: _mean(runs[r]["final"]["change_variance"].values()) for r in "AB"}
    der = {r: runs[r]["final"]["delta_effective_rank_mean"] for r in "AB"}
    figures = {"change variance A, B": [cv["A"], cv["B"]], "delta effective rank A, B": [der["A"], der["B"]]}
    layers = runs["A"]["training"]["num_layers"]
    if layers < MIN_LAYERS or None in cv.values() or None in der.values():
        return _verdict(finding, NOT_MEASURABLE, figures)
    differs = abs(cv["B"] - cv["A"]) > RELATIVE * abs(cv["A"])
    same = abs(der["B"] - der["A"]) <= RELATIVE * max(abs(der["A"]), abs(der["B"]))
    return _verdict(finding, SEEN if differs and same else NOT_SEEN, figures)


def _recovers(runs: dict) -> dict:
    finding = "C recovers toward A by the end"
    if "A" not in runs or "C" not in runs:
        return _verdict(finding, NOT_MEASURABLE, {})
    gaps = [None if a is None or c is None else 100.0 * (a - c)
            for a, c in zip(runs["A"]["table1"]["shares"], runs["C"]["table1"]["shares"])]
    figures = {"A - C per milestone (points)": gaps}
    if not _shares_measurable(runs, ["A", "C"]) or not gaps or gaps[-1] is None:
        return _verdict(finding, NOT_MEASURABLE, figures)
    return _verdict(finding, SEEN if gaps[-1] <= POINTS else NOT_SEEN, figures)


def _keeps_gap(runs: dict) -> dict:
    finding = "D keeps a gap"
    if "A" not in runs or "D" not in runs:
        return _verdict(finding, NOT_MEASURABLE, {})
    others = [r for r in ("A", "C") if r in runs]
    finals = {r: _final_points(runs, r) for r in [*others, "D"]}
    figures = {"final share (%)": finals}
    if not _shares_measurable(runs, [*others, "D"]) or None in finals.values():
        return _verdict(finding, NOT_MEASURABLE, figures)
    below = all(finals["D"] < finals[r] for r in others)
    return _verdict(finding, SEEN if below else NOT_SEEN, figures)


def _asymmetry(runs: dict) -> dict:
    finding = "attention/MLP asymmetry"
    means = {module: {r: run["final"]["module_alpha_mean"].get(module) for r, run in runs.items()} for module in (ATTENTION, MLP)}
    spreads = {}
    for module, by_regime in means.items():
        values = [v for v in by_regime.values() if v is not None]
        spreads[module] = max(values) - min(values) if len(values) >= 2 else None
    figures = {"mean alpha": means, "spread over regimes": spreads}
    layers = min((run["training"]["num_layers"] for run in runs.values()), default=0)
    if layers < MIN_LAYERS or None in spreads.values():
        return _verdict(finding, NOT_MEASURABLE, figures)
    return _verdict(finding, SEEN if spreads[ATTENTION] > spreads[MLP] else NOT_SEEN, figures)


def verdicts(runs: dict) -> list[dict]:
    """One row per finding of the paper, in the paper's order."""
    return [_stable(runs), _optimizer_signal(runs), _recovers(runs), _keeps_gap(runs), _asymmetry(runs)]


def experiment_summary(root: str, regimes: list[str], preset: str, slice_field: str | None) -> dict:
    """Everything the experiment's report shows, read from the experiment folder `root` (a local path or URL)."""
    runs = {regime: run_record(root, regime) for regime in regimes}
    return {
        "preset": preset,
        "regimes": regimes,
        "slice_field": slice_field,
        "alpha_range": list(ALPHA_RANGE),
        "trend_rule": TREND_RULE,
        "builds": {regime: build_record(join(root, "builds", regime)) for regime in regimes},
        "runs": runs,
        "verdicts": verdicts(runs),
        "verdict_rules": VERDICT_RULES,
        "scale_rule": f"shares need at least {MIN_FITTED} fitted matrices per checkpoint and layer-wise figures "
        f"at least {MIN_LAYERS} layers to be measurable",
    }

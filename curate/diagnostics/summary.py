"""Model-level figures from the per-matrix records: what `summary.json` holds.

Per checkpoint, over all analysed matrices and per module type: how many were fitted and
how many fits failed, the share of fitted matrices with alpha in [2, 6] (the paper's
well-conditioned range; failed fits are left out of the share and counted apart), and the
mean, median, standard deviation, minimum and maximum of alpha, with means of the other
figures. Over a series of checkpoints: the paper's Table 1 (share in range at each
checkpoint) with a trend word.
"""

from __future__ import annotations

import numpy as np

from curate.diagnostics.compare import change_variance

ALPHA_RANGE = (2.0, 6.0)
TREND_TOLERANCE_POINTS = 2.0
TREND_RULE = (
    "share of matrices with alpha in [2, 6], in percentage points, first vs last checkpoint: "
    "Rising if last > first + 2, Falling if last < first - 2, otherwise Recovered if a checkpoint "
    "in between fell more than 2 below the first, otherwise Stable"
)
DEFINITIONS = {
    "alpha": "WeightWatcher's default power-law fit of the eigenvalues of W^T W above 1e-5 "
    "(continuous MLE for every candidate xmin, xmin by the smallest Kolmogorov-Smirnov distance)",
    "alpha_sigma": "(alpha - 1) / sqrt(alpha_n_tail)",
    "share_alpha_in_range": "fitted matrices with 2 <= alpha <= 6 over fitted matrices (failed fits counted apart)",
    "stable_rank": "||W||_F^2 / ||W||_2^2",
    "effective_rank": "Roy and Vetterli (2007): exp of the Shannon entropy of the singular values normalised to sum 1",
    "participation_ratio": "(sum lambda)^2 / sum lambda^2 over the eigenvalues lambda of W^T W",
    "spectral_norm": "largest singular value",
    "relative_change": "||W - W_base||_F / ||W_base||_F",
    "correlation": "Pearson correlation of the entries of W and W_base",
    "delta_effective_rank": "effective_rank(W) - effective_rank(W_base)",
    "update_effective_rank": "effective_rank(W - W_base)",
    "change_variance": "per module type: population standard deviation over mean of relative_change across layers",
}
MEAN_FIGURES = ("effective_rank", "stable_rank", "relative_change", "correlation", "delta_effective_rank")


def _values(records: list[dict], key: str) -> np.ndarray:
    return np.asarray([r[key] for r in records if r.get(key) is not None], dtype=np.float64)


def group_statistics(records: list[dict]) -> dict:
    """Alpha distribution and figure means of a group of matrix records."""
    alphas = _values(records, "alpha")
    in_range = np.count_nonzero((alphas >= ALPHA_RANGE[0]) & (alphas <= ALPHA_RANGE[1]))
    statistics = {
        "matrices": len(records),
        "fitted": len(alphas),
        "failed_fits": len(records) - len(alphas),
        "share_alpha_in_range": float(in_range / len(alphas)) if len(alphas) else None,
        "alpha": {
            name: float(function(alphas)) if len(alphas) else None
            for name, function in (("mean", np.mean), ("median", np.median), ("std", np.std), ("min", np.min), ("max", np.max))
        },
    }
    for key in MEAN_FIGURES:
        values = _values(records, key)
        if any(key in r for r in records):
            statistics[f"{key}_mean"] = float(values.mean()) if len(values) else None
    return statistics


def checkpoint_summary(label: str, records: list[dict], with_base: bool) -> dict:
    """Model-level and per-module figures of one checkpoint."""
    by_module: dict[str, list[dict]] = {}
    for record in records:
        by_module.setdefault(record["module"], []).append(record)
    modules = {module: group_statistics(group) for module, group in sorted(by_module.items())}
    summary = {"checkpoint": label, **group_statistics(records), "modules": modules}
    if with_base:
        variances = {}
        for module, group in sorted(by_module.items()):
            layered = [r["relative_change"] for r in group if r["layer"] is not None]
            variances[module] = change_variance(layered)
            modules[module]["change_variance"] = variances[module]
        summary["change_variance"] = variances
    return summary


def trend_word(shares: list[float | None]) -> str:
    """A one-word description of a series of in-range shares (rule in TREND_RULE)."""
    points = [100.0 * s for s in shares if s is not None]
    if len(points) < 2:
        return "Single checkpoint"
    first, last = points[0], points[-1]
    if last > first + TREND_TOLERANCE_POINTS:
        return "Rising"
    if last < first - TREND_TOLERANCE_POINTS:
        return "Falling"
    if min(points[1:-1], default=first) < first - TREND_TOLERANCE_POINTS:
        return "Recovered"
    return "Stable"


def trajectory(checkpoint_summaries: list[dict]) -> list[dict]:
    """One row of the paper's Table 1 per series (training run): in-range share per checkpoint, and a trend."""
    rows: dict[str, dict] = {}
    for summary in checkpoint_summaries:
        row = rows.setdefault(summary["series"], {"series": summary["series"], "checkpoints": [], "steps": [], "share_alpha_in_range": []})
        row["checkpoints"].append(summary["checkpoint"])
        row["steps"].append(summary["step"])
        row["share_alpha_in_range"].append(summary["share_alpha_in_range"])
    for row in rows.values():
        row["trend"] = trend_word(row["share_alpha_in_range"])
    return list(rows.values())


def build_summary(checkpoint_summaries: list[dict], skipped: list[dict], base: str | None) -> dict:
    """Everything `summary.json` holds: per-checkpoint figures (each with `series` and `step`),
    the trajectory table, skipped matrices and the definitions."""
    return {
        "alpha_range": list(ALPHA_RANGE),
        "base": base,
        "checkpoints": checkpoint_summaries,
        "trajectory": trajectory(checkpoint_summaries),
        "trend_rule": TREND_RULE,
        "skipped": skipped,
        "definitions": DEFINITIONS,
    }

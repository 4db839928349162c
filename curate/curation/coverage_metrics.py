"""The numbers `finalize` reports, computed from merged count tables.

Entropy, Zipf slope, rank-frequency curve, tail mass and Jensen-Shannon divergence, plus the
rounding that keeps stats.json stable across platforms (FLOAT_DIGITS significant digits).
These are the only floating-point results of coverage statistics; their inputs merge exactly.
"""

from __future__ import annotations

import math

import numpy as np

FLOAT_DIGITS = 10
ZIPF_RANK_WINDOW = (10, 1000)
RANK_CURVE_POINTS = 60


def round_value(value: float | None) -> float | None:
    """`value` to FLOAT_DIGITS significant digits; None for None, infinities and NaN (not JSON)."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{FLOAT_DIGITS}g}")


def ratio(numerator: float, denominator: float) -> float | None:
    """The rounded quotient, or None when the denominator is zero (nothing to measure)."""
    return round_value(numerator / denominator) if denominator else None


def entropy_bits(counts: np.ndarray) -> float | None:
    """Shannon entropy in bits of a count vector."""
    total = counts.sum()
    if total == 0:
        return None
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def ranking(table: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Keys and counts by descending count (ties by key): a deterministic rank order."""
    keys, counts = table
    order = np.lexsort((keys, -counts))
    return keys[order], counts[order]


def zipf_slope(ranked_counts: np.ndarray, window: tuple[int, int] = ZIPF_RANK_WINDOW) -> float | None:
    """Least-squares slope of log frequency on log rank over ranks window[0]..window[1]."""
    first, last = window
    selected = ranked_counts[first - 1 : last]
    if len(selected) < 10:
        return None
    ranks = np.arange(first, first + len(selected), dtype=np.float64)
    slope, _ = np.polyfit(np.log10(ranks), np.log10(selected.astype(np.float64)), 1)
    return float(slope)


def rank_frequency_curve(ranked_counts: np.ndarray, points: int = RANK_CURVE_POINTS) -> dict:
    """Relative frequency at log-spaced ranks: enough to draw the curve, small enough for JSON."""
    if len(ranked_counts) == 0:
        return {"ranks": [], "frequencies": []}
    ranks = np.unique(np.round(np.logspace(0, np.log10(len(ranked_counts)), points)).astype(np.int64))
    total = ranked_counts.sum()
    return {
        "ranks": ranks.tolist(),
        "frequencies": [round_value(ranked_counts[r - 1] / total) for r in ranks.tolist()],
    }


def tail_mass(table: tuple[np.ndarray, np.ndarray], reference_keys: np.ndarray, top_k: int) -> float | None:
    """Share of unit occurrences outside the reference ranking's top `top_k` types."""
    keys, counts = table
    total = counts.sum()
    if total == 0 or len(reference_keys) == 0:
        return None
    inside = np.isin(keys, reference_keys[:top_k])
    return round_value(counts[~inside].sum() / total)


def js_divergence(left: tuple[np.ndarray, np.ndarray], right: tuple[np.ndarray, np.ndarray]) -> float | None:
    """Jensen-Shannon divergence in bits (0 = same distribution, 1 = disjoint support)."""
    if left[1].sum() == 0 or right[1].sum() == 0:
        return None
    keys = np.union1d(left[0], right[0])
    p = np.zeros(len(keys))
    q = np.zeros(len(keys))
    p[np.searchsorted(keys, left[0])] = left[1] / left[1].sum()
    q[np.searchsorted(keys, right[0])] = right[1] / right[1].sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nonzero = a > 0
        return float((a[nonzero] * np.log2(a[nonzero] / m[nonzero])).sum())

    return round_value(max(0.0, 0.5 * kl(p) + 0.5 * kl(q)))


def sizes_json(sizes: dict) -> dict:
    """{key: [documents, tokens, bytes]} as named fields, keys sorted as strings."""
    return {
        str(key): {"documents": v[0], "tokens": v[1], "bytes": v[2]}
        for key, v in sorted(sizes.items(), key=lambda item: str(item[0]))
    }

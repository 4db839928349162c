"""LSH banding of MinHash signatures: the layout (bands x rows) and the band keys.

Two documents become candidates when all `rows` signature values of at least one of `bands`
bands agree; with Jaccard similarity s that happens with probability 1 - (1 - s**rows)**bands
(the S-curve). The layout is chosen to minimise the weighted area of false positives (the curve
below the threshold) plus false negatives (one minus the curve above it).

False negatives weigh 0.9 and false positives 0.1: every candidate is verified by exact Jaccard,
so a false positive costs one comparison while a false negative is a duplicate left in the
corpus. At threshold 0.8 and 128 permutations this gives 14 bands x 9 rows, which makes a pair
with similarity 0.85 a candidate with probability 0.975 (equal weights: 9 x 13, only 0.69).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from curate.dedup.minhash import GOLDEN, mix64, splitmix_sequence

# Multipliers combining the `rows` values of one band (row j gets ROW_WEIGHTS[j]).
ROW_WEIGHTS = splitmix_sequence(0xBA2D, 1024) | np.uint64(1)
INTEGRATION_POINTS = 2001
FALSE_POSITIVE_WEIGHT = 0.1
FALSE_NEGATIVE_WEIGHT = 0.9


@dataclass(frozen=True)
class LshLayout:
    bands: int
    rows: int

    def candidate_probability(self, similarity: np.ndarray | float) -> np.ndarray:
        """Probability that two documents with this Jaccard similarity share at least one band."""
        s = np.asarray(similarity, dtype=np.float64)
        return 1.0 - (1.0 - s**self.rows) ** self.bands


@functools.lru_cache(maxsize=64)
def optimal_layout(
    threshold: float,
    num_perm: int,
    false_positive_weight: float = FALSE_POSITIVE_WEIGHT,
    false_negative_weight: float = FALSE_NEGATIVE_WEIGHT,
) -> LshLayout:
    """bands x rows <= num_perm minimising the weighted false positive + false negative areas.

    Ties go to the layout with fewer bands (fewer band keys to shuffle).
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be strictly between 0 and 1, got {threshold}")
    s = np.linspace(0.0, 1.0, INTEGRATION_POINTS)
    below, above = s <= threshold, s >= threshold
    best: tuple[float, LshLayout] | None = None
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            curve = LshLayout(bands, rows).candidate_probability(s)
            false_positive = np.trapezoid(curve[below], s[below])
            false_negative = np.trapezoid(1.0 - curve[above], s[above])
            error = false_positive_weight * false_positive + false_negative_weight * false_negative
            if best is None or error < best[0] - 1e-15:
                best = (error, LshLayout(bands, rows))
    assert best is not None
    return best[1]


def resolve_layout(threshold: float, num_perm: int, bands: int | None, rows: int | None) -> LshLayout:
    """The explicit layout when both bands and rows are given (checked), else the optimal one."""
    if bands is None and rows is None:
        return optimal_layout(threshold, num_perm)
    if bands is None or rows is None:
        raise ValueError("give both bands and rows, or neither")
    if bands < 1 or rows < 1 or bands * rows > num_perm:
        raise ValueError(f"bands x rows must be positive and at most num_perm={num_perm}, got {bands} x {rows}")
    return LshLayout(bands, rows)


def band_keys(signatures: np.ndarray, layout: LshLayout) -> np.ndarray:
    """One 64-bit key per (document, band), shape (n, bands); the band index is mixed in, so keys of
    different bands never need to be told apart."""
    n = signatures.shape[0]
    if layout.bands * layout.rows > signatures.shape[1]:
        raise ValueError(f"{layout} needs {layout.bands * layout.rows} signature values, got {signatures.shape[1]}")
    values = signatures[:, : layout.bands * layout.rows].reshape(n, layout.bands, layout.rows).astype(np.uint64)
    combined = (values * ROW_WEIGHTS[: layout.rows]).sum(axis=2, dtype=np.uint64)
    combined += (np.arange(layout.bands, dtype=np.uint64) + np.uint64(1)) * GOLDEN
    return mix64(combined)

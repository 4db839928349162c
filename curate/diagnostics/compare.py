"""How a checkpoint's matrices moved away from a base checkpoint's.

For each matrix W1 and its base W0 (same name key and shape):

- relative change ||W1 - W0||_F / ||W0||_F;
- correlation: Pearson correlation of the entries of W1 and W0;
- delta effective rank: effective rank of W1 minus effective rank of W0;
- update effective rank: effective rank of the update W1 - W0.

Across layers, the change variance of a module type is the coefficient of variation
(population standard deviation over mean) of the relative change of that module's matrices
over all layers: near 0 when every layer moved by the same fraction, large when the update
is concentrated in a few layers.
"""

from __future__ import annotations

import math

import numpy as np

from curate.diagnostics.spectral import effective_rank


def relative_change(current: np.ndarray, base: np.ndarray) -> float:
    """||W1 - W0||_F / ||W0||_F (nan when W0 is zero)."""
    base_norm = np.linalg.norm(base)
    return float(np.linalg.norm(current - base) / base_norm) if base_norm > 0 else math.nan


def correlation(current: np.ndarray, base: np.ndarray) -> float:
    """Pearson correlation of the entries of two matrices (nan when one is constant)."""
    a = current.ravel() - current.mean()
    b = base.ravel() - base.mean()
    denominator = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / denominator if denominator > 0 else math.nan


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def comparison_metrics(
    relative_change: float,
    correlation: float,
    effective_rank_current: float | None,
    effective_rank_base: float | None,
    update_singular_values: np.ndarray,
) -> dict:
    """The per-matrix comparison figures, keyed as in `matrices.jsonl`."""
    delta = None
    if effective_rank_current is not None and effective_rank_base is not None:
        delta = effective_rank_current - effective_rank_base
    return {
        "relative_change": _finite_or_none(relative_change),
        "correlation": _finite_or_none(correlation),
        "delta_effective_rank": delta,
        "update_effective_rank": effective_rank(update_singular_values),
    }


def change_variance(relative_changes_over_layers: list[float]) -> float | None:
    """Coefficient of variation (population std / mean) of one module's relative change across layers."""
    values = np.asarray([v for v in relative_changes_over_layers if v is not None], dtype=np.float64)
    if len(values) < 2 or values.mean() <= 0.0:
        return None
    return float(values.std() / values.mean())

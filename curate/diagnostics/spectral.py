"""Per-matrix spectral metrics: the WeightWatcher power-law exponent and rank measures.

Everything here works on the singular values of one weight matrix W (float64). The
eigenvalues of W^T W are their squares. The power-law fit reproduces WeightWatcher's
default fit (weightwatcher 0.7.7, `analyze()` with its default arguments):

- eigenvalues at or below a floor of 1e-5 are dropped (WeightWatcher's EVALS_THRESH);
- every eigenvalue but the largest is a candidate xmin; for each, the continuous power-law
  maximum-likelihood exponent of the tail x >= xmin is alpha = 1 + n / sum(log(x / xmin));
- the Kolmogorov-Smirnov distance between the tail's empirical CDF (0, 1/n, ..., (n-1)/n)
  and the fitted CDF 1 - (x / xmin)^(1 - alpha) picks xmin (the first smallest distance;
  candidates with alpha <= 1 get distance 1, and so do candidates whose tail is one
  repeated value, where WeightWatcher's alpha is infinite);
- with fewer than 20 eigenvalues it switches to its small-sample fit: the bias-corrected
  exponent 1 + (n - 1) / sum(log(x / xmin)) on tails of at least 8 eigenvalues (the whole
  spectrum when no such tail has alpha > 1), xmin again chosen by the smallest KS distance
  (WeightWatcher also computes a tail-size-penalised objective there, but the reported fit
  is the argmin of the KS distances);
- the standard error is (alpha - 1) / sqrt(n) for the chosen tail of n eigenvalues.

WeightWatcher loops over candidates in Python; here all candidates of a matrix are
evaluated at once in blocks of a numpy array.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EIGENVALUE_FLOOR = 1e-5
GRAM_MIN_RATIO = 1e-10
SMALL_SAMPLE = 20
SMALL_SAMPLE_MIN_TAIL = 8
DEGENERATE_LOG_SUM = 1e-12
BLOCK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class PowerLawFit:
    """The chosen power-law tail of an eigenvalue spectrum, or why there is none."""

    alpha: float | None
    xmin: float | None
    ks_distance: float | None
    n_tail: int | None
    sigma: float | None
    status: str

    @staticmethod
    def failed(reason: str) -> "PowerLawFit":
        return PowerLawFit(None, None, None, None, None, reason)


def _ks_distances(log_x: np.ndarray, alphas: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """KS distance of each candidate's tail (x[i:]) from its fitted power law."""
    size = len(log_x)
    distances = np.ones(len(candidates))
    rows_per_block = max(1, BLOCK_ELEMENTS // size)
    for start in range(0, len(candidates), rows_per_block):
        rows = candidates[start : start + rows_per_block]
        first = int(rows[0])
        offsets = np.arange(first, size)[None, :] - rows[:, None]
        n = (size - rows)[:, None].astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            fitted = 1.0 - np.exp((1.0 - alphas[rows])[:, None] * (log_x[None, first:] - log_x[rows][:, None]))
            gaps = np.abs(fitted - offsets / n)
        gaps[offsets < 0] = 0.0
        distances[start : start + len(rows)] = gaps.max(axis=1)
    return distances


def _tail_log_sums(log_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each candidate i < N-1: tail size n = N - i and sum(log(x[i:] / x[i]))."""
    size = len(log_x)
    suffix = np.cumsum(log_x[::-1])[::-1][:-1]
    n = (size - np.arange(size - 1)).astype(np.float64)
    return n, suffix - n * log_x[:-1]


def _fit_standard(x: np.ndarray, log_x: np.ndarray) -> PowerLawFit:
    n, log_sums = _tail_log_sums(log_x)
    with np.errstate(divide="ignore", invalid="ignore"):
        alphas = 1.0 + n / log_sums
    valid = np.flatnonzero(np.isfinite(alphas) & (alphas > 1.0))
    distances = np.ones(len(n))
    distances[valid] = _ks_distances(log_x, alphas, valid)
    best = int(np.argmin(distances))
    return _chosen(x, alphas[best], best, distances[best])


def _fit_small_sample(x: np.ndarray, log_x: np.ndarray) -> PowerLawFit:
    n, log_sums = _tail_log_sums(log_x)
    usable = (n >= SMALL_SAMPLE_MIN_TAIL) & (log_sums > DEGENERATE_LOG_SUM)
    alphas = np.zeros(len(n))
    alphas[usable] = 1.0 + (n[usable] - 1.0) / log_sums[usable]
    valid = np.flatnonzero(usable & (alphas > 1.0))
    if len(valid) == 0:
        total = float(np.sum(log_x) - len(x) * log_x[0])
        if total <= DEGENERATE_LOG_SUM:
            return PowerLawFit.failed("degenerate spectrum (all eigenvalues equal)")
        alpha = 1.0 + (len(x) - 1.0) / total
        distance = float(_ks_distances(log_x, np.array([alpha]), np.array([0]))[0])
        return _chosen(x, alpha, 0, distance)
    distances = _ks_distances(log_x, alphas, valid)
    best = int(np.argmin(distances))
    return _chosen(x, alphas[valid[best]], int(valid[best]), distances[best])


def _chosen(x: np.ndarray, alpha: float, index: int, distance: float) -> PowerLawFit:
    if not math.isfinite(alpha):
        return PowerLawFit.failed("degenerate spectrum (non-finite exponent)")
    n_tail = len(x) - index
    xmin = float(x[index])
    return PowerLawFit(
        alpha=float(alpha),
        xmin=xmin,
        ks_distance=float(distance),
        n_tail=int(np.count_nonzero(x >= xmin)),
        sigma=float((alpha - 1.0) / math.sqrt(n_tail)),
        status="ok",
    )


def fit_power_law(eigenvalues: np.ndarray) -> PowerLawFit:
    """WeightWatcher's default power-law fit of an eigenvalue spectrum (see module docstring)."""
    x = np.sort(np.asarray(eigenvalues, dtype=np.float64))
    x = x[x > EIGENVALUE_FLOOR]
    if len(x) < 2:
        return PowerLawFit.failed(f"{len(x)} eigenvalue(s) above the floor {EIGENVALUE_FLOOR:g}")
    log_x = np.log(x)
    if len(x) < SMALL_SAMPLE:
        return _fit_small_sample(x, log_x)
    return _fit_standard(x, log_x)


def singular_values(matrix: np.ndarray) -> np.ndarray:
    """Singular values (descending, float64) of one float64 matrix.

    The fast route takes the eigenvalues of the smaller Gram matrix (W^T W or W W^T; NumPy
    computes it with a symmetric rank-k update, half a matrix product) with
    `torch.linalg.eigvalsh`: two to five times cheaper than an SVD. Its absolute error is
    about machine epsilon times the largest eigenvalue, so an eigenvalue lambda carries a
    relative error near 1e-16 * lambda_max / lambda. The route is kept only for matrices whose
    eigenvalues all lie within GRAM_MIN_RATIO (1e-10) of the largest, which bounds that error
    near 1e-6; the others (rank-deficient or nearly so) get an exact `torch.linalg.svdvals`.
    """
    import torch

    rows, cols = matrix.shape
    gram = matrix.T @ matrix if rows >= cols else matrix @ matrix.T
    eigenvalues = torch.linalg.eigvalsh(torch.from_numpy(gram)).numpy()[::-1]
    largest, smallest = eigenvalues[0], eigenvalues[-1]
    if largest <= 0 or smallest < GRAM_MIN_RATIO * largest:
        return torch.linalg.svdvals(torch.from_numpy(matrix)).numpy()
    return np.sqrt(np.maximum(eigenvalues, 0.0))


def effective_rank(singular_values: np.ndarray) -> float | None:
    """Roy and Vetterli (2007): exp of the Shannon entropy of singular values normalised to sum 1."""
    s = np.asarray(singular_values, dtype=np.float64)
    total = s.sum()
    if total <= 0.0:
        return None
    p = s[s > 0.0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def stable_rank(singular_values: np.ndarray) -> float | None:
    """||W||_F^2 / ||W||_2^2: how many directions carry the energy of the largest one."""
    s = np.asarray(singular_values, dtype=np.float64)
    top = s.max(initial=0.0)
    return None if top <= 0.0 else float(np.sum(s * s) / (top * top))


def participation_ratio(singular_values: np.ndarray) -> float | None:
    """(sum lambda)^2 / sum lambda^2 over the eigenvalues lambda = s^2 of W^T W."""
    eigenvalues = np.asarray(singular_values, dtype=np.float64) ** 2
    squares = np.sum(eigenvalues * eigenvalues)
    return None if squares <= 0.0 else float(eigenvalues.sum() ** 2 / squares)


def spectral_metrics(singular_values: np.ndarray) -> dict:
    """All single-matrix figures from its singular values, keyed as in `matrices.jsonl`."""
    s = np.asarray(singular_values, dtype=np.float64)
    fit = fit_power_law(s * s)
    return {
        "alpha": fit.alpha,
        "alpha_xmin": fit.xmin,
        "alpha_ks": fit.ks_distance,
        "alpha_n_tail": fit.n_tail,
        "alpha_sigma": fit.sigma,
        "alpha_status": fit.status,
        "stable_rank": stable_rank(s),
        "effective_rank": effective_rank(s),
        "participation_ratio": participation_ratio(s),
        "spectral_norm": float(s.max(initial=0.0)),
    }

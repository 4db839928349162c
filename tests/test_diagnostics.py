"""Diagnostics metrics on matrices with known spectra, and checkpoint discovery and naming."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from curate.curation.errors import UserError
from curate.diagnostics.analysis import MatrixLimits, select_matrices
from curate.diagnostics.checkpoints import StoredTensor, parse_parameter_name, resolve_checkpoints
from curate.diagnostics.compare import change_variance, correlation, relative_change
from curate.diagnostics.spectral import (
    effective_rank,
    fit_power_law,
    participation_ratio,
    singular_values,
    spectral_metrics,
    stable_rank,
)
from curate.diagnostics.report import _share_tables
from curate.diagnostics.summary import group_statistics, trajectory, trend_word


def brute_force_fit(eigenvalues: np.ndarray) -> tuple[float, float, float]:
    """The WeightWatcher fit written as plainly as possible: (alpha, xmin, KS distance)."""
    x = np.sort(eigenvalues[eigenvalues > 1e-5])
    small = len(x) < 20
    best = None
    for i in range(len(x) - 1):
        tail = x[i:]
        n = len(tail)
        log_sum = float(np.sum(np.log(tail / x[i])))
        if small and (n < 8 or log_sum <= 1e-12):
            continue
        alpha = 1 + (n - 1 if small else n) / log_sum
        if alpha <= 1:
            continue
        distance = max(abs(1 - (t / x[i]) ** (1 - alpha) - k / n) for k, t in enumerate(tail))
        if best is None or distance < best[2]:
            best = (alpha, x[i], distance)
    if best is None:  # small sample without a usable tail of 8: the whole spectrum
        n = len(x)
        alpha = 1 + (n - 1) / float(np.sum(np.log(x / x[0])))
        best = (alpha, x[0], max(abs(1 - (t / x[0]) ** (1 - alpha) - k / n) for k, t in enumerate(x)))
    return best


def pareto_quantiles(alpha: float, count: int, xmin: float = 1.0) -> np.ndarray:
    """Eigenvalues placed at the quantiles of a continuous power law with exponent `alpha`."""
    quantiles = (np.arange(count) + 0.5) / count
    return xmin * (1 - quantiles) ** (-1 / (alpha - 1))


@pytest.mark.parametrize("count", [6, 12, 19, 20, 57, 300])
def test_fit_matches_the_definition_on_random_spectra(count):
    rng = np.random.default_rng(count)
    for _ in range(5):
        eigenvalues = rng.pareto(2.0, count) + 0.05
        fit = fit_power_law(eigenvalues)
        alpha, xmin, distance = brute_force_fit(eigenvalues)
        assert fit.alpha == pytest.approx(alpha, rel=1e-10)
        assert fit.xmin == xmin
        assert fit.ks_distance == pytest.approx(distance, abs=1e-10)
        assert fit.n_tail == np.count_nonzero(eigenvalues >= xmin)
        assert fit.sigma == pytest.approx((alpha - 1) / math.sqrt(fit.n_tail))


def test_fit_matches_weightwatcher_powerlaw_fit():
    from weightwatcher.WW_powerlaw import WWFit

    rng = np.random.default_rng(7)
    for count in (25, 400):
        eigenvalues = rng.lognormal(0.0, 1.5, count)
        expected = WWFit(eigenvalues[eigenvalues > 1e-5])
        fit = fit_power_law(eigenvalues)
        assert fit.alpha == pytest.approx(expected.alpha, abs=1e-9)
        assert fit.xmin == pytest.approx(expected.xmin)
        assert fit.ks_distance == pytest.approx(expected.D, abs=1e-9)
        assert fit.sigma == pytest.approx(expected.sigma, abs=1e-9)


@pytest.mark.parametrize("alpha", [2.5, 4.0])
def test_fit_recovers_a_known_power_law_tail_from_a_matrix(alpha):
    rng = np.random.default_rng(1)
    size = 300
    left, _ = np.linalg.qr(rng.standard_normal((size, size)))
    right, _ = np.linalg.qr(rng.standard_normal((size, size)))
    eigenvalues = pareto_quantiles(alpha, size)
    matrix = left @ np.diag(np.sqrt(eigenvalues)) @ right.T
    singular_values = torch.linalg.svdvals(torch.from_numpy(matrix)).numpy()
    metrics = spectral_metrics(singular_values)
    assert metrics["alpha"] == pytest.approx(alpha, abs=0.1)
    assert metrics["alpha_status"] == "ok"
    assert metrics["alpha_sigma"] == pytest.approx((metrics["alpha"] - 1) / math.sqrt(metrics["alpha_n_tail"]))


def test_eigenvalues_at_or_below_the_floor_are_ignored():
    eigenvalues = pareto_quantiles(3.0, 200)
    padded = np.concatenate([eigenvalues, np.zeros(50), np.full(10, 1e-5)])
    assert fit_power_law(padded) == fit_power_law(eigenvalues)


def test_identity_has_full_ranks_and_no_power_law():
    metrics = spectral_metrics(np.linalg.svd(np.eye(64), compute_uv=False))
    assert metrics["effective_rank"] == pytest.approx(64)
    assert metrics["stable_rank"] == pytest.approx(64)
    assert metrics["participation_ratio"] == pytest.approx(64)
    assert metrics["spectral_norm"] == pytest.approx(1)
    assert metrics["alpha"] is None
    assert "degenerate" in metrics["alpha_status"]


def test_zero_matrix_has_no_ranks_and_a_failed_fit():
    metrics = spectral_metrics(np.zeros(16))
    assert metrics["effective_rank"] is None and metrics["stable_rank"] is None
    assert metrics["alpha"] is None and "0 eigenvalue(s)" in metrics["alpha_status"]


def test_rank_measures_follow_their_definitions():
    assert effective_rank(np.array([1.0, 1.0, 0.0, 0.0])) == pytest.approx(2.0)
    p = np.array([0.75, 0.25])
    assert effective_rank(np.array([3.0, 1.0])) == pytest.approx(math.exp(-np.sum(p * np.log(p))))
    assert stable_rank(np.array([2.0, 1.0])) == pytest.approx(5 / 4)
    assert participation_ratio(np.array([2.0, 1.0])) == pytest.approx(25 / 17)


def test_low_rank_plus_noise_has_ranks_near_its_rank():
    rng = np.random.default_rng(3)
    rank = 5
    signal = rng.standard_normal((200, rank)) @ rng.standard_normal((rank, 100))
    matrix = signal / np.linalg.norm(signal, 2) * 10 + 1e-4 * rng.standard_normal((200, 100))
    values = np.linalg.svd(matrix, compute_uv=False)
    assert rank - 2 < effective_rank(values) < rank + 0.5
    assert 1 <= stable_rank(values) <= rank
    assert 1 <= participation_ratio(values) <= rank


def test_comparison_figures_follow_their_definitions():
    rng = np.random.default_rng(4)
    base = rng.standard_normal((3, 30, 20))
    noise = rng.standard_normal((30, 20))
    current = [2 * base[0], -base[1], base[2] + 0.1 * noise]
    assert relative_change(current[0], base[0]) == pytest.approx(1.0)
    assert relative_change(current[1], base[1]) == pytest.approx(2.0)
    assert relative_change(current[2], base[2]) == pytest.approx(0.1 * np.linalg.norm(noise) / np.linalg.norm(base[2]))
    assert math.isnan(relative_change(base[0], np.zeros((30, 20))))
    assert correlation(current[0], base[0]) == pytest.approx(1.0)
    assert correlation(current[1], base[1]) == pytest.approx(-1.0)
    expected = np.corrcoef(current[2].ravel(), base[2].ravel())[0, 1]
    assert correlation(current[2], base[2]) == pytest.approx(expected)
    assert math.isnan(correlation(np.ones((30, 20)), base[0]))


def test_change_variance_is_the_coefficient_of_variation_over_layers():
    assert change_variance([0.1, 0.1, 0.1]) == pytest.approx(0.0)
    assert change_variance([0.1, 0.3]) == pytest.approx(0.5)
    assert change_variance([0.2]) is None


def test_share_in_range_counts_failed_fits_apart():
    records = [{"alpha": a, "module": "m"} for a in (1.5, 2.0, 4.0, 6.0, 7.0, None)]
    statistics = group_statistics(records)
    assert statistics["fitted"] == 5 and statistics["failed_fits"] == 1
    assert statistics["share_alpha_in_range"] == pytest.approx(3 / 5)
    assert statistics["alpha"]["median"] == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("shares", "word"),
    [([0.6, 0.8, 0.79], "Rising"), ([0.62, 0.57, 0.61], "Recovered"), ([0.8, 0.7], "Falling"), ([0.7, 0.71], "Stable"), ([0.7], "Single checkpoint")],
)
def test_trend_words(shares, word):
    assert trend_word(shares) == word


@pytest.mark.parametrize(
    ("name", "module", "layer", "key"),
    [
        ("model.layers.3.self_attn.v_proj.weight", "self_attn.v_proj", 3, "layers.3.self_attn.v_proj"),
        ("model.language_model.layers.3.self_attn.v_proj.weight", "self_attn.v_proj", 3, "layers.3.self_attn.v_proj"),
        ("model.language_model.embed_tokens.weight", "embed_tokens", None, "embed_tokens"),
        ("model.embed_tokens.weight", "embed_tokens", None, "embed_tokens"),
        ("lm_head.weight", "lm_head", None, "lm_head"),
        ("model.visual.blocks.5.attn.qkv.weight", "visual.attn.qkv", 5, "layers.5.visual.attn.qkv"),
        ("visual.blocks.0.mlp.fc1.weight", "visual.mlp.fc1", 0, "layers.0.visual.mlp.fc1"),
        ("model.visual.merger.linear_fc1.weight", "visual.merger.linear_fc1", None, "visual.merger.linear_fc1"),
        ("encoder.layer.2.attention.self.query.weight", "attention.self.query", 2, "layers.2.attention.self.query"),
    ],
)
def test_parameter_names_give_module_and_layer(name, module, layer, key):
    parsed = parse_parameter_name(name)
    assert (parsed.module, parsed.layer, parsed.key) == (module, layer, key)


def test_matrix_selection_follows_weightwatcher_filters():
    tensors = [
        StoredTensor("model.norm.weight", (64,), "F32", "f"),
        StoredTensor("embeddings.position_ids", (1, 512), "I64", "f"),
        StoredTensor("token_type.weight", (2, 64), "F32", "f"),
        StoredTensor("model.embed_tokens.weight", (151936, 64), "BF16", "f"),
        StoredTensor("conv.weight", (64, 3, 4, 4), "F32", "f"),
        StoredTensor("model.layers.0.mlp.up_proj.weight", (256, 64), "BF16", "f"),
    ]
    selected, skipped = select_matrices(tensors, MatrixLimits())
    assert [t.name for t in selected] == ["model.layers.0.mlp.up_proj.weight"]
    reasons = {s["name"]: s["reason"] for s in skipped}
    assert set(reasons) == {"embeddings.position_ids", "token_type.weight", "model.embed_tokens.weight", "conv.weight"}
    assert "151936 > limit 50000" in reasons["model.embed_tokens.weight"]


def _write(path, tensors):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))


def test_run_folder_expands_to_its_checkpoints_in_step_order(tmp_path):
    weights = {"model.layers.0.mlp.up_proj.weight": torch.ones(16, 8)}
    for step in (200, 10, 1000):
        _write(tmp_path / "run" / "checkpoints" / f"iter_{step:07d}" / "model.safetensors", weights)
    (tmp_path / "run" / "checkpoints" / "latest").write_text("iter_0001000\n")
    found = resolve_checkpoints([str(tmp_path / "run")])
    assert [c.label for c in found] == ["iter_0000010", "iter_0000200", "iter_0001000"]
    assert [c.label for c in resolve_checkpoints([str(tmp_path / "run" / "checkpoints")])] == [c.label for c in found]


def test_runs_become_series_with_steps(tmp_path):
    weights = {"w": torch.ones(16, 8)}
    for run in ("A", "B"):
        for step in (10, 20):
            _write(tmp_path / run / "checkpoints" / f"iter_{step:07d}" / "model.safetensors", weights)
    _write(tmp_path / "hf" / "model.safetensors", weights)
    found = resolve_checkpoints([str(tmp_path / "A"), str(tmp_path / "B" / "checkpoints" / "iter_0000020"), str(tmp_path / "hf")])
    assert [(c.label, c.series, c.step) for c in found] == [
        ("A/iter_0000010", "A", 10),
        ("A/iter_0000020", "A", 20),
        ("B/iter_0000020", "B", 20),
        ("hf", "", None),
    ]
    with pytest.raises(UserError, match="labelled"):
        resolve_checkpoints([str(tmp_path / "hf"), str(tmp_path / "hf")])


def test_trajectory_has_a_row_per_run_and_a_column_per_step():
    summaries = [
        {"checkpoint": f"{series}/{step}", "series": series, "step": step, "share_alpha_in_range": share, "matrices": 1}
        for series, step, share in (("A", 2000, 0.6), ("A", 72000, 0.79), ("B", 2000, 0.62), ("B", 72000, 0.61))
    ]
    rows = trajectory(summaries)
    assert [(r["series"], r["steps"], r["trend"]) for r in rows] == [("A", [2000, 72000], "Rising"), ("B", [2000, 72000], "Stable")]
    page = _share_tables(rows)
    assert "<th>step 2000</th><th>step 72000</th>" in page and "<td>79.0</td>" in page


def test_sharded_index_lists_its_files_and_missing_shards_are_user_errors(tmp_path):
    folder = tmp_path / "hf"
    _write(folder / "model-00001-of-00002.safetensors", {"a.weight": torch.ones(16, 8)})
    _write(folder / "model-00002-of-00002.safetensors", {"b.weight": torch.ones(16, 8)})
    index = {"weight_map": {"a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (checkpoint,) = resolve_checkpoints([str(folder)])
    assert len(checkpoint.files) == 2
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(UserError, match="missing shard"):
        resolve_checkpoints([str(folder)])


@pytest.mark.parametrize("setup", ["missing", "empty"])
def test_paths_without_checkpoints_are_user_errors(tmp_path, setup):
    path = tmp_path / "nothing"
    if setup == "empty":
        path.mkdir()
    with pytest.raises(UserError):
        resolve_checkpoints([str(path)])


def test_singular_values_match_svd_on_both_routes():
    rng = np.random.default_rng(5)
    square = rng.standard_normal((96, 96))
    tall = rng.standard_normal((130, 40))
    wide = rng.standard_normal((40, 130))
    low_rank = rng.standard_normal((80, 3)) @ rng.standard_normal((3, 60))
    for matrix in (square, tall, wide, low_rank, np.zeros((20, 10))):
        expected = torch.linalg.svdvals(torch.from_numpy(matrix)).numpy()
        got = singular_values(matrix)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-12 * max(expected.max(), 1.0))
    assert np.array_equal(singular_values(low_rank), torch.linalg.svdvals(torch.from_numpy(low_rank)).numpy())

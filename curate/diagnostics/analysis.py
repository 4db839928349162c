"""Per-matrix figures of whole checkpoints: which matrices, on which threads, in what order.

Each matrix is one task on a pool of one thread per CPU: read it from the safetensors
file, convert it to float64, take its singular values (`curate.diagnostics.spectral`) and, with a
base, compare it to its base matrix. Inside the pool BLAS and LAPACK run on one thread
each, so the matrices, not the threads of one LAPACK call, share the cores: an eigenvalue
solve of a few hundred rows does not scale over threads, while independent solves do.
Which matrices are analysed follows WeightWatcher's default filters, so its alphas and
ours cover the same matrices: 2-D floating-point tensors whose smaller side is at least 8
and at most 15000 and whose larger side is at most `max_side` (50000 by default: large
embedding and output matrices are skipped and listed).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from curate.diagnostics.checkpoints import (
    Checkpoint,
    StoredTensor,
    TensorReader,
    list_tensors,
    parse_parameter_name,
)
from curate.diagnostics.compare import comparison_metrics, correlation, relative_change
from curate.diagnostics.spectral import (
    effective_rank,
    singular_values,
    spectral_metrics,
)

FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")
COMPARISON_FIELDS = ("relative_change", "correlation", "delta_effective_rank", "update_effective_rank")


@dataclass(frozen=True)
class MatrixLimits:
    """Which matrices are analysed (WeightWatcher's min_evals, max_evals and max_N defaults)."""

    min_side: int = 8
    max_smaller_side: int = 15000
    max_side: int = 50000


def _skip_reason(tensor: StoredTensor, limits: MatrixLimits) -> str | None:
    shape = tensor.shape
    if tensor.dtype not in FLOAT_DTYPES:
        return f"not floating point ({tensor.dtype})"
    if len(shape) != 2:
        return f"not a 2-D matrix ({len(shape)}-D)"
    small, large = min(shape), max(shape)
    if small < limits.min_side:
        return f"smaller side {small} < {limits.min_side}: too few eigenvalues"
    if large > limits.max_side:
        return f"larger side {large} > limit {limits.max_side}"
    if small > limits.max_smaller_side:
        return f"smaller side {small} > limit {limits.max_smaller_side}"
    return None


def _sort_key(tensor: StoredTensor) -> tuple:
    parsed = parse_parameter_name(tensor.name)
    return (parsed.module.startswith("visual."), -1 if parsed.layer is None else parsed.layer, tensor.name)


def select_matrices(tensors: list[StoredTensor], limits: MatrixLimits) -> tuple[list[StoredTensor], list[dict]]:
    """The matrices to analyse (vision tower last, then by layer and name) and the skipped ones with reasons.

    Tensors with fewer than two dimensions (norm weights, biases) are not matrices and are
    neither analysed nor listed.
    """
    selected, skipped = [], []
    for tensor in sorted(tensors, key=_sort_key):
        if len(tensor.shape) < 2:
            continue
        reason = _skip_reason(tensor, limits)
        if reason is None:
            selected.append(tensor)
        else:
            skipped.append({"name": tensor.name, "shape": list(tensor.shape), "reason": reason})
    return selected, skipped


class Baseline:
    """The `--base` checkpoint: its matrices by name key, and their effective ranks once computed."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint
        self._by_key = {
            parse_parameter_name(t.name).key: t for t in list_tensors(checkpoint) if len(t.shape) == 2
        }
        self.effective_ranks: dict[str, float | None] = {}

    def match(self, tensor: StoredTensor) -> StoredTensor | None:
        """The base matrix with the same key and shape, if any."""
        found = self._by_key.get(parse_parameter_name(tensor.name).key)
        return found if found is not None and found.shape == tensor.shape else None


@contextmanager
def _one_blas_thread_per_task() -> Iterator[None]:
    """NumPy's BLAS and torch's intra-op threads limited to one while the pool runs (restored after)."""
    import torch
    from threadpoolctl import threadpool_limits

    torch_threads = torch.get_num_threads()
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(torch_threads)


def _single_threaded_torch() -> None:
    """Pool thread initializer: torch (and MKL's LAPACK under it) on the calling thread only."""
    import torch

    torch.set_num_threads(1)


def _analyse_matrix(reader: TensorReader, tensor: StoredTensor, baseline: Baseline | None) -> dict:
    matrix = reader.load(tensor).numpy()
    figures = spectral_metrics(singular_values(matrix))
    if baseline is None:
        return figures
    base = baseline.match(tensor)
    if base is None:
        return {**figures, **dict.fromkeys(COMPARISON_FIELDS), "base_name": None}
    base_matrix = reader.load(base).numpy()
    key = parse_parameter_name(base.name).key
    if key not in baseline.effective_ranks:
        baseline.effective_ranks[key] = effective_rank(singular_values(base_matrix))
    comparison = comparison_metrics(
        relative_change(matrix, base_matrix),
        correlation(matrix, base_matrix),
        figures["effective_rank"],
        baseline.effective_ranks[key],
        singular_values(matrix - base_matrix),
    )
    return {**figures, **comparison, "base_name": base.name}


def analyse_checkpoint(
    checkpoint: Checkpoint, limits: MatrixLimits, baseline: Baseline | None = None
) -> tuple[list[dict], list[dict]]:
    """One record per analysed matrix (spectral figures, and comparison figures with a baseline),
    plus the skipped matrices."""
    import torch

    matrices, skipped = select_matrices(list_tensors(checkpoint), limits)
    reader = TensorReader()
    workers = max(1, torch.get_num_threads())
    with _one_blas_thread_per_task(), ThreadPoolExecutor(workers, initializer=_single_threaded_torch) as pool:
        figures = list(pool.map(lambda tensor: _analyse_matrix(reader, tensor, baseline), matrices))
    records = []
    for tensor, figure in zip(matrices, figures):
        parsed = parse_parameter_name(tensor.name)
        records.append(
            {
                "checkpoint": checkpoint.label,
                "name": tensor.name,
                "module": parsed.module,
                "layer": parsed.layer,
                "shape": list(tensor.shape),
                "dtype": tensor.dtype,
                **figure,
            }
        )
    for entry in skipped:
        entry["checkpoint"] = checkpoint.label
    return records, skipped

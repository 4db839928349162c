"""Per-matrix figures of whole checkpoints: which matrices, in what batches, in what order.

Singular values come from `diagnostics.spectral.singular_values` in float64 on stacks of
same-shape matrices (one batched LAPACK call per stack, spread over torch's intra-op
threads), while a background thread already reads the next stack from the safetensors files. Which matrices
are analysed follows WeightWatcher's default filters, so its alphas and ours cover the same
matrices: 2-D floating-point tensors whose smaller side is at least 8 and at most 15000 and
whose larger side is at most `max_side` (50000 by default: large embedding and output
matrices are skipped and listed).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from diagnostics.checkpoints import Checkpoint, StoredTensor, TensorReader, list_tensors, parse_parameter_name
from diagnostics.compare import comparison_metrics, correlations, relative_changes
from diagnostics.spectral import effective_rank, singular_values, spectral_metrics

STACK_BYTES = 256 << 20
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")


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


def _stacks(matrices: list[StoredTensor]) -> list[list[StoredTensor]]:
    """Same-shape groups, each cut to at most STACK_BYTES of float64."""
    groups: dict[tuple[int, ...], list[StoredTensor]] = {}
    for tensor in matrices:
        groups.setdefault(tensor.shape, []).append(tensor)
    stacks = []
    for shape, group in groups.items():
        per_stack = max(1, STACK_BYTES // (8 * math.prod(shape)))
        stacks.extend(group[i : i + per_stack] for i in range(0, len(group), per_stack))
    return stacks


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


def _load_stack(reader: TensorReader, tensors: list[StoredTensor]):
    import torch

    return torch.stack([reader.load(t) for t in tensors])


def _loaded_stacks(
    reader: TensorReader, stacks: list[list[StoredTensor]], baseline: Baseline | None
) -> Iterator[tuple[list[StoredTensor], object, list[StoredTensor | None], object]]:
    """Each stack with its base stack, read one stack ahead in a background thread."""

    def load(tensors: list[StoredTensor]):
        bases = [baseline.match(t) for t in tensors] if baseline else [None] * len(tensors)
        matched = [b for b in bases if b is not None]
        return tensors, _load_stack(reader, tensors), bases, _load_stack(reader, matched) if matched else None

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load, stacks[0]) if stacks else None
        for following in [*stacks[1:], None]:
            loaded = pending.result()
            pending = pool.submit(load, following) if following is not None else None
            yield loaded


def _comparisons(stack, base_stack, bases: list[StoredTensor | None], baseline: Baseline, ranks: list) -> list:
    """Comparison figures for the matrices of a stack that have a base (None for the others)."""
    matched = [i for i, b in enumerate(bases) if b is not None]
    current = stack[matched]
    keys = [parse_parameter_name(bases[i].name).key for i in matched]
    missing = [j for j, key in enumerate(keys) if key not in baseline.effective_ranks]
    if missing:
        for j, values in zip(missing, singular_values(base_stack[missing])):
            baseline.effective_ranks[keys[j]] = effective_rank(values)
    update_values = singular_values(current - base_stack)
    changes = relative_changes(current, base_stack).tolist()
    correlation = correlations(current, base_stack).tolist()
    figures: list[dict | None] = [None] * len(bases)
    for j, i in enumerate(matched):
        figures[i] = comparison_metrics(
            changes[j], correlation[j], ranks[i], baseline.effective_ranks[keys[j]], update_values[j]
        )
        figures[i]["base_name"] = bases[i].name
    return figures


def analyse_checkpoint(
    checkpoint: Checkpoint, limits: MatrixLimits, baseline: Baseline | None = None
) -> tuple[list[dict], list[dict]]:
    """One record per analysed matrix (spectral figures, and comparison figures with a baseline),
    plus the skipped matrices."""
    matrices, skipped = select_matrices(list_tensors(checkpoint), limits)
    order = {t.name: i for i, t in enumerate(matrices)}
    records: list[dict | None] = [None] * len(matrices)
    reader = TensorReader()
    no_base = dict.fromkeys(("relative_change", "correlation", "delta_effective_rank", "update_effective_rank"))
    for tensors, stack, bases, base_stack in _loaded_stacks(reader, _stacks(matrices), baseline):
        figures = [spectral_metrics(values) for values in singular_values(stack)]
        if baseline is not None:
            comparisons = (
                _comparisons(stack, base_stack, bases, baseline, [f["effective_rank"] for f in figures])
                if base_stack is not None
                else [None] * len(tensors)
            )
            for figure, comparison in zip(figures, comparisons):
                figure.update(comparison if comparison is not None else {**no_base, "base_name": None})
        for tensor, figure in zip(tensors, figures):
            parsed = parse_parameter_name(tensor.name)
            records[order[tensor.name]] = {
                "checkpoint": checkpoint.label,
                "name": tensor.name,
                "module": parsed.module,
                "layer": parsed.layer,
                "shape": list(tensor.shape),
                "dtype": tensor.dtype,
                **figure,
            }
    for entry in skipped:
        entry["checkpoint"] = checkpoint.label
    return records, skipped

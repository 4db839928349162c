"""Finding checkpoints and their weight matrices, and naming each matrix by module and layer.

A checkpoint is a folder with `model.safetensors` or a sharded `model.safetensors.index.json`
(the trainer's `RUN/checkpoints/iter_NNNNNNN/` and any Hugging Face model folder), or one
`.safetensors` file. A trainer RUN folder, or its `checkpoints/` folder, stands for all of
its `iter_*` checkpoints in iteration order.

Parameter names are read as `<prefix>.<layers|blocks|layer|h>.<N>.<module>.weight`, so
Llama, Qwen2/Qwen3 (`model.layers.N.self_attn.v_proj`), Qwen3-VL
(`model.language_model.layers.N...`, `model.visual.blocks.N.attn.qkv`) and BERT-style
(`encoder.layer.N.attention.self.query`) names all give a layer index and a module type.
Matrices outside the vision tower are keyed without their wrapper prefix, so a Qwen3-VL
decoder matrix and the same matrix of Qwen3-4B-Base compare with each other.

Any of these may be local or on object storage (an fsspec URL); a remote safetensors file is
read from a cached local copy.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from curate.curation.errors import UserError
from curate.curation.storage import (
    absolute,
    exists,
    is_remote,
    isdir,
    isfile,
    join,
    listdir,
    local_file,
    parent,
    read_bytes,
)

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
ITERATION_DIR = re.compile(r"^iter_(\d+)$")
LAYER_PATTERN = re.compile(r"^(?:(?P<prefix>.*)\.)?(?:layers|blocks|layer|h)\.(?P<layer>\d+)\.(?P<module>.+)$")
WRAPPER_PREFIXES = ("model.language_model.", "language_model.model.", "language_model.", "model.", "transformer.")
VISION_MARKERS = ("visual", "vision")


@dataclass(frozen=True)
class Checkpoint:
    """One set of weights: a label for tables and plots, the safetensors files holding it, and
    for a trainer checkpoint its run (`series`, the run folder's label) and iteration (`step`).
    Checkpoints named directly that are not trainer iterations form the series ""."""

    label: str
    path: str
    files: tuple[str, ...]
    series: str = ""
    step: int | None = None


@dataclass(frozen=True)
class ParameterName:
    """Where a stored parameter sits: its module type (vision-tower ones start with `visual.`)
    and its layer index (None outside the repeated blocks)."""

    module: str
    layer: int | None

    @property
    def key(self) -> str:
        """A name shared by the same matrix in differently wrapped checkpoints of one architecture."""
        return self.module if self.layer is None else f"layers.{self.layer}.{self.module}"


def _vision_root(stem: str) -> int | None:
    """Index of the first dotted part naming a vision tower, if any."""
    parts = stem.split(".")
    return next((i for i, part in enumerate(parts) if any(marker in part for marker in VISION_MARKERS)), None)


def parse_parameter_name(name: str) -> ParameterName:
    """Split a stored parameter name into module type and layer index."""
    stem = name.removesuffix(".weight")
    match = LAYER_PATTERN.match(stem)
    if match:
        prefix, layer, module = match["prefix"] or "", int(match["layer"]), match["module"]
    else:
        prefix, layer, module = stem, None, stem
    root = _vision_root(prefix)
    if root is not None:
        inside = module if match else ".".join(stem.split(".")[root + 1 :])
        return ParameterName(module=f"visual.{inside}", layer=layer)
    if not match:
        module = next((stem[len(p) :] for p in WRAPPER_PREFIXES if stem.startswith(p)), stem)
    return ParameterName(module=module, layer=layer)


@dataclass(frozen=True)
class StoredTensor:
    """One tensor of a checkpoint as stored: full name, shape, dtype and the file holding it."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    file: str


def _checkpoint_files(path: str) -> tuple[str, ...] | None:
    """The safetensors files of a checkpoint folder or file, or None when `path` is not one."""
    if path.endswith(".safetensors") and isfile(path):
        return (path,)
    index = join(path, INDEX_FILE)
    if isfile(index):
        try:
            weight_map = json.loads(read_bytes(index))["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UserError(f"{index} is not a safetensors index ({error})") from error
        files = tuple(join(path, name) for name in sorted(set(weight_map.values())))
        missing = [f for f in files if not isfile(f)]
        if missing:
            raise UserError(f"{index} names {len(missing)} missing shard(s), first {missing[0]}")
        return files
    single = join(path, SINGLE_FILE)
    return (single,) if isfile(single) else None


def run_iterations(path: str) -> list[str]:
    """The `iter_*` checkpoint folders of a RUN folder or of its `checkpoints/` folder, in step order."""
    folder = join(path, "checkpoints") if isdir(path, "checkpoints") else path
    steps = sorted(
        (int(match[1]), entry)
        for entry in listdir(folder)
        if (match := ITERATION_DIR.match(entry)) and isdir(folder, entry)
    )
    return [join(folder, entry) for _, entry in steps]


def _unique_labels(paths: list[str]) -> list[str]:
    """The shortest trailing path parts that tell the paths apart (`iter_0002000`, `runA/model`)."""
    parts = [_normalized(p).removesuffix(".safetensors").split("/") for p in paths]
    for depth in range(1, max(map(len, parts), default=1) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return ["/".join(p) for p in parts]


def _run_of(path: str) -> str | None:
    """The RUN folder of a trainer checkpoint `RUN/checkpoints/iter_N`, else None."""
    normalized = _normalized(path)
    folder = parent(normalized)
    if ITERATION_DIR.match(os.path.basename(normalized)) and os.path.basename(folder) == "checkpoints":
        return parent(folder)
    return None


def _normalized(path: str) -> str:
    """One spelling per location: local paths absolute and normalized, URLs without a trailing slash."""
    return path.rstrip("/") if is_remote(path) else os.path.normpath(absolute(path))


def resolve_checkpoints(paths: list[str]) -> list[Checkpoint]:
    """Checkpoints named on the command line, RUN folders expanded to their iterations, in order."""
    found: list[tuple[str, tuple[str, ...]]] = []
    for path in paths:
        if not exists(path):
            raise UserError(f"checkpoint {path} does not exist")
        files = _checkpoint_files(path)
        if files is not None:
            found.append((path, files))
            continue
        iterations = run_iterations(path) if isdir(path) else []
        if not iterations:
            raise UserError(
                f"{path} holds no {SINGLE_FILE}, no {INDEX_FILE} and no checkpoints/iter_* folders"
            )
        for iteration in iterations:
            iteration_files = _checkpoint_files(iteration)
            if iteration_files is None:
                raise UserError(f"checkpoint {iteration} has no {SINGLE_FILE}")
            found.append((iteration, iteration_files))
    runs = [_run_of(path) for path, _ in found]
    distinct_runs = sorted({run for run in runs if run is not None})
    run_names = dict(zip(distinct_runs, _unique_labels(distinct_runs)))
    standalone = [path for (path, _), run in zip(found, runs) if run is None]
    standalone_labels = dict(zip(standalone, _unique_labels(standalone)))
    checkpoints = []
    for (path, files), run in zip(found, runs):
        if run is None:
            checkpoints.append(Checkpoint(label=standalone_labels[path], path=path, files=files))
            continue
        name = os.path.basename(_normalized(path))
        label = name if len(distinct_runs) == 1 else f"{run_names[run]}/{name}"
        step = int(ITERATION_DIR.match(name)[1])
        checkpoints.append(Checkpoint(label=label, path=path, files=files, series=run_names[run], step=step))
    seen: set[str] = set()
    for checkpoint in checkpoints:
        if checkpoint.label in seen:
            raise UserError(f"two checkpoints would both be labelled {checkpoint.label}; name each checkpoint once")
        seen.add(checkpoint.label)
    return checkpoints


def list_tensors(checkpoint: Checkpoint) -> list[StoredTensor]:
    """Every tensor of a checkpoint with its shape and dtype, read from the safetensors headers only."""
    from safetensors import safe_open

    tensors = []
    for file in checkpoint.files:
        try:
            with safe_open(local_file(file), framework="pt") as handle:
                for name in handle.keys():
                    view = handle.get_slice(name)
                    tensors.append(StoredTensor(name, tuple(view.get_shape()), str(view.get_dtype()), file))
        except Exception as error:  # safetensors raises its own error types for unreadable headers
            raise UserError(f"cannot read safetensors file {file}: {error}") from error
    return tensors


class TensorReader:
    """Keeps one open handle per safetensors file and hands out tensors as float64 torch tensors."""

    def __init__(self) -> None:
        self._handles: dict[str, object] = {}

    def load(self, tensor: StoredTensor):
        """The stored tensor converted to float64, whatever its stored dtype (bf16, fp16, fp32)."""
        import torch
        from safetensors import safe_open

        handle = self._handles.get(tensor.file)
        if handle is None:
            handle = self._handles[tensor.file] = safe_open(local_file(tensor.file), framework="pt")
        return handle.get_tensor(tensor.name).to(torch.float64)

"""Held-out loss of checkpoints: token-weighted, over the whole holdout and per slice.

A model that saw a narrow corpus can match a broad one on an average loss while losing on
what the narrow corpus left out; the paper (section 7.3) asks for validation that shows
coverage, so the loss is also reported per slice: the document's natural language
(`curate.curation.detect`), its code language (`curate.curation.codelang`, "none" for prose) and a
metadata field the user names (`meta.source`: column `meta`, key `source`).

Each held-out document is scored on its own, after an end-of-document token (as it follows
one in training), in windows of `seq_length` predicted tokens; every document token is
predicted exactly once. A slice's loss is the sum of its tokens' losses over its token
count, so the overall loss is the token-weighted mean of the slices' losses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from curate.curation.codelang import detect_code_language
from curate.curation.detect import detect_language
from curate.curation.errors import UserError
from curate.curation.manifest import load_manifest
from curate.curation.shards import read_shard
from curate.curation.storage import join, local_file
from curate.trainer.checkpoint import MODEL_FILE, read_state
from curate.trainer.config import TrainConfig
from curate.trainer.model import GPT

MISSING = "(missing)"
WINDOWS_PER_BATCH = 16


@dataclass(frozen=True)
class HeldOut:
    """The holdout's documents as token arrays (each after an EOD token) and each one's slice per kind."""

    documents: list[np.ndarray]
    slices: list[dict[str, str]]


def _field_value(row: dict, path: str) -> str:
    value: object = row
    for part in path.split("."):
        if not isinstance(value, dict) or value.get(part) is None:
            return MISSING
        value = value[part]
    return str(value)


def load_holdout(build: str, slice_field: str | None = None) -> HeldOut:
    """Read a build's holdout shards; fails with one line when the build has none or lacks the field."""
    manifest = load_manifest(build)
    holdout = manifest.get("holdout")
    if not holdout or not holdout.get("rows"):
        raise UserError(f"{build} has no held-out documents: build it with --holdout FRACTION")
    eod = int(manifest["tokenizer"]["eod_token_id"])
    documents, slices = [], []
    for shard in holdout["shards"]:
        table = read_shard(build, shard["path"])
        if slice_field and slice_field.split(".")[0] not in table.column_names:
            raise UserError(f"the holdout of {build} has no column {slice_field.split('.')[0]!r} for slice {slice_field!r}")
        for row in table.to_pylist():
            documents.append(np.asarray([eod, *row["input_ids"]], dtype=np.int64))
            kinds = {"natural_language": detect_language(row["text"]),
                     "code_language": detect_code_language(row["text"]) or "none"}
            if slice_field:
                kinds[slice_field] = _field_value(row, slice_field)
            slices.append(kinds)
    return HeldOut(documents, slices)


def load_model(checkpoint: str | Path, device: torch.device) -> GPT:
    """The checkpoint's model in eval mode, built from the configuration it was trained with."""
    values = dict(read_state(checkpoint)["config"])
    values["save_fractions"] = tuple(values["save_fractions"])
    model = GPT(TrainConfig(**values))
    model.load_state_dict(load_file(local_file(join(checkpoint, MODEL_FILE))))
    return model.to(device).eval()


def _windows(document: np.ndarray, seq_length: int) -> list[np.ndarray]:
    """Pieces of `seq_length + 1` tokens overlapping by one: every token after the first is a target once."""
    return [document[start : start + seq_length + 1] for start in range(0, len(document) - 1, seq_length)]


@torch.no_grad()
def document_losses(model: GPT, held_out: HeldOut, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Summed loss of each document's tokens (float64) and how many of its tokens were scored, in holdout
    order: the counts come from the targets themselves, so a window that missed a token would show."""
    seq_length = model.config.seq_length
    pieces = [(index, window) for index, document in enumerate(held_out.documents) for window in _windows(document, seq_length)]
    sums = np.zeros(len(held_out.documents), dtype=np.float64)
    counts = np.zeros(len(held_out.documents), dtype=np.int64)
    for first in range(0, len(pieces), WINDOWS_PER_BATCH):
        batch = pieces[first : first + WINDOWS_PER_BATCH]
        width = max(len(window) for _, window in batch)
        tokens = torch.zeros((len(batch), width), dtype=torch.long)
        targets = torch.full((len(batch), width - 1), -100, dtype=torch.long)
        for row, (_, window) in enumerate(batch):
            tokens[row, : len(window)] = torch.from_numpy(window)
            targets[row, : len(window) - 1] = torch.from_numpy(window[1:])
        logits = model(tokens[:, :-1].to(device)).float()
        losses = F.cross_entropy(logits.flatten(0, 1), targets.to(device).flatten(), reduction="none")
        per_row = losses.view(len(batch), -1).sum(dim=1).double().cpu().numpy()
        scored = (targets != -100).sum(dim=1).numpy()
        for (index, _), value, count in zip(batch, per_row, scored):
            sums[index] += value
            counts[index] += count
    return sums, counts


def _aggregate(losses: np.ndarray, counts: np.ndarray) -> dict:
    tokens = int(counts.sum())
    return {"loss": float(losses.sum() / tokens) if tokens else None, "tokens": tokens}


def evaluate_checkpoint(checkpoint: str | Path, held_out: HeldOut, device: torch.device | None = None) -> dict:
    """Token-weighted held-out loss of one checkpoint, overall and per slice of every kind."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    losses, counts = document_losses(load_model(checkpoint, device), held_out, device)
    slices: dict[str, dict] = {}
    for kind in held_out.slices[0] if held_out.slices else ():
        names = np.asarray([document_slices[kind] for document_slices in held_out.slices])
        slices[kind] = {name: _aggregate(losses[names == name], counts[names == name]) for name in sorted(set(names))}
    state = read_state(checkpoint)
    return {"iteration": state["iteration"], "consumed_samples": state["consumed_samples"],
            "overall": _aggregate(losses, counts), "slices": slices}

"""Checkpoints: safetensors for tensors, JSON for the rest, no pickle anywhere.

`RUN/checkpoints/iter_0000040/` holds `model.safetensors` (Hugging Face Llama names),
`optimizer.safetensors` (AdamW moments and step per parameter name) and `state.json`
(iteration, consumed samples, learning rate, RNG states, data fingerprint and the
resolved configuration). A checkpoint is written to a temporary folder and renamed, and
`RUN/checkpoints/latest` is rewritten last, so a crash never leaves a half checkpoint
named as the newest.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import uuid
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from curate.curation.errors import UserError
from curate.curation.manifest import canonical_json
from curate.curation.storage import absolute, exists, join, parent, read_bytes

CHECKPOINTS = "checkpoints"
LATEST = "latest"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"


def checkpoint_name(iteration: int) -> str:
    return f"iter_{iteration:07d}"


def model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters by Llama name, contiguous and on the CPU."""
    return {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}


def optimizer_tensors(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    tensors = {}
    for name, parameter in model.named_parameters():
        for key, value in optimizer.state.get(parameter, {}).items():
            tensors[f"{name}/{key}"] = value.detach().cpu().contiguous()
    return tensors


def rng_state() -> dict:
    state = {"torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()}
    if torch.cuda.is_available():
        state["cuda"] = base64.b64encode(torch.cuda.get_rng_state().numpy().tobytes()).decode()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(state["torch"])), dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(state["cuda"])), dtype=torch.uint8))


def save_checkpoint(
    run_dir: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict
) -> Path:
    """Write `RUN/checkpoints/iter_N/` atomically, then point `latest` at it."""
    root = Path(run_dir) / CHECKPOINTS
    final = root / checkpoint_name(state["iteration"])
    temporary = root / f".{final.name}.tmp-{uuid.uuid4().hex}"
    temporary.mkdir(parents=True)
    save_file(model_tensors(model), temporary / MODEL_FILE, metadata={"format": "pt"})
    save_file(optimizer_tensors(model, optimizer), temporary / OPTIMIZER_FILE)
    (temporary / STATE_FILE).write_text(canonical_json({**state, "rng": rng_state()}))
    if final.exists():
        shutil.rmtree(final)
    os.replace(temporary, final)
    latest_temporary = root / f".{LATEST}.tmp-{uuid.uuid4().hex}"
    latest_temporary.write_text(final.name + "\n")
    os.replace(latest_temporary, root / LATEST)
    return final


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a local run folder (the training loop's copy), or None before the first one."""
    newest = newest_checkpoint(run_dir)
    return None if newest is None else Path(newest)


def resolve_checkpoint(path: str | Path) -> str:
    """A checkpoint folder (local or URL) from itself, its run folder or the run's checkpoints folder (the newest)."""
    path = absolute(os.fspath(path))
    if exists(path, STATE_FILE):
        return path
    latest = newest_checkpoint(parent(path) if exists(path, LATEST) else path)
    if latest is None:
        raise UserError(f"{path} is neither a checkpoint folder nor a run with checkpoints")
    return latest


def newest_checkpoint(run: str | Path) -> str | None:
    """The newest complete checkpoint of a run folder (local or URL), or None before the first one."""
    pointer = join(CHECKPOINTS, LATEST)
    if not exists(run, pointer):
        return None
    return join(run, CHECKPOINTS, read_bytes(run, pointer).decode().strip())


def read_state(checkpoint: str | Path) -> dict:
    """The state.json of a checkpoint folder, local or on object storage."""
    return json.loads(read_bytes(checkpoint, STATE_FILE))


def load_checkpoint(checkpoint: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore model, optimizer and RNG in place; returns the checkpoint's state."""
    device = next(model.parameters()).device
    model.load_state_dict(load_file(checkpoint / MODEL_FILE, device=str(device)))
    moments = load_file(checkpoint / OPTIMIZER_FILE)
    for name, parameter in model.named_parameters():
        if f"{name}/step" in moments:
            optimizer.state[parameter] = {
                "step": moments[f"{name}/step"],
                "exp_avg": moments[f"{name}/exp_avg"].to(device),
                "exp_avg_sq": moments[f"{name}/exp_avg_sq"].to(device),
            }
    state = read_state(checkpoint)
    restore_rng_state(state["rng"])
    return state

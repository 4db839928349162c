"""The training loop: one explicit step, the same on a laptop CPU, torchrun or Ray Train.

`train()` runs in every worker process. With several workers (torchrun's environment or
a process group Ray Train set up) the model is wrapped in DDP and each worker takes its
slice of every global batch; only rank 0 writes the run folder:

    RUN/config.json      the resolved configuration (plus the build it read)
    RUN/log.jsonl        one object per step
    RUN/checkpoints/     iter_NNNNNNN/ folders and `latest` (see trainer/checkpoint.py)
    RUN/tokenizer.json   the build's tokenizer, for exports

Loss is token-weighted over the global batch: every micro batch adds its summed token
losses divided by the global batch's token count, so accumulation and DDP averaging give
exactly the mean over all tokens of the global batch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from curate.curation.errors import UserError
from curate.curation.manifest import canonical_json
from curate.curation.storage import read_bytes
from curate.trainer.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    newest_checkpoint,
    read_state,
    save_checkpoint,
)
from curate.trainer.config import TrainConfig
from curate.trainer.data import PackedPhases, data_fingerprint, load_packed_phases
from curate.trainer.model import GPT, megatron_flops_per_sample
from curate.trainer.schedule import learning_rate
from curate.trainer.storage import RunStorage

LOG_FILE = "log.jsonl"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
# Fields that steer the run but not its result: they may change on --resume.
RUN_CONTROL_FIELDS = ("save_interval", "exit_interval")
# Dense bf16 peak FLOP/s per device, for MFU; devices not listed log no MFU.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}


@dataclass(frozen=True)
class StepResult:
    loss: float
    grad_norm: float


@dataclass(frozen=True)
class TrainResult:
    iteration: int
    consumed_samples: int
    last_loss: float
    checkpoint: str
    epochs: dict[str, float]


@dataclass(frozen=True)
class Workers:
    """This process's place among the training workers."""

    rank: int
    world_size: int
    device: torch.device
    started_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def join_workers(device: torch.device | None = None) -> Workers:
    """Use the process group Ray Train made, start torchrun's, or run alone."""
    started = not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    if started:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if device is None:
        cuda = torch.cuda.is_available()
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    if dist.is_initialized():
        return Workers(dist.get_rank(), dist.get_world_size(), device, started)
    return Workers(0, 1, device)


def build_optimizer(model: GPT, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with decoupled weight decay on matrices only (not norms or other 1-D parameters)."""
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": matrices, "weight_decay": config.weight_decay}, {"params": vectors, "weight_decay": 0.0}],
        lr=config.lr,
        betas=(config.adam_beta1, config.adam_beta2),
        eps=config.adam_eps,
        fused=next(model.parameters()).is_cuda,
    )


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    tokens: torch.Tensor,
    micro_batch_size: int,
    global_tokens: int,
    lr: float,
    clip_grad: float,
    autocast_dtype: torch.dtype | None,
) -> StepResult:
    """One optimizer step over this worker's rows of a global batch, in micro batches.

    `tokens` is (rows, seq_length + 1); `global_tokens` counts the predicted tokens of the
    whole global batch over all workers, which makes the loss token-weighted.
    """
    optimizer.zero_grad(set_to_none=True)
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    micro_batches = tokens.split(micro_batch_size)
    loss_sum = torch.zeros((), device=tokens.device)
    for index, micro_batch in enumerate(micro_batches):
        inputs, targets = micro_batch[:, :-1], micro_batch[:, 1:]
        last = index == len(micro_batches) - 1
        sync = model.no_sync() if isinstance(model, DistributedDataParallel) and not last else nullcontext()
        with sync, torch.autocast(tokens.device.type, dtype=autocast_dtype or torch.float32,
                                  enabled=autocast_dtype is not None):
            logits = model(inputs)
            summed = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="sum")
        (summed * (world_size / global_tokens)).backward()
        loss_sum += summed.detach()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    if dist.is_initialized():
        dist.all_reduce(loss_sum)
    return StepResult(loss=(loss_sum / global_tokens).item(), grad_norm=grad_norm.item())


def refuse_overwrite(run: str | Path, resume: bool) -> None:
    """A run folder with checkpoints is only continued (`--resume`), never trained over."""
    if not resume and newest_checkpoint(run) is not None:
        raise UserError(f"{run} already has checkpoints; pass --resume or choose a new --output")


def prepare_run(output: Path, config: TrainConfig, resume: bool) -> Path | None:
    """Check the run folder against `--resume`; returns the checkpoint to continue from."""
    refuse_overwrite(output, resume)
    checkpoint = latest_checkpoint(output)
    if checkpoint is None:
        return None
    saved = read_state(checkpoint)["config"]
    current = dataclasses.asdict(config)
    changed = sorted(
        key for key in current if key not in RUN_CONTROL_FIELDS and _plain(saved.get(key)) != _plain(current[key])
    )
    if changed:
        raise UserError(f"--resume with a different configuration than the checkpoint's: {', '.join(changed)}")
    return checkpoint


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def write_run_files(output: Path, config: TrainConfig, data: str, resume_iteration: int) -> None:
    """config.json, the tokenizer copy, and the log cut back to the resumed iteration."""
    output.mkdir(parents=True, exist_ok=True)
    (output / CONFIG_FILE).write_text(canonical_json({**dataclasses.asdict(config), "data": data}))
    (output / TOKENIZER_FILE).write_bytes(read_bytes(data, TOKENIZER_FILE))
    log = output / LOG_FILE
    kept = [line for line in _log_lines(log) if json.loads(line)["iteration"] <= resume_iteration]
    log.write_text("".join(line + "\n" for line in kept))


def _log_lines(log: Path) -> list[str]:
    """The log's complete lines; a line torn by a kill mid-write is dropped."""
    if not log.exists():
        return []
    lines = log.read_text().split("\n")
    return [line for line in lines[:-1] if line]


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)


def train(
    config: TrainConfig,
    data: str,
    output: str | Path,
    resume: bool = False,
    device: torch.device | None = None,
    echo: Callable[[str], None] = print,
) -> TrainResult:
    """Train on a build's phases; checkpoints at milestones, every save interval and the end."""
    workers = join_workers(device)
    storage = RunStorage(output)
    storage.pull()
    output = storage.local
    if config.global_batch_size % (config.micro_batch_size * workers.world_size):
        raise UserError("--global-batch-size must be a multiple of --micro-batch-size x workers")
    samples_trained = config.train_iters * config.global_batch_size
    packed, manifest = load_packed_phases(data, config.seq_length, samples_trained, config.seed)
    tokenizer_vocab = int(manifest["tokenizer"]["vocab_size"])
    if config.vocab_size == 0:
        config = dataclasses.replace(config, vocab_size=config.padded_vocab_size(tokenizer_vocab))
    if config.vocab_size < tokenizer_vocab:
        raise UserError(f"--vocab-size {config.vocab_size} is smaller than the build's tokenizer ({tokenizer_vocab})")
    fingerprint = data_fingerprint(manifest, config.seed, config.seq_length)
    checkpoint = prepare_run(output, config, resume)

    torch.manual_seed(config.seed)
    model = GPT(config).to(workers.device)
    optimizer = build_optimizer(model, config)
    start = 0
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, model, optimizer)
        if state["data_fingerprint"] != fingerprint:
            raise UserError(f"--resume with different data than {checkpoint} was trained on")
        start = state["iteration"]
    if workers.is_main:
        write_run_files(output, config, data, start)
        epochs = ", ".join(f"{name} {count:.2f} epochs" for name, count in packed.epochs().items())
        echo(f"training {config.train_iters} iterations from {start}: {epochs}")
        if config.bf16 and workers.device.type != "cuda":
            echo("note: --bf16 applies on GPUs only; this CPU run computes in fp32")
    wrapped = DistributedDataParallel(model) if workers.world_size > 1 else model
    autocast_dtype = torch.bfloat16 if config.bf16 and workers.device.type == "cuda" else None

    step_flops = megatron_flops_per_sample(config) * config.global_batch_size
    peak = peak_flops(workers.device)
    milestones = set(config.checkpoint_iterations())
    rows = config.global_batch_size // workers.world_size
    for iteration in range(start + 1, config.train_iters + 1):
        first = (iteration - 1) * config.global_batch_size
        tokens = worker_rows(packed, first, rows, workers.rank).to(workers.device, non_blocking=True)
        consumed = iteration * config.global_batch_size
        lr = learning_rate(config, consumed)
        began = time.perf_counter()
        result = train_step(
            wrapped, optimizer, tokens, config.micro_batch_size,
            config.global_batch_size * config.seq_length, lr, config.clip_grad, autocast_dtype,
        )
        seconds = time.perf_counter() - began
        record = {
            "iteration": iteration,
            "consumed_samples": consumed,
            "phase": packed.phase_name(first),
            "loss": result.loss,
            "lr": lr,
            "grad_norm": result.grad_norm,
            "tokens_per_s": config.global_batch_size * config.seq_length / seconds,
            "mfu": step_flops / seconds / (peak * workers.world_size) if peak else None,
        }
        stop = config.exit_interval > 0 and iteration % config.exit_interval == 0
        due = iteration in milestones or stop or (config.save_interval and iteration % config.save_interval == 0)
        if workers.is_main:
            log_step(output, record, config.train_iters, echo)
            if due:
                state = {"iteration": iteration, "consumed_samples": consumed, "lr": lr,
                         "data_fingerprint": fingerprint, "config": dataclasses.asdict(config),
                         "epochs": packed.epochs()}
                storage.push(save_checkpoint(output, model, optimizer, state))
        if stop:
            break
    if dist.is_initialized():
        dist.barrier()
    if workers.started_group:
        dist.destroy_process_group()
    if workers.is_main:
        storage.push()
    else:
        storage.pull()  # the main worker pushed the last checkpoint before the barrier
    return run_result(storage)


def run_result(storage: RunStorage) -> TrainResult:
    """What a run reached, read back from its newest checkpoint and its log."""
    checkpoint = latest_checkpoint(storage.local)
    if checkpoint is None:
        raise UserError(f"{storage.location(storage.local)} has no checkpoint")
    state = read_state(checkpoint)
    losses = {entry["iteration"]: entry["loss"] for entry in map(json.loads, _log_lines(storage.local / LOG_FILE))}
    return TrainResult(
        iteration=state["iteration"],
        consumed_samples=state["consumed_samples"],
        last_loss=losses.get(state["iteration"], float("nan")),
        checkpoint=storage.location(checkpoint),
        epochs=state["epochs"],
    )


def worker_rows(packed: PackedPhases, first_sample: int, rows: int, rank: int) -> torch.Tensor:
    """This worker's contiguous slice of the global batch starting at `first_sample`."""
    start = first_sample + rank * rows
    return torch.from_numpy(packed.batch(range(start, start + rows)))


def log_step(output: Path, record: dict, total: int, echo: Callable[[str], None]) -> None:
    with open(output / LOG_FILE, "a", encoding="utf-8") as log:
        log.write(json.dumps(record, sort_keys=True) + "\n")
    mfu = f"{100 * record['mfu']:.1f}%" if record["mfu"] is not None else "-"
    echo(
        f"iter {record['iteration']}/{total} | {record['phase']} | loss {record['loss']:.4f} | "
        f"lr {record['lr']:.3e} | grad norm {record['grad_norm']:.3f} | "
        f"{record['tokens_per_s']:,.0f} tok/s | mfu {mfu}"
    )

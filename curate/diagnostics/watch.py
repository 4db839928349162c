"""A training run watched while it trains: one line of diagnostics per checkpoint in `RUN/diagnostics.jsonl`.

`curate train` runs a `Watcher` actor beside the training loop (`watching`). Every few seconds it
looks for checkpoints it has not diagnosed yet and gives each one line, computed by the code
`curate diagnose` runs (`analyse_checkpoint`, `checkpoint_summary`), so a line's figures equal
that checkpoint's entry in `curate diagnose RUN`'s summary.json: the share of fitted matrices with
alpha in [2, 6], the mean alpha over all matrices, over the attention and over the MLP matrices
and per module, and the mean effective rank.

A checkpoint counts once `checkpoints/latest` names it or a later one: a folder past it may still be
uploading. A checkpoint with a line is not analysed again, so a resumed run only adds lines. The
file is rewritten whole, atomically, because object storage cannot append; lines only ever come in
step order, so a reader follows the file by counting its lines.

The end of a run: the line of the run's last iteration (its configuration's train_samples /
global_batch_size) carries `"final": true`, and `curate diagnose RUN --watch` ends after it. A run
that failed or stopped early (`--exit-interval`) has no final line until it is resumed to its end;
when its training ended by an error (or Ctrl-C), `RUN/diagnostics.stopped` says which, after the
watcher's last pass, and `--watch` ends there too. A run that resumes removes it. A training killed
outright (SIGKILL, a lost node) writes nothing more; Ray ends its watcher with it, and the watcher's
heartbeat, `RUN/diagnostics.alive`, a count it rewrites every few seconds while the run trains (and
removes when the run ends), stops changing: `--watch` ends once it has stood still for a minute.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import ray

from curate.curation.errors import UserError, error_line
from curate.curation.manifest import read_jsonl
from curate.curation.storage import (
    absolute,
    exists,
    join,
    read_bytes,
    read_bytes_if_present,
    remove_file,
    write_text_atomic,
)
from curate.diagnostics.analysis import MatrixLimits, analyse_checkpoint
from curate.diagnostics.checkpoints import (
    ITERATION_DIR,
    Checkpoint,
    resolve_checkpoints,
    run_iterations,
)
from curate.diagnostics.diagnose import analyse, write_outputs
from curate.diagnostics.summary import checkpoint_summary, group_statistics
from curate.trainer.checkpoint import newest_checkpoint, read_state

WATCH_FILE = "diagnostics.jsonl"
STOPPED_FILE = "diagnostics.stopped"  # the error that ended the training, when one did
HEARTBEAT_FILE = "diagnostics.alive"  # a count the watcher rewrites while the training lives
WATCH_INTERVAL_S = 5.0
FOLLOW_INTERVAL_S = 1.0
HEARTBEAT_SILENCE_S = 60.0  # twelve missed beats: a slow object store is not a dead run
# A module's type is its first dotted part: Llama's `self_attn.q_proj`, `mlp.up_proj`, BERT's `attention.self.query`.
MODULE_TYPES = {"attention": ("self_attn", "attention", "attn"), "mlp": ("mlp", "feed_forward")}


def module_type(module: str) -> str | None:
    """`attention`, `mlp` or None (embeddings, the output layer, the vision tower's `visual.*`)."""
    first = module.split(".", 1)[0]
    return next((kind for kind, parts in MODULE_TYPES.items() if first in parts), None)


def checkpoint_line(checkpoint: Checkpoint, records: list[dict] | None = None) -> dict:
    """The watch file's line of one trainer checkpoint: `curate diagnose`'s figures without a base,
    from its matrix records (analysed here when not given)."""
    if records is None:
        records, _ = analyse_checkpoint(checkpoint, MatrixLimits())
    figures = checkpoint_summary(checkpoint.label, records, with_base=False)
    kinds = {kind: group_statistics([r for r in records if module_type(r["module"]) == kind]) for kind in MODULE_TYPES}
    config = read_state(checkpoint.path)["config"]
    return {
        "checkpoint": checkpoint.label,
        "step": checkpoint.step,
        "final": checkpoint.step == config["train_samples"] // config["global_batch_size"],
        "matrices": figures["matrices"],
        "fitted": figures["fitted"],
        "share_alpha_in_range": figures["share_alpha_in_range"],
        "alpha_mean": figures["alpha"]["mean"],
        **{f"{kind}_alpha_mean": statistics["alpha"]["mean"] for kind, statistics in kinds.items()},
        "effective_rank_mean": figures.get("effective_rank_mean"),
        "module_alpha_mean": {module: group["alpha"]["mean"] for module, group in figures["modules"].items()},
    }


@dataclass(frozen=True)
class AgainstBase:
    """Also diagnose each checkpoint against `base` into `folder/<iter_*>/` (what `curate diagnose CHECKPOINT
    --base BASE -o ...` writes), from the same analysis as its line: `curate experiment` reuses these."""

    base: str
    folder: str


def _line(checkpoint: Checkpoint, against: AgainstBase | None) -> dict:
    if against is None:
        return checkpoint_line(checkpoint)
    records, summary = analyse([checkpoint.path], against.base)
    write_outputs(join(against.folder, os.path.basename(checkpoint.path)), records, summary)
    return checkpoint_line(checkpoint, records)


def complete_checkpoints(run: str) -> list[Checkpoint]:
    """The run's checkpoints up to the one `checkpoints/latest` names, in step order."""
    newest = newest_checkpoint(run)
    if newest is None:
        return []
    last = _step(newest)
    return resolve_checkpoints([folder for folder in run_iterations(run) if _step(folder) <= last])


def _step(iteration: str) -> int:
    return int(ITERATION_DIR.match(os.path.basename(iteration))[1])


def read_watch_file(run: str) -> list[dict]:
    """The lines of `RUN/diagnostics.jsonl`; none before the first checkpoint was diagnosed."""
    if not exists(run, WATCH_FILE):
        return []
    return read_jsonl(run, WATCH_FILE)


def update_watch_file(run: str, against: AgainstBase | None = None) -> list[dict]:
    """Bring `RUN/diagnostics.jsonl` up to date with the run's complete checkpoints; returns its lines."""
    written = read_watch_file(run)
    known = {line["checkpoint"]: line for line in written}
    lines = [known.get(checkpoint.label) or _line(checkpoint, against) for checkpoint in complete_checkpoints(run)]
    if lines != written:
        text = "".join(json.dumps(line, sort_keys=True, allow_nan=False) + "\n" for line in lines)
        write_text_atomic(run, WATCH_FILE, text)
    return lines


# No CPU reserved: the watcher must never keep a training worker (which asks for its CPUs) from being
# scheduled; it diagnoses on one thread (Ray gives an actor without CPUs OMP_NUM_THREADS=1), on the time
# training leaves. Two threads: `watch` loops while `stop` is called.
@ray.remote(num_cpus=0, max_concurrency=2)
class Watcher:
    """Keeps one run's watch file up to date until stopped."""

    def __init__(self, run: str, against: AgainstBase | None) -> None:
        self.run = run
        self.against = against
        self.stopped = threading.Event()

    def watch(self, interval: float) -> None:
        """Update the watch file every `interval` seconds until `stop()`, then once more, so every
        checkpoint has its line; beat on a thread of its own until that last pass is done (a pass
        over a large checkpoint may take minutes) and no beat is in flight when it returns."""
        passes_done = threading.Event()
        beating = threading.Thread(target=self._beat, args=(interval, passes_done), daemon=True)
        beating.start()
        try:
            while not self.stopped.is_set():
                try:
                    update_watch_file(self.run, self.against)
                except Exception:  # a storage blip while training goes on: retried; the last pass raises
                    pass
                self.stopped.wait(interval)
            update_watch_file(self.run, self.against)
        finally:
            passes_done.set()
            beating.join()

    def _beat(self, interval: float, passes_done: threading.Event) -> None:
        beats = 0
        while not passes_done.is_set():
            try:
                write_text_atomic(self.run, HEARTBEAT_FILE, f"{beats}\n")
            except Exception:  # a storage blip: the next beat tries again
                pass
            beats += 1
            passes_done.wait(interval)

    def stop(self) -> None:
        self.stopped.set()


@contextmanager
def watching(run: str, against: AgainstBase | None = None, interval: float = WATCH_INTERVAL_S) -> Iterator[None]:
    """Diagnose `run`'s checkpoints while the block trains it (Ray must be initialised). On leaving
    the block, even by an error, the watcher makes its last pass and ends: no actor outlives it. Its
    own error is raised only when the block succeeded, never over the block's; the block's error is
    then written to STOPPED_FILE, which entering the block removes."""
    remove_file(run, STOPPED_FILE)
    watcher = Watcher.remote(absolute(run), against)
    passes = watcher.watch.remote(interval)
    stopped_by = None
    try:
        yield
    except BaseException as error:
        stopped_by = error_line(error)
        raise
    finally:
        try:
            watcher.stop.remote()
            ray.get(passes)
        except Exception:
            if stopped_by is None:
                raise
        finally:
            ray.kill(watcher)
            try:
                if stopped_by is not None:
                    write_text_atomic(run, STOPPED_FILE, stopped_by + "\n")
                remove_file(run, HEARTBEAT_FILE)
            except Exception:  # the training's error is the one to raise; without the files, --watch waits
                pass


def follow(run: str, interval: float = FOLLOW_INTERVAL_S, silence: float = HEARTBEAT_SILENCE_S) -> Iterator[dict]:
    """The watch file's lines as they appear, up to the final one (the run's last iteration); a
    UserError after the last line when the training stopped by an error first, or when its heartbeat
    stood still for `silence` seconds of this process's clock (the training was killed)."""
    seen, beat, beat_changed = 0, None, time.monotonic()
    while True:
        stopped = exists(run, STOPPED_FILE)  # written after the watcher's last pass: read the lines after it
        lines = read_watch_file(run)
        for line in lines[seen:]:
            yield line
            if line["final"]:
                return
        seen = max(seen, len(lines))
        if stopped:
            reason = read_bytes(run, STOPPED_FILE).decode("utf-8").strip()
            raise UserError(f"the run stopped before its last iteration ({reason}); resume it with `curate train --resume`")
        latest = read_bytes_if_present(run, HEARTBEAT_FILE)
        if latest != beat:
            beat, beat_changed = latest, time.monotonic()
        elif beat is not None and time.monotonic() - beat_changed > silence:
            raise UserError(
                f"the run's training stopped without a word ({HEARTBEAT_FILE} unchanged for {silence:.0f} s: "
                "killed, or its node lost); resume it with `curate train --resume`"
            )
        time.sleep(interval)


def describe(line: dict) -> str:
    """One readable line: `iter_0000040: alpha in [2, 6] for 85.7% of 14 fitted, mean alpha 3.21 ...`."""

    def number(value: float | None, form: str) -> str:
        return "-" if value is None else format(value, form)

    share = line["share_alpha_in_range"]
    return (
        f"{line['checkpoint']}: alpha in [2, 6] for {number(None if share is None else 100 * share, '.1f')}% "
        f"of {line['fitted']} fitted, mean alpha {number(line['alpha_mean'], '.3f')} "
        f"(attention {number(line['attention_alpha_mean'], '.3f')}, MLP {number(line['mlp_alpha_mean'], '.3f')}), "
        f"mean effective rank {number(line['effective_rank_mean'], '.2f')}"
    )

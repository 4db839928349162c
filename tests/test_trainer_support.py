"""Small real builds for the trainer's tests (no test functions here).

A build is what `curate build` writes: Arrow shards with `input_ids` per phase, a
tokenizer and a manifest. These are made directly with the shared writers, from Python
standard-library sources, so the trainer's tests do not depend on the build pipeline.
"""

from __future__ import annotations

import sysconfig
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import torch

from curate.curation.manifest import write_manifest
from curate.curation.shards import shard_name, write_shard
from curate.curation.tokenizer import encode_texts, eod_token_id, save_tokenizer, train_bpe

STDLIB_MODULES = (
    "abc", "bisect", "calendar", "colorsys", "copy", "csv", "dataclasses", "enum", "fnmatch",
    "fractions", "functools", "glob", "heapq", "keyword", "numbers", "operator", "queue",
    "random", "shlex", "statistics", "string", "textwrap", "tokenize", "types", "uuid",
)


def stdlib_documents(limit: int = len(STDLIB_MODULES)) -> list[str]:
    """Real text: the first lines of a few standard-library modules, one document each."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return ["\n".join((root / f"{name}.py").read_text().splitlines()[:120]) for name in STDLIB_MODULES[:limit]]


def make_build(root: Path, documents: list[str], train_overrides: dict | None = None,
               vocab_size: int = 384, shards_per_phase: int = 2) -> Path:
    """Write a complete two-phase build of `documents` (first half phase 1) under `root`."""
    tokenizer = train_bpe(documents, vocab_size)
    save_tokenizer(tokenizer, str(root / "tokenizer.json"))
    ids = encode_texts(tokenizer, documents)
    half = (len(documents) + 1) // 2
    phases = []
    for name, start, stop in (("phase-1", 0, half), ("phase-2", half, len(documents))):
        rows = list(range(start, stop))
        chunk = -(-len(rows) // shards_per_phase)
        shards = []
        for index in range(shards_per_phase):
            part = rows[index * chunk : (index + 1) * chunk]
            table = pa.table({
                "id": pa.array([f"doc-{i}" for i in part], pa.string()),
                "text": pa.array([documents[i] for i in part], pa.string()),
                "input_ids": pa.array([ids[i] for i in part], pa.list_(pa.int32())),
            })
            shards.append(write_shard(table, str(root), f"{name}/{shard_name(index)}").to_dict())
        phases.append({"name": name, "rows": len(rows), "tokens": sum(s["tokens"] for s in shards), "shards": shards})
    write_manifest(str(root), {
        "format_version": 1,
        "regime": "A",
        "recipe": {"name": "A", "description": "test", "phase1_transform": None,
                   "train_overrides": train_overrides or {"lr_decay_style": "cosine"}},
        "phases": phases,
        "tokenizer": {"path": "tokenizer.json", "eod_token_id": eod_token_id(tokenizer),
                      "vocab_size": tokenizer.get_vocab_size()},
    })
    return root


# A model small enough for dozens of steps in seconds on two shared cores; head size 32.
TEST_MODEL = {
    "num_layers": 2, "hidden_size": 64, "ffn_hidden_size": 128, "num_attention_heads": 2,
    "num_query_groups": 1, "seq_length": 32, "global_batch_size": 8, "micro_batch_size": 4,
}


def cli_options(values: dict) -> list[str]:
    """`{"num_layers": 2}` as `["--num-layers", "2"]`."""
    options = []
    for key, value in values.items():
        options += ["--" + key.replace("_", "-"), str(value)]
    return options


def tiny_run(root: Path, overrides: dict | None = None, iterations: int = 4) -> Path:
    """Train the test model in this process for a few iterations; returns the run folder."""
    from curate.trainer.config import resolve_config
    from curate.trainer.train import train

    build = make_build(root / "build", stdlib_documents(12))
    values = {**TEST_MODEL, "train_samples": 8 * iterations, "lr_warmup_samples": 8, **(overrides or {})}
    with one_torch_thread():
        train(resolve_config("tiny", values), str(build), root / "run", echo=lambda line: None)
    return root / "run"


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Train with one thread: on shared, oversubscribed CI cores torch's spinning threads are 20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)

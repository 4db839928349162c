"""Shard tokenization per CPU second: curate's tiktoken encoder vs `tokenizers` encode_batch_fast.

A byte-level BPE is trained with curate's `train_bpe` on a sample of both corpora (as a build
trains one on its input); then both encoders run, single-threaded, 256 texts per call as
`token_id_array` calls them, on the mixed corpus and on Python sources from this venv's
site-packages (a spread of files across packages). Both produce the int32 id arrays a shard holds;
every document's ids are asserted identical. Each encoder is warmed up on the first
WARM_UP_DOCUMENTS documents first. Times are CPU seconds of this process, wall seconds beside them.

    .venv/bin/python benchmarks/bench_tokenize.py [--corpus PATH] [--code-mb 64] [--vocab-size 16384]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from curate.curation.tokenizer import Encoder, encoder, train_bpe  # noqa: E402

BATCH = 256
WARM_UP_DOCUMENTS = 500
DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "mixed.jsonl.gz"
DEFAULT_CODE = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def load_mixed(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line)["text"] for line in lines]


def load_code(root: Path, megabytes: float) -> list[str]:
    """Every k-th `.py` file under `root` in path order, k chosen to give about `megabytes`."""
    paths = sorted(root.rglob("*.py"))
    total = sum(p.stat().st_size for p in paths)
    step = max(1, round(total / (megabytes * 1e6)))
    texts = []
    for path in paths[::step]:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if text.strip():
            texts.append(text)
    return texts


def encode_all(encode, texts: list[str]) -> tuple[list[np.ndarray], float, float]:
    """Ids of every text, `BATCH` texts per call, after a warm-up; CPU and wall seconds."""
    encode(texts[:WARM_UP_DOCUMENTS])
    wall, cpu = time.perf_counter(), time.process_time()
    ids = [one for start in range(0, len(texts), BATCH) for one in encode(texts[start : start + BATCH])]
    return ids, time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--code", type=Path, default=DEFAULT_CODE, help="folder of Python sources")
    parser.add_argument("--code-mb", type=float, default=64.0, help="about this many MB of Python sources")
    parser.add_argument("--vocab-size", type=int, default=16_384)
    parser.add_argument("--train-share", type=int, default=8, help="train on every N-th document of each corpus")
    args = parser.parse_args()

    corpora = {"mixed": load_mixed(args.corpus), "code": load_code(args.code, args.code_mb)}
    started = time.perf_counter()
    tokenizer = train_bpe([t for texts in corpora.values() for t in texts[:: args.train_share]], args.vocab_size)
    print(f"trained {tokenizer.get_vocab_size():,} tokens in {time.perf_counter() - started:.1f} s")
    started = time.process_time()
    fast = encoder(tokenizer)
    assert fast.fast is not None, fast.fallback
    print(f"tiktoken encoder built in {time.process_time() - started:.2f} CPU s\n")
    hf = Encoder(tokenizer, None, "baseline")

    print("| corpus | documents | MB | tokens | encoder | CPU s | wall s | MB/s (CPU) |")
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    ratios = {}
    for name, texts in corpora.items():
        megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
        expected, hf_cpu, hf_wall = encode_all(hf.ids, texts)
        ids, cpu, wall = encode_all(fast.ids, texts)
        different = sum(not np.array_equal(a, b) for a, b in zip(ids, expected))
        assert len(ids) == len(expected) and different == 0, f"{name}: {different} of {len(texts)} documents get other ids"
        tokens = sum(len(i) for i in ids)
        for label, seconds, wall_seconds in [("tokenizers encode_batch_fast", hf_cpu, hf_wall), ("curate tiktoken", cpu, wall)]:
            print(f"| {name} | {len(texts):,} | {megabytes:.1f} | {tokens:,} | {label} | {seconds:.2f} | {wall_seconds:.2f} | {megabytes / seconds:.2f} |")
        ratios[name] = hf_cpu / cpu
    print()
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.1f}x tokenizers per CPU second, ids identical on every document (target >= 3x)")


if __name__ == "__main__":
    main()

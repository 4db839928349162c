"""MinHash signatures per second: datasketch and rensa (one document at a time) vs MinHasher.signatures.

All three compute 128-permutation signatures of word 5-grams (character 5-grams for CJK
documents) of the same documents, shingling included: the baselines shingle each document with
`curate.dedup.normalize.shingle_strings` (the same rules, one document per call, as these libraries are
used), MinHasher works on the whole batch. Each method is warmed up on the first
WARM_UP_DOCUMENTS documents before it is timed on all of them. Times are CPU seconds of this process (one core;
robust to other work on the machine), wall seconds are printed beside them.

    .venv/bin/python benchmarks/bench_minhash.py [--corpus PATH] [--limit N] [--datasketch-limit N]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAYON_NUM_THREADS", "1")

import datasketch  # noqa: E402
import rensa  # noqa: E402

from curate.dedup.minhash import MinHasher  # noqa: E402
from curate.dedup.normalize import shingle_strings  # noqa: E402

NUM_PERM, NGRAM, SEED = 128, 5, 1
# Each method first runs on these many documents, untimed: lookup tables, allocator pools and caches
# are then warm for all three, as in a worker that has already handled a batch.
WARM_UP_DOCUMENTS = 2000
DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "mixed.jsonl.gz"


def load_texts(path: Path, limit: int | None) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        texts = [json.loads(line)["text"] for line in lines]
    return texts[:limit] if limit else texts


def run_datasketch(texts: list[str]) -> None:
    for text in texts:
        sketch = datasketch.MinHash(num_perm=NUM_PERM, seed=SEED)
        sketch.update_batch([s.encode("utf-8") for s in shingle_strings(text, NGRAM)])
        sketch.digest()


def run_rensa(texts: list[str]) -> None:
    for text in texts:
        sketch = rensa.RMinHash(num_perm=NUM_PERM, seed=SEED)
        sketch.update(shingle_strings(text, NGRAM))
        sketch.digest()


def run_minhasher(texts: list[str]) -> None:
    MinHasher(num_perm=NUM_PERM, ngram_size=NGRAM, seed=SEED).signatures(texts)


def timed(fn, texts: list[str]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn(texts)
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--limit", type=int, default=None, help="first N documents only")
    parser.add_argument("--datasketch-limit", type=int, default=None, help="datasketch on the first N only (slow)")
    args = parser.parse_args()

    texts = load_texts(args.corpus, args.limit)
    rows = []
    for name, fn, subset in [
        ("datasketch MinHash.update_batch", run_datasketch, texts[: args.datasketch_limit]),
        ("rensa RMinHash", run_rensa, texts),
        ("curate MinHasher.signatures", run_minhasher, texts),
    ]:
        fn(texts[:WARM_UP_DOCUMENTS])
        cpu, wall = timed(fn, subset)
        megabytes = sum(len(t.encode("utf-8")) for t in subset) / 1e6
        rows.append((name, len(subset), megabytes, cpu, wall))

    print(f"corpus: {args.corpus.name}, {NUM_PERM} permutations, {NGRAM}-grams, shingling included\n")
    print("| method | documents | MB | CPU s | wall s | documents/s (CPU) | MB/s (CPU) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rates = {}
    for name, docs, megabytes, cpu, wall in rows:
        rates[name] = docs / cpu
        print(f"| {name} | {docs} | {megabytes:.1f} | {cpu:.2f} | {wall:.2f} | {docs / cpu:,.0f} | {megabytes / cpu:.2f} |")
    ours = rates["curate MinHasher.signatures"]
    print(f"\nspeed-up vs rensa: {ours / rates['rensa RMinHash']:.1f}x (target >= 3x)")
    print(f"speed-up vs datasketch: {ours / rates['datasketch MinHash.update_batch']:.1f}x (target >= 10x)")


if __name__ == "__main__":
    main()

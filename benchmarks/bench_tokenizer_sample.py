"""How much text the build's BPE needs: tokens per byte on held-out code against training CPU, by sample size.

A build trains its tokenizer on the first TOKENIZER_TRAIN_CHARS characters of its seeded order. This
trains `train_bpe` (the build's trainer, 16,384 tokens) on the first N MiB of a seeded shuffle of the
Python sources of this venv's site-packages (the corpus of `bench_scale.py`), for each N, and encodes
the same held-out files (the shuffle's first 1,500, never trained on) with each. Training CPU is this
process's user and system time (the trainer runs on every core). The baseline is the largest sample.

    .venv/bin/python benchmarks/bench_tokenizer_sample.py [--corpus site-packages.jsonl] [--sizes 16,32,64,128,256]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scale import site_packages_corpus  # noqa: E402

from curate.curation.tokenizer import leading_texts, train_bpe  # noqa: E402

HELD_OUT_FILES = 1500
VOCAB_SIZE = 16_384


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="JSONL with a text field (default: written from site-packages)")
    parser.add_argument("--sizes", default="16,32,64,128,256", help="training sample sizes in MiB of characters")
    args = parser.parse_args()
    corpus = args.corpus or site_packages_corpus(Path(tempfile.mkdtemp()) / "site-packages.jsonl")
    with open(corpus, encoding="utf-8") as lines:
        texts = [json.loads(line)["text"] for line in lines]
    random.Random(0).shuffle(texts)
    held_out, training = texts[:HELD_OUT_FILES], texts[HELD_OUT_FILES:]
    held_out_bytes = sum(len(text.encode("utf-8")) for text in held_out)
    sizes = [int(size) for size in args.sizes.split(",")]
    print(f"held out: {len(held_out):,} files, {held_out_bytes / 1e6:.1f} MB; vocabulary {VOCAB_SIZE:,}\n")
    print("| sample MiB | training CPU s | held-out tokens | bytes per token | tokens vs largest sample |")
    print("|---:|---:|---:|---:|---:|")
    rows = []
    for size in sizes:
        sample = list(leading_texts(training, size << 20))  # as the build takes its sample
        start = cpu_seconds()
        tokenizer = train_bpe(iter(sample), VOCAB_SIZE)
        cost = cpu_seconds() - start
        tokens = sum(len(encoding.ids) for encoding in tokenizer.encode_batch(held_out, add_special_tokens=False))
        rows.append((size, cost, tokens))
    largest = rows[-1][2]
    for size, cost, tokens in rows:
        print(f"| {size} | {cost:.1f} | {tokens:,} | {held_out_bytes / tokens:.4f} | {100 * (tokens / largest - 1):+.2f}% |")


if __name__ == "__main__":
    main()

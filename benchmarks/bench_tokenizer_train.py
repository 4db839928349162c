"""Tokenizer training per CPU second: curate's `train_bpe` (rustbpe) against `tokenizers`' BpeTrainer.

A build trains its BPE (16,384 tokens) on up to its first 128 Mi characters; on the 47 MB mixed corpus
that was a third of the build's CPU. Both trainers learn from the same texts in one run: the mixed
corpus without every tenth document, and Python sources of this venv's site-packages (the code
sample of `bench_tokenize.py`) without every tenth file. Reported: CPU seconds of this process for
each (both trainers run on one thread here), the tokens the two vocabularies share, and the tokens
each gives on the held-out tenth (its compression).

    .venv/bin/python benchmarks/bench_tokenizer_train.py [--corpus PATH] [--code-mb 32] [--vocab-size 16384]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_tokenize import DEFAULT_CODE, DEFAULT_CORPUS, load_code, load_mixed  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

from curate.curation.tokenizer import EOD_TOKEN, train_bpe  # noqa: E402


def tokenizers_bpe(texts: list[str], vocab_size: int) -> Tokenizer:
    """The trainer the build used before: BpeTrainer over ByteLevel, EOD as id 0."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOD_TOKEN], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def timed(train, texts: list[str], vocab_size: int) -> tuple[Tokenizer, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    tokenizer = train(texts, vocab_size)
    return tokenizer, time.process_time() - cpu, time.perf_counter() - wall


def token_count(tokenizer: Tokenizer, texts: list[str]) -> int:
    return sum(len(e.ids) for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--code", type=Path, default=DEFAULT_CODE, help="folder of Python sources")
    parser.add_argument("--code-mb", type=float, default=32.0, help="about this many MB of Python sources")
    parser.add_argument("--vocab-size", type=int, default=16_384)
    args = parser.parse_args()

    print("| corpus | trained MB | trainer | CPU s | wall s | shared tokens | held-out tokens |")
    print("|---|---:|---|---:|---:|---:|---:|")
    ratios = {}
    for name, texts in {"mixed": load_mixed(args.corpus), "code": load_code(args.code, args.code_mb)}.items():
        trained = [t for i, t in enumerate(texts) if i % 10]
        held_out = texts[::10]
        megabytes = sum(len(t.encode("utf-8")) for t in trained) / 1e6
        theirs, their_cpu, their_wall = timed(tokenizers_bpe, trained, args.vocab_size)
        ours, our_cpu, our_wall = timed(train_bpe, trained, args.vocab_size)
        shared = len(set(ours.get_vocab()) & set(theirs.get_vocab()))
        for label, tokenizer, cpu, wall in [("tokenizers BpeTrainer", theirs, their_cpu, their_wall), ("curate train_bpe", ours, our_cpu, our_wall)]:
            print(f"| {name} | {megabytes:.1f} | {label} | {cpu:.2f} | {wall:.2f} | {shared:,} | {token_count(tokenizer, held_out):,} |")
        ratios[name] = their_cpu / our_cpu
    print()
    for name, ratio in ratios.items():
        print(f"{name}: train_bpe {ratio:.1f}x BpeTrainer per CPU second")


if __name__ == "__main__":
    main()

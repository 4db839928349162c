"""Throughput of the coverage-statistics pass, against the build's tokenizer in the same run.

    .venv/bin/python benchmarks/bench_stats.py [--mb 47] [--corpus PATH] [--skip-ray]

Reports MB/s per core of (1) the baseline: tokenizing the same text with a byte-level BPE, the
build's cheapest per-document stage (the build also ingests, deduplicates and writes, so it is
slower than this); (2) the statistics pass in one process; (3) the statistics pass on a local Ray
with two workers (per core: MB / wall / workers); (4) vectorised HyperLogLog registers against
datasketch's per-item `update`. The target is stats >= baseline: statistics never dominate a build.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # one core for the tokenizer baseline
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from curate.curation.codelang import detect_code_language  # noqa: E402
from curate.curation.shards import write_shard  # noqa: E402
from curate.curation.sketches import hll_registers  # noqa: E402
from curate.curation.stats import finalize, merge_partials, table_partial  # noqa: E402
from curate.curation.text_features import compression_ratios, ngram_hashes, text_language  # noqa: E402
from curate.curation.tokenizer import encode_texts, train_bpe  # noqa: E402

DEFAULT_CORPUS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "corpora", "mixed.jsonl.gz")
SHARD_ROWS = 4096


def load_texts(path: str, megabytes: float) -> list[dict]:
    docs, size = [], 0
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            doc = json.loads(line)
            docs.append(doc)
            size += len(doc["text"].encode("utf-8"))
            if size >= megabytes * 1e6:
                break
    return docs


def timed(function, *args):
    """(result, wall seconds, CPU seconds of this process): CPU time stays honest on a shared machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def tables_of(docs: list[dict], ids: list[list[int]]) -> list[pa.Table]:
    tables = []
    for start in range(0, len(docs), SHARD_ROWS):
        part = docs[start : start + SHARD_ROWS]
        tables.append(
            pa.table(
                {
                    "id": [d["id"] for d in part],
                    "text": [d["text"] for d in part],
                    "input_ids": pa.array(ids[start : start + SHARD_ROWS], pa.list_(pa.int32())),
                    "meta": [d["meta"] for d in part],
                }
            )
        )
    return tables


def stats_components(tables: list[pa.Table]) -> dict[str, float]:
    """Seconds per component of the pass (the pieces table_partial runs), for the breakdown."""
    seconds = {"language": 0.0, "code language": 0.0, "compression": 0.0, "n-gram hashing + HLL": 0.0}
    for table in tables:
        texts = table.column("text").to_pylist()
        seconds["language"] += timed(lambda: [text_language(t) for t in texts])[2]
        seconds["code language"] += timed(lambda: [detect_code_language(t) for t in texts])[2]
        seconds["compression"] += timed(compression_ratios, texts)[2]
        column = table.column("input_ids")
        lengths = np.array([len(x) for x in column.to_pylist()])
        units = pa.compute.list_flatten(column).to_numpy().astype(np.uint64)
        offsets = np.concatenate(([0], np.cumsum(lengths)))
        start = time.process_time()
        for hashes, _ in ngram_hashes(units, offsets).values():
            hll_registers(hashes)
        seconds["n-gram hashing + HLL"] += time.process_time() - start
    return seconds


def hll_baseline(units: np.ndarray) -> tuple[float, float]:
    """Items per second: datasketch HyperLogLogPlusPlus.update per 8-gram vs vectorised registers."""
    from datasketch import HyperLogLogPlusPlus

    hashes = ngram_hashes(units, np.array([0, len(units)]))[8][0]
    sample = hashes[:200_000]
    sketch = HyperLogLogPlusPlus(p=14)
    start = time.process_time()
    for value in sample:
        sketch.update(value.tobytes())
    per_item = len(sample) / (time.process_time() - start)
    _, _, seconds = timed(hll_registers, hashes)
    return per_item, len(hashes) / seconds


def ray_pass(tables: list[pa.Table], workers: int) -> float:
    import ray

    from curate.jobs.stages.stats import compute_build_stats
    from curate.regimes import get_regime

    with tempfile.TemporaryDirectory() as root:
        for index, table in enumerate(tables):
            write_shard(table, root, f"phase-{1 + index % 2}/shard-{index:05d}.arrow")
        ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False)
        compute_build_stats(root, get_regime("A").transform, {})  # warm the workers' imports
        _, seconds, _ = timed(compute_build_stats, root, get_regime("A").transform, {})
        ray.shutdown()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    parser.add_argument("--mb", type=float, default=47.0, help="megabytes of text to read from the corpus")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()

    docs = load_texts(args.corpus, args.mb)
    texts = [d["text"] for d in docs]
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    tokenizer = train_bpe(texts[:: max(1, len(texts) // 3000)], vocab_size=8192)
    ids, tokenize_wall, tokenize_cpu = timed(encode_texts, tokenizer, texts)
    tables = tables_of(docs, ids)

    partials, stats_wall, stats_cpu = timed(lambda: [table_partial(t) for t in tables])
    _, finalize_wall, finalize_cpu = timed(lambda: finalize(merge_partials(partials)))
    components = stats_components(tables)
    per_item, vectorised = hll_baseline(np.concatenate([np.array(x, np.uint64) for x in ids[:2000]]))

    rows = [
        ("baseline: BPE tokenization (1 thread)", tokenize_wall, tokenize_cpu),
        ("stats pass, one process (table_partial)", stats_wall, stats_cpu),
        ("stats merge + finalize", finalize_wall, finalize_cpu),
    ]
    if not args.skip_ray:
        ray_wall = ray_pass(tables, args.workers)
        rows.append((f"stats on Ray, {args.workers} workers (wall x workers)", ray_wall * args.workers, None))
    print(f"\ncorpus: {len(docs):,} documents, {megabytes:.1f} MB, {sum(map(len, ids)):,} tokens\n")
    print("| pass | MB/s per core (wall) | MB/s per core (CPU time) |\n|---|---|---|")
    for name, wall, cpu in rows:
        print(f"| {name} | {megabytes / wall:.2f} | {'-' if cpu is None else f'{megabytes / cpu:.2f}'} |")
    print(f"\nstats / baseline: {tokenize_wall / stats_wall:.2f}x by wall time, {tokenize_cpu / stats_cpu:.2f}x by CPU time "
          "(target >= 1)")
    print("\n| stats component | CPU seconds | share |\n|---|---|---|")
    for name, seconds in components.items():
        print(f"| {name} | {seconds:.2f} | {seconds / stats_cpu:.0%} |")
    print(f"\nHyperLogLog: datasketch update {per_item:,.0f} items/s, vectorised registers {vectorised:,.0f} items/s "
          f"({vectorised / per_item:.0f}x)")


if __name__ == "__main__":
    main()

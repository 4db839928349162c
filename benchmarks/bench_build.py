"""Build throughput of regime A, against the floor of reading the same input once.

    .venv/bin/python benchmarks/bench_build.py [--input PATH] [--first N] [--num-cpus 2] [--no-near-dedup]

Input: `../shared/corpora/mixed.jsonl.gz` when present, else the embedded default corpus;
`--first 1500` builds its first 1,500 documents as one plain JSONL file (3 MB: the fixed cost a user
trying curate on a small file pays). Reports Ray's start, the build, and both together (what
`curate build` takes), documents/s and MB/s of input text (and per
core), the time of every stage, and the peak resident memory of the driver plus all Ray
processes (sampled every 0.2 s). The baseline, run in the same process, is one core doing the
least any build must: decompress, parse every JSON line and write the texts as Arrow.
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
MIXED = REPO.parent / "shared" / "corpora" / "mixed.jsonl.gz"


class PeakMemory:
    """Peak total RSS of this process and its descendants (the local Ray cluster)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(0.2)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def baseline_read(path: Path, out: Path) -> tuple[float, int, int]:
    """One core: gunzip, json.loads every line, write ids and texts as one Arrow IPC file."""
    started = time.perf_counter()
    ids, texts, text_bytes = [], [], 0
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        for line in handle:
            record = json.loads(line)
            ids.append(str(record.get("id")))
            texts.append(record["text"])
            text_bytes += len(record["text"].encode("utf-8", "surrogatepass"))
    table = pa.table({"id": ids, "text": texts})
    with pa.OSFile(str(out), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return time.perf_counter() - started, len(texts), text_bytes


def first_documents(path: Path, count: int, out: Path) -> Path:
    """The first `count` lines of a JSONL[.gz] file, as a plain JSONL file."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as source, open(out, "wb") as sink:
        for _, line in zip(range(count), source):
            sink.write(line)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=MIXED if MIXED.exists() else None)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--no-near-dedup", action="store_true")
    parser.add_argument("--first", type=int, help="build only the first N documents of the input")
    args = parser.parse_args()

    import ray

    from curate.jobs.build import BuildConfig, RunOptions, run_build
    from curate.jobs.ray_cluster import init_ray

    with tempfile.TemporaryDirectory() as scratch, PeakMemory() as memory:
        scratch = Path(scratch)
        if args.first is not None:
            args.input = first_documents(args.input, args.first, scratch / f"first-{args.first}.jsonl")
        if args.input is not None:
            base_seconds, _, text_bytes = baseline_read(args.input, scratch / "baseline.arrow")
        else:
            base_seconds, text_bytes = None, None
        started = time.perf_counter()
        init_ray(num_cpus=args.num_cpus)
        ray_seconds = time.perf_counter() - started
        config = BuildConfig(inputs=(str(args.input),) if args.input else (), near_dedup=not args.no_near_dedup)
        started = time.perf_counter()
        result = run_build(config, RunOptions(output=str(scratch / "out"), num_cpus=args.num_cpus, quiet=True))
        build_seconds = time.perf_counter() - started
        ray.shutdown()

    manifest = result["manifest"]
    counts = manifest["counts"]
    text_mb = (text_bytes or sum(i["bytes"] for i in manifest["inputs"])) / 1e6
    print(f"input: {args.input or 'embedded corpus'}  ({counts['input']:,} documents, {text_mb:.1f} MB of text)")
    print(f"counts: {json.dumps(counts)}")
    print(f"ray start: {ray_seconds:.1f} s (not in the build time); Ray start + build: {ray_seconds + build_seconds:.1f} s")
    print(f"build:     {build_seconds:.1f} s  {counts['input'] / build_seconds:,.0f} docs/s  "
          f"{text_mb / build_seconds:.2f} MB/s  {text_mb / build_seconds / args.num_cpus:.2f} MB/s per core")
    for stage, seconds in result["timings"].items():
        print(f"  {stage:<8} {seconds:7.1f} s")
    if base_seconds is not None:
        print(f"baseline (1 core: gunzip + parse + write): {base_seconds:.1f} s  {text_mb / base_seconds:.2f} MB/s")
        print(f"build time / baseline time: {build_seconds / base_seconds:.1f}x  "
              f"(per core: {build_seconds * args.num_cpus / base_seconds:.1f}x)")
    print(f"peak memory (driver + Ray processes): {memory.peak / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()

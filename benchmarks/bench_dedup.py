"""End-to-end near-duplicate removal on Ray (read -> near dedup -> anti-join -> write), MB/s per core.

The Ray pipeline runs from reading the file to the written Parquet files, Ray already started and
warmed up on a few documents (worker processes exist); the anti-join broadcasts the removed ids
(few) to a filter. It is reported per stage two ways: wall seconds times the CPUs Ray was given
(what a machine of your own would see), and CPU seconds of the driver and every Ray process
together (less sensitive to other work sharing the machine; it includes Ray's own daemons).

Baseline in the same run: a single-process rensa pipeline as people write it (per-document
shingling with the same rules, `RMinHash`, `RMinHashLSH` insert and query, union-find in Python,
no verification), in CPU seconds of its one core.

`--site-packages` runs the same on the harder corpus of `accuracy_near_dedup.py` (real files with
many sibling versions: torch's generated operator headers, vendored and forked Python packages),
written to a temporary JSONL file first.

    .venv/bin/python benchmarks/bench_dedup.py [--corpus PATH | --site-packages [DIR]] [--cpus 2] [--limit N]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.compute as pc

from accuracy_near_dedup import SITE_PACKAGES, sibling_docs
from curate.dedup.near import NearDedupConfig, near_duplicates
from curate.dedup.normalize import shingle_strings

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "mixed.jsonl.gz"


def with_input_pos(batch: pa.Table) -> pa.Table:
    """Input position from the corpus id (mixed-000123 -> 123): this corpus numbers its lines."""
    digits = pc.struct_field(pc.extract_regex(batch.column("id"), r"(?P<n>\d+)$"), "n")
    return pa.table({"id": batch.column("id"), "text": batch.column("text"), "input_pos": digits.cast(pa.int64())})


class CpuMeter:
    """CPU seconds used by this process and all its descendants (raylet, Ray workers), polled in a
    thread so that workers which exit before the end still count (up to one polling interval)."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.latest: dict[int, float] = {}
        self.baseline = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        for process in [me, *me.children(recursive=True)]:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            self.latest[process.pid] = times.user + times.system

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "CpuMeter":
        self._sample()
        self.baseline = sum(self.latest.values())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def seconds(self) -> float:
        return sum(self.latest.values()) - self.baseline


def ray_pipeline(corpus: Path, out_dir: Path, config: NearDedupConfig, limit: int | None) -> tuple[dict, dict]:
    """(wall and CPU seconds per stage, near-dedup stats)."""
    import ray

    result: dict = {}
    start = time.perf_counter()
    with CpuMeter() as reading:
        ds = ray.data.read_json(str(corpus)).map_batches(with_input_pos, batch_format="pyarrow")
        if limit:
            ds = ds.filter(expr=f"input_pos < {limit}")
        ds = ds.materialize()
    result["read"] = (time.perf_counter() - start, reading.seconds)
    with CpuMeter() as dedup:
        began = time.perf_counter()
        pairs, stats = near_duplicates(ds, config)
        pairs = pairs.materialize()
    result["near_duplicates"] = (time.perf_counter() - began, dedup.seconds)
    with CpuMeter() as writing:
        began = time.perf_counter()
        # The removed ids are few: broadcast them to a filter instead of shuffling the corpus again.
        removed = pa.array([row["removed_id"] for row in pairs.take_all()], pa.string())
        kept = ds.map_batches(
            lambda batch: batch.filter(pc.invert(pc.is_in(batch.column("id"), value_set=removed))),
            batch_format="pyarrow",
        )
        kept.write_parquet(str(out_dir / "kept"))
        pairs.write_parquet(str(out_dir / "pairs"))
    result["anti_join_and_write"] = (time.perf_counter() - began, writing.seconds)
    result["total"] = (time.perf_counter() - start, sum(cpu for _, cpu in result.values()))
    return result, stats


def rensa_baseline(texts: list[str], threshold: float, num_perm: int, bands: int) -> tuple[float, int]:
    """CPU seconds and documents removed by a single-process rensa dedup (keep the first of each cluster)."""
    import rensa

    cpu = time.process_time()
    sketches = []
    for text in texts:
        sketch = rensa.RMinHash(num_perm=num_perm, seed=1)
        sketch.update(shingle_strings(text))
        sketches.append(sketch)
    lsh = rensa.RMinHashLSH(threshold=threshold, num_perm=num_perm, num_bands=bands)
    for i, sketch in enumerate(sketches):
        lsh.insert(i, sketch)
    parent = list(range(len(texts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, sketch in enumerate(sketches):
        for j in lsh.query(sketch):
            a, b = find(i), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    removed = sum(1 for i in range(len(texts)) if find(i) != i)
    return time.process_time() - cpu, removed


def write_sibling_corpus(root: Path, out: Path) -> Path:
    """The site-packages corpus as JSONL.gz with ids numbered like the mixed corpus's (site-packages-000123)."""
    path = out / "site-packages.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as lines:
        for i, doc in enumerate(sibling_docs(root)):
            lines.write(json.dumps({"id": f"site-packages-{i:06d}", "text": doc["text"], "meta": {"path": doc["id"]}}) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--site-packages", type=Path, nargs="?", const=SITE_PACKAGES, default=None)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="first N documents only")
    args = parser.parse_args()

    import ray

    from curate.jobs.ray_cluster import init_ray, set_parallelism, shuffle_partitions

    init_ray(num_cpus=args.cpus)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_sibling_corpus(args.site_packages, Path(tmp)) if args.site_packages else args.corpus
        # Ray Data and the shuffles sized as `curate build` sizes them, from the input file's size.
        set_parallelism(corpus.stat().st_size)
        config = NearDedupConfig(num_partitions=shuffle_partitions())
        with gzip.open(corpus, "rt", encoding="utf-8") as lines:
            texts = [json.loads(line)["text"] for line in lines][: args.limit]
        megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
        ray_pipeline(corpus, Path(tmp) / "warmup", config, limit=200)
        result, stats = ray_pipeline(corpus, Path(tmp) / "run", config, args.limit)
    print("stages (wall s / CPU s): " + ", ".join(f"{k} {w:.1f} / {c:.1f}" for k, (w, c) in result.items()), flush=True)
    # rensa needs bands dividing num_perm: 16 x 8, the nearest to our 14 x 9.
    baseline_cpu, baseline_removed = rensa_baseline(texts, config.threshold, config.num_perm, 16)

    wall, cpu = result["total"]
    near_wall, near_cpu = result["near_duplicates"]
    theirs = megabytes / baseline_cpu
    removed = stats["near_duplicates"]
    name = f"site-packages siblings ({args.site_packages})" if args.site_packages else args.corpus.name
    print(f"corpus: {name}, {len(texts)} documents, {megabytes:.1f} MB; load average {os.getloadavg()[0]:.1f}\n")
    print("| pipeline | measured | seconds | MB/s per core | removed |")
    print("|---|---|---:|---:|---:|")
    print(f"| curate on Ray, read -> write | wall x {args.cpus} CPUs | {wall:.1f} | {megabytes / wall / args.cpus:.2f} | {removed} |")
    print(f"| curate on Ray, read -> write | CPU, all Ray processes | {cpu:.1f} | {megabytes / cpu:.2f} | {removed} |")
    print(f"| curate near_duplicates stage only | wall x {args.cpus} CPUs | {near_wall:.1f} | {megabytes / near_wall / args.cpus:.2f} | {removed} |")
    print(f"| curate near_duplicates stage only | CPU, all Ray processes | {near_cpu:.1f} | {megabytes / near_cpu:.2f} | {removed} |")
    print(f"| rensa + RMinHashLSH + union-find, no verification | CPU, one process | {baseline_cpu:.1f} | {theirs:.2f} | {baseline_removed} |")
    print(f"\nread -> write per CPU second vs rensa: {megabytes / cpu / theirs:.2f}x; target >= 5 MB/s per core")
    print("stats: " + json.dumps(stats))
    ray.shutdown()


if __name__ == "__main__":
    main()

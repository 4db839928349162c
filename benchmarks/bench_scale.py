"""Cost of a build against its size: regime A of a corpus and of one about ten times larger, in one run.

    .venv/bin/python benchmarks/bench_scale.py [--num-cpus 2] [--keep DIR]

Small: `../shared/corpora/mixed.jsonl.gz` (47 MB of text). Large: the Python sources of the
packages installed beside this interpreter, one JSON line per file (about 414 MB of real code with
many sibling versions and vendored copies), written as plain JSONL so the reader splits it by byte
range. Each build runs as its own `curate build` process (its own Ray), with the driver's resident
memory sampled every 0.2 s. Goals (issue 14): time per MB grows by at most 1.3x from the small to
the large input, the driver's peak memory by at most 1.25x, and the build's CPU time within 3x of
tokenizing the same texts alone with the build's tokenizer on one thread.

Each build also gets a table of where its time and CPU went: the build runs with `--json` progress,
and the arrival of each finished-stage line bounds that stage's window; the process tree's
cumulative CPU, sampled with its time, is read (interpolated) at the window's ends.

Short: `--short-lines` documents of 40 to 200 characters, as chat logs and snippet crawls are: the
lines of that length of the small corpus, then of the large one (issue 26). Its cost per document
and driver peak are set against the small build's.

    .venv/bin/python benchmarks/bench_scale.py --inputs short [--short-lines 500000]
"""

from __future__ import annotations

import argparse
import bisect
import gzip
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

import psutil

REPO = Path(__file__).resolve().parents[1]
MIXED = REPO.parent / "shared" / "corpora" / "mixed.jsonl.gz"
CURATE = [str(Path(sys.executable).with_name("curate"))]


def site_packages_corpus(out: Path) -> Path:
    """Every .py file under site-packages as one JSON line, in path order."""
    root = Path(sysconfig.get_paths()["purelib"])
    with open(out, "w", encoding="utf-8") as sink:
        for path in sorted(root.rglob("*.py")):
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            sink.write(json.dumps({"id": str(path.relative_to(root)), "text": text}) + "\n")
    return out


def short_lines_corpus(sources: list[Path], out: Path, count: int) -> Path:
    """The first `count` lines of 40 to 200 characters (stripped) of the sources' documents, one
    JSON line each."""
    written = 0
    with open(out, "w", encoding="utf-8") as sink:
        for source in sources:
            for text in texts_of(source):
                for line in text.splitlines():
                    line = line.strip()
                    if 40 <= len(line) <= 200:
                        sink.write(json.dumps({"id": f"line-{written}", "text": line}) + "\n")
                        written += 1
                        if written == count:
                            return out
    raise SystemExit(f"the sources hold only {written} lines of 40 to 200 characters, not {count}")


def texts_of(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line in handle if line.strip()]


Sample = tuple[float, float]  # (time.perf_counter, CPU seconds of the process tree so far)


def watch_process(process: subprocess.Popen, started: float) -> tuple[int, list[Sample]]:
    """Peak resident memory of `process` alone (the driver; Ray's workers are other processes), and
    the CPU seconds of it and every process under it (Ray's raylet and workers), sampled every
    0.2 s: a process that ends between samples loses at most its last 0.2 s. Each sample keeps the
    tree's cumulative CPU with its time, so that any window of the build (a stage) can be charged
    the CPU spent in it; the last sample is the build's total."""
    peak, cpu, samples = 0, {}, [(started, 0.0)]
    watched = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
            for member in [watched, *watched.children(recursive=True)]:
                try:
                    times = member.cpu_times()
                    cpu[member.pid] = max(cpu.get(member.pid, 0.0), times.user + times.system)
                except psutil.Error:
                    continue
        except psutil.Error:
            break
        samples.append((time.perf_counter(), sum(cpu.values())))
        time.sleep(0.2)
    return peak, samples


def read_progress(stream: IO[str], events: list[tuple[float, dict]], others: list[str]) -> None:
    """Collect the build's JSON stage events from its stderr with the time each arrived: the
    arrival times are the stage boundaries, on the same clock as the CPU samples (the events' own
    `seconds` leave out the gaps between stages). Lines that are not finished-stage events (ticks
    of a running stage, Ray's log lines) are kept for the error message."""
    for line in stream:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and record.get("state") in ("done", "skipped"):
            events.append((time.perf_counter(), record))
        elif not (isinstance(record, dict) and record.get("state") == "running"):
            others.append(line)


def cpu_at(samples: list[Sample], moment: float) -> float:
    """The tree's cumulative CPU seconds at `moment`, interpolated linearly between the samples
    around it (clamped to the first and last): stage events fall between 0.2 s samples."""
    times = [at for at, _ in samples]
    index = bisect.bisect_left(times, moment)
    if index == 0:
        return samples[0][1]
    if index == len(samples):
        return samples[-1][1]
    (before, low), (after, high) = samples[index - 1], samples[index]
    return low + (high - low) * (moment - before) / (after - before) if after > before else high


def stage_windows(started: float, ended: float, events: list[tuple[float, dict]], samples: list[Sample]) -> list[dict]:
    """Wall and CPU seconds of each stage's window (from the previous event to its own), plus the
    part before the first stage (imports, Ray start: the first stage's window starts its reported
    `seconds` before its event) and after the last (to exit). The windows tile [started, ended],
    so their CPU adds up to the build's total."""
    first_start = events[0][0] - (events[0][1].get("seconds") or 0.0) if events else ended
    cuts = [started, max(started, first_start), *(at for at, _ in events), ended]
    names = ["(before first stage: imports, Ray start)", *(record["stage"] for _, record in events),
             "(after last stage, to exit)"]  # fmt: skip
    return [{"stage": name, "wall": end - start, "cpu": cpu_at(samples, end) - cpu_at(samples, start)}
            for name, start, end in zip(names, cuts, cuts[1:])]  # fmt: skip


def build(input_path: Path, out: Path, num_cpus: int) -> dict:
    """One `curate build --regime A` in its own process: wall seconds, CPU seconds of its process
    tree, driver peak memory, and the wall and CPU seconds of each stage (from `--json` progress)."""
    command = [*CURATE, "build", "--regime", "A", "--input", str(input_path), "--output", str(out),
               "--num-cpus", str(num_cpus), "--json", "--overwrite"]  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watched: list = [(0, [(started, 0.0)])]
    events: list[tuple[float, dict]] = []
    errors: list[str] = []
    sampler = threading.Thread(target=lambda: watched.__setitem__(0, watch_process(process, started)))
    reader = threading.Thread(target=read_progress, args=(process.stderr, events, errors))
    sampler.start()
    reader.start()
    process.stdout.read()  # the JSON summary; the manifest below holds what we need
    process.wait()
    reader.join()
    sampler.join()
    seconds = time.perf_counter() - started
    if process.returncode:
        raise SystemExit(f"build of {input_path} failed: {''.join(errors).strip().splitlines()[-1:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    peak, samples = watched[0]
    return {"seconds": seconds, "cpu": samples[-1][1], "driver_peak": peak, "counts": manifest["counts"],
            "stages": stage_windows(started, started + seconds, events, samples)}  # fmt: skip


def print_stages(row: dict) -> None:
    """Where one build's wall and CPU time went, stage by stage."""
    print(f"\nstages of {row['name']} (CPU of the whole process tree, build CPU {row['cpu']:.1f} s):")
    print("| stage | wall s | CPU s | share of build CPU |")
    print("|---|---:|---:|---:|")
    for stage in row["stages"]:
        share = stage["cpu"] / row["cpu"] if row["cpu"] else 0.0
        print(f"| {stage['stage']} | {stage['wall']:.1f} | {stage['cpu']:.1f} | {share:.0%} |")
    total = sum(stage["cpu"] for stage in row["stages"])
    print(f"| total | {sum(stage['wall'] for stage in row['stages']):.1f} | {total:.1f} | "
          f"{total / row['cpu'] if row['cpu'] else 0.0:.0%} |")  # fmt: skip


def tokenization_seconds(texts: list[str], tokenizer_path: Path) -> float:
    """CPU seconds of HF tokenizers over `texts` on one thread: the floor every trainer-ready build pays."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    started = time.process_time()
    for start in range(0, len(texts), 256):
        tokenizer.encode_batch_fast(texts[start : start + 256], add_special_tokens=False)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="keep the corpora and builds here instead of a temporary folder")
    parser.add_argument("--inputs", default="small,large", help="comma-separated: small, large, short")
    parser.add_argument("--short-lines", type=int, default=500_000)
    args = parser.parse_args()
    inputs = args.inputs.split(",")
    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        large = root / "site-packages.jsonl"
        if {"large", "short"} & set(inputs) and not large.exists():
            site_packages_corpus(large)
        short = root / "short-lines.jsonl"
        if "short" in inputs and not short.exists():
            short_lines_corpus([MIXED, large], short, args.short_lines)
        corpora = {"small": ("mixed (small)", MIXED), "large": ("site-packages (large)", large), "short": ("short lines", short)}
        rows = []
        for name, path in (corpora[key] for key in ["small", *(key for key in inputs if key != "small")]):
            texts = texts_of(path)
            mb = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts) / 1e6
            result = build(path, root / f"build-{path.stem}", args.num_cpus)
            floor = tokenization_seconds(texts, root / f"build-{path.stem}" / "tokenizer.json")
            rows.append({"name": name, "documents": len(texts), "mb": mb, "floor": floor, **result})
            del texts

    print("| input | documents | text MB | build s | s per MB | ms per 1,000 documents | driver peak MiB | tokenize 1 thread s "
          "| build wall s x CPUs / tokenize s | build CPU s | build CPU s / tokenize s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['name']} | {row['documents']:,} | {row['mb']:.1f} | {row['seconds']:.1f} | {row['seconds'] / row['mb']:.3f} | "
              f"{1e6 * row['seconds'] / row['documents']:.0f} | {row['driver_peak'] / 2**20:.0f} | {row['floor']:.1f} | "
              f"{row['seconds'] * args.num_cpus / row['floor']:.2f} | {row['cpu']:.1f} | {row['cpu'] / row['floor']:.2f} |")
    small, others = rows[0], {row["name"]: row for row in rows[1:]}
    if big := others.get(corpora["large"][0]):
        time_ratio = (big["seconds"] / big["mb"]) / (small["seconds"] / small["mb"])
        print(f"time per MB, large / small: {time_ratio:.2f}x (goal <= 1.3x)")
        print(f"driver peak memory, large / small: {big['driver_peak'] / small['driver_peak']:.2f}x (goal <= 1.25x)")
    if lines := others.get(corpora["short"][0]):
        per_document = (lines["seconds"] / lines["documents"]) / (small["seconds"] / small["documents"])
        print(f"time per document, short / small: {per_document:.2f}x")
        print(f"driver peak memory, short / small: {lines['driver_peak'] / small['driver_peak']:.2f}x")
    for row in rows:
        print_stages(row)
    for row in rows:
        print(f"counts {row['name']}: {json.dumps(row['counts'])}")


if __name__ == "__main__":
    main()

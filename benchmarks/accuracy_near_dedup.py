"""Accuracy of near-duplicate removal against exact ground truth, on real corpora with templated families.

Corpora:
* default: the licence texts and English man pages of the mixed corpus (1,665 documents);
* `--site-packages`: real files with many sibling versions, from the installed Python packages:
  the generated operator headers of torch (`include/ATen/ops`, a dozen templates filled in with
  operator names, so near-duplicate families chain into each other) and the Python sources of
  packages installed more than once (pip's and setuptools' vendored copies next to the installed
  ones; httpx and httpx2, httpcore and httpcore2).

Ground truth: every pair with exact Jaccard >= FLOOR over the shingle strings (`shingle_strings`,
independent of the hashing), found by prefix filtering (two sets with Jaccard >= t share one of the
first |x| - ceil(t |x|) + 1 shingles of each, rarest first), then exact intersections.

Measured:
* the S-curve: per similarity bin, the share of pairs sharing an LSH band (same `MinHasher` and
  `band_keys` as the pipeline) next to the theoretical 1 - (1 - s^rows)^bands;
* recall of pairs with Jaccard >= threshold + 0.05: as LSH candidates, and after removal (at
  least one of the two removed);
* precision: every removal names a document that stays, with the ground-truth Jaccard, at or
  above the threshold;
* the rule: pairs of documents that both stay at or above the threshold, split into those sharing
  an LSH band (the pipeline must leave none) and those LSH never proposed;
* removed, next to the greedy in the same keep order over the ground truth: over every pair at or
  above the threshold (ideal), and over the pairs LSH proposes (which the pipeline must equal).

    .venv/bin/python benchmarks/accuracy_near_dedup.py [--corpus PATH | --site-packages [DIR]] [--threshold 0.8]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from scipy.sparse import csr_matrix

from curate.dedup.lsh import band_keys
from curate.dedup.minhash import MinHasher
from curate.dedup.near import NearDedupConfig, near_duplicates
from curate.dedup.normalize import shingle_strings

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "mixed.jsonl.gz"
SITE_PACKAGES = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
SOURCES = {"debian-copyright", "common-licenses", "manpages-en"}
VENDOR_DIRS = ("pip/_vendor", "setuptools/_vendor")
FORKS = ("httpx", "httpx2", "httpcore", "httpcore2")
FLOOR = 0.6
BINS = [0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.0001]


def load(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [d for d in map(json.loads, lines) if d["meta"]["source"] in SOURCES]


def sibling_files(root: Path = SITE_PACKAGES) -> list[Path]:
    """The harder corpus: torch's generated ATen operator headers, and the Python files of every
    package vendored by pip or setuptools (each copy, and the installed package of that name) and
    of two forked HTTP libraries. Sorted, so ids and input order are reproducible."""
    files = sorted((root / "torch" / "include" / "ATen" / "ops").glob("*.h"))
    vendor_dirs = [root / v for v in VENDOR_DIRS if (root / v).is_dir()]
    vendored = sorted({d.name for v in vendor_dirs for d in v.iterdir() if d.is_dir() and d.name.isidentifier()})
    packages = [root / v / name for v in VENDOR_DIRS for name in vendored] + [root / name for name in (*vendored, *FORKS)]
    for package in packages:
        if package.is_dir():
            files += sorted(package.rglob("*.py"))
    return files


def sibling_docs(root: Path = SITE_PACKAGES) -> list[dict]:
    """Documents of `sibling_files`, id = path under site-packages."""
    files = sibling_files(root)
    return [{"id": str(f.relative_to(root)), "text": f.read_text(encoding="utf-8", errors="replace")} for f in files]


def incidence(texts: list[str], ngram_size: int) -> csr_matrix:
    """Document x shingle matrix (1 where the document has the shingle string)."""
    vocabulary: dict[str, int] = {}
    indptr, indices = [0], []
    for text in texts:
        indices.extend(sorted({vocabulary.setdefault(s, len(vocabulary)) for s in shingle_strings(text, ngram_size)}))
        indptr.append(len(indices))
    data = np.ones(len(indices), np.int32)
    return csr_matrix((data, np.array(indices, np.int64), np.array(indptr, np.int64)), shape=(len(texts), len(vocabulary)))


def prefix_candidates(matrix: csr_matrix, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs i < j sharing a prefix shingle (rarest first) and of compatible sizes: a superset of
    the pairs with Jaccard >= floor."""
    frequency = np.asarray(matrix.sum(axis=0)).ravel()
    rarity = np.empty(len(frequency), np.int64)
    rarity[np.argsort(frequency, kind="stable")] = np.arange(len(frequency))
    sizes = np.diff(matrix.indptr)
    rows, cols = [], []
    for doc in range(matrix.shape[0]):
        shingles = matrix.indices[matrix.indptr[doc] : matrix.indptr[doc + 1]]
        prefix = len(shingles) - int(np.ceil(floor * len(shingles) - 1e-9)) + 1 if len(shingles) else 0
        chosen = shingles[np.argsort(rarity[shingles], kind="stable")[:prefix]]
        rows.append(np.full(len(chosen), doc))
        cols.append(chosen)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    prefixes = csr_matrix((np.ones(len(rows), np.int32), (rows, cols)), shape=matrix.shape)
    shared = (prefixes @ prefixes.T).tocoo()
    i, j = shared.row[shared.row < shared.col], shared.col[shared.row < shared.col]
    compatible = np.minimum(sizes[i], sizes[j]) >= floor * np.maximum(sizes[i], sizes[j]) - 1e-9
    return i[compatible], j[compatible]


def intersections(matrix: csr_matrix, i: np.ndarray, j: np.ndarray, chunk: int = 100_000) -> np.ndarray:
    """Shared shingles of documents i[p] and j[p], a chunk of pairs at a time."""
    parts = [np.asarray(matrix[i[s : s + chunk]].multiply(matrix[j[s : s + chunk]]).sum(axis=1)).ravel() for s in range(0, len(i), chunk)]
    return np.concatenate(parts) if parts else np.zeros(0)


def exact_pairs(texts: list[str], ngram_size: int, floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, jaccard) for every pair i < j with exact Jaccard >= floor."""
    matrix = incidence(texts, ngram_size)
    sizes = np.diff(matrix.indptr)
    i, j = prefix_candidates(matrix, floor)
    shared = intersections(matrix, i, j)
    jaccard = shared / (sizes[i] + sizes[j] - shared)
    keep = jaccard >= floor
    return i[keep], j[keep], jaccard[keep]


def band_candidates(texts: list[str], config: NearDedupConfig, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    keys = band_keys(MinHasher(config.num_perm, config.ngram_size, config.seed).signatures(texts), config.layout())
    return (keys[left] == keys[right]).any(axis=1)


def greedy_removed(ids: list[str], texts: list[str], left: np.ndarray, right: np.ndarray, keep: str) -> set[int]:
    """The greedy over these pairs in keep order: a document is removed when a kept one before it is a pair."""
    key = {"min-id": lambda d: ids[d], "longest": lambda d: (-len(texts[d]), ids[d]), "first": lambda d: (d, ids[d])}[keep]
    neighbours: dict[int, list[int]] = {}
    for a, b in zip(left.tolist(), right.tolist()):
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    removed: set[int] = set()
    seen: set[int] = set()
    for doc in sorted(neighbours, key=key):
        if any(n in seen and n not in removed for n in neighbours[doc]):
            removed.add(doc)
        seen.add(doc)
    return removed


def run_pipeline(ids: list[str], texts: list[str], config: NearDedupConfig) -> tuple[list[dict], dict, float]:
    import ray

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    table = pa.table({"id": ids, "text": texts, "input_pos": np.arange(len(ids), dtype=np.int64)})
    began = time.perf_counter()
    pairs, stats = near_duplicates(ray.data.from_arrow(table), config)
    removed = pairs.take_all()
    seconds = time.perf_counter() - began
    ray.shutdown()
    return removed, stats, seconds


def print_s_curve(jaccard: np.ndarray, candidate: np.ndarray, config: NearDedupConfig) -> None:
    layout = config.layout()
    print(f"| exact Jaccard | pairs | measured P(candidate) | theoretical 1-(1-s^{layout.rows})^{layout.bands} |")
    print("|---|---:|---:|---:|")
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        inside = (jaccard >= lo) & (jaccard < hi)
        if inside.any():
            label = "1.0" if lo == 1.0 else f"[{lo:.2f}, {hi:.2f})"
            theory = layout.candidate_probability(jaccard[inside]).mean()
            print(f"| {label} | {inside.sum()} | {candidate[inside].mean():.3f} | {theory:.3f} |")


def removal_measures(
    ids: list[str], texts: list[str], truth: tuple[np.ndarray, np.ndarray, np.ndarray], candidate: np.ndarray, removed: list[dict], args
) -> dict:
    """Recall, precision, pairs left at the threshold, and the greedy removals from ground truth."""
    left, right, jaccard = truth
    position = {doc_id: i for i, doc_id in enumerate(ids)}
    exact = {(int(i), int(j)): s for i, j, s in zip(left, right, jaccard)}
    gone = {position[r["removed_id"]] for r in removed}
    named = [(position[r["removed_id"]], position[r["kept_id"]], r["jaccard"]) for r in removed]
    precise = [
        kept not in gone and abs(exact.get((min(r, kept), max(r, kept)), 0.0) - value) < 1e-9 and value >= args.threshold
        for r, kept, value in named
    ]
    similar, at_threshold = jaccard >= args.threshold + 0.05, jaccard >= args.threshold
    resolved = np.array([i in gone or j in gone for i, j in zip(left[similar], right[similar])])
    both_stay = np.array([i not in gone and j not in gone for i, j in zip(left, right)], bool) & at_threshold
    proposed = greedy_removed(ids, texts, left[at_threshold & candidate], right[at_threshold & candidate], args.keep)
    return {
        "similar": int(similar.sum()),
        "candidate_recall": candidate[similar].mean(),
        "recall": resolved.mean(),
        "precision": sum(precise) / max(len(removed), 1),
        "both_stay_proposed": int((both_stay & candidate).sum()),
        "both_stay_missed": int((both_stay & ~candidate).sum()),
        "ideal": len(greedy_removed(ids, texts, left[at_threshold], right[at_threshold], args.keep)),
        "proposed": len(proposed),
        "same_as_proposed": gone == proposed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--site-packages", type=Path, nargs="?", const=SITE_PACKAGES, default=None)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--keep", default="min-id")
    args = parser.parse_args()
    config = NearDedupConfig(threshold=args.threshold, keep=args.keep)

    docs = sibling_docs(args.site_packages) if args.site_packages else load(args.corpus)
    ids, texts = [d["id"] for d in docs], [d["text"] for d in docs]
    name = f"site-packages siblings ({args.site_packages})" if args.site_packages else ", ".join(sorted(SOURCES))
    truth = exact_pairs(texts, config.ngram_size, FLOOR)
    candidate = band_candidates(texts, config, truth[0], truth[1])
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    print(f"documents: {len(docs)} ({name}), {megabytes:.1f} MB; pairs with Jaccard >= {FLOOR}: {len(truth[0])}\n")
    print_s_curve(truth[2], candidate, config)

    removed, stats, seconds = run_pipeline(ids, texts, config)
    m = removal_measures(ids, texts, truth, candidate, removed, args)
    t = args.threshold
    print(f"\npairs with Jaccard >= {t + 0.05:.2f}: {m['similar']}")
    print(f"recall as LSH candidates (a shared band): {m['candidate_recall']:.4f}")
    print(f"recall after removal (at least one of the pair removed): {m['recall']:.4f}")
    print(f"precision (the kept document stays; ground-truth Jaccard equal and >= {t}): {m['precision']:.4f}")
    print(f"pairs >= {t} where both stay: {m['both_stay_proposed']} sharing a band, {m['both_stay_missed']} never proposed by LSH")
    print(f"removed: {len(removed)}; greedy in {args.keep} order over ground truth: {m['ideal']} over every pair >= {t} (ideal), "
          f"{m['proposed']} over the pairs LSH proposes")
    print(f"same documents as the greedy over the pairs LSH proposes: {m['same_as_proposed']}")
    print(f"near_duplicates on Ray (2 CPUs): {seconds:.1f} s")
    print("stats: " + json.dumps(stats))


if __name__ == "__main__":
    main()

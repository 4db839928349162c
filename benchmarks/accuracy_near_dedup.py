"""Accuracy of near-duplicate removal against brute-force ground truth on real licence texts and man pages.

Ground truth: the shingle strings of every document (`shingle_strings`, independent of the
hashing), a document x shingle incidence matrix, and its product with its transpose: the exact
intersection size, hence the exact Jaccard similarity, of every pair of documents that share a
shingle (an inverted index evaluated as a sparse matrix product).

Measured:
* the S-curve: per similarity bin, the share of pairs that share at least one LSH band (computed
  with the same `MinHasher` and `band_keys` as the pipeline), next to the theoretical
  1 - (1 - s^rows)^bands averaged over the pairs of the bin;
* recall of pairs with Jaccard >= threshold + 0.05: as candidates (a shared band), as members of
  the same LSH component, and after removal (at most one of the two documents remains);
* precision: every pair the Ray pipeline removed, checked against the ground-truth Jaccard.

    .venv/bin/python benchmarks/accuracy_near_dedup.py [--corpus PATH] [--threshold 0.8]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
from scipy.sparse import csr_matrix, triu
from scipy.sparse.csgraph import connected_components

from dedup.lsh import band_keys
from dedup.minhash import MinHasher
from dedup.near import NearDedupConfig, near_duplicates
from dedup.normalize import shingle_strings

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "mixed.jsonl.gz"
SOURCES = {"debian-copyright", "common-licenses", "manpages-en"}
BINS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.0001]


def load(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [d for d in map(json.loads, lines) if d["meta"]["source"] in SOURCES]


def exact_pairs(texts: list[str], ngram_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, jaccard) for every pair i < j sharing at least one shingle."""
    vocabulary: dict[str, int] = {}
    rows, cols = [], []
    for doc, text in enumerate(texts):
        ids = {vocabulary.setdefault(s, len(vocabulary)) for s in shingle_strings(text, ngram_size)}
        rows.extend([doc] * len(ids))
        cols.extend(ids)
    incidence = csr_matrix((np.ones(len(rows), np.int32), (rows, cols)), shape=(len(texts), len(vocabulary)))
    sizes = np.asarray(incidence.sum(axis=1)).ravel()
    shared = triu(incidence @ incidence.T, k=1).tocoo()
    jaccard = shared.data / (sizes[shared.row] + sizes[shared.col] - shared.data)
    return shared.row, shared.col, jaccard


def band_candidates(texts: list[str], config: NearDedupConfig, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    keys = band_keys(MinHasher(config.num_perm, config.ngram_size, config.seed).signatures(texts), config.layout())
    return (keys[left] == keys[right]).any(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--threshold", type=float, default=0.8)
    args = parser.parse_args()
    config = NearDedupConfig(threshold=args.threshold)
    layout = config.layout()

    docs = load(args.corpus)
    ids = [d["id"] for d in docs]
    texts = [d["text"] for d in docs]
    left, right, jaccard = exact_pairs(texts, config.ngram_size)
    candidate = band_candidates(texts, config, left, right)

    print(f"documents: {len(docs)} ({', '.join(sorted(SOURCES))}); pairs sharing a shingle: {len(left)}")
    print(f"LSH: {layout.bands} bands x {layout.rows} rows, threshold {args.threshold}\n")
    print("| exact Jaccard | pairs | measured P(candidate) | theoretical |")
    print("|---|---:|---:|---:|")
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        inside = (jaccard >= lo) & (jaccard < hi)
        if inside.any():
            label = "1.0" if lo == 1.0 else f"[{lo:.2f}, {hi:.2f})"
            theory = layout.candidate_probability(jaccard[inside]).mean()
            print(f"| {label} | {inside.sum()} | {candidate[inside].mean():.3f} | {theory:.3f} |")

    graph = csr_matrix((np.ones(candidate.sum()), (left[candidate], right[candidate])), shape=(len(docs), len(docs)))
    _, component = connected_components(graph, directed=False)
    similar = jaccard >= args.threshold + 0.05

    import ray

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    table = pa.table({"id": ids, "text": texts, "input_pos": np.arange(len(ids), dtype=np.int64)})
    pairs, stats = near_duplicates(ray.data.from_arrow(table), config)
    removed = pairs.take_all()
    ray.shutdown()

    truth = {(ids[i], ids[j]): s for i, j, s in zip(left, right, jaccard)}
    truth.update({(b, a): s for (a, b), s in list(truth.items())})
    checked = [abs(truth.get((r["removed_id"], r["kept_id"]), 0.0) - r["jaccard"]) < 1e-9 for r in removed]
    precise = [truth.get((r["removed_id"], r["kept_id"]), 0.0) >= args.threshold for r in removed]
    gone = {r["removed_id"] for r in removed}
    resolved = np.array([ids[i] in gone or ids[j] in gone for i, j in zip(left[similar], right[similar])])

    print(f"\npairs with Jaccard >= {args.threshold + 0.05:.2f}: {similar.sum()}")
    print(f"recall as LSH candidates (a shared band): {candidate[similar].mean():.4f}")
    print(f"recall as same LSH component: {(component[left[similar]] == component[right[similar]]).mean():.4f}")
    print(f"recall after removal (at most one of the pair remains): {resolved.mean():.4f}")
    print(f"removed: {len(removed)}; Jaccard equal to ground truth: {sum(checked)}/{len(removed)}")
    print(f"precision (removed with ground-truth Jaccard >= {args.threshold}): {sum(precise) / max(len(removed), 1):.4f}")
    print("stats: " + json.dumps(stats))


if __name__ == "__main__":
    main()

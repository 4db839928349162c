"""Near-duplicate removal on a real local Ray: what is removed, verification, keep policies, determinism."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from curation.errors import UserError
from dedup.near import NearDedupConfig, near_duplicates
from dedup.normalize import shingle_strings

# Explicit 32 x 4 layout: pairs at Jaccard >= 0.8 become candidates with probability ~1, so the
# outcome below does not hinge on one lucky band.
CONFIG = NearDedupConfig(threshold=0.8, bands=32, rows=4)


def exact_jaccard(a: str, b: str) -> float:
    sa, sb = set(shingle_strings(a)), set(shingle_strings(b))
    return len(sa & sb) / len(sa | sb)


def _words(rng: np.random.Generator, count: int) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return ["".join(rng.choice(letters, size=rng.integers(3, 9))) for _ in range(count)]


def build_corpus() -> dict[str, str]:
    """Planted near-duplicates among unrelated documents (deterministic)."""
    rng = np.random.default_rng(11)
    vocab = _words(rng, 3000)
    pick = lambda n: [vocab[i] for i in rng.integers(0, len(vocab), n)]  # noqa: E731
    docs: dict[str, str] = {}
    base = pick(120)
    docs["dup-1"] = " ".join(base)
    docs["dup-2"] = " ".join(base[:100] + ["changed"] + base[101:])
    docs["dup-3"] = "  ".join(w.upper() + "," for w in base) + "!!!"
    chain = pick(240)  # a~b and b~c at 0.815, a~c at 0.66
    docs["chain-a"], docs["chain-b"], docs["chain-c"] = (" ".join(chain[s : s + 200]) for s in (0, 20, 40))
    han = [chr(c) for c in range(0x4E00, 0x4E00 + 800)]
    zh = "".join(rng.choice(han, size=150))
    docs["zh-1"] = zh
    docs["zh-2"] = zh[:70] + "，" + "变" + zh[71:] + "。"
    docs["zh-3"] = "".join(rng.choice(han, size=150))
    kept = pick(100)
    docs["k-1"] = " ".join(kept)
    docs["k-2"] = " ".join(kept + ["tail", "words", "make", "this", "longest"])
    docs["k-3"] = " ".join(kept[:50] + ["swapped"] + kept[51:])
    for i in range(20):
        docs[f"other-{i:02d}"] = " ".join(pick(int(rng.integers(5, 150))))
    docs["empty-1"], docs["empty-2"], docs["punct"] = "", "   ", "?! ... !?"
    return docs


def corpus_table() -> pa.Table:
    docs = build_corpus()
    ids = sorted(docs)
    # Input order differs from id order: k-3 comes first, so keep="first" keeps it.
    order = sorted(ids, key=lambda i: (i != "k-3", i[::-1]))
    return pa.table(
        {
            "id": ids,
            "text": [docs[i] for i in ids],
            "input_pos": pa.array([order.index(i) for i in ids], pa.int64()),
            "meta": [{"source": "test"}] * len(ids),
        }
    )


def run(table: pa.Table, config: NearDedupConfig, blocks: int = 3) -> tuple[list[tuple], dict]:
    import ray

    pairs, stats = near_duplicates(ray.data.from_arrow(table).repartition(blocks), config)
    assert pairs.schema().names == ["removed_id", "kept_id", "kind", "jaccard"]
    assert pairs.schema().types == [pa.string(), pa.string(), pa.string(), pa.float64()]
    return sorted((r["removed_id"], r["kept_id"], r["kind"], r["jaccard"]) for r in pairs.take_all()), stats


@pytest.fixture(scope="module")
def main_run(ray_local):
    return run(corpus_table(), CONFIG)


def test_removes_exactly_the_verified_near_duplicates(main_run):
    pairs, stats = main_run
    docs = build_corpus()
    assert {(r, k) for r, k, _, _ in pairs} == {
        ("dup-2", "dup-1"),
        ("dup-3", "dup-1"),
        ("chain-b", "chain-a"),
        ("zh-2", "zh-1"),
        ("k-2", "k-1"),
        ("k-3", "k-1"),
    }
    for removed, kept, kind, jaccard in pairs:
        assert kind == "near"
        assert jaccard == pytest.approx(exact_jaccard(docs[removed], docs[kept]), abs=1e-12)
        assert jaccard >= CONFIG.threshold
    assert stats["near_duplicates"] == len(pairs) == 6


def test_chain_is_not_removed_transitively(main_run):
    pairs, stats = main_run
    docs = build_corpus()
    assert exact_jaccard(docs["chain-a"], docs["chain-b"]) >= 0.8
    assert exact_jaccard(docs["chain-b"], docs["chain-c"]) >= 0.8
    assert exact_jaccard(docs["chain-a"], docs["chain-c"]) < 0.8
    assert "chain-c" not in {r for r, *_ in pairs}
    assert stats["failed_verification"] == 1  # chain-c, compared with the kept chain-a


def test_chinese_near_duplicates_use_character_shingles(main_run):
    pairs, _ = main_run
    docs = build_corpus()
    assert len(shingle_strings(docs["zh-1"])) == 146
    assert ("zh-2", "zh-1") in {(r, k) for r, k, _, _ in pairs}
    assert "zh-3" not in {r for r, *_ in pairs}


def test_empty_documents_are_never_near_duplicates(main_run):
    pairs, _ = main_run
    assert not {"empty-1", "empty-2", "punct"} & {i for r, k, *_ in pairs for i in (r, k)}


def test_stats_add_up(main_run):
    pairs, stats = main_run
    assert stats["documents"] == len(build_corpus())
    assert stats["candidate_pairs"] == stats["near_duplicates"] + stats["failed_verification"]
    assert stats["lsh"] == {"bands": 32, "rows": 4, "threshold": 0.8}
    assert stats["cluster_size_histogram"] == {"2": 2, "3": 2}  # chain-a+b, zh-1+2; dup-1..3, k-1..3
    assert stats["clusters"] == 4
    assert sum((int(size) - 1) * n for size, n in stats["cluster_size_histogram"].items()) == len(pairs)
    json.dumps(stats)


@pytest.mark.parametrize(("keep", "kept"), [("longest", "k-2"), ("first", "k-3")])
def test_keep_policies(ray_local, keep, kept):
    table = corpus_table()
    pairs, _ = run(table.filter(pa.compute.starts_with(table.column("id"), "k-")), NearDedupConfig(keep=keep))
    assert {k for _, k, _, _ in pairs} == {kept}
    assert {r for r, *_ in pairs} == {"k-1", "k-2", "k-3"} - {kept}


def test_same_result_for_any_block_layout_and_partition_count(main_run):
    again = run(corpus_table(), NearDedupConfig(threshold=0.8, bands=32, rows=4, num_partitions=3), blocks=7)
    assert again == main_run


def test_same_result_with_one_cpu(main_run, tmp_path):
    script = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import ray
ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
from test_near_dedup import CONFIG, corpus_table, run
pairs, stats = run(corpus_table(), CONFIG, blocks=2)
json.dump({{"pairs": pairs, "stats": stats}}, open({str(tmp_path / "out.json")!r}, "w"))
"""
    env = dict(os.environ, RAY_DATA_DISABLE_PROGRESS_BARS="1")
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=170, capture_output=True)
    one_cpu = json.loads((tmp_path / "out.json").read_text())
    assert [tuple(p) for p in one_cpu["pairs"]] == main_run[0]
    assert one_cpu["stats"] == main_run[1]


def test_config_is_checked():
    with pytest.raises(UserError, match="keep"):
        NearDedupConfig(keep="random")
    with pytest.raises(UserError, match="threshold"):
        NearDedupConfig(threshold=1.0)
    with pytest.raises(UserError, match="bands"):
        NearDedupConfig(bands=4)
    with pytest.raises(UserError, match="at most num_perm"):
        NearDedupConfig(bands=20, rows=8)


def test_empty_input(ray_local):
    empty = corpus_table().slice(0, 0)
    pairs, stats = run(empty, CONFIG, blocks=1)
    assert pairs == []
    assert stats["documents"] == stats["near_duplicates"] == stats["candidate_pairs"] == 0
    assert stats["cluster_size_histogram"] == {}

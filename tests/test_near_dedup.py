"""Near-duplicate removal on a real local Ray: what is removed, verification, the greedy in keep-policy
order (chains, stars, families), keep policies, bounded buckets, determinism."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from curate.curation.errors import UserError
from curate.dedup.lsh import band_keys
from curate.dedup.minhash import MinHasher
from curate.dedup.near import NearDedupConfig, near_duplicates
from curate.dedup.normalize import shingle_strings

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


def test_chain_keeps_both_ends_and_removes_the_middle(main_run):
    pairs, _ = main_run
    docs = build_corpus()
    assert exact_jaccard(docs["chain-a"], docs["chain-b"]) >= 0.8
    assert exact_jaccard(docs["chain-b"], docs["chain-c"]) >= 0.8
    assert exact_jaccard(docs["chain-a"], docs["chain-c"]) < 0.8
    removed = {r for r, *_ in pairs}
    assert "chain-b" in removed
    assert not {"chain-a", "chain-c"} & removed


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
    assert stats["candidate_pairs"] == stats["verified_edges"] + stats["failed_verification"]
    assert stats["verified_edges"] >= stats["near_duplicates"] == len(pairs)
    assert stats["lsh"] == {"bands": 32, "rows": 4, "threshold": 0.8}
    assert stats["cluster_size_histogram"] == {"2": 2, "3": 2}  # chain-a+b, zh-1+2; dup-1..3, k-1..3
    assert stats["clusters"] == 4 and stats["largest_cluster"] == 3
    assert sum((int(size) - 1) * n for size, n in stats["cluster_size_histogram"].items()) == len(pairs)
    assert stats["rounds"] == 1 and stats["greedy_rounds"] >= 2
    assert stats["largest_bucket"] >= 3 and stats["bucket_memberships"] >= 14
    json.dumps(stats)


def test_only_bucket_members_leave_their_blocks(main_run):
    """Verification reads the shingle sets of the documents that share a band key with another one,
    and nothing else leaves the blocks: the unrelated and empty documents stay where they are."""
    _, stats = main_run
    texts = corpus_table().column("text").to_pylist()
    shingled = [t for t in texts if shingle_strings(t, CONFIG.ngram_size)]
    keys = band_keys(MinHasher(CONFIG.num_perm, CONFIG.ngram_size, CONFIG.seed).signatures(shingled), CONFIG.layout())
    shared = {key for key, count in zip(*np.unique(keys, return_counts=True)) if count >= 2}
    members = sum(any(key in shared for key in row) for row in keys)
    assert stats["members_moved"] == members
    assert members < len(shingled) < stats["documents"]


@pytest.mark.parametrize(("keep", "kept"), [("longest", "k-2"), ("first", "k-3")])
def test_keep_policies(ray_local, keep, kept):
    table = corpus_table()
    pairs, _ = run(table.filter(pa.compute.starts_with(table.column("id"), "k-")), NearDedupConfig(keep=keep))
    assert {k for _, k, _, _ in pairs} == {kept}
    assert {r for r, *_ in pairs} == {"k-1", "k-2", "k-3"} - {kept}


@pytest.mark.parametrize(("partitions", "blocks"), [(3, 7), (1, 2)])
def test_same_result_for_any_block_layout_and_partition_count(main_run, partitions, blocks):
    again = run(corpus_table(), NearDedupConfig(threshold=0.8, bands=32, rows=4, num_partitions=partitions), blocks=blocks)
    assert again == main_run


def test_same_result_with_one_cpu(main_run, rounds_run, tmp_path):
    """One CPU and two blocks against two CPUs and three blocks: the main corpus, and the run
    whose buckets take several verification rounds."""
    script = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import ray
ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
from test_near_dedup import CONFIG, ROUNDS_CONFIG, STRUCTURES, as_table, corpus_table, run
runs = [run(corpus_table(), CONFIG, blocks=2), run(as_table(STRUCTURES), ROUNDS_CONFIG, blocks=2)]
json.dump([{{"pairs": pairs, "stats": stats}} for pairs, stats in runs], open({str(tmp_path / "out.json")!r}, "w"))
"""
    env = dict(os.environ, RAY_DATA_DISABLE_PROGRESS_BARS="1")
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=170, capture_output=True)
    for one_cpu, two_cpus in zip(json.loads((tmp_path / "out.json").read_text()), [main_run, rounds_run]):
        assert [tuple(p) for p in one_cpu["pairs"]] == two_cpus[0]
        assert one_cpu["stats"] == two_cpus[1]


def test_config_is_checked():
    with pytest.raises(UserError, match="keep"):
        NearDedupConfig(keep="random")
    with pytest.raises(UserError, match="threshold"):
        NearDedupConfig(threshold=1.0)
    with pytest.raises(UserError, match="bands"):
        NearDedupConfig(bands=4)
    with pytest.raises(UserError, match="at most num_perm"):
        NearDedupConfig(bands=20, rows=8)
    with pytest.raises(UserError, match="max_heads"):
        NearDedupConfig(heads=8, max_heads=4)
    assert [NearDedupConfig(heads=16, max_heads=1024).heads_in_round(r) for r in (1, 2, 3, 4)] == [16, 128, 1024, 1024]


def test_empty_input(ray_local):
    empty = corpus_table().slice(0, 0)
    pairs, stats = run(empty, CONFIG, blocks=1)
    assert pairs == []
    assert stats["documents"] == stats["near_duplicates"] == stats["candidate_pairs"] == 0
    assert stats["cluster_size_histogram"] == {}


def _distinct_words(rng: np.random.Generator, count: int) -> list[str]:
    words: list[str] = []
    while len(words) < count:
        words = sorted(set(words) | set(_words(rng, count)))
    return [str(w) for w in rng.permutation(words)[:count]]


def shifted_families() -> dict[str, str]:
    """Windows of 200 words over one 260-word text: two families of near-copies (shifts 0-2 and
    29-31) joined by one weak edge, a-3 (shift 6) ~ b-0 (shift 25) at 0.82; every other pair across
    the families is below 0.8. Plus a chain of windows every 5 words (each similar to its next four)."""
    rng = np.random.default_rng(5)
    words = _distinct_words(rng, 560)
    window = lambda text, s: " ".join(text[s : s + 200])  # noqa: E731
    family, chain = words[:260], words[260:]
    docs = {f"fam-a-{i}": window(family, s) for i, s in enumerate((0, 1, 2, 6))}
    docs |= {f"fam-b-{i}": window(family, s) for i, s in enumerate((25, 29, 30, 31))}
    docs |= {f"line-{s:03d}": window(chain, s) for s in range(0, 100, 5)}
    return docs


def star_of_copies(copies: int = 40) -> dict[str, str]:
    """One 200-word template and near-copies of it, each with one word changed (0.95 to the
    template, about 0.91 to each other)."""
    rng = np.random.default_rng(6)
    words = _distinct_words(rng, 200 + copies)
    template, spare = words[:200], words[200:]
    docs = {"star-template": " ".join(template)}
    for i in range(copies):
        copy = list(template)
        copy[10 + 4 * i] = spare[i]
        docs[f"star-copy-{i:02d}"] = " ".join(copy)
    return docs


def as_table(docs: dict[str, str]) -> pa.Table:
    ids = sorted(docs)
    positions = np.argsort([i[::-1] for i in ids]).argsort()  # input order differs from id order
    return pa.table({"id": ids, "text": [docs[i] for i in ids], "input_pos": pa.array(positions, pa.int64())})


def exact_greedy(table: pa.Table, config: NearDedupConfig) -> dict[str, set[str]]:
    """By brute force: {removed id: ids of the kept documents before it that share an LSH band with
    it at or above the threshold}. Exact Jaccard of every pair that shares a band (the same MinHash
    and band keys as the pipeline); documents visited in keep order, each removed when such a kept
    document exists."""
    ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
    positions = table.column("input_pos").to_pylist()
    keys = band_keys(MinHasher(config.num_perm, config.ngram_size, config.seed).signatures(texts), config.layout())
    shingles = [set(shingle_strings(t, config.ngram_size)) for t in texts]
    policy = {
        "min-id": lambda i: (0, ids[i]),
        "longest": lambda i: (-len(texts[i]), ids[i]),
        "first": lambda i: (positions[i], ids[i]),
    }[config.keep]
    kept: list[int] = []
    removed: dict[str, set[str]] = {}
    for i in sorted((i for i in range(len(ids)) if shingles[i]), key=policy):
        jaccard = {k: len(shingles[i] & shingles[k]) / len(shingles[i] | shingles[k]) for k in kept if (keys[i] == keys[k]).any()}
        similar = {ids[k] for k, value in jaccard.items() if value >= config.threshold}
        if similar:
            removed[ids[i]] = similar
        else:
            kept.append(i)
    return removed


def assert_matches_exact_greedy(pairs: list[tuple], table: pa.Table, config: NearDedupConfig) -> None:
    """The same documents removed as the greedy, each named with a kept document allowed to remove
    it and the exact Jaccard."""
    expected = exact_greedy(table, config)
    texts = dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist()))
    assert {removed for removed, *_ in pairs} == expected.keys()
    for removed, kept, _, jaccard in pairs:
        assert kept in expected[removed]
        assert jaccard == pytest.approx(exact_jaccard(texts[removed], texts[kept]), abs=1e-12)


STRUCTURES = {**shifted_families(), **star_of_copies()}
# Wide bands (4 x 2) put chains and families into large mixed buckets; one head per bucket at first.
ROUNDS_CONFIG = NearDedupConfig(threshold=0.8, bands=4, rows=2, heads=1, num_partitions=3)


@pytest.fixture(scope="module")
def structures_run(ray_local):
    return run(as_table(STRUCTURES), CONFIG)


@pytest.fixture(scope="module")
def rounds_run(ray_local):
    return run(as_table(STRUCTURES), ROUNDS_CONFIG)


def test_two_families_joined_by_a_weak_edge_keep_one_each(structures_run):
    pairs, _ = structures_run
    a, b = [f"fam-a-{i}" for i in range(4)], [f"fam-b-{i}" for i in range(4)]
    assert exact_jaccard(STRUCTURES["fam-a-3"], STRUCTURES["fam-b-0"]) >= 0.8
    assert all(exact_jaccard(STRUCTURES[x], STRUCTURES[y]) < 0.8 for x in a for y in b if (x, y) != ("fam-a-3", "fam-b-0"))
    removed = {r for r, *_ in pairs}
    assert [x for x in a if x not in removed] == ["fam-a-0"]
    assert [y for y in b if y not in removed] == ["fam-b-0"]


def test_star_of_near_copies_keeps_one(structures_run):
    pairs, stats = structures_run
    star = [i for i in STRUCTURES if i.startswith("star-")]
    removed = {r: k for r, k, *_ in pairs}
    assert [i for i in star if i not in removed] == ["star-copy-00"]
    assert {removed[i] for i in star if i in removed} == {"star-copy-00"}
    assert stats["largest_cluster"] == len(star) and stats["largest_bucket"] > CONFIG.heads


def test_every_removal_has_a_kept_document_at_the_threshold(structures_run):
    pairs, _ = structures_run
    removed = {r for r, *_ in pairs}
    for r, k, _, jaccard in pairs:
        assert k not in removed
        assert jaccard == pytest.approx(exact_jaccard(STRUCTURES[r], STRUCTURES[k]), abs=1e-12) and jaccard >= 0.8
    kept = sorted(set(STRUCTURES) - removed)
    assert all(exact_jaccard(STRUCTURES[x], STRUCTURES[y]) < 0.8 for i, x in enumerate(kept) for y in kept[i + 1 :])


@pytest.mark.parametrize("keep", ["min-id", "longest", "first"])
@pytest.mark.parametrize("config", [CONFIG, ROUNDS_CONFIG], ids=["one-round", "rounds"])
def test_result_is_the_exact_greedy_in_keep_order(ray_local, keep, config):
    table = as_table({**build_corpus(), **STRUCTURES})
    config = replace(config, keep=keep)
    assert_matches_exact_greedy(run(table, config)[0], table, config)


def test_large_mixed_buckets_take_rounds_and_give_the_same_greedy(rounds_run):
    """With one head per bucket at first, members wait for later rounds. The result is still
    exactly the greedy, and the greedy over partitions (local_graph_limit=0) gives the same states
    as the one in a single task."""
    pairs, stats = rounds_run
    table = as_table(STRUCTURES)
    assert stats["rounds"] >= 2 and stats["largest_bucket"] > 2
    assert_matches_exact_greedy(pairs, table, ROUNDS_CONFIG)
    assert run(table, replace(ROUNDS_CONFIG, local_graph_limit=0)) == (pairs, stats)


def test_buckets_past_the_cap_take_more_rounds_and_skip_no_pair(rounds_run):
    """With at most two heads per bucket, the heads slide down the large buckets two members per
    round: more rounds, the same greedy."""
    table = as_table(STRUCTURES)
    capped = replace(ROUNDS_CONFIG, max_heads=2)
    pairs, stats = run(table, capped)
    assert stats["rounds"] > rounds_run[1]["rounds"]
    assert_matches_exact_greedy(pairs, table, capped)
    assert pairs == rounds_run[0]

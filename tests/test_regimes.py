"""Regimes B and C and the registry, on a real local Ray."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from curate.curation.errors import UserError
from curate.curation.shards import read_shard
from curate.jobs.build import BuildConfig, RunOptions, run_build
from curate.regimes import REGISTRY, get_regime
from test_build import CURATE, REPO, corpus, phase_table, run_cli, tree_digest, write_jsonl

DOCUMENTS = 205  # phase 1 = 103 rows: 10 documents 10 times each, one more 3 times


def build(out: Path, regime: str, **overrides) -> dict:
    config = BuildConfig(regime=regime, near_dedup=False, vocab_size=300, shard_rows=40, **overrides)
    return run_build(config, RunOptions(output=str(out), quiet=True))["manifest"]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("input") / "in.jsonl", corpus(DOCUMENTS))


@pytest.fixture(scope="module")
def build_a(ray_local, source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("builds") / "A"
    build(out, "A", inputs=(str(source),))
    return out


def shard_hashes(manifest: dict, phase: str) -> list[str]:
    return [s["sha256"] for s in next(p for p in manifest["phases"] if p["name"] == phase)["shards"]]


def load(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_registry_lookup_is_case_insensitive_and_lists_valid_names():
    assert get_regime("c") is REGISTRY["C"]
    assert get_regime("vl").name == "VL"
    with pytest.raises(UserError, match="unknown regime 'E'; valid regimes: A, B, C, D, VL"):
        get_regime("E")
    listing = run_cli("regimes")
    assert listing.returncode == 0
    assert [line.split()[0] for line in listing.stdout.splitlines()] == list(REGISTRY)


def test_b_is_a_byte_for_byte_with_a_constant_schedule(build_a, tmp_path):
    manifest_a = load(build_a)
    manifest_b = build(tmp_path / "B", "b", source=str(build_a))
    assert manifest_b["regime"] == "B"
    assert manifest_b["recipe"]["train_overrides"] == {"lr_decay_style": "constant"}
    assert manifest_a["recipe"]["train_overrides"] == {"lr_decay_style": "cosine"}
    for phase in ("phase-1", "phase-2"):
        assert shard_hashes(manifest_b, phase) == shard_hashes(manifest_a, phase)
    assert manifest_b["counts"] == manifest_a["counts"]
    assert (tmp_path / "B" / "tokenizer.json").read_bytes() == (build_a / "tokenizer.json").read_bytes()


def test_c_repeats_a_tenth_of_phase_one_ten_times(build_a, tmp_path):
    manifest_a = load(build_a)
    manifest_c = build(tmp_path / "C", "C", source=str(build_a))
    a_phase1 = {row["id"]: row for row in phase_table(build_a, manifest_a, "phase-1").to_pylist()}
    c_phase1 = phase_table(tmp_path / "C", manifest_c, "phase-1")
    rows = c_phase1.to_pylist()

    assert len(rows) == len(a_phase1) == manifest_a["phases"][0]["rows"] == 103
    copies = Counter(row["id"] for row in rows)
    assert len(copies) == math.ceil(103 * 0.1) == 11
    assert all(1 <= count <= 10 for count in copies.values())
    assert sum(10 - count for count in copies.values()) == 110 - 103, "the surplus copies are dropped"
    assert sorted(copies.values()) == [3] + [10] * 10, "floor(103/10) documents 10 times, one more for the 3 left"
    for row in rows:
        original = a_phase1[row["id"]]
        assert row["text"] == original["text"] and row["input_ids"] == original["input_ids"]
        assert row["meta"] == original["meta"]
    assert Counter((row["id"], row["copy_index"]) for row in rows).most_common(1)[0][1] == 1
    positions = [i for i, row in enumerate(rows) if row["id"] == rows[0]["id"]]
    assert positions != list(range(positions[0], positions[0] + len(positions))), "copies are spread, not adjacent"
    assert shard_hashes(manifest_c, "phase-2") == shard_hashes(manifest_a, "phase-2")
    assert manifest_c["recipe"]["settings"]["repeat_fraction"] == 0.1
    assert "remainder" in manifest_c["recipe"]["settings"]

    stats = json.loads((tmp_path / "C" / "stats.json").read_text())
    assert stats["phases"]["phase-1"]["exact_duplicate_rate"] == pytest.approx(1 - 11 / 103)


def test_c_selection_follows_the_seed(build_a, tmp_path):
    one = build(tmp_path / "C1", "C", source=str(build_a))
    other = build(tmp_path / "C2", "C", source=str(build_a), seed=7)
    ids_one = set(phase_table(tmp_path / "C1", one, "phase-1")["id"].to_pylist())
    ids_other = set(phase_table(tmp_path / "C2", other, "phase-1")["id"].to_pylist())
    assert ids_one != ids_other


@pytest.mark.parametrize("fraction, times", [(0.1, 5), (0.2, 10), (0.0, 10)])
def test_repetition_that_changes_phase_size_is_refused(build_a, tmp_path, fraction, times):
    result = run_cli(
        "build", "--regime", "C", "--from", str(build_a), "--output", str(tmp_path / "C"),
        "--repeat-fraction", str(fraction), "--repeat-times", str(times),
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("curate: error: --repeat-")


def test_from_must_be_a_complete_a_build(build_a, tmp_path):
    with pytest.raises(UserError, match="is not a complete curate build"):
        build(tmp_path / "C", "C", source=str(tmp_path))
    build(tmp_path / "B", "B", source=str(build_a))
    with pytest.raises(UserError, match="--from must name a complete regime A build"):
        build(tmp_path / "C", "C", source=str(tmp_path / "B"))


def test_c_from_scratch_with_one_cpu_and_after_kill_matches_c_from_a(build_a, source, tmp_path):
    """Without --from, C runs A's stages in its own output first; the result equals C derived from A."""
    expected = build(tmp_path / "C-from-A", "C", source=str(build_a))
    common = ["build", "--regime", "C", "--input", str(source), "--shard-rows", "40", "--vocab-size", "300",
              "--no-near-dedup", "--quiet"]
    killed = tmp_path / "C-killed"
    process = subprocess.Popen([*CURATE, *common, "--output", str(killed), "--num-cpus", "1"], cwd=REPO, start_new_session=True)
    deadline = time.monotonic() + 240
    while not (killed / "_work" / "base" / "_work" / "exact" / "_DONE.json").exists():
        assert process.poll() is None and time.monotonic() < deadline, "build ended before it could be killed"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    resumed = run_cli(*common, "--output", str(killed), "--resume", "--num-cpus", "1")
    assert resumed.returncode == 0, resumed.stderr
    manifest = load(killed)
    for phase in ("phase-1", "phase-2"):
        assert shard_hashes(manifest, phase) == shard_hashes(expected, phase)
    data = {k: v for k, v in tree_digest(killed).items() if k.startswith("phase-")}
    assert data == {k: v for k, v in tree_digest(tmp_path / "C-from-A").items() if k.startswith("phase-")}


def test_holdout_is_a_seeded_share_in_no_phase_and_derived_builds_share_it(ray_local, source, tmp_path):
    manifest_a = build(tmp_path / "A", "A", inputs=(str(source),), holdout=0.2)
    manifest_c = build(tmp_path / "C", "C", source=str(tmp_path / "A"))
    held = [row for s in manifest_a["holdout"]["shards"] for row in read_shard(str(tmp_path / "A"), s["path"]).to_pylist()]
    in_phases = {row["id"] for name in ("phase-1", "phase-2") for row in phase_table(tmp_path / "A", manifest_a, name).to_pylist()}
    counts = manifest_a["counts"]
    assert counts["held_out"] == len(held) and 0.1 * DOCUMENTS < len(held) < 0.3 * DOCUMENTS
    assert counts["input"] == sum(v for k, v in counts.items() if k != "input")
    assert not {row["id"] for row in held} & in_phases
    assert all(row["input_ids"] for row in held), "the holdout is tokenized with the build's tokenizer"
    assert manifest_c["holdout"] == manifest_a["holdout"] and manifest_c["counts"] == counts
    for shard in manifest_a["holdout"]["shards"]:
        assert (tmp_path / "C" / shard["path"]).read_bytes() == (tmp_path / "A" / shard["path"]).read_bytes()

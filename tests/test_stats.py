"""Coverage statistics: they separate the regimes, merge exactly, and survive missing columns."""

from __future__ import annotations

import itertools
import json
import random
import unicodedata

import numpy as np
import pyarrow as pa
import pytest
from datasketch import HyperLogLogPlusPlus
from typer.testing import CliRunner

from curate.curation import codelang
from curate.curation.codelang import detect_code_language
from curate.curation.detect import detect_language, script_counts
from curate.curation.embedded import embedded_records
from curate.curation.manifest import canonical_json, read_json
from curate.curation.shards import read_shard, write_shard
from curate.curation.hashing import GOLDEN, mix64
from curate.curation.sketches import Moments, hll_count, hll_registers
import curate.curation.stats
import curate.jobs.reduce
from curate.curation.stats import CoveragePartial, finalize, merge_partials, table_partial
from curate.curation.text_features import ngram_hashes, text_language
from curate.curation.vl import encode_record
from curate.dedup.prompt_dedup import PromptDedupConfig, dedup_record
from curate.jobs.stages.stats import compute_build_stats, discover_phases, shard_partial
from curate.regimes import get_regime
from tests.stats_builds import DEDUP, stats_builds  # noqa: F401  (the shared fixture)
from tests.vl_samples import FLAT, LLAVA, MESSAGES_PARTS

REQUIRED_KEYS = (
    "documents", "tokens", "bytes", "exact_duplicate_rate", "near_duplicate_rate", "effective_distinct_documents",
    "distinct_ngrams", "hapax_ratio_8", "unigram_entropy", "zipf_slope", "tail_mass", "code_share",
    "code_languages", "code_language_entropy", "languages", "compression_ratio_mean",
)  # fmt: skip


def test_stats_json_layout_and_required_keys(stats_builds):
    for folder, stats in stats_builds.values():
        assert read_json(folder, "stats.json") == stats
        assert sorted(stats["phases"]) == ["phase-1", "phase-2"]
        for values in [stats["overall"], *stats["phases"].values()]:
            missing = [key for key in REQUIRED_KEYS if key not in values]
            assert not missing
            assert sorted(values["distinct_ngrams"]) == ["1", "2", "4", "8"]
        assert stats["dedup"]["near"]["candidate_pairs"] == 7
        assert stats["overall"]["near_duplicate_rate"] == pytest.approx(3 / 303)


def test_repetition_regime_c_shows_in_phase_one(stats_builds):
    a = stats_builds["A"][1]["phases"]
    c = stats_builds["C"][1]["phases"]
    assert a["phase-1"]["exact_duplicate_rate"] == 0.0
    assert c["phase-1"]["exact_duplicate_rate"] == pytest.approx(0.9, abs=0.01)
    assert c["phase-1"]["cluster_size_histogram"] == {"10": 18}
    assert c["phase-1"]["effective_distinct_documents"] == pytest.approx(18)
    ratio = c["phase-1"]["distinct_ngrams"]["8"] / a["phase-1"]["distinct_ngrams"]["8"]
    assert 0.06 < ratio < 0.15
    assert c["phase-1"]["hapax_ratio_8"] == 0.0 < a["phase-1"]["hapax_ratio_8"]
    assert c["phase-2"]["distinct_ngrams"] == a["phase-2"]["distinct_ngrams"], "phase 2 is A's"


def test_simplified_words_regime_d_lowers_tail_mass_and_entropy(stats_builds):
    a = stats_builds["A"][1]
    d = stats_builds["D"][1]
    assert d["reference"] == "A" and a["reference"] is None
    assert d["phases"]["phase-1"]["tail_mass"] < 0.6 * a["phases"]["phase-1"]["tail_mass"]
    assert d["phases"]["phase-1"]["unigram_entropy"] < a["phases"]["phase-1"]["unigram_entropy"] - 0.5
    assert d["phases"]["phase-1"]["js_divergence"] > 5 * a["phases"]["phase-1"]["js_divergence"]
    assert a["overall"]["js_divergence"] == 0.0, "A is its own reference"
    assert d["phases"]["phase-1"]["rewrite_status"] == {"rewritten": 180}
    assert d["phases"]["phase-2"]["rewrite_status"] == {"original": 180}
    assert d["overall"]["rewrite_status"] == {"original": 180, "rewritten": 180}
    assert not any(key.startswith(("prompt_", "rewrite_")) for key in a["overall"]), "A's shards carry neither"


def test_code_converted_to_one_language_has_entropy_near_zero(stats_builds):
    a = stats_builds["A"][1]["phases"]["phase-1"]
    d = stats_builds["D"][1]["phases"]["phase-1"]
    assert a["code_languages"] == {name: 3 for name in ("c", "java", "javascript", "perl", "python", "shell")}
    assert a["code_language_entropy"] == pytest.approx(np.log2(6))
    assert d["code_languages"] == {"javascript": 18}
    assert d["code_language_entropy"] == 0.0
    assert a["code_share"] == pytest.approx(0.1)
    assert a["languages"] == {"en": 162, "zh": 18}


def test_merging_partials_in_any_order_gives_identical_numbers(stats_builds):
    folder = stats_builds["C"][0]
    partials = [shard_partial(folder, path, get_regime("C").transform) for paths in discover_phases(folder).values() for path in paths]
    expected = canonical_json(finalize(merge_partials(partials)))
    for order in itertools.permutations(range(len(partials))):
        assert canonical_json(finalize(merge_partials(partials[i] for i in order))) == expected
    tree = merge_partials([merge_partials(partials[2:]), merge_partials(partials[:2])])
    assert canonical_json(finalize(tree)) == expected


def _random_tree_merge(partials: list[CoveragePartial], rng: random.Random) -> CoveragePartial:
    """Partials merged pairwise in a random order and grouping."""
    pending = list(partials)
    while len(pending) > 1:
        rng.shuffle(pending)
        pending = [pending[0].merge(pending[1]), *pending[2:]]
    return pending[0]


def test_sampled_statistics_do_not_depend_on_partitioning_or_merge_order(stats_builds, monkeypatch):
    monkeypatch.setattr(curate.curation.stats, "SAMPLE_KEYS", 8)  # C holds 168 distinct documents: both samples are cut
    folder = stats_builds["C"][0]
    table = pa.concat_tables(read_shard(folder, path) for paths in discover_phases(folder).values() for path in paths)
    results = set()
    for rows, seed in itertools.product((1, 7, 50, table.num_rows), range(3)):
        partials = [table_partial(table.slice(start, rows)) for start in range(0, table.num_rows, rows)]
        section = finalize(_random_tree_merge(partials, random.Random(seed)))
        results.add(canonical_json(section))
    assert section["sample_keys"] == {"capacity": 8, "documents": 8, "ngrams_8": 8}
    assert len(results) == 1


def _documents_with_copies(distinct: int, seed: int) -> pa.Table:
    """`distinct` random token sequences, each 1 + Geometric(1/2) - 1 times (duplicates of many sizes)."""
    rng = np.random.default_rng(seed)
    ids, texts = [], []
    for _ in range(distinct):
        tokens = rng.integers(0, 5000, size=int(rng.integers(20, 60))).tolist()
        for _ in range(int(rng.geometric(0.5))):
            ids.append(tokens)
            texts.append(" ".join(map(str, tokens)))
    return pa.table({"text": texts, "input_ids": pa.array(ids, pa.list_(pa.int32()))})


def test_sampled_estimates_stay_within_their_stated_error(monkeypatch):
    table = _documents_with_copies(20_000, seed=3)
    monkeypatch.setattr(curate.curation.stats, "SAMPLE_KEYS", 1 << 24)
    exact = finalize(table_partial(table))
    assert exact["sample_keys"]["documents"] == exact["distinct_documents"] == 20_000
    capacity = 2048
    monkeypatch.setattr(curate.curation.stats, "SAMPLE_KEYS", capacity)
    partials = [table_partial(table.slice(start, 5000)) for start in range(0, table.num_rows, 5000)]
    sampled = finalize(merge_partials(partials))
    assert sampled["sample_keys"] == {"capacity": capacity, "documents": capacity, "ngrams_8": capacity}
    tolerance = 4 / capacity**0.5  # four standard errors
    for key in ("distinct_documents", "effective_distinct_documents", "exact_duplicate_rate", "hapax_ratio_8",
                "good_turing_coverage_8"):  # fmt: skip
        assert sampled[key] == pytest.approx(exact[key], rel=tolerance), key
    for size in ("1", "2", "3"):  # a cluster size is seen in its share of the sample only
        expected = exact["cluster_size_histogram"][size]
        share = expected / exact["distinct_documents"]
        assert sampled["cluster_size_histogram"][size] == pytest.approx(expected, rel=4 / (capacity * share) ** 0.5)
    assert sampled["documents"] == exact["documents"] and sampled["tokens"] == exact["tokens"]


def test_build_stats_merged_in_a_tree_of_ray_tasks_match_in_any_grouping(stats_builds, monkeypatch):
    monkeypatch.setattr(curate.jobs.reduce, "FAN_IN", 2)
    folder, stats = stats_builds["C"]
    phases = {name: paths[::-1] for name, paths in discover_phases(folder).items()}
    recomputed = compute_build_stats(folder, get_regime("C").transform, DEDUP, stats_builds["A"][0], phases)
    assert canonical_json(recomputed) == canonical_json(stats)


def test_moments_merge_exactly_whatever_the_grouping():
    values = np.random.default_rng(0).lognormal(size=1000)
    pieces = [Moments.of(chunk) for chunk in np.array_split(values, 7)]
    merged = [Moments(), *pieces]
    results = set()
    for _ in range(10):
        random.Random(len(results)).shuffle(merged)
        total = Moments()
        for piece in merged:
            total = total.merge(piece)
        results.add((total.count, total.mean, total.m2))
    assert len(results) == 1
    mean, std = total.summary()
    assert mean == pytest.approx(values.mean(), rel=1e-12) and std == pytest.approx(values.std(), rel=1e-9)


def test_hll_registers_match_datasketch_and_estimate_well():
    hashes = mix64(np.arange(50_000, dtype=np.uint64) + GOLDEN)
    sketch = HyperLogLogPlusPlus(p=14, hashfunc=lambda value: value)
    for value in hashes[:3000].tolist():
        sketch.update(value)
    assert np.array_equal(hll_registers(hashes[:3000]), sketch.reg)
    assert hll_count(hll_registers(hashes)) == pytest.approx(50_000, rel=0.03)
    assert hll_count(np.maximum(hll_registers(hashes[:30_000]), hll_registers(hashes[20_000:]))) == pytest.approx(
        50_000, rel=0.03
    )


def _vl_table(records: list[dict]) -> pa.Table:
    return pa.table(
        {"id": [f"r{i}" for i in range(len(records))], "record": [encode_record(r)[0] for r in records]}
    )


def test_vl_build_shards_report_the_share_before_and_after_from_vl_stats():
    results = [dedup_record(r, PromptDedupConfig()) for r in [LLAVA, MESSAGES_PARTS, FLAT]]
    vl_stats = [
        {
            "segments": stats.prompt.segments,
            "duplicate_segments": stats.prompt.duplicate_segments,
            "segments_after": stats.segments_after,
            "duplicate_segments_after": stats.duplicate_segments_after,
        }
        for _, _, stats in results
    ]
    table = _vl_table([record for record, _, _ in results]).append_column("vl_stats", pa.array(vl_stats))
    transform = get_regime("VL").transform

    def measured(partial: CoveragePartial) -> dict:
        return finalize(partial) | transform.statistics(partial.regime_counts)

    once = measured(table_partial(table, transform.shard_counts))
    expected_before = sum(s["duplicate_segments"] for s in vl_stats) / sum(s["segments"] for s in vl_stats)
    assert once["prompt_duplication_share_before_dedup"] == pytest.approx(expected_before)
    assert expected_before > 0.2
    assert once["prompt_duplication_share"] == 0.0 and once["prompt_records"] == 3
    merged = measured(merge_partials([table_partial(table, transform.shard_counts)] * 2))
    assert merged["prompt_records_with_duplicates"] == 0 and merged["prompt_records"] == 6
    assert merged["prompt_duplication_share_before_dedup"] == pytest.approx(expected_before)
    assert transform.statistics(table_partial(table.drop_columns(["vl_stats"]), transform.shard_counts).regime_counts) == {}


def test_missing_columns_give_nulls_not_crashes():
    only_ids = finalize(table_partial(pa.table({"id": ["a", "b"]})))
    assert only_ids["documents"] == 2
    for key in ("tokens", "bytes", "exact_duplicate_rate", "unigram_entropy", "tail_mass", "code_share"):
        assert only_ids[key] is None, key
    tokens_only = pa.table({"id": ["a", "b"], "input_ids": pa.array([[5, 6, 7, 5, 6, 7], [5, 6, 7]], pa.list_(pa.int32()))})
    stats = finalize(table_partial(tokens_only))
    assert stats["tokens"] == 9 and stats["bytes"] is None and stats["code_share"] is None
    assert stats["distinct_ngrams"]["1"] == 3 and stats["distinct_ngrams"]["2"] == 3
    assert stats["exact_duplicate_rate"] == 0.0
    assert json.loads(canonical_json(finalize(CoveragePartial())))["documents"] == 0


def test_untokenized_text_falls_back_to_words():
    table = pa.table({"id": ["a", "b", "c"], "text": ["the cat sat", "the cat sat", "a dog ran far"]})
    stats = finalize(table_partial(table))
    assert stats["ngram_unit"] == "word"
    assert stats["exact_duplicate_rate"] == pytest.approx(1 / 3)
    assert stats["distinct_ngrams"]["1"] == 7
    assert stats["cluster_size_histogram"] == {"1": 1, "2": 1}


def test_source_field_slices_sizes(stats_builds):
    by_source = stats_builds["A"][1]["overall"]["by_source"]
    assert by_source["code"]["documents"] == 36 and by_source["prose"]["documents"] == 324
    overall = stats_builds["A"][1]["overall"]
    assert by_source["code"]["tokens"] + by_source["prose"]["tokens"] == overall["tokens"]


def test_stats_command_prints_and_recomputes(stats_builds, tmp_path):
    from curate.jobs.cli import app

    folder, stats = stats_builds["D"]
    runner = CliRunner()
    printed = runner.invoke(app, ["stats", folder])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.output) == stats
    recomputed = runner.invoke(app, ["stats", folder, "--recompute", "--reference", stats_builds["A"][0]])
    assert recomputed.exit_code == 0, recomputed.output
    assert json.loads(recomputed.output) == stats
    write_shard(pa.table({"id": ["x"]}), str(tmp_path), "phase-1/shard-00000.arrow")
    incomplete = runner.invoke(app, ["stats", str(tmp_path)])
    assert incomplete.exit_code != 0 and "not a complete curate build" in str(incomplete.exception)


@pytest.mark.parametrize(
    "text",
    ["plain English text.", "1234 -- ++", "", "Ünïcödé and ASCII", "中文的文本 with some English", "Привет мир", "x" * 5000 + "中"],
)
def test_text_language_agrees_with_detect_language(text):
    assert text_language(text) == detect_language(text)


CODE_SAMPLES = {
    "python": "import os\n\n\ndef main(path):\n    for name in os.listdir(path):\n        print(name)\n    return None\n",
    "javascript": "const fs = require('fs');\n\nfunction read(path) {\n  return fs.readFileSync(path, 'utf8');\n}\n"
    "module.exports = read;\n",
    "java": "package org.example;\n\nimport java.util.List;\n\npublic class Main {\n    public static void main(String[] args) {\n"
    "        System.out.println(args.length);\n    }\n}\n",
    "c": "#include <stdio.h>\n\nint main(int argc, char **argv)\n{\n    printf(\"%d\\n\", argc);\n    return 0;\n}\n",
    "perl": "#!/usr/bin/perl\nuse strict;\nuse warnings;\nmy $name = shift;\nprint \"$name\\n\" if $name =~ /x/;\n",
    "shell": "#!/bin/sh\nset -e\nfor f in *.txt; do\n    echo \"$f\"\ndone\nif [ -n \"$1\" ]; then\n    exit 1\nfi\n",
    "go": "package main\n\nimport \"fmt\"\n\nfunc main() {\n    name := \"x\"\n    fmt.Println(name)\n}\n",
    "rust": "use std::io;\n\nfn main() {\n    let mut line = String::new();\n    io::stdin().read_line(&mut line).unwrap();\n"
    "    println!(\"{}\", line);\n}\n",
    "cpp": "#include <iostream>\n#include <vector>\n\nnamespace demo {\nint count(const std::vector<int>& v) {\n"
    "    return v.size();\n}\n}\n\nint main() {\n    std::cout << demo::count({1, 2}) << std::endl;\n    return 0;\n}\n",
    "ruby": "require 'json'\n\nmodule Shop\n  class Cart\n    attr_reader :items\n\n    def initialize(owner)\n"
    "      @owner = owner\n      @items = []\n    end\n\n    def each_item\n      @items.each do |item|\n        yield item\n"
    "      end\n    end\n  end\nend\n\nputs Shop::Cart.new('ana').items.size\n",
}
MARKER_SAMPLES = list(CODE_SAMPLES.values())


@pytest.mark.parametrize("language", sorted(CODE_SAMPLES))
def test_code_language_detection(language):
    assert detect_code_language(CODE_SAMPLES[language]) == language


@pytest.mark.parametrize(
    "text",
    [
        "The quick brown fox jumps over the lazy dog. It was a sunny day; everyone was happy.",
        "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
        "NAME\n    ls - list directory contents\nSYNOPSIS\n    ls [OPTION]... [FILE]...\n",
        "We walked to the river and asked what the ferryman\nwould do\nwith the boxes. He said\nthe end\n"
        "of the season was near, and that the class of\nboats he kept would do.\nThe End\n",
        "Chapter one\n\nHe looked up.\nputs the cup down, she said\nand then went out.\nThe story does not end\nend\n",
    ],
)
def test_prose_is_not_code(text):
    assert detect_code_language(text) is None


def test_every_marker_match_holds_one_of_its_literals():
    """The literals let a substring test skip a marker's scan: a match without one would be a lost score."""
    texts = [*MARKER_SAMPLES, *(record["text"][:3000] for record in embedded_records())]  # what detection reads
    checked = 0
    for markers in codelang._COMPILED.values():
        for pattern, _, literals in markers:
            for text in texts:
                for match in pattern.finditer(text):
                    checked += 1
                    assert not literals or any(literal in match.group(0) for literal in literals), pattern.pattern
    assert checked > 1000


def test_marker_scores_equal_a_scan_of_every_marker():
    for text in [*MARKER_SAMPLES, *(record["text"][:3000] for record in embedded_records())]:
        lines = max(20, sum(1 for line in text.splitlines() if line.strip()))
        scanned = {
            language: 100.0 * sum(weight * len(pattern.findall(text)) for pattern, weight, _ in markers) / lines
            for language, markers in codelang._COMPILED.items()
        }
        assert codelang.language_scores(text) == scanned


def _script_counts_per_character(text: str) -> dict[str, int]:
    """detect.py's counts, one character at a time through unicodedata: the definition it vectorises."""
    counts = {"han": 0, "kana": 0, "hangul": 0, "cyrillic": 0, "latin": 0, "other": 0}
    for char in text[:4000]:
        code = ord(char)
        if 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF:
            counts["han"] += 1
        elif 0x3040 <= code <= 0x30FF:
            counts["kana"] += 1
        elif 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF:
            counts["hangul"] += 1
        elif 0x0400 <= code <= 0x04FF:
            counts["cyrillic"] += 1
        elif char.isascii():
            counts["latin"] += char.isalpha()
        elif unicodedata.category(char).startswith("L"):
            counts["other"] += 1
    return counts


def test_script_counts_match_a_per_character_count():
    rng = random.Random(5)
    texts = ["", "\ud800 lone surrogate", "Ünïcödé", "日本語のテキスト", "한국어 ᄀ", "Привет", "x" * 5000 + "中"]
    for _ in range(3000):
        texts.append("".join(chr(rng.choice([rng.randint(0, 0x7F), rng.randint(0, 0x3000), rng.randint(0x3000, 0xFAFF),
                                             rng.randint(0, 0x10FFFF)])) for _ in range(rng.randint(0, 80))))
    for text in texts:
        assert script_counts(text) == _script_counts_per_character(text), repr(text)


def test_ngram_sketches_do_not_depend_on_the_chunking(monkeypatch):
    monkeypatch.setattr(curate.curation.stats, "SAMPLE_KEYS", 16)  # the 8-gram sample fills, so its filter acts
    once = _documents_with_copies(300, seed=4)
    repeats = [[1, 2, 3, 4] * 10, list(range(300)), [7] * 6, [5, 6] * 30, list(range(6)), [], [9] * 3]
    repeated = pa.table({"text": [" ".join(map(str, ids)) for ids in repeats],
                         "input_ids": pa.array(repeats, pa.list_(pa.int32()))})
    # The second pass meets every 8-gram of the final sample again; 6-token documents land alone
    # in chunks beside longer ones.
    table = pa.concat_tables([once, repeated, once])
    sections = set()
    for units in (1, 5, 6, 97, 4096, 1 << 40):
        monkeypatch.setattr(curate.curation.stats, "NGRAM_CHUNK_UNITS", units)
        partial = table_partial(table)
        sample = tuple(part.tobytes() for part in partial.ngram8_sample)
        registers = tuple(partial.hll[n].tobytes() for n in sorted(partial.hll))
        repetition = (partial.repeated_ngrams.count, partial.repeated_ngrams.mean, partial.repeated_ngrams.m2)
        sections.add((canonical_json(finalize(partial)), sample, registers, repetition))
    assert len(sections) == 1
    assert partial.repeated_ngrams.mean > 0


def test_ngram_hashes_cover_every_window_of_every_length():
    for total in range(12):
        grams = ngram_hashes(np.arange(total, dtype=np.uint64), np.array([0, total]))
        assert {n: len(hashes) for n, (hashes, _) in grams.items()} == {n: max(total - n + 1, 0) for n in (1, 2, 4, 8)}


def test_reference_must_share_the_tokenizer(stats_builds, tmp_path):
    from curate.curation.errors import UserError
    from curate.jobs.stages.stats import compute_build_stats

    folder = stats_builds["D"][0]
    other = tmp_path / "other"
    write_shard(pa.table({"id": ["x"], "text": ["y"]}), str(other), "phase-1/shard-00000.arrow")
    (other / "tokenizer.json").write_text("{}")
    with pytest.raises(UserError, match="different tokenizers"):
        compute_build_stats(folder, get_regime("D").transform, {}, str(other))
    with pytest.raises(UserError, match="has no phase"):
        compute_build_stats(folder, get_regime("D").transform, {}, str(tmp_path / "missing"))

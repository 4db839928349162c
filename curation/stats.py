"""Coverage statistics as mergeable partial results.

A shard gives one `CoveragePartial`; partials merge into a phase's, phases into the
build's. Every merge is exact and commutative (integer counts, sorted count tables,
HyperLogLog registers under `max`, Welford moments merged in exact rationals), so the
numbers in `stats.json` do not depend on the order Ray returns partials in. Only
`finalize` turns a partial into floats.

Distinct 1-grams are counted exactly (the unigram table); longer n-grams by HyperLogLog.

Units: n-grams, unigram statistics and the frequency profile count *tokens* (the
`input_ids` column, one tokenizer per family of builds, so A, C and D compare) and fall
back to *words* (a regular expression over `text`) for untokenized shards.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from datasketch import HyperLogLogPlusPlus

from curation.codelang import detect_code_language
from curation.detect import detect_language

NGRAM_ORDERS = (1, 2, 4, 8)
HLL_PRECISION = 14  # 16384 registers, about 0.8% standard error; must stay <= 16 (datasketch's tables)
GOOD_TURING_ORDER = 8
# 8-grams whose hash has its top three bits zero (one in eight) are counted exactly; a
# hash-chosen sample keeps every occurrence of a chosen n-gram, so frequency-of-frequency
# ratios (hapax ratio, Good-Turing coverage) stay unbiased while memory stays bounded.
GOOD_TURING_SAMPLE_SHIFT = 61
REPEATED_NGRAM_ORDER = 4
ASCII_LETTER = re.compile(r"[A-Za-z]")
ZIPF_RANK_WINDOW = (10, 1000)
TAIL_TOP_KS = (10, 100, 1000, 10000)
TAIL_TOP_K = 1000
RANK_CURVE_POINTS = 60
FLOAT_DIGITS = 10
COMPRESSION_LEVEL = 6
WORD_PATTERN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|\w+|[^\w\s]")

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_COMBINE = np.uint64(0xD6E8FEB86659FD93)


def mix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: a fast, well-spread 64-bit hash of uint64 values."""
    z = values.astype(np.uint64, copy=True)
    z += _GOLDEN
    z ^= z >> np.uint64(30)
    z *= _MIX1
    z ^= z >> np.uint64(27)
    z *= _MIX2
    z ^= z >> np.uint64(31)
    return z


def _combine(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Hash of the concatenation of two hashed sequences (order-sensitive)."""
    return mix64(left ^ (right * _COMBINE))


def ngram_hashes(units: np.ndarray, offsets: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Hashes of every n-gram (n in NGRAM_ORDERS) that lies inside one document.

    `units` are the uint64 token ids of all documents back to back, `offsets` the document
    boundaries (length documents + 1). Returns {n: (hashes, document index)}; the 2-, 4- and
    8-gram hashes are built by combining two halves, three vectorised passes in all.
    """
    total = len(units)
    lengths = np.diff(offsets)
    document = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    document_end = np.repeat(offsets[1:], lengths)
    positions = np.arange(total, dtype=np.int64)
    result: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    hashes = mix64(units)
    n = 1
    while n <= max(NGRAM_ORDERS):
        if n > 1:
            half = n // 2
            hashes = _combine(hashes[: total - n + 1], hashes[half : total - half + 1])
        starts = positions[: len(hashes)]
        valid = starts + n <= document_end[: len(hashes)]
        if n in NGRAM_ORDERS:
            result[n] = (hashes[valid], document[: len(hashes)][valid])
        n *= 2
    return result


def _bit_length(values: np.ndarray) -> np.ndarray:
    """Exact bit length of uint64 values below 2**53 (float64 represents them exactly)."""
    return np.frexp(values.astype(np.float64))[1]


def hll_registers(hashes: np.ndarray, precision: int = HLL_PRECISION) -> np.ndarray:
    """HyperLogLog++ registers of 64-bit hashes, laid out as datasketch's HyperLogLogPlusPlus."""
    registers = np.zeros(1 << precision, dtype=np.int8)
    if len(hashes):
        index = (hashes & np.uint64((1 << precision) - 1)).astype(np.int64)
        rank = ((64 - precision + 1) - _bit_length(hashes >> np.uint64(precision))).astype(np.int8)
        np.maximum.at(registers, index, rank)
    return registers


def hll_count(registers: np.ndarray) -> int:
    """Estimated number of distinct items (datasketch's HLL++ estimator, bias-corrected)."""
    return int(round(HyperLogLogPlusPlus(reg=registers.copy()).count()))


def count_table(keys: np.ndarray, counts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct keys and their summed counts: the mergeable form of a Counter."""
    keys = np.asarray(keys, dtype=np.uint64)
    counts = np.ones(len(keys), dtype=np.int64) if counts is None else np.asarray(counts, dtype=np.int64)
    if len(keys) == 0:
        return keys, counts
    order = np.argsort(keys, kind="stable")
    keys, counts = keys[order], counts[order]
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    return keys[starts], np.add.reduceat(counts, starts)


def merge_count_tables(tables: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    tables = list(tables)
    if not tables:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    return count_table(np.concatenate([k for k, _ in tables]), np.concatenate([c for _, c in tables]))


@dataclass
class Moments:
    """Welford's count, mean and sum of squared deviations, merged exactly (Chan et al.)."""

    count: int = 0
    mean: Fraction = Fraction(0)
    m2: Fraction = Fraction(0)

    @classmethod
    def of(cls, values: np.ndarray) -> "Moments":
        if len(values) == 0:
            return cls()
        mean = float(np.mean(values))
        return cls(len(values), Fraction(mean), Fraction(float(np.sum((values - mean) ** 2))))

    def merge(self, other: "Moments") -> "Moments":
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        count = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / count
        m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / count
        return Moments(count, mean, m2)

    def summary(self) -> tuple[float | None, float | None]:
        """(mean, population standard deviation), or Nones when empty."""
        if self.count == 0:
            return None, None
        return float(self.mean), math.sqrt(float(self.m2 / self.count))


def _add_counters(left: dict, right: dict) -> dict:
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
    document_hashes: tuple = (np.zeros(0, np.uint64), np.zeros(0, np.int64))
    hll: dict = field(default_factory=dict)
    unigrams: tuple = (np.zeros(0, np.uint64), np.zeros(0, np.int64))
    ngram8_sample: tuple = (np.zeros(0, np.uint64), np.zeros(0, np.int64))
    code_documents: int = 0
    code_languages: dict = field(default_factory=dict)
    compression: Moments = field(default_factory=Moments)
    repeated_ngrams: Moments = field(default_factory=Moments)
    prompt: dict = field(default_factory=dict)
    rewrite_status: dict = field(default_factory=dict)

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
            document_hashes=merge_count_tables([self.document_hashes, other.document_hashes]),
            hll=hll,
            unigrams=merge_count_tables([self.unigrams, other.unigrams]),
            ngram8_sample=merge_count_tables([self.ngram8_sample, other.ngram8_sample]),
            code_documents=self.code_documents + other.code_documents,
            code_languages=dict(Counter(self.code_languages) + Counter(other.code_languages)),
            compression=self.compression.merge(other.compression),
            repeated_ngrams=self.repeated_ngrams.merge(other.repeated_ngrams),
            prompt=dict(Counter(self.prompt) + Counter(other.prompt)),
            rewrite_status=dict(Counter(self.rewrite_status) + Counter(other.rewrite_status)),
        )


def merge_partials(partials: Iterable[CoveragePartial]) -> CoveragePartial:
    merged = CoveragePartial()
    for partial in partials:
        merged = merged.merge(partial)
    return merged


# ---- one table -> one partial -------------------------------------------------------------


def _strings(table: pa.Table, name: str) -> list[str | None] | None:
    if name not in table.column_names:
        return None
    return table.column(name).to_pylist()


def _source_values(table: pa.Table) -> list[str | None] | None:
    """The `source` column, or the `source` field of a `meta` struct, when the input had one."""
    if "source" in table.column_names and pa.types.is_string(table.schema.field("source").type):
        return table.column("source").to_pylist()
    if "meta" in table.column_names:
        meta_type = table.schema.field("meta").type
        if pa.types.is_struct(meta_type) and meta_type.get_field_index("source") >= 0:
            values = pc.struct_field(table.column("meta"), "source")
            return [None if v is None else str(v) for v in values.to_pylist()]
    return None


def _token_units(table: pa.Table) -> tuple[np.ndarray, np.ndarray] | None:
    if "input_ids" not in table.column_names:
        return None
    column = table.column("input_ids")
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.uint64)
    return values, np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)


def _word_units(texts: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    hashes: list[int] = []
    offsets = [0]
    for text in texts:
        hashes.extend(xxhash.xxh3_64_intdigest(word.encode("utf-8")) for word in WORD_PATTERN.findall(text or ""))
        offsets.append(len(hashes))
    return np.array(hashes, dtype=np.uint64), np.array(offsets, dtype=np.int64)


def table_units(table: pa.Table) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(units, document offsets, unit name): token ids when tokenized, else words of `text`."""
    tokens = _token_units(table)
    if tokens is not None:
        return tokens[0], tokens[1], "token"
    texts = _strings(table, "text")
    if texts is not None:
        return (*_word_units(texts), "word")
    return None


def unigram_table(units: np.ndarray, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """Count table of units; token ids are small integers, so a bincount replaces the sort."""
    if unit != "token" or len(units) == 0:
        return count_table(units)
    counts = np.bincount(units.astype(np.int64))
    keys = np.flatnonzero(counts)
    return keys.astype(np.uint64), counts[keys].astype(np.int64)


def table_unigrams(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """The unigram count table of one table (what a reference build contributes)."""
    units = table_units(table)
    return unigram_table(units[0], units[2]) if units is not None else count_table(np.zeros(0, np.uint64))


def _document_hashes(texts: list[str | None] | None, units: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """One hash per document: of its text, or of its token ids when there is no text."""
    if texts is not None:
        return np.array([xxhash.xxh3_64_intdigest((t or "").encode("utf-8")) for t in texts], dtype=np.uint64)
    values, offsets = units
    return np.array(
        [xxhash.xxh3_64_intdigest(values[a:b].tobytes()) for a, b in zip(offsets[:-1], offsets[1:])],
        dtype=np.uint64,
    )


def _repeated_ngram_ratios(hashes: np.ndarray, document: np.ndarray, documents: int) -> np.ndarray:
    """Per document: share of its n-gram occurrences that repeat an earlier one in the same document.

    The document index goes into the top bits of a sort key and the n-gram hash's top bits below
    it, so one sort (no argsort) finds the distinct n-grams of every document at once.
    """
    totals = np.bincount(document, minlength=documents)
    hash_bits = np.uint64(64 - max(1, documents.bit_length()))
    keys = np.sort((document.astype(np.uint64) << hash_bits) | (hashes >> (np.uint64(64) - hash_bits)))
    first = np.concatenate(([True], keys[1:] != keys[:-1])) if len(keys) else np.zeros(0, bool)
    distinct = np.bincount((keys[first] >> hash_bits).astype(np.int64), minlength=documents)
    has_ngrams = totals > 0
    return 1.0 - distinct[has_ngrams] / totals[has_ngrams]


def _compression_ratios(texts: list[str | None]) -> np.ndarray:
    """UTF-8 bytes over zlib-compressed bytes per non-empty record (higher: more redundant)."""
    ratios = []
    for text in texts:
        if text:
            raw = text.encode("utf-8")
            ratios.append(len(raw) / len(zlib.compress(raw, COMPRESSION_LEVEL)))
    return np.array(ratios, dtype=np.float64)


def text_language(text: str) -> str:
    """`detect_language(text)`, answered without its per-character loop when its sample is ASCII.

    On ASCII text every letter is Latin, so detect_language says "en" when there is a letter
    and "unknown" when there is none; most English prose and code take this path.
    """
    sample = text[:4000]
    if sample.isascii():
        return "en" if ASCII_LETTER.search(sample) else "unknown"
    return detect_language(text)


def _per_key_sizes(keys: list, tokens: np.ndarray, text_bytes: np.ndarray) -> dict:
    sizes: dict = {}
    for key, token_count, byte_count in zip(keys, tokens.tolist(), text_bytes.tolist()):
        entry = sizes.setdefault(key, [0, 0, 0])
        entry[0] += 1
        entry[1] += token_count
        entry[2] += byte_count
    return sizes


def table_partial(table: pa.Table, prompt_duplication=None) -> CoveragePartial:
    """The coverage partial of one table (a shard or one record batch of it).

    `prompt_duplication(table) -> {"records", "segments", "duplicated", "records_with_duplicates",
    and, when the input's counts are known, "segments_before", "duplicated_before"}` measures VL
    prompt redundancy when given (the caller knows the record format).
    """
    documents = table.num_rows
    texts = _strings(table, "text")
    token_units = _token_units(table)
    found = (*token_units, "token") if token_units is not None else table_units(table)
    units, offsets, unit = found if found is not None else (None, None, None)

    partial = CoveragePartial(documents=documents, tokenized=token_units is not None, has_text=texts is not None)
    token_counts = np.diff(token_units[1]) if token_units is not None else np.zeros(documents, np.int64)
    partial.tokens = int(token_counts.sum())
    byte_counts = (
        pc.fill_null(pc.binary_length(table.column("text")), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        if texts is not None
        else np.zeros(documents, np.int64)
    )
    partial.text_bytes = int(byte_counts.sum())
    if texts is not None:
        languages = [text_language(t or "") for t in texts]
        partial.by_language = _per_key_sizes(languages, token_counts, byte_counts)
        code = [detect_code_language(t or "") for t in texts]
        partial.code_documents = sum(1 for language in code if language is not None)
        partial.code_languages = dict(Counter(language for language in code if language is not None))
        partial.compression = Moments.of(_compression_ratios(texts))
    sources = _source_values(table)
    if sources is not None:
        partial.by_source = _per_key_sizes(sources, token_counts, byte_counts)
    if units is not None:
        partial.units = frozenset([unit])
        partial.document_hashes = count_table(_document_hashes(texts, (units, offsets)))
        grams = ngram_hashes(units, offsets)
        partial.hll = {n: hll_registers(hashes) for n, (hashes, _) in grams.items() if n > 1}
        partial.unigrams = unigram_table(units, unit)
        eight = grams[GOOD_TURING_ORDER][0]
        partial.ngram8_sample = count_table(eight[(eight >> np.uint64(GOOD_TURING_SAMPLE_SHIFT)) == 0])
        partial.repeated_ngrams = Moments.of(_repeated_ngram_ratios(*grams[REPEATED_NGRAM_ORDER], documents))
    if "rewrite_status" in table.column_names:
        partial.rewrite_status = dict(Counter(str(s) for s in table.column("rewrite_status").to_pylist()))
    if prompt_duplication is not None:
        partial.prompt = prompt_duplication(table) or {}
    return partial


# ---- partial -> numbers -------------------------------------------------------------------


def _round(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{FLOAT_DIGITS}g}")


def _ratio(numerator: float, denominator: float) -> float | None:
    return _round(numerator / denominator) if denominator else None


def entropy_bits(counts: np.ndarray) -> float | None:
    """Shannon entropy in bits of a count vector."""
    total = counts.sum()
    if total == 0:
        return None
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def ranking(table: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Keys and counts by descending count (ties by key): a deterministic rank order."""
    keys, counts = table
    order = np.lexsort((keys, -counts))
    return keys[order], counts[order]


def zipf_slope(ranked_counts: np.ndarray, window: tuple[int, int] = ZIPF_RANK_WINDOW) -> float | None:
    """Least-squares slope of log frequency on log rank over ranks window[0]..window[1]."""
    first, last = window
    selected = ranked_counts[first - 1 : last]
    if len(selected) < 10:
        return None
    ranks = np.arange(first, first + len(selected), dtype=np.float64)
    slope, _ = np.polyfit(np.log10(ranks), np.log10(selected.astype(np.float64)), 1)
    return float(slope)


def rank_frequency_curve(ranked_counts: np.ndarray, points: int = RANK_CURVE_POINTS) -> dict:
    """Relative frequency at log-spaced ranks: enough to draw the curve, small enough for JSON."""
    if len(ranked_counts) == 0:
        return {"ranks": [], "frequencies": []}
    ranks = np.unique(np.round(np.logspace(0, np.log10(len(ranked_counts)), points)).astype(np.int64))
    total = ranked_counts.sum()
    return {
        "ranks": ranks.tolist(),
        "frequencies": [_round(ranked_counts[r - 1] / total) for r in ranks.tolist()],
    }


def tail_mass(table: tuple[np.ndarray, np.ndarray], reference_keys: np.ndarray, top_k: int) -> float | None:
    """Share of unit occurrences outside the reference ranking's top `top_k` types."""
    keys, counts = table
    total = counts.sum()
    if total == 0 or len(reference_keys) == 0:
        return None
    inside = np.isin(keys, reference_keys[:top_k])
    return _round(counts[~inside].sum() / total)


def js_divergence(left: tuple[np.ndarray, np.ndarray], right: tuple[np.ndarray, np.ndarray]) -> float | None:
    """Jensen-Shannon divergence in bits (0 = same distribution, 1 = disjoint support)."""
    if left[1].sum() == 0 or right[1].sum() == 0:
        return None
    keys = np.union1d(left[0], right[0])
    p = np.zeros(len(keys))
    q = np.zeros(len(keys))
    p[np.searchsorted(keys, left[0])] = left[1] / left[1].sum()
    q[np.searchsorted(keys, right[0])] = right[1] / right[1].sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nonzero = a > 0
        return float((a[nonzero] * np.log2(a[nonzero] / m[nonzero])).sum())

    return _round(max(0.0, 0.5 * kl(p) + 0.5 * kl(q)))


def _sizes_json(sizes: dict) -> dict:
    return {
        str(key): {"documents": v[0], "tokens": v[1], "bytes": v[2]}
        for key, v in sorted(sizes.items(), key=lambda item: str(item[0]))
    }


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
    _, doc_counts = partial.document_hashes
    distinct_documents = int(len(doc_counts)) if has_units else None
    unigram_counts = ranking(partial.unigrams)[1]
    reference = partial.unigrams if reference_unigrams is None else reference_unigrams
    reference_keys = ranking(reference)[0]
    _, sample_counts = partial.ngram8_sample
    code_counts = np.array(sorted(partial.code_languages.values()), dtype=np.int64)
    compression_mean, compression_std = partial.compression.summary()
    prompt = partial.prompt
    repeated_mean, _ = partial.repeated_ngrams.summary()
    section = {
        "documents": partial.documents,
        "tokens": partial.tokens if partial.tokenized else None,
        "bytes": partial.text_bytes if partial.has_text else None,
        "shard_bytes": partial.shard_bytes,
        "ngram_unit": "+".join(sorted(partial.units)) or None,
        "languages": {k: v[0] for k, v in sorted(partial.by_language.items())},
        "by_language": _sizes_json(partial.by_language),
        "by_source": _sizes_json(partial.by_source),
        "distinct_documents": distinct_documents,
        "exact_duplicate_rate": _ratio(partial.documents - distinct_documents, partial.documents)
        if has_units
        else None,
        "near_duplicate_rate": _round(near_duplicate_rate) if near_duplicate_rate is not None else None,
        "effective_distinct_documents": _round(2 ** entropy_bits(doc_counts)) if has_units and len(doc_counts) else None,
        "cluster_size_histogram": {
            str(size): int(n) for size, n in enumerate(np.bincount(doc_counts)) if n and size
        }
        if has_units
        else {},
        "distinct_ngrams": {"1": int(len(unigram_counts))}
        | {str(n): hll_count(partial.hll[n]) for n in NGRAM_ORDERS if n > 1}
        if has_units
        else {},
        "hapax_ratio_8": _ratio(int((sample_counts == 1).sum()), len(sample_counts)),
        "good_turing_coverage_8": _round(1 - (sample_counts == 1).sum() / sample_counts.sum())
        if sample_counts.sum()
        else None,
        "unigram_types": int(len(unigram_counts)) if has_units else None,
        "unigram_entropy": _round(entropy_bits(unigram_counts)) if has_units else None,
        "zipf_slope": _round(zipf_slope(unigram_counts)),
        "zipf_rank_window": list(ZIPF_RANK_WINDOW),
        "rank_frequency": rank_frequency_curve(unigram_counts),
        "tail_mass": tail_mass(partial.unigrams, reference_keys, TAIL_TOP_K),
        "tail_mass_top_k": TAIL_TOP_K,
        "tail_mass_by_k": {str(k): tail_mass(partial.unigrams, reference_keys, k) for k in TAIL_TOP_KS},
        "js_divergence": js_divergence(partial.unigrams, reference) if has_units else None,
        "code_share": _ratio(partial.code_documents, partial.documents) if partial.has_text else None,
        "code_documents": partial.code_documents,
        "code_languages": dict(sorted(partial.code_languages.items())),
        "code_language_entropy": _round(entropy_bits(code_counts)) if len(code_counts) else None,
        "compression_ratio_mean": _round(compression_mean),
        "compression_ratio_std": _round(compression_std),
        "repeated_ngram_ratio_mean": _round(repeated_mean),
        "repeated_ngram_order": REPEATED_NGRAM_ORDER,
        "prompt_records": prompt.get("records", 0),
        "prompt_duplication_share": _ratio(prompt.get("duplicated", 0), prompt.get("segments", 0)),
        "prompt_duplication_share_before_dedup": _ratio(
            prompt.get("duplicated_before", 0), prompt.get("segments_before", 0)
        ),
        "prompt_records_with_duplicates": prompt.get("records_with_duplicates", 0) if prompt.get("records") else None,
    }
    if partial.rewrite_status:
        section["rewrite_status"] = dict(sorted(partial.rewrite_status.items()))
    return section

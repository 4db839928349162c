"""64-bit shingle hashes and exact MinHash signatures, vectorised over whole batches.

Per-document Python calls are what make datasketch and rensa slow on real corpora, so nothing
here loops over documents or shingles in Python:

* unit (word or character) hashes read the concatenated UTF-8 buffer of the batch 8 bytes at a
  time (unaligned little-endian uint64 loads at unit starts), chained through splitmix64; words
  of up to 8 bytes (most of them) take one load;
* an n-gram hash combines n consecutive unit hashes of the same document with fixed odd
  multipliers, then a 64-bit finaliser (splitmix64) spreads the bits;
* MinHash applies all `num_perm` hash functions h_k(x) = a_k * x + b_k (mod 2**32, a_k odd: a
  permutation of the 32-bit values) to the 32-bit fold x of every shingle hash, a chunk of shingles
  at once as (permutation block x shingles) matrices, and takes the per-document minimum with
  `np.minimum.reduceat`. Every shingle counts (no sampling). 32-bit lanes run about three times
  faster than 64-bit ones; on random shingle hashes the Jaccard estimates match the theoretical
  error of k-permutation MinHash (tests/test_minhash.py checks it).

Shingle hashes do not depend on the MinHash seed, so exact Jaccard similarities computed from them
(see `curate.dedup.verify`) are the same for every seed. Two different shingles collide with probability
about 2**-64.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.curation.hashing import GOLDEN, mix64
from curate.dedup.normalize import classify_bytes, normalize_texts

MASK64 = (1 << 64) - 1
# Text per vectorised pass: bounds the per-byte work arrays (~50 bytes per text byte).
CHUNK_BYTES = 1 << 20
# Shingles per pass, and permutations per (PERMUTATION_BLOCK x CHUNK_SHINGLES) uint32 matrix: 1 MiB,
# small enough to stay in cache between its multiply, add and minimum (twice as fast as 2 MiB).
CHUNK_SHINGLES = 1 << 15
PERMUTATION_BLOCK = 8


def splitmix_sequence(seed: int, count: int) -> np.ndarray:
    """`count` pseudo-random uint64 values from a seed, the same on every platform and numpy version."""
    steps = (np.arange(1, count + 1, dtype=np.uint64) * GOLDEN) + np.uint64(seed & MASK64)
    return mix64(steps)


# Multipliers combining the unit hashes of one n-gram (position k gets NGRAM_WEIGHTS[k]).
NGRAM_WEIGHTS = splitmix_sequence(0x5EED, 64) | np.uint64(1)


def run_positions(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """starts[i], starts[i] + 1, ..., starts[i] + counts[i] - 1 for every i, one run after another:
    a cumulative sum of steps, +1 inside a run and a jump between runs (two passes over the output)."""
    runs = np.flatnonzero(counts > 0)
    starts, counts = starts[runs], counts[runs]
    steps = np.ones(int(counts.sum()), np.int64)
    if len(steps):
        steps[0] = starts[0]
        steps[(np.cumsum(counts) - counts)[1:]] += starts[1:] - (starts[:-1] + counts[:-1])
    return np.cumsum(steps)


@dataclass(frozen=True)
class ShingleSets:
    """Shingle hashes of a batch of documents, CSR-style: document i owns hashes[offsets[i]:offsets[i+1]].

    A document's hashes may repeat (a repeated n-gram); use `np.unique` for the set.
    """

    hashes: np.ndarray  # uint64
    offsets: np.ndarray  # int64, len(documents) + 1

    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, docs: np.ndarray) -> ShingleSets:
        """The hashes of the documents `docs`, in that order."""
        counts = self.offsets[docs + 1] - self.offsets[docs]
        offsets = np.zeros(len(docs) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        return ShingleSets(self.hashes[run_positions(self.offsets[docs], counts)], offsets)


def string_buffer(normalized: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes of a string array and its document offsets into them (int64, from 0)."""
    normalized = normalized.cast(pa.large_string())
    offsets_buffer, data_buffer = normalized.buffers()[1], normalized.buffers()[2]
    offsets = np.frombuffer(offsets_buffer, np.int64)[normalized.offset : normalized.offset + len(normalized) + 1]
    if data_buffer is None or offsets[-1] == offsets[0]:
        return np.zeros(0, np.uint8), np.zeros(len(normalized) + 1, np.int64)
    data = np.frombuffer(data_buffer, np.uint8)[offsets[0] : offsets[-1]]
    return data, offsets - offsets[0]


def unit_ranges(
    offsets: np.ndarray, char_start: np.ndarray, separator: np.ndarray, char_mode: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Start and end byte of every unit: words (runs of non-separators) or, in character mode,
    single non-separator characters."""
    n_bytes = len(separator)
    lengths = np.diff(offsets)
    word_start = np.empty(n_bytes, bool)
    word_start[0] = True
    word_start[1:] = separator[:-1]
    word_start[offsets[:-1][lengths > 0]] = True
    if char_mode.any():
        word_start = np.where(np.repeat(char_mode, lengths), char_start, word_start)
    is_start = ~separator & word_start
    # A unit ends before the next unit start, separator or document end, whichever comes first:
    # its last byte is the non-separator byte followed by such a boundary.
    boundary = np.empty(n_bytes + 1, bool)
    np.logical_or(is_start, separator, out=boundary[:n_bytes])
    boundary[offsets[1:]] = True
    return np.flatnonzero(is_start), np.flatnonzero(~separator & boundary[1:]) + 1


# LOW_BYTE_MASKS[k] keeps the lowest k bytes of a uint64 (k = 0..8).
LOW_BYTE_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(9)], np.uint64)


def _low_bytes(values: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The lowest `count` (0..8, larger counts as 8) bytes of each uint64."""
    return values & LOW_BYTE_MASKS[np.minimum(count, 8)]


def unit_hashes(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Hash of each byte range data[start:end]: its bytes read 8 at a time as little-endian words
    (unaligned loads from the batch buffer), the first word with the length mixed in, chained
    through splitmix64. Distinct units of up to 8 bytes never collide."""
    padded = np.zeros(len(data) + 8, np.uint8)
    padded[: len(data)] = data
    words = np.ndarray(shape=(len(data),), dtype="<u8", buffer=padded, strides=(1,))
    lengths = ends - starts
    hashes = mix64(_low_bytes(words[starts], lengths) ^ (lengths.astype(np.uint64) * GOLDEN))
    offset = 8
    longer = np.flatnonzero(lengths > offset)
    while len(longer):
        block = _low_bytes(words[starts[longer] + offset], lengths[longer] - offset)
        hashes[longer] = mix64(hashes[longer] ^ block)
        offset += 8
        longer = longer[lengths[longer] > offset]
    return hashes


def unit_ngram_hashes(units: np.ndarray, unit_offsets: np.ndarray, ngram_size: int) -> ShingleSets:
    """Hashes of n consecutive units of the same document; a document shorter than n gives one."""
    n_units = len(units)
    counts = np.diff(unit_offsets)
    # Full windows: every position whose n units lie in its own document.
    combined = units * NGRAM_WEIGHTS[0]
    weighted = np.empty_like(combined)
    for k in range(1, min(ngram_size, n_units)):
        combined[: n_units - k] += np.multiply(units[k:], NGRAM_WEIGHTS[k], out=weighted[: n_units - k])
    # The last n - 1 positions of each document start no full window.
    full = np.ones(n_units, bool)
    for k in range(1, ngram_size):
        position = unit_offsets[1:] - k
        full[position[position >= unit_offsets[:-1]]] = False
    # Short documents (fewer than n units but not empty): one shingle of all their units.
    short = np.flatnonzero((counts > 0) & (counts < ngram_size))
    short_first = unit_offsets[short]
    short_combined = np.zeros(len(short), np.uint64)
    for k in range(ngram_size - 1):
        present = k < counts[short]
        short_combined += np.where(present, units[np.minimum(short_first + k, n_units - 1)] * NGRAM_WEIGHTS[k], np.uint64(0))
    combined[short_first] = short_combined
    keep = full
    keep[short_first] = True
    shingles_per_doc = np.where(counts >= ngram_size, counts - ngram_size + 1, np.minimum(counts, 1))
    offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(shingles_per_doc, out=offsets[1:])
    return ShingleSets(mix64(combined[keep]), offsets)


def _shingle_chunk(texts: pa.Array, ngram_size: int) -> ShingleSets:
    normalized = normalize_texts(texts)
    data, offsets = string_buffer(normalized)
    if len(data) == 0:
        return ShingleSets(np.zeros(0, np.uint64), np.zeros(len(texts) + 1, np.int64))
    starts, ends = unit_ranges(offsets, *classify_bytes(data, offsets))
    unit_offsets = np.searchsorted(starts, offsets).astype(np.int64)
    return unit_ngram_hashes(unit_hashes(data, starts, ends), unit_offsets, ngram_size)


def as_string_array(texts: list[str] | pa.Array | pa.ChunkedArray) -> pa.Array:
    """Texts as one Arrow string (or large_string) array, whatever form they came in."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if not isinstance(texts, pa.Array):
        texts = pa.array(texts, pa.string())
    if pa.types.is_large_string(texts.type):
        return texts
    return texts.cast(pa.string())


def byte_chunks(texts: pa.Array) -> list[tuple[int, int]]:
    """Consecutive document ranges of about CHUNK_BYTES of text each (a longer document alone)."""
    sizes = pc.fill_null(pc.binary_length(texts), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    bucket = np.cumsum(sizes) // CHUNK_BYTES
    cuts = np.flatnonzero(np.diff(bucket)) + 1
    bounds = [0, *cuts.tolist(), len(texts)]
    return [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]


def shingle_chunks(texts: list[str] | pa.Array | pa.ChunkedArray, ngram_size: int = 5) -> Iterator[tuple[int, ShingleSets]]:
    """Shingle hashes of consecutive runs of documents with about CHUNK_BYTES of text each, lazily:
    (index of the run's first document, its ShingleSets). Memory stays bounded by the chunk."""
    if ngram_size < 1:
        raise ValueError(f"ngram_size must be at least 1, got {ngram_size}")
    array = as_string_array(texts)
    return ((lo, _shingle_chunk(array.slice(lo, hi - lo), ngram_size)) for lo, hi in byte_chunks(array))


def shingle_hashes(texts: list[str] | pa.Array | pa.ChunkedArray, ngram_size: int = 5) -> ShingleSets:
    """64-bit hashes of every shingle of every document (rules in `curate.dedup.normalize`)."""
    array = as_string_array(texts)
    parts = [shingles for _, shingles in shingle_chunks(array, ngram_size)]
    if not parts:
        return ShingleSets(np.zeros(0, np.uint64), np.zeros(len(array) + 1, np.int64))
    offsets, shingles_before = [np.zeros(1, np.int64)], 0
    for part in parts:
        offsets.append(part.offsets[1:] + shingles_before)
        shingles_before += len(part.hashes)
    return ShingleSets(np.concatenate([p.hashes for p in parts]), np.concatenate(offsets))


class MinHasher:
    """Exact MinHash with `num_perm` seeded hash functions over word (or character) n-grams.

    `signatures` returns uint32 of shape (len(texts), num_perm). A document without shingles
    (empty after normalization) gets the all-0xFFFFFFFF signature; callers should not treat such
    documents as similar to each other.
    """

    def __init__(self, num_perm: int = 128, ngram_size: int = 5, seed: int = 1) -> None:
        if num_perm < 1:
            raise ValueError(f"num_perm must be at least 1, got {num_perm}")
        self.num_perm = num_perm
        self.ngram_size = ngram_size
        self.seed = seed
        coefficients = (splitmix_sequence(seed, 2 * num_perm) >> np.uint64(32)).astype(np.uint32)
        self._multipliers = (coefficients[:num_perm] | np.uint32(1))[:, None]
        self._increments = coefficients[num_perm:][:, None]

    def signatures(self, texts: list[str] | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """MinHash signatures of the texts, uint32, shape (len(texts), num_perm).

        Works through the batch in chunks of about CHUNK_BYTES of text, so its working memory
        does not grow with the batch."""
        array = as_string_array(texts)
        parts = [self.signatures_of(shingles) for _, shingles in shingle_chunks(array, self.ngram_size)]
        if not parts:
            return np.full((len(array), self.num_perm), np.uint32(0xFFFFFFFF), np.uint32)
        return np.concatenate(parts)

    def signatures_of(self, shingles: ShingleSets) -> np.ndarray:
        """MinHash signatures from precomputed shingle hashes."""
        n_docs = len(shingles.offsets) - 1
        folded = (shingles.hashes ^ (shingles.hashes >> np.uint64(32))).astype(np.uint32)
        minima = np.full((self.num_perm, n_docs), np.uint32(0xFFFFFFFF), np.uint32)
        doc_starts = shingles.offsets[:-1][shingles.counts() > 0]
        docs_with_shingles = np.flatnonzero(shingles.counts() > 0)
        buffer = np.empty((PERMUTATION_BLOCK, CHUNK_SHINGLES), np.uint32)  # reused: no page faults per chunk
        for lo in range(0, len(shingles.hashes), CHUNK_SHINGLES):
            hi = min(lo + CHUNK_SHINGLES, len(shingles.hashes))
            # Segments of this chunk: the document running into it, then each document starting in it.
            first = np.searchsorted(doc_starts, lo, side="right") - 1
            last = np.searchsorted(doc_starts, hi, side="left")
            segment_starts = np.maximum(doc_starts[first:last], lo) - lo
            segment_docs = docs_with_shingles[first:last]
            chunk = folded[lo:hi][None, :]
            chunk_minima = np.empty((self.num_perm, len(segment_starts)), np.uint32)
            for p in range(0, self.num_perm, PERMUTATION_BLOCK):
                block = slice(p, p + PERMUTATION_BLOCK)
                values = np.multiply(self._multipliers[block], chunk, out=buffer[: len(self._multipliers[block]), : hi - lo])
                values += self._increments[block]
                np.minimum.reduceat(values, segment_starts, axis=1, out=chunk_minima[block])
            minima[:, segment_docs] = np.minimum(minima[:, segment_docs], chunk_minima)
        return np.ascontiguousarray(minima.T)

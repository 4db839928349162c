"""Benchmark overlap: which documents contain benchmark items, and how much benchmark-like text a corpus holds.

The rules are DESIGN.md's ("Benchmark overlap"), defined once here:

* words: the NFKC-lowercased text split into runs of word characters, which are exactly Python's
  `re` `\\w` on str (`_word_table`). Lowercasing is `normalize_texts`' (dedup's) one-to-one
  Unicode mapping, which differs from Python's `str.lower` in two places: "İ" (U+0130) becomes "i",
  not "i" and a combining dot, and a final "Σ" becomes "σ", not "ς" (two documents of the 26,238 of
  the mixed corpus have words that differ by it);
* n-gram overlap: a document overlaps an item when one of the item's n-grams occurs in it as
  consecutive words. The item's n-grams are its word 13-grams, or, for an item under 13 words, all
  its words as one n-gram, so documents are also read at those shorter lengths (a short document
  holds no 13-gram, and overlaps only the short items it contains);
* near copy: exact Jaccard similarity of the dedup shingle sets (`curate.dedup.verify.shingle_sets`)
  at or above the threshold, candidates from MinHash LSH bands with the near-dedup layout, every
  candidate verified;
* alignment: a document word is aligned with a benchmark when it lies inside one of the
  document's word 8-grams that occurs in the benchmark (items under 8 words have none).

Everything is vectorised over a batch's UTF-8 buffer as in `curate.dedup.minhash`: words are
classified by a code point table, hashed 8 bytes at a time, and n-gram hashes are weighted sums of
word hashes through splitmix64 (a collision is about 2**-64), so an item's short n-gram and a
document window of the same words have the same hash. Lookups go through a bitmap of the hashes'
top bits first, so the many document n-grams that occur in no benchmark cost one gather each.
One normalization of a batch serves both its words and its dedup shingles.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.curation.hashing import GOLDEN, mix64
from curate.dedup.lsh import LshLayout, band_keys, resolve_layout
from curate.dedup.minhash import (
    NGRAM_WEIGHTS,
    MinHasher,
    ShingleSets,
    as_string_array,
    byte_chunks,
    run_positions,
    string_buffer,
    unit_hashes,
    unit_ngram_hashes,
    unit_ranges,
)
from curate.dedup.normalize import classify_bytes, decode_utf8, normalize_texts
from curate.dedup.verify import distinct_shingles, shingle_sets

NGRAM_WORDS = 13
ALIGNMENT_WORDS = 8
# Python's `re` `\w` on str is str.isalnum() or "_": Unicode letters and numbers. RE2's tables may
# know a newer Unicode than Python's `unicodedata`; `_word_table` keeps the code points both know.
WORD_CLASS = r"\p{L}\p{N}_"
CODE_POINTS = 0x110000
# Bitmap bits per stored hash: a query absent from the table passes the bitmap with probability
# about 1/16 and only then pays for a binary search.
BITMAP_BITS_PER_HASH = 16
MIN_BITMAP_BITS = 1 << 16
# Buckets per document for a lower bound of its distinct shingles (a table of 1 KiB per document).
DISTINCT_BUCKET_BITS = 10

KINDS = ("ngram", "near")
EVIDENCE_SCHEMA = pa.schema(
    [
        ("benchmark", pa.string()),
        ("item_id", pa.string()),
        ("doc_id", pa.string()),
        ("kind", pa.string()),
        ("ngram", pa.string()),
        ("jaccard", pa.float64()),
    ]
)
MEASURE_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("benchmark", pa.string()),
        ("words", pa.int64()),
        ("aligned_words", pa.int64()),
        ("ngram_items", pa.int32()),
        ("near_items", pa.int32()),
    ]
)


@functools.cache
def _word_table() -> np.ndarray:
    """Whether each code point (0 .. 0x10FFFF) is a word character: RE2's [WORD_CLASS], less the code
    points Python's Unicode database does not know yet (RE2's tables are of a newer Unicode)."""
    code_points = np.arange(CODE_POINTS, dtype=np.uint32)
    code_points = code_points[(code_points < 0xD800) | (code_points >= 0xE000)]
    data = code_points.astype("<u4").tobytes().decode("utf-32-le").encode("utf-8")
    sizes = 1 + (code_points >= 0x80).astype(np.int32) + (code_points >= 0x800) + (code_points >= 0x10000)
    offsets = np.zeros(len(code_points) + 1, np.int32)
    np.cumsum(sizes, out=offsets[1:])
    chars = pa.StringArray.from_buffers(len(code_points), pa.py_buffer(offsets), pa.py_buffer(data))
    matches = pc.match_substring_regex(chars, f"^[{WORD_CLASS}]$").to_numpy(zero_copy_only=False)
    words = code_points[matches]
    known = np.array([unicodedata.category(chr(c)) != "Cn" for c in words.tolist()], bool)
    table = np.zeros(CODE_POINTS, bool)
    table[words[known]] = True
    return table


@functools.cache
def _ascii_separator_bytes() -> bytes:
    """A `bytes.translate` table: 0 for ASCII word characters, 1 for every other byte value."""
    table = np.ones(256, np.uint8)
    table[:0x80] = ~_word_table()[:0x80]
    return table.tobytes()


def _separators(data: np.ndarray) -> np.ndarray:
    """Per byte of valid UTF-8, whether its character is not a word character. ASCII bytes go through
    `bytes.translate`; only characters of several bytes are decoded and looked up."""
    separator = np.frombuffer(data.tobytes().translate(_ascii_separator_bytes()), dtype=bool).copy()
    lead = np.flatnonzero(data >= 0xC0)
    if len(lead) == 0:
        return separator
    word = _word_table()[decode_utf8(data, lead)]
    size = 2 + (data[lead] >= 0xE0).astype(np.int64) + (data[lead] >= 0xF0)
    for k in range(4):
        separator[lead[word & (k < size)] + k] = False
    return separator


@dataclass(frozen=True)
class Words:
    """The words of a batch of normalized texts: byte ranges into `data`, hashes, and CSR offsets
    (document i owns words offsets[i]:offsets[i+1])."""

    data: np.ndarray  # uint8, the batch's UTF-8 buffer
    starts: np.ndarray  # int64 byte positions
    ends: np.ndarray
    hashes: np.ndarray  # uint64
    offsets: np.ndarray  # int64, len(documents) + 1

    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)


def words_of(data: np.ndarray, offsets: np.ndarray) -> Words:
    """The words of a batch of normalized texts (`normalize_texts`), given as their UTF-8 buffer and
    document offsets (`curate.dedup.minhash.string_buffer`)."""
    if len(data) == 0:
        nothing = np.zeros(0, np.int64)
        return Words(data, nothing, nothing, np.zeros(0, np.uint64), np.zeros(len(offsets), np.int64))
    separator = _separators(data)
    # `unit_ranges` in word mode for every document (CJK text too); its char_start argument is then unused.
    starts, ends = unit_ranges(offsets, separator, separator, np.zeros(len(offsets) - 1, bool))
    word_offsets = np.searchsorted(starts, offsets).astype(np.int64)
    return Words(data, starts, ends, unit_hashes(data, starts, ends), word_offsets)


def word_strings(text: str) -> list[str]:
    """The words of one text as strings (the readable definition the vectorised words follow)."""
    words = words_of(*string_buffer(normalize_texts(pa.array([text], pa.string()))))
    data = words.data.tobytes()
    return [data[s:e].decode("utf-8") for s, e in zip(words.starts.tolist(), words.ends.tolist())]


def _windows(words: Words, lengths: list[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """For each length L: the first word of every L-word window lying inside one document, and the
    window's hash (the hash `unit_ngram_hashes` gives the same L words)."""
    n_words = len(words.hashes)
    room = np.repeat(words.offsets[1:], words.counts()) - np.arange(n_words)  # words left in the document
    combined = words.hashes * NGRAM_WEIGHTS[0]
    weighted = np.empty_like(combined)
    windows = {}
    for k in range(max(lengths, default=0)):
        if 0 < k < n_words:
            combined[: n_words - k] += np.multiply(words.hashes[k:], NGRAM_WEIGHTS[k], out=weighted[: n_words - k])
        if k + 1 in lengths:
            first = np.flatnonzero(room > k)
            windows[k + 1] = (first, mix64(combined[first]))
    return windows


def _ranges(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The integer ranges [starts[i], starts[i] + counts[i]) one after another, and the i of each."""
    owner = np.repeat(np.arange(len(counts)), counts)
    first_of_range = np.cumsum(counts) - counts
    return np.repeat(starts, counts) + (np.arange(len(owner)) - first_of_range[owner]), owner


@dataclass
class SortedHashes:
    """Sorted distinct 64-bit hashes, a bitmap of their top bits and a directory of where each top-bits
    bucket starts. The bitmap rejects most absent queries with one gather; the directory then finds a
    query among the one or two hashes of its bucket, where a binary search would take 20 dependent
    gathers into an array larger than the cache."""

    hashes: np.ndarray  # uint64, sorted, distinct
    bitmap: np.ndarray  # uint8, packed bits
    shift: int
    directory: np.ndarray  # int32: bucket b (hashes >> directory_shift) is hashes[directory[b]:directory[b + 1]]
    directory_shift: int

    @classmethod
    def build(cls, hashes: np.ndarray) -> SortedHashes:
        """From sorted distinct hashes."""
        if len(hashes) >= np.iinfo(np.int32).max:
            raise ValueError(f"{len(hashes)} hashes do not fit one index; split the benchmarks")
        bits = max(MIN_BITMAP_BITS, 1 << int(np.ceil(np.log2(max(len(hashes), 1) * BITMAP_BITS_PER_HASH))))
        shift = 65 - bits.bit_length()
        bitmap = np.zeros(bits // 8, np.uint8)
        top = hashes >> np.uint64(shift)
        np.bitwise_or.at(bitmap, top >> np.uint64(3), np.left_shift(1, top & np.uint64(7)).astype(np.uint8))
        buckets = bits // BITMAP_BITS_PER_HASH  # about one hash per bucket
        directory_shift = 65 - buckets.bit_length()
        bucket = hashes >> np.uint64(directory_shift)
        directory = np.searchsorted(bucket, np.arange(buckets + 1, dtype=np.uint64)).astype(np.int32)
        return cls(hashes, bitmap, shift, directory, directory_shift)

    def maybe(self, queries: np.ndarray) -> np.ndarray:
        """Per query, False when it is certainly absent (True for every present query and a few others)."""
        top = queries >> np.uint64(self.shift)
        return ((self.bitmap[top >> np.uint64(3)] >> (top & np.uint64(7)).astype(np.uint8)) & 1).view(bool)

    def find(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(index in queries, position in hashes) of every query present."""
        maybe = np.flatnonzero(self.maybe(queries))
        wanted = queries[maybe]
        bucket = wanted >> np.uint64(self.directory_shift)
        position, end = self.directory[bucket].astype(np.int64), self.directory[bucket + np.uint64(1)]
        found = np.zeros(len(wanted), bool)
        # Walk each bucket in step, every query one hash at a time, until it is found or passed.
        searching = np.flatnonzero(position < end)
        while len(searching):
            stored = self.hashes[position[searching]]
            found[searching[stored == wanted[searching]]] = True
            searching = searching[stored < wanted[searching]]
            position[searching] += 1
            searching = searching[position[searching] < end[searching]]
        return maybe[found], position[found]


@dataclass
class HashTable:
    """Hashes with their owners, stored once per distinct set of owners: the n-grams of a licence
    repeated in many items are all owned by the same items, and a document that holds the licence
    then meets that set once per n-gram, not each item. keys.hashes[i] is owned by the set sets[i],
    whose owners are owners[set_offsets[s]:set_offsets[s + 1]]."""

    keys: SortedHashes
    sets: np.ndarray  # int32, the owner set of each hash
    set_offsets: np.ndarray  # int64, number of sets + 1
    owners: np.ndarray  # int32

    @classmethod
    def build(cls, hashes: np.ndarray, owners: np.ndarray) -> HashTable:
        """From (hash, owner) pairs in any order, repeats allowed."""
        order = np.lexsort((owners, hashes))
        hashes, owners = hashes[order], owners[order].astype(np.int32)
        distinct_pair = np.ones(len(hashes), bool)
        distinct_pair[1:] = (hashes[1:] != hashes[:-1]) | (owners[1:] != owners[:-1])
        hashes, owners = hashes[distinct_pair], owners[distinct_pair]
        first = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]]) if len(hashes) else np.zeros(0, np.int64)
        counts = np.diff(np.append(first, len(hashes)))
        # A set is named by the sum of its owners' mixed ids (two sets collide with probability 2**-64);
        # GOLDEN is added first because mix64(0) is 0, which would make {0, x} the set {x}.
        mixed = mix64(owners.astype(np.uint64) + GOLDEN)
        owner_sums = np.add.reduceat(mixed, first) if len(first) else np.zeros(0, np.uint64)
        _, set_key, sets = np.unique(owner_sums, return_index=True, return_inverse=True)
        set_offsets = np.zeros(len(set_key) + 1, np.int64)
        np.cumsum(counts[set_key], out=set_offsets[1:])
        set_owners, _ = _ranges(first[set_key], counts[set_key])
        return cls(SortedHashes.build(hashes[first]), sets.astype(np.int32), set_offsets, owners[set_owners])

    def find_sets(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query index, owner set) of every query present."""
        query, position = self.keys.find(queries)
        return query, self.sets[position]

    def members(self, sets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(index in sets, owner) of every owner of every set, by index."""
        position, which = _ranges(self.set_offsets[sets], self.set_offsets[sets + 1] - self.set_offsets[sets])
        return which, self.owners[position]

    def lookup(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query index, owner) of every owner of every query present, by query."""
        query, sets = self.find_sets(queries)
        which, owner = self.members(sets)
        return query[which], owner


@dataclass
class BenchmarkIndex:
    """Everything matching needs of the benchmarks, as numpy and Arrow arrays (it pickles compactly
    and travels through Ray's object store). Items of all benchmarks are numbered together:
    benchmark b owns items item_offsets[b]:item_offsets[b+1]."""

    names: list[str]
    item_ids: pa.Array  # string, every item of every benchmark
    item_offsets: np.ndarray  # int64, len(names) + 1
    ngrams: HashTable  # n-gram hashes of the items, owned by item
    # Items under NGRAM_WORDS words are one short n-gram each. Every window of their smallest word
    # count (short_prefix_words, 0 without such items) is looked up among their first words
    # (short_prefixes, owned by short item k); only a hit is hashed at the item's own length.
    short_prefix_words: int
    short_prefixes: HashTable
    short_words: np.ndarray  # int64: word count of short item k
    short_hashes: np.ndarray  # uint64: its n-gram hash
    short_sets: np.ndarray  # int32: its owner set in `ngrams`
    aligned: HashTable  # word 8-gram hashes, owned by benchmark
    bands: HashTable  # LSH band keys of the items with shingles, owned by item
    shingle_vocab: SortedHashes  # the distinct dedup shingles of all items
    shingle_keys: np.ndarray  # int64, sorted: item * len(vocabulary) + position in it, per shingle of each item
    shingle_counts: np.ndarray  # int64: distinct shingles per item
    threshold: float
    num_perm: int
    shingle_size: int
    seed: int
    layout: LshLayout

    def item_benchmarks(self) -> np.ndarray:
        """The benchmark of each item."""
        return np.repeat(np.arange(len(self.names)), np.diff(self.item_offsets))


def _item_words(texts: pa.Array) -> tuple[np.ndarray, ...]:
    """The items' n-gram hashes and their items, 8-gram hashes and their items, and word counts,
    computed a chunk of items at a time."""
    hashes_and_items = (np.zeros(0, np.uint64), np.zeros(0, np.int64))
    parts = [(*hashes_and_items, *hashes_and_items, np.zeros(0, np.int64))]
    for lo, hi in byte_chunks(texts):
        words = words_of(*string_buffer(normalize_texts(texts.slice(lo, hi - lo))))
        ngrams = unit_ngram_hashes(words.hashes, words.offsets, NGRAM_WORDS)
        aligned = unit_ngram_hashes(words.hashes, words.offsets, ALIGNMENT_WORDS)
        aligned_items = np.repeat(np.arange(lo, hi), aligned.counts())
        # `unit_ngram_hashes` gives an item under 8 words one shingle of all its words: it has no 8-gram.
        full = words.counts()[aligned_items - lo] >= ALIGNMENT_WORDS
        ngram_items = np.repeat(np.arange(lo, hi), ngrams.counts())
        parts.append((ngrams.hashes, ngram_items, aligned.hashes[full], aligned_items[full], words.counts()))
    return tuple(np.concatenate(column) for column in zip(*parts))


def build_index(
    benchmarks: list[tuple[str, pa.Table]], near_threshold: float, num_perm: int, shingle_size: int, seed: int
) -> BenchmarkIndex:
    """The index of the benchmarks' items (tables with `item_id` and `text`), built once and shared
    by every matching task; near copies use the near-dedup settings given here."""
    names = [name for name, _ in benchmarks]
    if len(set(names)) < len(names):
        raise ValueError(f"benchmark names must be distinct, got {names}")
    if not 0 < near_threshold <= 1:
        raise ValueError(f"near_threshold must be in (0, 1], got {near_threshold}")
    texts = as_string_array(pa.chunked_array([t.column("text") for _, t in benchmarks], pa.string()))
    item_ids = pa.chunked_array([t.column("item_id") for _, t in benchmarks], pa.string()).combine_chunks()
    item_offsets = np.zeros(len(benchmarks) + 1, np.int64)
    np.cumsum([t.num_rows for _, t in benchmarks], out=item_offsets[1:])
    item_benchmark = np.repeat(np.arange(len(benchmarks)), np.diff(item_offsets))

    ngram_hashes, ngram_items, aligned_hashes, aligned_items, word_counts = _item_words(texts)
    ngrams = HashTable.build(ngram_hashes, ngram_items)
    short_items = np.flatnonzero((word_counts > 0) & (word_counts < NGRAM_WORDS))
    prefix_words = int(word_counts[short_items].min()) if len(short_items) else 0
    short_texts = words_of(*string_buffer(normalize_texts(texts.take(short_items))))
    prefixes = unit_ngram_hashes(short_texts.hashes, short_texts.offsets, max(prefix_words, 1))
    short_hashes = ngram_hashes[word_counts[ngram_items] < NGRAM_WORDS]  # one per short item, in item order

    layout = resolve_layout(near_threshold, num_perm, None, None)
    sets = shingle_sets(texts, shingle_size)
    with_shingles = np.flatnonzero(sets.counts() > 0)
    signatures = MinHasher(num_perm, shingle_size, seed).signatures(texts.take(with_shingles))
    keys = band_keys(signatures, layout)
    vocab, rank = np.unique(sets.hashes, return_inverse=True)
    shingle_items = np.repeat(np.arange(len(texts)), sets.counts())
    return BenchmarkIndex(
        names=names,
        item_ids=item_ids,
        item_offsets=item_offsets,
        ngrams=ngrams,
        short_prefix_words=prefix_words,
        short_prefixes=HashTable.build(prefixes.hashes[prefixes.offsets[:-1]], np.arange(len(short_items))),
        short_words=word_counts[short_items],
        short_hashes=short_hashes,
        short_sets=ngrams.sets[np.searchsorted(ngrams.keys.hashes, short_hashes)],
        aligned=HashTable.build(aligned_hashes, item_benchmark[aligned_items]),
        bands=HashTable.build(keys.ravel(), np.repeat(with_shingles, layout.bands)),
        shingle_vocab=SortedHashes.build(vocab),
        shingle_keys=np.sort(shingle_items * len(vocab) + rank.ravel()),
        shingle_counts=sets.counts(),
        threshold=near_threshold,
        num_perm=num_perm,
        shingle_size=shingle_size,
        seed=seed,
        layout=layout,
    )


def _stable_order(keys: np.ndarray, bound: int) -> np.ndarray:
    """The stable sorting permutation of integer keys in [0, bound): 16-bit passes, least significant
    first, each a radix sort in numpy (several times faster than a stable sort of wider keys)."""
    order = np.arange(len(keys))
    for shift in range(0, max(bound - 1, 1).bit_length(), 16):
        digit = ((keys[order] >> shift) & 0xFFFF).astype(np.uint16)
        order = order[np.argsort(digit, kind="stable")]
    return order


def _short_ngrams(
    index: BenchmarkIndex, words: Words, windows: dict[int, tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first word, owner set, length) of every occurrence of a short item's n-gram, in word order:
    the windows that open a short item, then the item's whole n-gram hashed there and compared."""
    if not index.short_prefix_words:
        return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int64)
    positions, hashes = windows[index.short_prefix_words]
    query, item = index.short_prefixes.lookup(hashes)
    first, size = positions[query], index.short_words[item]
    document_end = words.offsets[np.searchsorted(words.offsets, first, side="right")]
    fits = first + size <= document_end
    first, item, size = first[fits], item[fits], size[fits]
    combined = np.zeros(len(first), np.uint64)
    for k in range(int(size.max(initial=0))):
        word = words.hashes[np.minimum(first + k, len(words.hashes) - 1)]
        combined += np.where(k < size, word * NGRAM_WEIGHTS[k], np.uint64(0))
    found = mix64(combined) == index.short_hashes[item]
    return first[found], index.short_sets[item[found]], size[found]


def _first_ngrams(
    index: BenchmarkIndex, words: Words, windows: dict[int, tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(document, item, first word, length) of the first shared n-gram of every overlapping pair,
    sorted by (document, item)."""
    positions, hashes = windows[NGRAM_WORDS]
    query, sets = index.ngrams.find_sets(hashes)
    short_first, short_sets, short_sizes = _short_ngrams(index, words, windows)
    first, sets = np.concatenate([positions[query], short_first]), np.concatenate([sets, short_sets])
    sizes = np.concatenate([np.full(len(query), NGRAM_WORDS, np.int64), short_sizes])
    # The hashes of one owner set all have one length (its items' n-grams do), so its hits come from
    # one window length, in document order (short n-grams come in word order too): after a stable
    # sort by set, each (set, document) starts with its first n-gram.
    order = _stable_order(sets, len(index.ngrams.set_offsets) - 1)
    first, sets, sizes = first[order], sets[order], sizes[order]
    docs = np.repeat(np.arange(len(words.offsets) - 1), words.counts())[first]
    leading = np.ones(len(docs), bool)
    leading[1:] = (docs[1:] != docs[:-1]) | (sets[1:] != sets[:-1])
    # Sets' first n-grams in document order (a word position orders the documents too), expanded to
    # their items: an item in several sets keeps the first, found after a stable sort by item.
    order = np.flatnonzero(leading)[np.argsort(first[leading], kind="stable")]
    which, items = index.ngrams.members(sets[order])
    docs, first, sizes = docs[order][which], first[order][which], sizes[order][which]
    order = _stable_order(items, len(index.item_ids))
    docs, items, first, sizes = docs[order], items[order], first[order], sizes[order]
    leading = np.ones(len(docs), bool)
    leading[1:] = (docs[1:] != docs[:-1]) | (items[1:] != items[:-1])
    order = np.flatnonzero(leading)[np.lexsort((items[leading], docs[leading]))]
    return docs[order], items[order], first[order], sizes[order]


def _ngram_texts(words: Words, first: np.ndarray, sizes: np.ndarray) -> pa.Array:
    """The words first[i] .. first[i] + sizes[i] - 1 of each n-gram, joined by single spaces: each
    word is copied with the byte after it, which becomes the space (the last word's is left out)."""
    word, owner = _ranges(first, sizes)
    last = np.ones(len(word), bool)
    last[:-1] = owner[1:] != owner[:-1]
    piece = words.ends[word] - words.starts[word] + ~last
    data = words.data[run_positions(words.starts[word], piece)]
    piece_ends = np.cumsum(piece)
    data[piece_ends[~last] - 1] = 0x20
    offsets = np.concatenate([np.zeros(1, np.int64), piece_ends[last]])
    return pa.LargeStringArray.from_buffers(len(first), pa.py_buffer(offsets), pa.py_buffer(data)).cast(pa.string())


def _aligned_words(index: BenchmarkIndex, words: Words, positions: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Aligned words per (document, benchmark), shape (documents, benchmarks), from the 8-word
    windows (first words and hashes)."""
    n_docs, n_words = len(words.offsets) - 1, len(words.hashes)
    aligned = np.zeros((n_docs, len(index.names)), np.int64)
    query, benchmark = index.aligned.lookup(hashes)
    for b in np.unique(benchmark).tolist():
        first = positions[query[benchmark == b]]
        # Windows open at their first word and close after their last (never past the document's
        # end): a word is covered where more windows have opened than closed.
        opened = np.bincount(first, minlength=n_words + 1)
        closed = np.bincount(first + ALIGNMENT_WORDS, minlength=n_words + 1)
        depth = np.cumsum(opened - closed)
        covered = np.flatnonzero(depth[:n_words] > 0)
        aligned[:, b] = np.bincount(np.searchsorted(words.offsets, covered, side="right") - 1, minlength=n_docs)
    return aligned


def _dedup_shingles(data: np.ndarray, offsets: np.ndarray, shingle_size: int) -> ShingleSets:
    """The dedup shingles of normalized texts (`curate.dedup.minhash`'s `_shingle_chunk` after its
    normalization): the one normalization serves both words and shingles."""
    if len(data) == 0:
        return ShingleSets(np.zeros(0, np.uint64), np.zeros(len(offsets), np.int64))
    starts, ends = unit_ranges(offsets, *classify_bytes(data, offsets))
    unit_offsets = np.searchsorted(starts, offsets).astype(np.int64)
    return unit_ngram_hashes(unit_hashes(data, starts, ends), unit_offsets, shingle_size)


def _distinct_lower_bounds(shingles: ShingleSets) -> np.ndarray:
    """Per document, a lower bound of its distinct shingles without sorting them: the number of the
    2**DISTINCT_BUCKET_BITS top-bits buckets its hashes fall in (equal hashes share a bucket)."""
    docs = len(shingles.offsets) - 1
    owner = np.repeat(np.arange(docs), shingles.counts())
    bucket = (shingles.hashes >> np.uint64(64 - DISTINCT_BUCKET_BITS)).astype(np.int64)
    table = np.zeros(docs << DISTINCT_BUCKET_BITS, bool)
    table[(owner << DISTINCT_BUCKET_BITS) | bucket] = True
    return np.count_nonzero(table.reshape(docs, 1 << DISTINCT_BUCKET_BITS), axis=1)


def _near_copies(index: BenchmarkIndex, shingles: ShingleSets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(document, item, exact Jaccard) of every LSH candidate pair at or above the threshold,
    sorted by (document, item), from the documents' dedup shingles.

    Jaccard(D, I) >= t needs |D & I| >= t * max(|D|, |I|), and |D & I| is at most the number k of
    D's shingles that pass the items' vocabulary bitmap (every shingle of an item does, a few
    others too). So a document with k below t times the smallest item set, or below t times a lower
    bound of its own distinct shingles, is no near copy of anything and skips MinHash (most
    documents): the result is that of LSH over every document."""
    n_items, vocabulary = len(index.item_ids), len(index.shingle_vocab.hashes)
    passed = np.concatenate([[0], np.cumsum(index.shingle_vocab.maybe(shingles.hashes))])
    known = passed[shingles.offsets[1:]] - passed[shingles.offsets[:-1]]
    smallest = index.shingle_counts[index.shingle_counts > 0].min(initial=np.iinfo(np.int64).max)
    hopeful = np.flatnonzero(known >= max(index.threshold * smallest, 1))
    hopeful = hopeful[known[hopeful] >= index.threshold * _distinct_lower_bounds(shingles.take(hopeful))]
    minhasher = MinHasher(index.num_perm, index.shingle_size, index.seed)
    signatures = minhasher.signatures_of(shingles.take(hopeful))
    query, item = index.bands.lookup(band_keys(signatures, index.layout).ravel())
    pair = np.unique(hopeful[query // index.layout.bands].astype(np.int64) * n_items + item)
    if len(pair) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    docs, items = pair // n_items, pair % n_items
    candidates, doc_rank = np.unique(docs, return_inverse=True)
    sets = distinct_shingles(shingles.take(candidates))
    doc_counts = sets.counts()[doc_rank]
    positions, of_pair = _ranges(sets.offsets[doc_rank], doc_counts)
    known, rank = index.shingle_vocab.find(sets.hashes[positions])
    key = items[of_pair[known]] * vocabulary + rank
    found = np.minimum(np.searchsorted(index.shingle_keys, key), len(index.shingle_keys) - 1)
    shared = np.bincount(of_pair[known][index.shingle_keys[found] == key], minlength=len(pair)).astype(np.float64)
    jaccard = shared / (doc_counts + index.shingle_counts[items] - shared)
    near = jaccard >= index.threshold
    return docs[near], items[near], jaccard[near]


def _match_chunk(index: BenchmarkIndex, texts: pa.Array) -> tuple[dict[str, np.ndarray | pa.Array], np.ndarray]:
    """Evidence columns (row, item, kind, ngram, jaccard; rows local to the chunk) and measures
    (documents x benchmarks x [words, aligned, ngram items, near items]) of one chunk."""
    data, offsets = string_buffer(normalize_texts(texts))
    words = words_of(data, offsets)
    windows = _windows(words, sorted({NGRAM_WORDS, ALIGNMENT_WORDS, index.short_prefix_words} - {0}))
    n_docs, n_benchmarks = len(texts), len(index.names)
    item_benchmark = index.item_benchmarks()
    gram_docs, gram_items, first, sizes = _first_ngrams(index, words, windows)
    near_docs, near_items, jaccard = _near_copies(index, _dedup_shingles(data, offsets, index.shingle_size))
    measures = np.zeros((n_docs, n_benchmarks, 4), np.int64)
    measures[:, :, 0] = words.counts()[:, None]
    measures[:, :, 1] = _aligned_words(index, words, *windows[ALIGNMENT_WORDS])
    for column, (docs, items) in ((2, (gram_docs, gram_items)), (3, (near_docs, near_items))):
        cell = docs * n_benchmarks + item_benchmark[items]
        measures[:, :, column] = np.bincount(cell, minlength=n_docs * n_benchmarks).reshape(n_docs, n_benchmarks)
    evidence = {
        "row": np.concatenate([gram_docs, near_docs]),
        "item": np.concatenate([gram_items, near_items]),
        "kind": np.concatenate([np.zeros(len(gram_docs), np.int8), np.ones(len(near_docs), np.int8)]),
        "ngram": pa.concat_arrays([_ngram_texts(words, first, sizes), pa.nulls(len(near_docs), pa.string())]),
        "jaccard": pa.concat_arrays([pa.nulls(len(gram_docs), pa.float64()), pa.array(jaccard, pa.float64())]),
    }
    return evidence, measures


def match_documents(
    index: BenchmarkIndex, ids: pa.Array | pa.ChunkedArray, texts: pa.Array | pa.ChunkedArray
) -> tuple[pa.Table, pa.Table]:
    """Overlap of a batch of documents with the indexed benchmarks.

    Returns the evidence (EVIDENCE_SCHEMA: one row per matching (benchmark, item, document, kind),
    sorted by document, then benchmark and item, n-gram before near) and the measures
    (MEASURE_SCHEMA: one row per (document row, benchmark), document-major), from which the
    contamination figures of a corpus add up.
    """
    texts = as_string_array(texts)
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    n_benchmarks = len(index.names)
    evidence_parts, measure_parts = [], [np.zeros((0, n_benchmarks, 4), np.int64)]
    for lo, hi in byte_chunks(texts):
        evidence, measures = _match_chunk(index, texts.slice(lo, hi - lo))
        evidence["row"] = evidence["row"] + lo
        evidence_parts.append(evidence)
        measure_parts.append(measures)
    rows = np.concatenate([e["row"] for e in evidence_parts] + [np.zeros(0, np.int64)])
    items = np.concatenate([e["item"] for e in evidence_parts] + [np.zeros(0, np.int64)])
    kinds = np.concatenate([e["kind"] for e in evidence_parts] + [np.zeros(0, np.int8)])
    order = np.lexsort((kinds, items, rows))
    names = pa.array(index.names, pa.string())
    evidence = pa.table(
        {
            "benchmark": names.take(pa.array(index.item_benchmarks()[items[order]])),
            "item_id": index.item_ids.take(pa.array(items[order])),
            "doc_id": ids.take(pa.array(rows[order])).cast(pa.string()),
            "kind": pa.array(KINDS, pa.string()).take(pa.array(kinds[order])),
            "ngram": pa.concat_arrays([e["ngram"] for e in evidence_parts] + [pa.nulls(0, pa.string())]).take(order),
            "jaccard": pa.concat_arrays([e["jaccard"] for e in evidence_parts] + [pa.nulls(0, pa.float64())]).take(order),
        },
        schema=EVIDENCE_SCHEMA,
    )
    measures = np.concatenate(measure_parts).reshape(-1, 4)
    measure_table = pa.table(
        {
            "row": np.repeat(np.arange(len(texts), dtype=np.int64), n_benchmarks),
            "benchmark": names.take(pa.array(np.tile(np.arange(n_benchmarks), len(texts)))),
            "words": measures[:, 0],
            "aligned_words": measures[:, 1],
            "ngram_items": measures[:, 2].astype(np.int32),
            "near_items": measures[:, 3].astype(np.int32),
        },
        schema=MEASURE_SCHEMA,
    )
    return evidence, measure_table

"""The project's one 64-bit mixing function, shared by deduplication and statistics.

`mix64` is the splitmix64 finaliser. MinHash shingles, LSH band keys, component partitions and
the coverage statistics' n-gram hashes all go through it, so there is one definition to trust.
Its math must never change: MinHash signatures built on it decide which documents are removed.
"""

from __future__ import annotations

import numpy as np

# 2**64 / golden ratio: splitmix64's increment, an odd constant whose multiples spread evenly.
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


# Elements per pass: a piece and its temporary stay in the CPU cache. Whole-array passes over tens of
# millions of values ran 10x slower, bound by memory traffic and page faults of fresh temporaries.
_CHUNK = 1 << 16


def mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (a new array): a bijection that spreads every bit."""
    out = np.array(values, dtype=np.uint64, order="C")
    flat = out.reshape(-1)  # a view: the copy is C-contiguous, whatever the input's layout
    scratch = np.empty(min(flat.size, _CHUNK), dtype=np.uint64)
    for start in range(0, flat.size, _CHUNK):
        x = flat[start : start + _CHUNK]
        shifted = scratch[: len(x)]
        x ^= np.right_shift(x, np.uint64(30), out=shifted)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= np.right_shift(x, np.uint64(27), out=shifted)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= np.right_shift(x, np.uint64(31), out=shifted)
    return out

"""Mergeable summaries of a shard: HyperLogLog registers, count tables, bottom-k samples and exact moments.

Each one merges exactly and commutatively (registers under `max`, count tables by summing
sorted keys, bottom-k samples as count tables cut back to their k smallest keys, Welford moments
in exact rationals), which is what lets coverage statistics be computed per shard and combined
in whatever order and grouping Ray returns them. All but the count tables have a fixed size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable

import numpy as np

HLL_PRECISION = 14  # 16384 registers, about 0.8% standard error; must stay <= 16 (datasketch's tables)


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
    # Imported here: datasketch imports scipy, 0.4 s in every worker that only fills registers.
    from datasketch import HyperLogLogPlusPlus

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
    """One count table summing several (an empty one when there are none)."""
    tables = list(tables)
    if not tables:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    return count_table(np.concatenate([k for k, _ in tables]), np.concatenate([c for _, c in tables]))


def bottom_k(table: tuple[np.ndarray, np.ndarray], capacity: int) -> tuple[np.ndarray, np.ndarray]:
    """The `capacity` smallest keys of a count table, with their counts: a uniform sample of the
    distinct keys when the keys are hashes.

    The counts stay exact under merging: a key among the k smallest of a union is among the k
    smallest of every part that holds it, so merging samples and cutting back to k gives the
    sample of the whole, whatever the partitioning and the order of the merges.
    """
    keys, counts = table
    return keys[:capacity], counts[:capacity]


def sample_scale(sample_counts: np.ndarray, total: int) -> float:
    """Distinct keys of the whole per distinct key in a bottom-k sample: `total` occurrences over the
    sample's. Exactly 1 when the sample holds every key."""
    sampled = int(sample_counts.sum())
    return total / sampled if sampled else 0.0


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

"""Closed integer intervals: the values an integer edge can carry, as proven by range analysis.

Each integer-producing node type states how its output interval follows from its inputs' intervals
(``Op.value_range``); :mod:`snncompile.passes.prove_ranges` walks a graph with those rules.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .types import DType, int_type


@dataclass(frozen=True)
class Interval:
    """``[lo, hi]``, both inclusive, Python ints (no overflow)."""

    lo: int
    hi: int

    def __post_init__(self):
        object.__setattr__(self, "lo", int(self.lo))
        object.__setattr__(self, "hi", int(self.hi))
        if self.lo > self.hi:
            raise ValueError(f"empty interval [{self.lo}, {self.hi}]")

    @staticmethod
    def of_dtype(dtype: DType) -> "Interval":
        """Every value ``dtype`` admits (not defined for float)."""
        if dtype.kind == "float":
            raise ValueError("a float dtype has no integer interval")
        return Interval(int(dtype.min), int(dtype.max))

    @staticmethod
    def hull(*intervals: "Interval") -> "Interval":
        return Interval(min(i.lo for i in intervals), max(i.hi for i in intervals))

    @property
    def magnitude(self) -> int:
        return max(abs(self.lo), abs(self.hi))

    def __add__(self, other: "Interval") -> "Interval":
        return Interval(self.lo + other.lo, self.hi + other.hi)

    def __neg__(self) -> "Interval":
        return Interval(-self.hi, -self.lo)

    def __mul__(self, other: "Interval") -> "Interval":
        products = (self.lo * other.lo, self.lo * other.hi, self.hi * other.lo, self.hi * other.hi)
        return Interval(min(products), max(products))

    def times(self, k: int) -> "Interval":
        """``k * x`` for a constant ``k``."""
        return Interval(min(k * self.lo, k * self.hi), max(k * self.lo, k * self.hi))

    def shift(self, e: int) -> "Interval":
        """``x << e`` (``e >= 0``) or the arithmetic (floor) ``x >> -e``."""
        return Interval(self.lo << e, self.hi << e) if e >= 0 else Interval(self.lo >> -e, self.hi >> -e)

    def clip(self, other: "Interval") -> "Interval":
        """This interval saturated to ``other``."""
        return Interval(min(max(self.lo, other.lo), other.hi), max(min(self.hi, other.hi), other.lo))

    def within(self, other: "Interval") -> bool:
        return other.lo <= self.lo and self.hi <= other.hi

    def dtype(self) -> DType:
        """The narrowest integer dtype holding every value (unsigned when ``lo >= 0``)."""
        if self.lo >= 0:
            return int_type(max(1, self.hi.bit_length()), signed=False)
        bits = max((-self.lo - 1).bit_length(), self.hi.bit_length()) + 1
        return int_type(bits, signed=True)

    def __str__(self) -> str:
        return f"[{self.lo}, {self.hi}]"


def signed_sums(weight: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per output ``o``, the sum of its positive weights and the sum of its negative ones over ``axes`` (the
    summed weight axes), exactly: int64, or Python ints for weights beyond 2^40. A synapse keeps them
    (:func:`sums_range` on every proof), as they do not depend on the input's interval."""
    w = np.asarray(weight, dtype=object if np.abs(weight).max(initial=0) > 2 ** 40 else np.int64)
    return np.where(w > 0, w, 0).sum(axis=axes), np.where(w < 0, w, 0).sum(axis=axes)


def sums_range(sums: tuple[np.ndarray, np.ndarray], x: Interval) -> Interval:
    """Interval of ``sum_i weight[o, i] * x_i`` over all outputs ``o``, each ``x_i`` anywhere in ``x``, from
    the weights' :func:`signed_sums`: per output, positive weights take the matching end of ``x``."""
    pos, neg = sums
    hi = pos * x.hi + neg * x.lo
    lo = pos * x.lo + neg * x.hi
    return Interval(int(np.min(lo)), int(np.max(hi)))


def dot_range(weight: np.ndarray, x: Interval, axes: tuple[int, ...]) -> Interval:
    """Interval of ``sum_i weight[o, i] * x_i`` over all outputs ``o`` (``axes``: the summed weight
    axes), each ``x_i`` anywhere in ``x``: per output, positive weights take the matching end of ``x``."""
    return sums_range(signed_sums(weight, axes), x)


__all__ = ["Interval", "dot_range", "signed_sums", "sums_range"]

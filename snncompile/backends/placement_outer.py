"""Attention accumulates read as outer products: what limits how many of their outputs one core can hold.

Each output of ``KVOuterAccumulate``, ``QMAccumulate``, ``SpikeScores`` and ``ScoreValueAccumulate`` is a
(row, column) pair of one head, and reads the whole *row* of one input and the whole *column* of the other
(their ``reads``):

==========================  =================  ==================  =====================  =====================
op                          output             rows x columns      a row reads            a column reads
==========================  =================  ==================  =====================  =====================
``KVOuterAccumulate``       ``M[h, i, j]``     ``d x d``           ``K[h*d+i, :]`` (N)    ``V[h*d+j, :]`` (N)
``QMAccumulate``            ``O[h*d+j, n]``    ``N x d``           ``Q[h, :, n]`` (d)     ``M[h, :, j]`` (d)
``SpikeScores``             ``A[h, n, m]``     ``N x N``           ``Q[h, :, n]`` (d)     ``K[h, :, m]`` (d)
``ScoreValueAccumulate``    ``O[h*d+j, n]``    ``N x d``           ``S[h, n, :]`` (N)     ``V[h*d+j, :]`` (N)
==========================  =================  ==================  =====================  =====================

So a core holding ``r`` rows and ``c`` columns of a head reads ``r*a + c*b`` input axons (``a``, ``b``: the
elements a row and a column read) for at most ``r*c`` outputs: within ``A`` input axons a core holds at most
``max_r r * floor((A - a*r) / b)`` outputs (:func:`outputs_per_core`; across heads no more, since two
heads' rectangles side by side read as much as one rectangle of their rows and columns together), and an
input element reaches every core holding its row (column): at least ``ceil(columns / c_max)`` cores, ``c_max
= floor((A - a) / b)`` the columns a core with one row can hold (:func:`receivers`). Both are lower-bound
rules (:mod:`.placement_bound`); the placement cuts these units into boxes of rows x columns
(:mod:`.placement`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from ..ir.ops import KVOuterAccumulate, Op, QMAccumulate, ScoreValueAccumulate, SpikeScores


@dataclass(frozen=True)
class Outer:
    """An accumulate's outputs as ``heads`` x ``rows`` x ``columns``; a row reads ``row_reads`` elements of
    input ``row_input``, a column ``column_reads`` of the other input."""

    heads: int
    rows: int
    columns: int
    row_input: int
    row_reads: int
    column_reads: int

    @property
    def column_input(self) -> int:
        return 1 - self.row_input

    @property
    def outputs(self) -> int:
        return self.heads * self.rows * self.columns


def outer(op: Op, in_shapes: Sequence[tuple[int, ...]]) -> Outer | None:
    """``op``'s outputs as an outer product (module docstring), or None for any other op."""
    if not isinstance(op, (KVOuterAccumulate, QMAccumulate, SpikeScores, ScoreValueAccumulate)):
        return None
    channels = in_shapes[1 if isinstance(op, ScoreValueAccumulate) else 0]
    d, n = channels[0] // op.heads, math.prod(channels[1:])
    if isinstance(op, KVOuterAccumulate):
        return Outer(op.heads, d, d, 0, n, n)
    if isinstance(op, QMAccumulate):
        return Outer(op.heads, n, d, 0, d, d)
    if isinstance(op, SpikeScores):
        return Outer(op.heads, n, n, 0, d, d)
    return Outer(op.heads, n, d, 0, n, n)


def outputs_per_core(shape: Outer, axons: int) -> int:
    """The most outputs of ``shape`` one core can hold within ``axons`` input axons."""
    return max([r * min(shape.columns * shape.heads, (axons - shape.row_reads * r) // shape.column_reads)
                for r in range(1, min(shape.rows * shape.heads, axons // shape.row_reads) + 1)], default=0)


def receivers(shape: Outer, which: int, axons: int) -> int:
    """The fewest cores that receive one element of input ``which`` (each holds its row or column and, with
    it, at most as many columns or rows as the rest of ``axons`` reads)."""
    own, other, along = ((shape.row_reads, shape.column_reads, shape.columns) if which == shape.row_input
                         else (shape.column_reads, shape.row_reads, shape.rows))
    most = (axons - own) // other
    return -(-along // most) if most > 0 else 1


__all__ = ["Outer", "outer", "outputs_per_core", "receivers"]

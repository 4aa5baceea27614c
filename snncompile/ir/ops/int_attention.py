"""Integer attention nodes: the exact accumulates ``lower_attention`` turns the float attention nodes into.

Operand layout as in ``attention.py``: Q, K, V are ``[C, Hs, Ws]`` streams, heads are contiguous channel
groups (``c = h*d + j``, ``d = C / heads``), tokens ``n = y*Ws + x`` (``N = Hs*Ws``). The per-head matrices
between these nodes travel as per-sample shapes ``(H, d, d)`` (``K^T V``) and ``(H, N, N)`` (scores).

Every node computes exactly (``run``, the reference): int64, or float32 (float64) matrix products when every
partial sum provably stays below 2^24 (2^53) in magnitude; the simulator's kernels
(``snncompile.sim.kernels.attention``) compute the same values faster. Output dtypes are the proven width of
the worst case (the interval ``value_range`` gives for the input dtypes), or ``int<out_bits>`` where an
accumulate is told to wrap or saturate at a narrower width.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch

from ...nn.attention import lut_lookup, merge_heads, split_heads
from ..interval import Interval
from ..types import SPIKE, DType, TensorType, int_type
from .attention import _heads_problems, _qkv_types
from .base import Op, expect, expect_stream, param
from .loihi import _int_array_problems, as_int64
from .quant import _fit_problems, fit
from .receptive import head_channels, head_tokens, per_head
from .support import NETX_PRODUCT, NIR_INTEGER, ONNX_INTEGER, Backends, Refused

Overflow = Literal["none", "saturate", "wrap"]
_HEADS_DOC = "attention heads H (contiguous channel groups)"
_OUT_BITS_DOC = ("signed width the result is wrapped or saturated to (``overflow``); ``None``: the proven width "
                 "of the worst case, which cannot overflow")
_OVERFLOW_DOC = ("``none`` while ``out_bits`` is ``None``; else what a result beyond ``out_bits`` does: ``wrap`` or "
                 "``saturate``")


def _peak(x: torch.Tensor) -> int:
    return int(x.abs().max()) if x.numel() else 0


def exact_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` of int64 tensors, exactly, as int64. Each output is a sum of ``a.shape[-1]`` products, so
    every partial sum is at most ``a.shape[-1] * max|a| * max|b|``: below 2^24 (2^53) it is an exactly
    representable integer in float32 (float64), whatever the summation order; else the product runs in int64."""
    bound = a.shape[-1] * _peak(a) * _peak(b)
    dtype = torch.float32 if bound < 2 ** 24 else torch.float64 if bound < 2 ** 53 else torch.int64
    if dtype == torch.int64 and a.device.type != "cpu":  # no int64 matrix product on GPUs
        return torch.matmul(a.cpu(), b.cpu()).to(a.device)
    return torch.matmul(a.to(dtype), b.to(dtype)).to(torch.int64)


def _heads_of(x: torch.Tensor, heads: int, what: str) -> torch.Tensor:
    """An integer ``[T, B, C, Hs, Ws]`` operand as exact per-head int64 rows ``[T, B, H, N, d]``."""
    return split_heads(as_int64(x, what), heads)


def _channels(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-head ``[T, B, H, N, d]`` back to the ``[T, B, C, Hs, Ws]`` layout of ``like``."""
    return merge_heads(x).reshape(like.shape)


def _intervals(inputs: Sequence[Interval | None], types: Sequence[TensorType]) -> list[Interval]:
    """Each input's proven interval, or its dtype's range where range analysis gave none."""
    return [Interval.of_dtype(t.dtype) if i is None else i for i, t in zip(inputs, types)]


def _events(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[T, B, C, Hs, Ws]`` non-zero indicators as per-head rows ``[T, B, H, N, d]`` (int64)."""
    t, b, c = x.shape[:3]
    return (x != 0).to(torch.int64).reshape(t, b, heads, c // heads, -1).transpose(-2, -1)


_BACKENDS = Backends(lava="local", onnx=Refused(ONNX_INTEGER), nir=Refused(NIR_INTEGER), netx=Refused(NETX_PRODUCT))


def _integer_operand(t: TensorType, what: str) -> None:
    expect(t.dtype.kind != "float", f"{what} must be integers (spikes, ternary or ints), got {t}; quantise it first")


class _ProvenRange(Op):
    """Integer nodes whose output interval follows from their inputs' (not a node type): ``_interval`` states
    the rule; ``value_range`` applies it to proven intervals, ``infer`` to the input dtypes."""

    INTEGER_INPUTS = True

    def _interval(self, inputs: list[Interval], types: Sequence[TensorType]) -> Interval:
        raise NotImplementedError

    def value_range(self, inputs, in_types, out: TensorType) -> Interval:
        return self._interval(_intervals(inputs, in_types), in_types)

    def _proven_dtype(self, types: Sequence[TensorType]) -> DType:
        return self._interval(_intervals([None] * len(types), types), types).dtype()


class _Accumulate(_ProvenRange):
    """An integer sum that may be narrowed to ``out_bits`` (not a node type; subclasses declare the fields)."""

    def _width_problems(self) -> list[str]:
        if self.out_bits is None:
            return [] if self.overflow == "none" else [
                f"overflow must be 'none' while out_bits is None (the proven width cannot overflow), "
                f"got {self.overflow!r}"]
        return _fit_problems(self)

    def _out_dtype(self, types: Sequence[TensorType]) -> DType:
        return self._proven_dtype(types) if self.out_bits is None else int_type(self.out_bits)

    def _fit(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.out_bits is None else fit(y, self.out_bits, self.overflow)


@dataclass(frozen=True, eq=False, kw_only=True)
class KVOuterAccumulate(_Accumulate):
    """STAtten's ``M = K^T V`` per head, accumulated over a temporal block: inputs (K, V) ``[C, Hs, Ws]``,
    output ``[H, d, d]`` integers.

    Semantics: steps ``t >= block_offset`` form blocks ``g = (t - block_offset) // block`` of ``block``
    consecutive steps; for every step t of block g::

        M[t, h, i, j] = sum_{s in block g} sum_n K[s, h, n, i] * V[s, h, n, j]

    the whole block's sum. That is non-causal inside a block; a scheduler makes it causal by giving this node
    ``delay = block - 1`` (each block's sum then leaves at its last step) and delaying Q as much. Steps before
    ``block_offset`` give 0; a last block cut short by the end of the stream sums the steps it has. K:
    integers (spikes, ternary or e.g. A2OS2A's quantised unsigned K); V: spikes or ternary (it selects
    ``+K``, ``-K`` or nothing, so the accumulate is addition-only). Exact, then narrowed to ``out_bits`` if
    set.
    """

    ARITY = 2
    ROLE, STEPPING, WORK = "accumulate", "history", "attention"
    BACKENDS = dataclasses.replace(_BACKENDS, lava="history")
    heads: int = param(_HEADS_DOC)
    block: int = param("timesteps per temporal block (STAtten ``chunk_size``)", 1)
    block_offset: int = param("steps before the first block starts (a scheduler sets the input latency); "
                              "they give 0", 0)
    out_bits: int | None = param(_OUT_BITS_DOC, None)
    overflow: Overflow = param(_OVERFLOW_DOC, "none")

    def problems(self) -> list[str]:
        p = _heads_problems(self) + ([] if self.block >= 1 else [f"block must be >= 1, got {self.block}"])
        if self.block_offset < 0:
            p.append(f"block_offset must be >= 0, got {self.block_offset}")
        return p + self._width_problems()

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        x = _qkv_types(inputs, self.heads, "KVOuterAccumulate")
        _integer_operand(inputs[0], "KVOuterAccumulate's K")
        expect(inputs[1].dtype.is_spike, f"KVOuterAccumulate needs spike or ternary V (it selects what to add), "
                                         f"got {inputs[1]}")
        d = x.shape[0] // self.heads
        return TensorType((self.heads, d, d), self._out_dtype(inputs))

    def _interval(self, inputs, types) -> Interval:
        k, v = inputs
        rows = self.block * types[0].shape[1] * types[0].shape[2]
        return Interval.hull((k * v).times(rows), Interval(0, 0))  # 0: steps before the first block

    def run(self, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        kh, vh = _heads_of(k, self.heads, "K"), _heads_of(v, self.heads, "V")
        per_step = exact_matmul(kh.transpose(-2, -1), vh)  # [T, B, H, d, d]
        return self._fit(self._block_sums(per_step))

    def scheduled(self, arrival: int, data_steps: int, run_steps: int, synapse_delay: int) -> "KVOuterAccumulate":
        """Each block's sum leaves at its last step (``delay = block - 1``); blocks start with the data."""
        return dataclasses.replace(self, delay=self.block - 1, block_offset=arrival)

    def unscheduled(self, data_steps: int) -> "KVOuterAccumulate":
        return dataclasses.replace(self, delay=0, block_offset=0)

    def restarted(self, arrival: int) -> "KVOuterAccumulate | None":
        """Its blocks start at ``block_offset`` and sum only their own steps: it forgets what came before when
        they start with the data."""
        return self if self.block_offset == arrival else None

    def reads(self, out, in_shapes):
        # M[h, i, j] sums K[h, :, i] * V[h, :, j] over the block's tokens
        return [head_channels(out.any(2), in_shapes[0], self.heads), head_channels(out.any(1), in_shapes[1], self.heads)]

    def work(self, args: list[torch.Tensor]) -> torch.Tensor:
        """Additions into ``M[h, i, j]`` per step: ``sum_n [K_n,i] [V_n,j]`` (none before ``block_offset``)."""
        k, v = (_events(a, self.heads) for a in args)
        work = torch.einsum("tbhni,tbhnj->tbhij", k, v)
        work[:self.block_offset] = 0
        return work

    def _block_sums(self, per_step: torch.Tensor) -> torch.Tensor:
        """Every step of a block gets the block's sum; steps before ``block_offset`` get 0."""
        if self.block == 1:  # each step is its own block
            per_step[:self.block_offset] = 0
            return per_step
        sums = torch.zeros_like(per_step)
        for start in range(self.block_offset, per_step.shape[0], self.block):
            block = slice(start, start + self.block)
            sums[block] = per_step[block].sum(0)
        return sums


@dataclass(frozen=True, eq=False, kw_only=True)
class QMAccumulate(_Accumulate):
    """Binary Q times the per-head integer matrix M: inputs (Q ``[C, Hs, Ws]`` spikes, M ``[H, d, d]``),
    output ``[C, Hs, Ws]`` integers.

    Semantics: ``O[t, h, n, j] = sum_i Q[t, h, n, i] * M[t, h, i, j]`` (Q selects rows of M), exact, then
    narrowed to ``out_bits`` if set.
    """

    ARITY = 2
    ROLE, STEPPING, WORK = "accumulate", "local", "attention"
    BACKENDS = _BACKENDS
    heads: int = param(_HEADS_DOC)
    out_bits: int | None = param(_OUT_BITS_DOC, None)
    overflow: Overflow = param(_OVERFLOW_DOC, "none")

    def problems(self) -> list[str]:
        return _heads_problems(self) + self._width_problems()

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        q, m = inputs
        _qkv_types([q], self.heads, "QMAccumulate")
        expect(q.dtype == SPIKE, f"QMAccumulate needs binary Q, got {q}")
        d = q.shape[0] // self.heads
        expect_stream(m, "M")
        expect(m.shape == (self.heads, d, d), f"QMAccumulate needs M [{self.heads}, {d}, {d}] per step, got {m}")
        _integer_operand(m, "QMAccumulate's M")
        return TensorType(q.shape, self._out_dtype(inputs))

    def _interval(self, inputs, types) -> Interval:
        q, m = inputs
        return (q * m).times(types[0].shape[0] // self.heads)

    def run(self, q: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        o = exact_matmul(_heads_of(q, self.heads, "Q"), as_int64(m, "M"))
        return self._fit(_channels(o, q))

    def reads(self, out, in_shapes):
        o = per_head(out, self.heads)  # [H, d (j), N]: O[h, n, j] reads Q[h, n, :] and M[h, :, j]
        m = np.broadcast_to(o.any(2)[:, None, :], in_shapes[1]).copy()
        return [head_tokens(o.any(1), in_shapes[0], self.heads), m]

    def work(self, args: list[torch.Tensor]) -> torch.Tensor:
        """Additions into ``O[h, n, j]`` per step: ``nnz(Q[h, n, :])`` (each Q event adds a row of M)."""
        q = args[0]
        rows = _events(q, self.heads)  # [T, B, H, N, d]
        return rows.sum(-1, keepdim=True).expand(rows.shape).transpose(-2, -1).reshape(q.shape)


@dataclass(frozen=True, eq=False, kw_only=True)
class SpikeScores(_ProvenRange):
    """Spiking attention scores ``Q K^T`` per head: inputs (Q, K) ``[C, Hs, Ws]`` binary spikes, output
    ``[H, N, N]`` unsigned integers.

    Semantics: ``A[t, h, n, m] = sum_j Q[t, h, n, j] * K[t, h, m, j]`` (coincidence counts, ``0 .. d``).
    """

    ARITY = 2
    ROLE, STEPPING, WORK = "accumulate", "local", "attention"
    BACKENDS = _BACKENDS
    heads: int = param(_HEADS_DOC)

    def problems(self) -> list[str]:
        return _heads_problems(self)

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        x = _qkv_types(inputs, self.heads, "SpikeScores")
        expect(all(t.dtype == SPIKE for t in inputs), f"SpikeScores needs binary Q and K, got {inputs[0]} and "
                                                       f"{inputs[1]}")
        n = x.shape[1] * x.shape[2]
        return TensorType((self.heads, n, n), self._proven_dtype(inputs))

    def _interval(self, inputs, types) -> Interval:
        q, k = inputs
        return (q * k).times(types[0].shape[0] // self.heads)

    def run(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return exact_matmul(_heads_of(q, self.heads, "Q"), _heads_of(k, self.heads, "K").transpose(-2, -1))

    def reads(self, out, in_shapes):
        # A[h, n, m] reads Q[h, :, n] and K[h, :, m]
        return [head_tokens(out.any(2), in_shapes[0], self.heads), head_tokens(out.any(1), in_shapes[1], self.heads)]

    def work(self, args: list[torch.Tensor]) -> torch.Tensor:
        """Additions into ``A[h, n, m]`` per step: the coincidences ``sum_j [Q_n,j] [K_m,j]``."""
        q, k = (_events(a, self.heads) for a in args)
        return torch.einsum("tbhnj,tbhmj->tbhnm", q, k)


@dataclass(frozen=True, eq=False, kw_only=True)
class ScoreLUT(_ProvenRange):
    """DS2TA's denoiser on integer scores: input A ``[H, N, N]`` unsigned integers, output ``[H, N, N]``
    integers.

    Semantics: ``f[t, h, n, m] = table[h, A[t, h, n, m]]``, an exact lookup; a score outside
    ``0 .. table.shape[1] - 1`` is an error.
    """

    ROLE, STEPPING, WORK = "elementwise", "local", "none"  # a lookup: no additions
    BACKENDS = dataclasses.replace(_BACKENDS, netx=Refused(NETX_PRODUCT + " (nor a lookup table)"))
    table: np.ndarray = param("integer values ``[H, d + 1]`` of the scores ``0 .. d``, per head")

    def problems(self) -> list[str]:
        p = _int_array_problems("table", self.table)
        if not p and (self.table.ndim != 2 or self.table.size == 0):
            p.append(f"table must be a non-empty [H, d + 1] array, got shape {self.table.shape}")
        return p

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (a,) = inputs
        expect_stream(a, "A")
        heads = self.table.shape[0]
        expect(len(a.shape) == 3 and a.shape[0] == heads and a.shape[1] == a.shape[2],
               f"ScoreLUT needs scores [{heads}, N, N] (one table row per head), got {a}")
        _integer_operand(a, "ScoreLUT's scores")
        expect(a.dtype.min >= 0, f"ScoreLUT indexes its table with the scores: they must be unsigned, got {a}")
        return TensorType(a.shape, self._proven_dtype(inputs))

    def _interval(self, inputs, types) -> Interval:
        (a,) = inputs
        lo, hi = max(a.lo, 0), min(a.hi, self.table.shape[1] - 1)
        reachable = self.table[:, lo:hi + 1] if lo <= hi else self.table  # (else run raises)
        return Interval(int(reachable.min()), int(reachable.max()))

    def run(self, a: torch.Tensor) -> torch.Tensor:
        return lut_lookup(self.tensor("table").to(a.device, torch.int64), as_int64(a, "scores"))[0]


@dataclass(frozen=True, eq=False, kw_only=True)
class ScoreValueAccumulate(_Accumulate):
    """Integer scores times V: inputs (S ``[H, N, N]`` integers, V ``[C, Hs, Ws]`` spikes or ternary), output
    ``[C, Hs, Ws]`` integers.

    Semantics: ``O[t, h, n, j] = sum_m S[t, h, n, m] * V[t, h, m, j]`` (V selects ``+S``, ``-S`` or
    nothing), exact, then narrowed to ``out_bits`` if set.
    """

    ARITY = 2
    ROLE, STEPPING, WORK = "accumulate", "local", "attention"
    BACKENDS = _BACKENDS
    heads: int = param(_HEADS_DOC)
    out_bits: int | None = param(_OUT_BITS_DOC, None)
    overflow: Overflow = param(_OVERFLOW_DOC, "none")

    def problems(self) -> list[str]:
        return _heads_problems(self) + self._width_problems()

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        s, v = inputs
        x = _qkv_types([v], self.heads, "ScoreValueAccumulate")
        expect(v.dtype.is_spike, f"ScoreValueAccumulate needs spike or ternary V (it selects what to add), got {v}")
        n = x.shape[1] * x.shape[2]
        expect_stream(s, "S")
        expect(s.shape == (self.heads, n, n), f"ScoreValueAccumulate needs scores [{self.heads}, {n}, {n}], got {s}")
        _integer_operand(s, "ScoreValueAccumulate's S")
        return TensorType(v.shape, self._out_dtype(inputs))

    def _interval(self, inputs, types) -> Interval:
        s, v = inputs
        return (s * v).times(types[0].shape[1])

    def run(self, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        o = exact_matmul(as_int64(s, "S"), _heads_of(v, self.heads, "V"))
        return self._fit(_channels(o, v))

    def reads(self, out, in_shapes):
        o = per_head(out, self.heads)  # [H, d (j), N]: O[h, n, j] reads S[h, n, :] and V[h, j, :]
        s = np.broadcast_to(o.any(1)[:, :, None], in_shapes[0]).copy()
        return [s, head_channels(o.any(2), in_shapes[1], self.heads)]

    def work(self, args: list[torch.Tensor]) -> torch.Tensor:
        """Additions into ``O[h, n, j]`` per step: ``nnz(V[h, :, j])`` (each V event adds a column of S)."""
        v = args[1]
        rows = _events(v, self.heads)  # [T, B, H, N, d]
        return rows.sum(-2, keepdim=True).expand(rows.shape).transpose(-2, -1).reshape(v.shape)


__all__ = ["KVOuterAccumulate", "QMAccumulate", "SpikeScores", "ScoreLUT", "ScoreValueAccumulate", "exact_matmul"]

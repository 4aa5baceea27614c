"""Multi-level ("multi-spike") nodes of SDT-V3: the stateless D-level quantiser and its linear attention.

An activation of level ``k`` in ``0 .. D`` can travel two ways (issue 17, ``MultiLevelSpike.encoding``):

- ``graded``: one message whose payload is ``k`` (Loihi 2 graded spikes), one step per layer; a message for every
  non-zero level, each synapse a multiply-accumulate of the payload;
- ``unary``: ``k`` binary spikes over ``D`` sub-steps (the paper's "T = 1 x D" reading), ``D`` steps per layer; a
  message per unit of level, each synapse an accumulate.

The float nodes here are what the torch model computes; ``LevelScores`` + ``LevelScoreValue`` are the attention's
exact integer form (levels in, integer accumulates out; two-input steps, as the Lava backend runs them), whose
proven bounds are the range proof of its accumulators, and ``LevelThreshold`` the quantiser on an integer input (D
thresholds, exactly the float rounding it replaces).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch

from ..interval import Interval
from ..types import FLOAT32, TensorType, int_type
from .attention import _heads_problems, _product_reads
from .receptive import head_channels, head_tokens, per_head
from .base import Op, expect, expect_stream, param
from .support import LAVA_FLOAT, NETX_FLOAT, NETX_PRODUCT, NIR_NO_PRODUCT, Backends, Refused

Encoding = Literal["graded", "unary"]
_NIR_LEVELS = ("a multi-level quantiser (round half to even of clamp(x, 0, D)): NIR has no stateless "
               "multi-threshold neuron")
_NETX_LEVELS = "netx layers emit binary or graded CUBA spikes, not a D-level rounding quantiser"


def _level_problems(op) -> list[str]:
    p = [] if isinstance(op.levels, int) and 1 <= op.levels <= 255 else [f"levels must be an int in 1..255, "
                                                                         f"got {op.levels!r}"]
    if op.encoding not in ("graded", "unary"):
        p.append(f"encoding must be 'graded' or 'unary', got {op.encoding!r}")
    return p


@dataclass(frozen=True, eq=False, kw_only=True)
class MultiLevelSpike(Op):
    """SDT-V3's activation (upstream ``MultiSpike``), stateless. Semantics, per element and step::

        y = round_half_even(clamp(x, 0, levels)) / norm

    ``norm`` is ``levels`` everywhere except before the classifier head (``norm = 1``: the head reads integers).
    """

    levels: int = param("D: the largest level (upstream max_value 4)", 4)
    norm: float = param("divisor of the level (D, or 1 before the head)", 4.0)
    encoding: Encoding = param("how a level travels once lowered: ``graded`` (one message, payload k) or "
                               "``unary`` (k binary spikes over D sub-steps)", "graded")

    ROLE, STEPPING, WORK = "neuron", "local", "neuron"
    BACKENDS = Backends(lava=Refused(LAVA_FLOAT), onnx=Refused("a float multi-level quantiser: not in the ONNX "
                                                               "export's function set"),
                        nir=Refused(_NIR_LEVELS), netx=Refused(NETX_FLOAT))

    def problems(self) -> list[str]:
        return _level_problems(self) + ([] if self.norm > 0 else [f"norm must be > 0, got {self.norm}"])

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect_stream(x)
        return TensorType(x.shape, FLOAT32)

    def levels_of(self, x: torch.Tensor) -> torch.Tensor:
        """The integer level of each element (float32 integers 0..D)."""
        return torch.round(torch.clamp(x, min=0, max=self.levels))

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return self.levels_of(x) / self.norm

    def simulate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The outputs and the levels (a non-zero level is an active update: a message is sent)."""
        levels = self.levels_of(x)
        return levels / self.norm, levels

    def value_range(self, inputs, in_types, out: TensorType) -> Interval:
        return Interval(0, self.levels / self.norm)


@dataclass(frozen=True, eq=False, kw_only=True)
class MultiLevelAttention(Op):
    """SDT-V3's linear attention (upstream ``MS_Attention_linear``) on multi-level Q, K, V. Semantics, per head h
    (contiguous channel groups; V and the output are ``C_v / C`` times as wide as Q and K)::

        X_h = ((Q_h K_h^T) V_h) * scale          Q_h, K_h: [N, C / heads], V_h: [N, C_v / heads]

    in torch's float32 order (the products are exact: Q, K, V are multiples of 1/D). Output ``[C_v, Hs, Ws]``.
    """

    ARITY = 3
    ROLE, STEPPING, WORK = "accumulate", "local", "none"  # counted once lowered (LevelScores, LevelScoreValue)
    BACKENDS = Backends(lava=Refused(LAVA_FLOAT), onnx=Refused("a float multi-level attention: not in the ONNX "
                                                               "export's function set"),
                        nir=Refused(NIR_NO_PRODUCT), netx=Refused(NETX_PRODUCT))
    heads: int = param("attention heads H (contiguous channel groups)")
    scale: float = param("factor on (Q K^T) V (upstream 2 / sqrt(C / heads))", 1.0)

    def problems(self) -> list[str]:
        return _heads_problems(self)

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        return _attention_type(inputs, self.heads, "MultiLevelAttention", FLOAT32)

    def run(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return _attention_product(q, k, v, self.heads) * self.scale

    reads = _product_reads


def _attention_type(inputs: Sequence[TensorType], heads: int, what: str, dtype) -> TensorType:
    q, k, v = inputs
    for t in inputs:
        expect_stream(t)
        expect(len(t.shape) == 3, f"{what} needs [C, Hs, Ws] operands, got {t}")
    expect(q.shape == k.shape, f"{what}: Q {q} and K {k} differ")
    expect(v.shape[1:] == q.shape[1:], f"{what}: V {v} has other tokens than Q {q}")
    expect(q.shape[0] % heads == 0 and v.shape[0] % heads == 0,
           f"{what}: {q.shape[0]} and {v.shape[0]} channels must be divisible by {heads} heads")
    return TensorType(v.shape, dtype)


def _attention_product(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """``(Q K^T) V`` per head on ``[T, B, C, Hs, Ws]`` operands (V ``[T, B, C_v, Hs, Ws]``), as upstream orders it."""
    T, B, _, Hs, Ws = v.shape

    def per_head(t):  # [T, B, C, Hs, Ws] -> [T, B, heads, N, C / heads]
        return t.flatten(3).transpose(2, 3).reshape(T, B, Hs * Ws, heads, -1).transpose(2, 3)

    x = (per_head(q) @ per_head(k).transpose(-2, -1)) @ per_head(v)      # [T, B, heads, N, C_v / heads]
    return x.transpose(3, 4).reshape(T, B, -1, Hs, Ws)


def _per_head(t: torch.Tensor, heads: int) -> torch.Tensor:
    """``[T, B, C, Hs, Ws]`` -> ``[T, B, heads, N, C / heads]`` (contiguous channel groups), int64."""
    T, B, _, Hs, Ws = t.shape
    return t.to(torch.int64).flatten(3).transpose(2, 3).reshape(T, B, Hs * Ws, heads, -1).transpose(2, 3)


def _level_operand(i: Interval | None, levels: int) -> Interval:
    return i if i is not None else Interval(0, levels)


_LEVEL_ACCUMULATE = Backends(lava="local", onnx=Refused("an integer accumulate: the ONNX export writes float graphs"),
                             nir=Refused(NIR_NO_PRODUCT), netx=Refused(NETX_PRODUCT))


@dataclass(frozen=True, eq=False, kw_only=True)
class LevelScores(Op):
    """First half of :class:`MultiLevelAttention`'s exact integer form: scores on integer levels. Semantics::

        S[h, n, m] = sum_j Q[h, n, j] K[h, m, j]        Q, K: levels 0..D;  S in 0 .. d D^2

    Input ``[C, Hs, Ws]`` each, output ``[heads, N, N]`` unsigned (the width ``value_range`` proves).
    """

    ARITY = 2
    INTEGER_INPUTS = True
    ROLE, STEPPING, WORK = "accumulate", "local", "attention"
    BACKENDS = _LEVEL_ACCUMULATE
    heads: int = param("attention heads H (contiguous channel groups)")
    levels: int = param("D: the largest level of Q and K", 4)

    def problems(self) -> list[str]:
        return _heads_problems(self)

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        q, k = inputs
        for t in inputs:
            expect_stream(t)
            expect(len(t.shape) == 3, f"LevelScores needs [C, Hs, Ws] operands, got {t}")
        expect(q.shape == k.shape and q.shape[0] % self.heads == 0,
               f"LevelScores: Q {q} and K {k} must be equal and split into {self.heads} heads")
        n = q.shape[1] * q.shape[2]
        bound = self.value_range([None, None], inputs, q)
        return TensorType((self.heads, n, n), int_type(max(1, int(bound.hi).bit_length()), signed=False))

    def value_range(self, inputs, in_types, out: TensorType) -> Interval:
        q, k = (_level_operand(i, self.levels) for i in inputs)
        return (q * k).times(in_types[0].shape[0] // self.heads)

    def run(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return _per_head(q, self.heads) @ _per_head(k, self.heads).transpose(-2, -1)

    def reads(self, out, in_shapes):
        # S[h, n, m] reads Q[h, :, n] and K[h, :, m]
        return [head_tokens(out.any(2), in_shapes[0], self.heads), head_tokens(out.any(1), in_shapes[1], self.heads)]

    def work(self, args: list[torch.Tensor]) -> torch.Tensor:
        """Accumulates into ``S[h, n, m]``: the non-zero products ``Q[n, j] K[m, j]``."""
        q, k = (a.clamp(max=1) for a in args)
        return self.run(q, k)


@dataclass(frozen=True, eq=False, kw_only=True)
class LevelScoreValue(Op):
    """Second half of :class:`MultiLevelAttention`'s exact integer form. Semantics, per head h::

        X[h, n, j] = sum_m S[h, n, m] V[h, m, j]        V: levels 0..D;  X in 0 .. N d D^3

    (the float attention is ``X * scale / D^3``: every product is a multiple of ``1/D^3``, the "1/64 step" of
    D = 4). Inputs: scores ``[heads, N, N]`` and V ``[C_v, Hs, Ws]``; output ``[C_v, Hs, Ws]`` unsigned, its width
    what ``value_range`` proves from the scores' bound.
    """

    ARITY = 2
    INTEGER_INPUTS = True
    ROLE, STEPPING, WORK = "accumulate", "local", "attention"
    BACKENDS = _LEVEL_ACCUMULATE
    heads: int = param("attention heads H (contiguous channel groups)")
    levels: int = param("D: the largest level of V", 4)

    def problems(self) -> list[str]:
        return _heads_problems(self)

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        s, v = inputs
        expect_stream(s, "S")
        expect_stream(v, "V")
        expect(len(v.shape) == 3 and v.shape[0] % self.heads == 0, f"LevelScoreValue needs V [C_v, Hs, Ws] in "
                                                                   f"{self.heads} heads, got {v}")
        n = v.shape[1] * v.shape[2]
        expect(s.shape == (self.heads, n, n) and s.dtype.kind == "int",
               f"LevelScoreValue needs integer scores [{self.heads}, {n}, {n}], got {s}")
        bound = self.value_range([Interval.of_dtype(s.dtype), None], inputs, v)
        return TensorType(v.shape, int_type(max(1, int(bound.hi).bit_length()), signed=False))

    def value_range(self, inputs, in_types, out: TensorType) -> Interval:
        s = inputs[0] if inputs[0] is not None else Interval.of_dtype(in_types[0].dtype)
        v = _level_operand(inputs[1], self.levels)
        return (s * v).times(in_types[0].shape[2])

    def run(self, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        T, B, _, Hs, Ws = v.shape
        x = s.to(torch.int64) @ _per_head(v, self.heads)           # [T, B, heads, N, C_v / heads]
        return x.transpose(3, 4).reshape(T, B, -1, Hs, Ws)

    def reads(self, out, in_shapes):
        o = per_head(out, self.heads)                              # [H, d_v, N]: X[h, j, n] reads S[h, n, :]
        rows = np.broadcast_to(o.any(1)[:, :, None], in_shapes[0]).copy()
        return [rows, head_channels(o.any(2), in_shapes[1], self.heads)]

    def work(self, args: list[torch.Tensor]) -> torch.Tensor:
        """Accumulates into ``X[h, n, j]``: the non-zero products ``S[n, m] V[m, j]``."""
        s, v = (a.clamp(max=1) for a in args)
        return self.run(s, v)


@dataclass(frozen=True, eq=False, kw_only=True)
class LevelThreshold(Op):
    """The quantiser on an integer input (the lowered :class:`MultiLevelSpike`), stateless. Semantics::

        level = #{k : x >= thresholds[k]}        (thresholds ascending, one per level 1..D)

    The thresholds are the least integers at which the float quantiser's level rises, so the integer level equals
    ``round_half_even(clamp(f(x), 0, D))`` exactly for the monotone float map ``f`` it replaces. Output: unsigned
    levels 0..D (sent per ``encoding``).
    """

    INTEGER_INPUTS = True
    # a stateless comparison per element: no compartment state for the neuron checks (state bits, decays) to read
    ROLE, STEPPING, WORK = "elementwise", "local", "neuron"
    BACKENDS = Backends(lava="local", onnx=Refused("an integer quantiser: the ONNX export writes float graphs"),
                        nir=Refused(_NIR_LEVELS), netx=Refused(_NETX_LEVELS))
    thresholds: np.ndarray = param("int64 [levels]: the least input of each level 1..D")
    encoding: Encoding = param("``graded`` (one message, payload k) or ``unary`` (k spikes over D sub-steps)",
                               "graded")

    @property
    def levels(self) -> int:
        return len(self.thresholds)

    def problems(self) -> list[str]:
        t = np.asarray(self.thresholds)
        p = _level_problems(self)
        if t.dtype != np.int64 or t.ndim != 1 or np.any(np.diff(t) < 0):
            p.append("thresholds must be an ascending int64 vector")
        return p

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect_stream(x)
        expect(x.dtype.kind == "int", f"LevelThreshold needs an integer input, got {x}")
        return TensorType(x.shape, int_type(max(1, self.levels.bit_length()), signed=False))

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return self.simulate(x)[0]

    def simulate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The levels, and the input (no state: each step starts afresh)."""
        x = x.to(torch.int64)
        t = self.tensor("thresholds").to(x.device)
        return (x.unsqueeze(-1) >= t).sum(-1), x

    def value_range(self, inputs, in_types, out: TensorType) -> Interval:
        return Interval(0, self.levels)


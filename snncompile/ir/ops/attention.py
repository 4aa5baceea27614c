"""Spiking-attention nodes. Q, K, V are ``[C, Hs, Ws]`` streams, heads contiguous channel groups
(``c = h*d + j``), tokens ``n = y*Ws + x``. Float semantics are those of ``snncompile.nn.attention``."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch

from ...nn.attention import (attenuated_window, linear_attention, lut_lookup, merge_heads, sdsa_column_sum,
                             sdsa_mask, split_heads, statten_scores)
from ...config import is_int
from ..interval import Interval, dot_range
from ..types import FLOAT32, SPIKE, TensorType, int_type
from .base import Op, expect, expect_stream, param
from .receptive import eroded, head_channels, head_tokens, per_head
from .support import NETX_FLOAT, NETX_PRODUCT, NIR_NO_PRODUCT, Backends, Refused

_LAVA_FLOAT_ATTENTION = "float attention: lower_attention splits it into integer accumulates, which run on Lava"


def _product_reads(op, out: np.ndarray, in_shapes) -> list[np.ndarray]:
    """``X = f(Q K^T) V`` per head: an output at (channel j, token n) of head h reads Q at every channel of h at
    token n, all of K in head h, and V's channel j at every token."""
    o = per_head(out, op.heads)                                 # [H, d, N]
    heads_used = np.broadcast_to(o.any((1, 2))[:, None], o[:, 0, :].shape)
    return [head_tokens(o.any(1), in_shapes[0], op.heads), head_tokens(heads_used, in_shapes[1], op.heads),
            head_channels(o.any(2), in_shapes[2], op.heads)]


def _qkv_types(inputs: Sequence[TensorType], heads: int, what: str) -> TensorType:
    for t in inputs:
        expect_stream(t)
        expect(len(t.shape) == 3, f"{what} needs [C, Hs, Ws] operands, got {t}")
    expect(len({t.shape for t in inputs}) == 1, f"{what} operands differ: {', '.join(map(str, inputs))}")
    expect(inputs[0].shape[0] % heads == 0, f"{what}: {inputs[0].shape[0]} channels not divisible by {heads} heads")
    return inputs[0]


def _heads_problems(op) -> list[str]:
    return [] if op.heads >= 1 else [f"heads must be >= 1, got {op.heads}"]


def _bits(n: int) -> int:
    return max(1, int(n).bit_length())


@dataclass(frozen=True, eq=False, kw_only=True)
class SpikeColumnSum(Op):
    """SDSA's column sum: inputs (K, V) spikes -> ``[C]`` integer counts per timestep.

    Semantics: ``s[t, h*d + j] = sum_n (K AND V)[t, h, n, j]``, in ``0 .. N``. With ``erode`` (the
    Spike-Driven Transformer's DVS mode) the per-head ``[H, N, d]`` AND map is first max-pooled with a
    3x3 window over its (token, channel) axes, stride 1, padding 1.
    """

    ARITY = 2
    ROLE, STEPPING, WORK = "accumulate", "local", "attention"
    BACKENDS = Backends(lava="local", onnx="function", nir=Refused(NIR_NO_PRODUCT), netx=Refused(NETX_PRODUCT))
    heads: int = param("attention heads H (contiguous channel groups)")
    erode: bool = param("3x3 max-pool of the per-head AND map (DVS mode)", False)

    def problems(self) -> list[str]:
        return _heads_problems(self)

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        x = _qkv_types(inputs, self.heads, "SpikeColumnSum")
        expect(all(t.dtype == SPIKE for t in inputs), "SpikeColumnSum needs binary spikes")
        return TensorType((x.shape[0],), int_type(_bits(x.shape[1] * x.shape[2]), signed=False))

    def run(self, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        counts = sdsa_column_sum(split_heads(k, self.heads), split_heads(v, self.heads), self.erode)
        return counts.flatten(2)  # [T, B, H, 1, d] -> [T, B, C]

    def value_range(self, inputs, in_types, out: TensorType) -> Interval:
        # a count of 0/1 entries over the N tokens (eroding max-pools 0/1 values: still 0/1)
        return Interval(0, in_types[0].shape[1] * in_types[0].shape[2])

    def reads(self, out, in_shapes):
        channels = out.reshape(self.heads, -1)  # [H, d]: column j of head h sums K AND V over its tokens
        if self.erode:  # the 3x3 window also reaches the neighbouring columns of the head
            channels = eroded(channels[:, :, None])[:, :, 0]
        return [head_channels(channels, shape, self.heads) for shape in in_shapes]

    def work(self, args: list[torch.Tensor]) -> torch.Tensor:
        """Additions into each column: one per 1 among the (eroded) AND terms it sums, i.e. its value."""
        return self.run(*args).round().to(torch.int64)


@dataclass(frozen=True, eq=False, kw_only=True)
class SpikeMask(Op):
    """SDSA's mask: inputs (Q ``[C, Hs, Ws]``, M ``[C]``) spikes -> ``[C, Hs, Ws]`` spikes.

    Semantics: ``A[t, c, n] = Q[t, c, n] AND M[t, c]``. With ``erode`` the per-head ``[H, N, d]`` result
    is 3x3 max-pooled over (token, channel), stride 1, padding 1, as upstream.
    """

    ARITY = 2
    ROLE, STEPPING, WORK = "accumulate", "local", "none"  # AND gates: no additions to count
    BACKENDS = Backends(lava="local", onnx="function", nir=Refused(NIR_NO_PRODUCT), netx=Refused(NETX_PRODUCT))
    heads: int = param("attention heads H (contiguous channel groups)")
    erode: bool = param("3x3 max-pool of the per-head result (DVS mode)", False)

    def problems(self) -> list[str]:
        return _heads_problems(self)

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        q, m = inputs
        _qkv_types([q], self.heads, "SpikeMask")
        expect(q.dtype == SPIKE and m.dtype == SPIKE, f"SpikeMask needs binary spikes, got {q} and {m}")
        expect(m.shape == (q.shape[0],) and m.time == "stream", f"SpikeMask mask must be [{q.shape[0]}], got {m}")
        return TensorType(q.shape, SPIKE)

    def run(self, q: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        T, B, C, Hs, Ws = q.shape
        a = sdsa_mask(split_heads(q, self.heads), m.reshape(T, B, self.heads, 1, C // self.heads), self.erode)
        return merge_heads(a).reshape(T, B, C, Hs, Ws)

    def reads(self, out, in_shapes):
        o = per_head(out, self.heads)  # [H, d, N]
        if self.erode:
            o = eroded(o)
        return [o.reshape(in_shapes[0]).copy(), o.any(2).reshape(in_shapes[1])]


@dataclass(frozen=True, eq=False, kw_only=True)
class BlockLinearAttention(Op):
    """Linear attention ``Q (K^T V)`` per head over temporal blocks (STAtten, SSA, A2OS2A).

    Semantics: timesteps are grouped in blocks of ``block`` consecutive steps (``T % block == 0``);
    within block g the rows of all its steps are stacked, ``M_g = K_g^T V_g`` (``d x d`` per head) and
    ``X[t] = Q[t] M_g`` for every t in the block, so outputs are non-causal inside a block (a block's
    outputs exist only once its last step has arrived). ``scale_position="kv"``: ``X = Q (scale M)``
    (STAtten's order); ``"out"``: ``X = scale (Q M)`` (requires ``block == 1``). Output ``[C, Hs, Ws]``.

    With ``scale == 1`` and integer-valued operands (spikes, ternary spikes or ints; the form the
    lowering produces once the scale is folded into the next neuron's threshold) the output is an
    integer accumulate, typed ``int`` with the bits its worst case ``d * block * N * max|K| * max|V|``
    needs; it is computed exactly in float32 because that bound stays below 2^24 (otherwise the type
    stays float32 and a lowering must split the accumulate).
    """

    ARITY = 3
    ROLE, STEPPING, WORK = "accumulate", "history", "none"  # counted once lowered to integer accumulates
    BACKENDS = Backends(lava=Refused(_LAVA_FLOAT_ATTENTION), onnx="function", nir=Refused(NIR_NO_PRODUCT),
                        netx=Refused(NETX_PRODUCT))
    heads: int = param("attention heads H (contiguous channel groups)")
    block: int = param("timesteps per temporal block (STAtten ``chunk_size``); T must be a multiple", 1)
    scale: float = param("constant factor (STAtten alpha, SSA scale)", 1.0)
    scale_position: Literal["kv", "out"] = param("``kv``: ``Q (scale K^T V)``; ``out``: ``scale (Q K^T V)``",
                                                 "kv")

    def problems(self) -> list[str]:
        p = _heads_problems(self) + ([] if self.block >= 1 else [f"block must be >= 1, got {self.block}"])
        if self.scale_position not in ("kv", "out"):
            p.append(f"scale_position must be 'kv' or 'out', got {self.scale_position!r}")
        elif self.scale_position == "out" and self.block != 1:
            p.append("scale_position 'out' is defined for block == 1 only")
        return p

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        x = _qkv_types(inputs, self.heads, "BlockLinearAttention")
        expect(inputs[0].dtype == SPIKE, f"BlockLinearAttention needs binary Q, got {inputs[0]}")
        _, k, v = inputs
        if self.scale != 1.0 or k.dtype.kind == "float" or v.dtype.kind == "float":
            return TensorType(x.shape, FLOAT32)
        magnitude = lambda t: max(abs(t.dtype.min), abs(t.dtype.max))  # noqa: E731
        bound = (x.shape[0] // self.heads) * self.block * x.shape[1] * x.shape[2] * magnitude(k) * magnitude(v)
        if bound >= 2 ** 24:
            return TensorType(x.shape, FLOAT32)
        signed = k.dtype.signed or v.dtype.signed
        return TensorType(x.shape, int_type(_bits(bound) + signed, signed=signed))

    def run(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        T, B, C, Hs, Ws = q.shape
        if q.shape[0] % self.block:
            raise ValueError(f"BlockLinearAttention: T={q.shape[0]} is not a multiple of block={self.block}")
        qh, kh, vh = (split_heads(t, self.heads) for t in (q, k, v))
        if self.scale_position == "kv":
            x = statten_scores(qh, kh, vh, self.block, self.scale)
        else:
            x = linear_attention(qh, kh, vh) * self.scale
        return merge_heads(x).reshape(T, B, C, Hs, Ws)

    def value_range(self, inputs, in_types, out: TensorType) -> Interval | None:
        """Integer form only: ``M_g[i, j]`` sums ``block * N`` products ``K * V``; ``X[t, n, j]`` sums ``d``
        terms ``Q[n, i] M_g[i, j]`` with ``Q`` in {0, 1}, each between ``min(0, M)`` and ``max(0, M)``."""
        _, k, v = inputs
        if out.dtype.kind == "float" or k is None or v is None:
            return None  # scaled, or computed in float32 beyond 2^24: not an exact integer
        C, Hs, Ws = in_types[0].shape
        m = (k * v).times(self.block * Hs * Ws)
        return Interval(min(m.lo, 0), max(m.hi, 0)).times(C // self.heads)

    reads = _product_reads


@dataclass(frozen=True, eq=False, kw_only=True)
class LUTAttention(Op):
    """DS2TA attention: ``X = scale * LUT_h(Q K^T) V`` per head and timestep.

    Semantics: integer scores ``A[t, h, n, m] = sum_j Q[t, h, n, j] K[t, h, m, j]`` in ``0 .. d``; the
    denoiser maps them through ``table[h, A]`` (exact lookup); ``X = scale * (f(A) V)``. Output float.
    """

    ARITY = 3
    ROLE, STEPPING, WORK = "accumulate", "local", "none"  # counted once lowered to integer accumulates
    BACKENDS = Backends(lava=Refused(_LAVA_FLOAT_ATTENTION), onnx="function",
                        nir=Refused(NIR_NO_PRODUCT + " (nor a lookup table)"),
                        netx=Refused(NETX_PRODUCT + " (nor a lookup table)"))
    heads: int = param("attention heads H (contiguous channel groups)")
    table: np.ndarray = param("denoiser ``f``: ``[H, d + 1]`` values for the scores ``0 .. d``")
    scale: float = param("constant factor on ``f(A) V``", 1.0)

    def problems(self) -> list[str]:
        if self.table.ndim != 2 or self.table.shape[0] != self.heads:
            return _heads_problems(self) + [f"table must be [heads={self.heads}, d+1], got {self.table.shape}"]
        return _heads_problems(self)

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        x = _qkv_types(inputs, self.heads, "LUTAttention")
        expect(inputs[0].dtype == SPIKE and inputs[1].dtype == SPIKE,
               f"LUTAttention needs binary Q and K (integer scores), got {inputs[0]} and {inputs[1]}")
        d = x.shape[0] // self.heads
        expect(self.table.shape[1] == d + 1, f"LUT has {self.table.shape[1]} entries, scores span 0..{d}")
        return TensorType(x.shape, FLOAT32)

    def run(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        T, B, C, Hs, Ws = q.shape
        qh, kh, vh = (split_heads(t, self.heads) for t in (q, k, v))
        f, _, _ = lut_lookup(self.tensor("table").to(q.device), torch.matmul(qh, kh.transpose(-2, -1)))
        return merge_heads(torch.matmul(f, vh) * self.scale).reshape(T, B, C, Hs, Ws)

    reads = _product_reads


@dataclass(frozen=True, eq=False, kw_only=True)
class TemporalWindow(Op):
    """DS2TA's attenuated window over the last ``W`` inputs.

    Semantics: ``y[t] = sum_{delta < W} weights[delta] * x[t - delta]``, with ``x[t] = 0`` for ``t < start``
    (causal; the last ``W - 1`` inputs are state); DS2TA's ``weights[delta] = exp(-delta / tau)``. Output
    float32, accumulated in increasing ``delta``. ``start`` is 0 but in Lava's ``per_op`` plan, which restarts
    the window where its data arrive (:meth:`restarted`). Integer weights on an integer (spike) input make it an
    integer accumulate (the lowered form): output ``int`` of the width ``sum |weights| * max |x|`` needs,
    exact in float32 because that bound stays below 2^24 (checked).
    """

    ROLE, STEPPING, WORK = "elementwise", "history", "none"
    BACKENDS = Backends(lava="history", onnx="function",
                        nir=Refused("a weighted window over past timesteps would need NIR Delay nodes, which this "
                                    "exporter does not write (NIR delays are continuous-time)"),
                        netx=Refused(NETX_FLOAT))
    weights: np.ndarray = param("``[W]`` factors of the current and the ``W - 1`` previous inputs")
    start: int = param("first step of the input the window reads (earlier steps count as zero)", 0)

    def problems(self) -> list[str]:
        p = [] if self.weights.ndim == 1 and len(self.weights) >= 1 else [
            f"weights must be a non-empty vector, got shape {self.weights.shape}"]
        ok = is_int(self.start) and self.start >= 0
        return p + ([] if ok else [f"start must be an int >= 0, got {self.start!r}"])

    def restarted(self, arrival: int) -> "TemporalWindow":
        """The window reading its input from ``arrival`` on: what came before is forgotten."""
        return dataclasses.replace(self, start=arrival)

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect_stream(x)
        if self.weights.dtype.kind not in "iu" or x.dtype.kind == "float":
            return TensorType(x.shape, FLOAT32)
        magnitude = max(abs(x.dtype.min), abs(x.dtype.max))
        bound = int(np.abs(self.weights.astype(np.int64)).sum()) * magnitude
        expect(bound < 2 ** 24, f"integer TemporalWindow bound {bound} reaches 2^24 (float32 would round)")
        signed = x.dtype.signed or bool((self.weights < 0).any())
        return TensorType(x.shape, int_type(_bits(bound) + signed, signed=signed))

    def run(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32)
        if self.start:
            x = torch.cat([torch.zeros_like(x[:self.start]), x[self.start:]])
        return attenuated_window(x, self.tensor("weights").to(x.device, torch.float32))

    def value_range(self, inputs, in_types, out: TensorType) -> Interval | None:
        if out.dtype.kind == "float" or inputs[0] is None:
            return None
        # the window reaches before t = 0, where x is 0
        x = Interval.hull(inputs[0], Interval(0, 0))
        return dot_range(self.weights.reshape(1, -1), x, (1,))

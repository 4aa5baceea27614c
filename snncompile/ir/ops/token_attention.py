"""QKFormer's Token-QK attention as two spike nodes around an ordinary LIF (``attn_lif``, threshold 0.5)::

    counts = HeadChannelSum(Q)          per head and token: how many of the head's channels spiked, 0..d
    a      = LIF(counts)                integer input, one spike per head and token
    out    = HeadTokenMask(K, a)        K where its head's token fired

Both are integer on spikes as they stand (no lowering needed): the channel sum is the LIF's synaptic input (an
all-ones per-head sum), the mask an AND. Operands ``[C, Hs, Ws]``, heads contiguous channel groups (``c = h*d + j``),
the per-head maps ``[H, Hs, Ws]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..interval import Interval
from ..types import SPIKE, TensorType, int_type
from .base import Op, expect, expect_stream, param
from .support import NETX_PRODUCT, NIR_NO_PRODUCT, Backends, Refused

_ONNX = "Token-QK attention has no ONNX function yet: export the QKFormer graph to ONNX is not supported"


def _heads_problems(op) -> list[str]:
    return [] if op.heads >= 1 else [f"heads must be >= 1, got {op.heads}"]


def _spike_map(t: TensorType, heads: int, what: str) -> None:
    expect_stream(t)
    expect(t.dtype == SPIKE and len(t.shape) == 3, f"{what} needs [C, Hs, Ws] spikes, got {t}")
    expect(t.shape[0] % heads == 0, f"{what}: {t.shape[0]} channels not divisible by {heads} heads")


@dataclass(frozen=True, eq=False, kw_only=True)
class HeadChannelSum(Op):
    """Token-QK attention's per-head channel count: Q spikes ``[C, Hs, Ws]`` -> ``[H, Hs, Ws]`` integers.

    Semantics: ``s[t, h, y, x] = sum_{j < d} Q[t, h*d + j, y, x]``, in ``0 .. d`` (``d = C / H``).
    """

    ROLE, STEPPING, WORK = "accumulate", "local", "attention"
    BACKENDS = Backends(lava="local", onnx=Refused(_ONNX), nir=Refused(NIR_NO_PRODUCT), netx=Refused(NETX_PRODUCT))
    heads: int = param("attention heads H (contiguous channel groups)")

    def problems(self) -> list[str]:
        return _heads_problems(self)

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (q,) = inputs
        _spike_map(q, self.heads, "HeadChannelSum")
        d = q.shape[0] // self.heads
        return TensorType((self.heads, *q.shape[1:]), int_type(max(1, d.bit_length()), signed=False))

    def run(self, q: torch.Tensor) -> torch.Tensor:
        T, B, C, Hs, Ws = q.shape
        return q.reshape(T, B, self.heads, C // self.heads, Hs, Ws).sum(3)

    def value_range(self, inputs, in_types, out: TensorType) -> Interval:
        return Interval(0, in_types[0].shape[0] // self.heads)

    def reads(self, out, in_shapes):
        (shape,) = in_shapes
        return [np.repeat(out, shape[0] // self.heads, axis=0)]

    def work(self, args: list[torch.Tensor]) -> torch.Tensor:
        """Additions into each count: one per spike it sums, i.e. its value."""
        return self.run(*args).round().to(torch.int64)


@dataclass(frozen=True, eq=False, kw_only=True)
class HeadTokenMask(Op):
    """Token-QK attention's mask: (K spikes ``[C, Hs, Ws]``, A spikes ``[H, Hs, Ws]``) -> ``[C, Hs, Ws]`` spikes.

    Semantics: ``out[t, h*d + j, y, x] = K[t, h*d + j, y, x] AND A[t, h, y, x]``.
    """

    ARITY = 2
    ROLE, STEPPING, WORK = "accumulate", "local", "none"  # AND gates: no additions to count
    BACKENDS = Backends(lava="local", onnx=Refused(_ONNX), nir=Refused(NIR_NO_PRODUCT), netx=Refused(NETX_PRODUCT))
    heads: int = param("attention heads H (contiguous channel groups)")

    def problems(self) -> list[str]:
        return _heads_problems(self)

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        k, a = inputs
        _spike_map(k, self.heads, "HeadTokenMask")
        expect_stream(a)
        expect(a.dtype == SPIKE and a.shape == (self.heads, *k.shape[1:]),
               f"HeadTokenMask mask must be [{self.heads}, {k.shape[1]}, {k.shape[2]}] spikes, got {a}")
        return TensorType(k.shape, SPIKE)

    def run(self, k: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        T, B, C, Hs, Ws = k.shape
        return (a.unsqueeze(3) * k.reshape(T, B, self.heads, C // self.heads, Hs, Ws)).reshape(k.shape)

    def reads(self, out, in_shapes):
        k_shape, a_shape = in_shapes
        return [out.copy(), out.reshape(self.heads, -1, *k_shape[1:]).any(1).reshape(a_shape)]

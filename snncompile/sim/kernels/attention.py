"""The integer attention accumulates as float32 matrix products, exactly.

Each accumulate's largest possible sum follows from its operands' actual peaks (one ``aminmax`` each): where
it stays below 2^24 every partial sum is an integer float32 holds exactly, whatever the summation order, so
the product runs in float32 and its result converts to int64 unchanged. Elsewhere the op's own ``run``.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ...ir.interpret import Traces, delayed
from ...ir.ops.int_attention import _channels
from ...nn.attention import split_heads
from .exact import F32_EXACT, integer_float


def _peaks(*operands: tuple[torch.Tensor, str]) -> list[int] | None:
    """``max |x|`` of each integer operand ``(x, what)`` (a float ``x`` is checked to hold integers, raising
    as ``as_int64`` does), or ``None`` where one is not finite or reaches 2^53 (the op's exact int64
    route then decides, and raises where it must)."""
    peaks = []
    for x, what in operands:
        if x.numel() == 0:
            peaks.append(0)
            continue
        if x.dtype == torch.bool or x.is_complex():
            return None
        lo, hi = (v.item() for v in torch.aminmax(x))
        if x.is_floating_point():
            if not (-2.0 ** 53 < lo and hi < 2.0 ** 53):  # also false for NaN
                return None
            integer_float(x, what)
        peaks.append(int(max(-lo, hi, 0)))
    return peaks


def _as_f32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float32 else x.to(torch.float32)


def _kv_outer(op, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor | None:
    peaks = _peaks((k, "K"), (v, "V"))
    tokens = k.shape[-2] * k.shape[-1] if k.dim() >= 2 else 0
    if peaks is None or tokens * peaks[0] * peaks[1] * op.block >= F32_EXACT:
        return None  # a block sum (of block * N products) could reach 2^24
    kh, vh = split_heads(_as_f32(k), op.heads), split_heads(_as_f32(v), op.heads)
    per_step = torch.matmul(kh.transpose(-2, -1), vh)  # [T, B, H, d, d]
    return op._fit(op._block_sums(per_step).to(torch.int64))


def _qm(op, q: torch.Tensor, m: torch.Tensor) -> torch.Tensor | None:
    peaks = _peaks((q, "Q"), (m, "M"))
    if peaks is None or m.dim() < 2 or m.shape[-2] * peaks[0] * peaks[1] >= F32_EXACT:
        return None
    o = torch.matmul(split_heads(_as_f32(q), op.heads), _as_f32(m))
    return op._fit(_channels(o, q).to(torch.int64))


def _scores(op, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor | None:
    peaks = _peaks((q, "Q"), (k, "K"))
    if peaks is None or q.dim() < 3 or q.shape[2] // op.heads * peaks[0] * peaks[1] >= F32_EXACT:
        return None
    qh, kh = split_heads(_as_f32(q), op.heads), split_heads(_as_f32(k), op.heads)
    return torch.matmul(qh, kh.transpose(-2, -1)).to(torch.int64)


def _score_value(op, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor | None:
    peaks = _peaks((s, "S"), (v, "V"))
    if peaks is None or s.dim() < 1 or s.shape[-1] * peaks[0] * peaks[1] >= F32_EXACT:
        return None
    o = torch.matmul(_as_f32(s), split_heads(_as_f32(v), op.heads))
    return op._fit(_channels(o, v).to(torch.int64))


def _accumulate(product):
    """The :data:`~snncompile.ir.interpret.Kernel` of an accumulate: ``product`` where it is exact in float32
    (else ``None``), or the op's own ``run``."""
    def kernel(op, args: Sequence[torch.Tensor], delay: int, states: Traces):
        y = product(op, *args)
        return delayed(op.run(*args) if y is None else y, delay), ()

    return kernel


kv_outer_accumulate = _accumulate(_kv_outer)
qm_accumulate = _accumulate(_qm)
spike_scores = _accumulate(_scores)
score_value_accumulate = _accumulate(_score_value)

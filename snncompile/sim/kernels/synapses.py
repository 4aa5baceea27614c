"""The integer synapses (``IntDense``, ``IntConv2d``) as float32 GEMMs, exactly.

From the input's per-step range ``[lo, hi]`` (hulled with 0: padding and absent terms add 0) each sum lies
in ``[min_o (P_o lo + N_o hi), max_o (P_o hi + N_o lo)]`` (``P_o``, ``N_o`` the row's positive and negative
weight sums); partial sums are below ``max_o sum |w_o| * max |x|``. Where that is below 2^24 every partial
sum is an integer float32 holds exactly, whatever the summation order; where the shifted, biased interval is
too, shift (a power-of-two scaling, then floor) and bias are exact in float32. Wrap or saturation is applied
only where that interval leaves ``out_bits``. All-zero input steps give the bias (in its window, else 0) without a GEMM, and
the output is written delayed in place (no copy for the node's ``delay``). Elsewhere the op's own ``run``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence
from weakref import WeakKeyDictionary

import numpy as np
import torch

from ...ir.interpret import Traces, delayed
from ...ir.ops.loihi import bias_acts, bias_window, saturate, wrap
from ...nn.seq import per_step
from .exact import F32_EXACT, integer_float, step_ranges

CHUNK_ELEMENTS = 1 << 19  # output elements a synapse computes per float32 GEMM (a few steps; cache-sized)


@dataclass(frozen=True)
class _Weights:
    """What the float32 route needs of a synapse's weights, derived once per op."""

    weight32: torch.Tensor  # exact wherever used: |w| <= row sum < 2^24
    positive: np.ndarray    # per output: the sum of its positive weights (int64)
    negative: np.ndarray    # per output: the sum of its negative weights


_WEIGHTS: WeakKeyDictionary = WeakKeyDictionary()


def _weights(op) -> _Weights:
    if op not in _WEIGHTS:
        w = op.weight.astype(np.int64).reshape(op.weight.shape[0], -1)
        _WEIGHTS[op] = _Weights(torch.from_numpy(op.weight.astype(np.float32)),
                                np.where(w > 0, w, 0).sum(1), np.where(w < 0, w, 0).sum(1))
    return _WEIGHTS[op]


def run_float32(op, x: torch.Tensor, delay: int, frames: Callable) -> torch.Tensor | None:
    """``op.run(x)`` delayed by ``delay`` steps, in float32 (see the module docstring), or ``None`` where that
    is not exact. ``frames(a, w)``: the op's linear map on a ``[n, B, ...]`` chunk."""
    ranges = step_ranges(x) if x.dim() >= 2 else None
    if ranges is None:
        return None
    lows, highs = ranges
    lo, hi = min(min(lows), 0), max(max(highs), 0)
    if op._row_abs_sum * max(-lo, hi) >= F32_EXACT or not -31 <= op.weight_exp <= 31:
        return None
    prepared = _weights(op)
    acc_lo = int((prepared.positive * lo + prepared.negative * hi).min(initial=0))
    acc_hi = int((prepared.positive * hi + prepared.negative * lo).max(initial=0))
    e = op.weight_exp
    y_lo, y_hi = (acc_lo << e, acc_hi << e) if e >= 0 else (acc_lo >> -e, acc_hi >> -e)
    if op.bias is not None:
        b_lo, b_hi = int(op.bias.min(initial=0)), int(op.bias.max(initial=0))
        if max(-b_lo, b_hi) >= F32_EXACT:
            return None
        y_lo, y_hi = min(y_lo, y_lo + b_lo), max(y_hi, y_hi + b_hi)
    if max(-y_lo, y_hi) >= F32_EXACT:
        return None
    half = 1 << (op.out_bits - 1)
    fits = -half <= y_lo and y_hi <= half - 1

    f32 = torch.float32
    T = x.shape[0]
    w = prepared.weight32.to(x.device)
    frame = frames(x[:0].to(f32), w).shape[1:]
    out = torch.empty((T, *frame), dtype=torch.int64, device=x.device)
    out[:delay].zero_()
    steps = max(T - delay, 0)
    bias = bias_fit = None
    if op.bias is not None:
        spatial = [1] * op._SPATIAL_AXES
        bias = torch.from_numpy(op.bias.astype(np.float32)).to(x.device).reshape(-1, *spatial)
        b64 = torch.from_numpy(op.bias.astype(np.int64)).to(x.device)
        b64 = wrap(b64, op.out_bits) if op.overflow == "wrap" else saturate(b64, op.out_bits)
        bias_fit = b64.reshape(-1, *spatial)
    per_frame = max(1, math.prod(frame))
    chunk = max(1, CHUNK_ELEMENTS // per_frame)
    s = 0
    while s < steps:
        if lows[s] == 0 and highs[s] == 0:  # op(0) = 0: only the bias, in its window
            if bias_fit is not None and bias_acts(op, s):
                out[s + delay].copy_(bias_fit.expand(frame))
            else:
                out[s + delay].zero_()
            s += 1
            continue
        end = s + 1
        while end < steps and end - s < chunk and (lows[end] != 0 or highs[end] != 0):
            end += 1
        a = x[s:end]
        integer_float(a, f"{op.type_name()} input")
        acc = frames(a if a.dtype == f32 else a.to(f32), w)
        if e > 0:
            acc.mul_(float(1 << e))
        elif e < 0:
            acc.mul_(1.0 / (1 << -e)).floor_()
        if bias is not None:
            start, stop = bias_window(op, steps)
            acc[max(start - s, 0):max(stop - s, 0)].add_(bias)
        if not fits and op.overflow != "wrap":
            acc.clamp_(-half, half - 1)
        y = out[s + delay:end + delay]
        y.copy_(acc)
        if not fits and op.overflow == "wrap":
            y.add_(half).bitwise_and_((1 << op.out_bits) - 1).sub_(half)
        s = end
    return out


def _live_frames(f: torch.Tensor, conv: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``conv`` of a batch of float frames computed on the non-zero frames only where at least a quarter are
    all zero (a silent sample at a step): a zero frame convolves to exactly 0 (there is no bias here)."""
    if f.shape[0] < 8:
        return conv(f)
    flat = f.reshape(f.shape[0], -1)
    live = (flat.amax(1) != 0).logical_or_(flat.amin(1) != 0)
    n_live = int(live.sum())
    if 4 * n_live > 3 * f.shape[0]:
        return conv(f)
    idx = live.nonzero().squeeze(1)
    y_live = conv(f.index_select(0, idx))
    return y_live.new_zeros((f.shape[0], *y_live.shape[1:])).index_copy_(0, idx, y_live)


def _synapse(op, x: torch.Tensor, delay: int, frames: Callable) -> tuple[torch.Tensor, tuple]:
    fast = run_float32(op, x, delay, frames)
    return (delayed(op.run(x), delay) if fast is None else fast), ()


def int_dense(op, args: Sequence[torch.Tensor], delay: int, states: Traces):
    """The :data:`~snncompile.ir.interpret.Kernel` of ``IntDense``."""
    return _synapse(op, args[0], delay, op._frames)


def int_conv2d(op, args: Sequence[torch.Tensor], delay: int, states: Traces):
    """The :data:`~snncompile.ir.interpret.Kernel` of ``IntConv2d``: silent frames skipped."""
    def frames(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return per_step(a, lambda f: _live_frames(f, lambda g: op._conv(g, w)))

    return _synapse(op, args[0], delay, frames)

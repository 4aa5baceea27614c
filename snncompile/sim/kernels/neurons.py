"""The Loihi neurons (``LoihiLIF``, ``LoihiTernaryLIF``) stepped in int32, exactly.

With ``|a| < 2^17`` and a bias below 2^23 no value reaches 2^26, so none of Lava's int32 wraps can occur, and
every operation of the op's equations (sums, the trunc-toward-zero decay, the 24-bit fold, clip, sign-bit
comparisons) is exact integer arithmetic in int32. Where a bound does not hold the op's own int64 ``simulate``
runs instead.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ...ir.interpret import Traces, delayed, reference
from ...ir.ops.loihi import ACT_SHIFT, DECAY_SHIFT, DECAY_UNITY, STATE_BITS, _leaky_extreme
from .exact import F32_EXACT, integer_float, step_ranges


def decay_i32(x: torch.Tensor, keep: int, out: torch.Tensor) -> torch.Tensor:
    """The Loihi decay with ``keep = 4096 - decay`` of an int32 tensor ``|x| <= 2^24``, exactly, into ``out``:
    ``trunc0(x * keep / 4096)``. A power of two ``keep = 2^(12-k)`` is the rounding-toward-zero shift
    ``(x + (2^k - 1 if x < 0 else 0)) >> k``; other values go through float64 (``|x * keep| < 2^36`` is
    exact there) and its conversion to int32, which truncates toward zero."""
    if keep == DECAY_UNITY:
        return out.copy_(x)
    if keep == 0:
        return out.zero_()
    if keep & (keep - 1) == 0:
        k = DECAY_SHIFT - (keep.bit_length() - 1)
        torch.bitwise_right_shift(x, 31, out=out)  # -1 where x < 0, else 0
        if k == 1:
            torch.sub(x, out, out=out)
        else:
            out.bitwise_and_((1 << k) - 1).add_(x)
        return out.bitwise_right_shift_(k)
    return out.copy_(x.double().mul_(keep / DECAY_UNITY))


def simulate_int32(op, x_seq: torch.Tensor, states: Traces):
    """``op.simulate(x_seq)`` in int32, or ``None`` where a bound this needs does not hold: ``|a| < 2^17``
    (``a << 6`` and ``U`` stay below 2^23 and 2^24: no int32 wrap, at most one 24-bit fold), a bias below
    2^23 (the int32 sum in ``h`` cannot wrap), decays in 0..4096, ``vth_lo <= vth_hi``. Returns float32
    spikes, and with :attr:`~Traces.STATES` int32 ``u`` and ``v`` traces too, or with :attr:`~Traces.NONZERO`
    one bool trace, true where ``u`` or ``v`` is non-zero after the step (computed step by step: no trace kept).

    Each step is a few element-wise int32 operations on one ``[B, ...]`` frame: ``u`` is folded only where
    its proven extreme (``_leaky_extreme`` of ``|a| << 6``) can leave ``(-2^23, 2^23]`` and ``h``
    clipped only where ``v``'s can leave the 24-bit range; both restart from 0 at the op's ``restart_step``
    (its proven ranges still hold); comparisons are sign bits
    (``(h - theta - 1) >> 31`` is -1 exactly where ``h <= theta``), which also mask the reset."""
    cd, vd = op.current_decay, op.voltage_decay
    if not (0 <= cd <= DECAY_UNITY and 0 <= vd <= DECAY_UNITY):
        return None
    hi, lo = op._thresholds()
    if lo is not None and lo > hi:
        return None
    ranges = step_ranges(x_seq)
    if ranges is None:
        return None
    lows, highs = ranges
    peak = max(max(-min(lows), max(highs)), 0)
    if peak >= 1 << 17:  # |a << 6| < 2^23
        return None
    bias = op._bias(x_seq.device)
    bias_peak = int(bias.abs().max()) if isinstance(bias, torch.Tensor) else abs(bias)
    if bias_peak > 1 << (STATE_BITS - 1):
        return None
    integer_float(x_seq, f"{op.type_name()} input")

    i32 = torch.int32
    T, frame = x_seq.shape[0], x_seq.shape[1:]
    top, full = 1 << (STATE_BITS - 1), 1 << STATE_BITS
    limit = top - 1
    # u never folds while its proven extreme stays inside (-2^23, 2^23); v never saturates likewise
    step = peak << ACT_SHIFT
    u_peak = step if cd == DECAY_UNITY else _leaky_extreme(step, cd, T)
    fold = u_peak is None or u_peak >= top
    drive = (top if fold else u_peak) + bias_peak
    v_peak = _leaky_extreme(drive, vd, T)
    clip = v_peak is None or v_peak > limit
    # |h| <= 2^23 - 1: thresholds beyond +-2^24 compare like +-2^24 (and h - theta stays inside int32)
    hi = max(min(hi, F32_EXACT), -F32_EXACT)
    lo = None if lo is None else max(min(lo, F32_EXACT), -F32_EXACT)
    if isinstance(bias, torch.Tensor):
        bias = bias.to(device=x_seq.device, dtype=i32) if bool(bias.any()) else 0
    # with no bias and no spike from h = 0, leading all-zero input steps leave everything at 0
    start = 0
    if isinstance(bias, int) and bias == 0 and hi >= 0 and (lo is None or lo <= 0):
        while start < T and lows[start] == 0 and highs[start] == 0:
            start += 1

    dev = x_seq.device
    spikes = torch.empty((T, *frame), dtype=torch.float32, device=dev)
    spikes[:start].zero_()
    traces = states is Traces.STATES
    us = torch.zeros((T, *frame), dtype=i32, device=dev) if traces else None
    vs = torch.zeros((T, *frame), dtype=i32, device=dev) if traces else None
    live = torch.zeros((T, *frame), dtype=torch.bool, device=dev) if states is Traces.NONZERO else None
    u_prev, v_prev = torch.zeros(frame, dtype=i32, device=dev), torch.zeros(frame, dtype=i32, device=dev)
    u_work, v_work = torch.empty_like(u_prev), torch.empty_like(v_prev)
    a, keep = torch.empty_like(u_prev), torch.empty_like(u_prev)
    below = torch.empty_like(u_prev) if lo is not None else None
    mask = torch.empty_like(u_prev) if fold else None
    u_keep, v_keep = DECAY_UNITY - cd, DECAY_UNITY - vd
    restart = op.restart_step()
    for t in range(start, T):
        if t == restart:  # (new tensors: the previous step's may be a kept trace)
            u_prev, v_prev = torch.zeros_like(u_prev), torch.zeros_like(v_prev)
        a.copy_(x_seq[t])
        # U = trunc0(u * keep / 4096) + (a << 6), then Lava's one-step fold into (-2^23, 2^23]
        u = us[t] if traces else u_work
        if u_keep == 0:
            if traces:
                torch.mul(a, 1 << ACT_SHIFT, out=u)
        else:
            decay_i32(u_prev, u_keep, out=u).add_(a, alpha=1 << ACT_SHIFT)
            if fold:  # mask: -1 where U <= -2^23; keep: -1 where U <= 2^23
                torch.add(u, top - 1, out=mask).bitwise_right_shift_(31)
                torch.sub(u, top + 1, out=keep).bitwise_right_shift_(31).add_(1)
                u.sub_(keep, alpha=full).sub_(mask, alpha=full)
        # h = clip(trunc0(v * keep / 4096) + u + bias): |h| < 2^24 + 2^23 before the clip
        v = vs[t] if traces else v_work
        decay_i32(v_prev, v_keep, out=v)
        if u_keep == 0:
            v.add_(a, alpha=1 << ACT_SHIFT)
        else:
            v.add_(u)
        if not isinstance(bias, int) or bias != 0:
            v.add_(bias)
        if clip:
            v.clamp_(-limit, limit)
        # keep: -1 where h <= hi (no +1 spike), 0 where it fires
        torch.sub(v, hi + 1, out=keep).bitwise_right_shift_(31)
        out = torch.add(keep, 1, out=spikes[t])
        if below is not None:  # below: -1 where h < lo (a -1 spike)
            torch.sub(v, lo, out=below).bitwise_right_shift_(31)
            out.add_(below)
            keep.bitwise_and_(below.bitwise_not_())
        v.bitwise_and_(keep)  # reset where it fired
        if live is not None:  # with u_keep == 0, u = a << 6 (not computed), non-zero where a is
            torch.ne(v, 0, out=live[t])
            live[t] |= (a if u_keep == 0 else u) != 0
        if traces:
            u_prev, v_prev = u, v
        else:
            if u_keep != 0:
                u_prev, u_work = u, u_prev
            v_prev, v_work = v, v_prev
    if traces:
        return spikes, us, vs
    return (spikes,) if live is None else (spikes, live)


def loihi_neuron(op, args: Sequence[torch.Tensor], delay: int, states: Traces):
    """The :data:`~snncompile.ir.interpret.Kernel` of the Loihi neurons: :func:`simulate_int32`, its traces
    as int64 (``simulate``'s) or, for :attr:`~Traces.NONZERO`, its bool trace; else the op's own int64 evaluation."""
    fast = simulate_int32(op, args[0], states)
    if fast is None:
        return reference(op, args, delay, states)
    return delayed(fast[0], delay), fast[1:] if states is Traces.NONZERO else tuple(t.to(torch.int64) for t in fast[1:])

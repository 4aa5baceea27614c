"""The float SpikingJelly neurons (``LIF``, ``TernaryLIF``) stepped in place, bit for bit as their reference.

The reference (``LIF.simulate``) evaluates the equations as the torch model does: a fresh tensor for every
operation of every step and the steps stacked at the end, so most of its time goes to allocating and
touching new memory. This kernel performs the same float32 operations, in the same order and on the same
operands, into buffers allocated once (the traces written straight into their ``[T, B, ...]`` outputs), so
every value is the reference's to the bit (signs of zero and NaNs included). Two operations are left out
where IEEE arithmetic makes them the identity on every float32 value: ``v - v_rest`` for ``v_rest = +0.0``,
and the reset's ``s * v_reset`` term for ``v_reset = +0.0`` (``s`` is 0 or 1, so it is ``+0.0``, still added).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from ...ir.interpret import Traces, delayed, nonzero_states, reference
from ...ir.ops.neuron import LIF, TernaryLIF, _param


def _plus_zero(value: float) -> bool:
    return value == 0.0 and math.copysign(1.0, value) > 0


def _charge(op: LIF, v: torch.Tensor, x: torch.Tensor, leak, out: torch.Tensor, work: torch.Tensor) -> torch.Tensor:
    """``h`` of ``LIF``'s docstring (``nn.neurons.charge``'s operation order) into ``out`` (``work``: scratch)."""
    if op.leak_encoding == "none":
        return torch.add(v, x, out=out)
    rest = v if _plus_zero(op.v_rest) else torch.sub(v, op.v_rest, out=work)
    scale = torch.div if op.leak_encoding == "divide_by_tau" else torch.mul
    if op.decay_input:       # v + (x - (v - v_rest)) / leak
        return scale(torch.sub(x, rest, out=out), leak, out=out).add_(v)
    # v - (v - v_rest) / leak + x
    return torch.sub(v, scale(rest, leak, out=work), out=out).add_(x)


def _fires(h: torch.Tensor, theta, strict: bool, work: torch.Tensor, spikes: torch.Tensor) -> torch.Tensor:
    """``h - theta >= 0`` (``> 0`` when ``strict``) as 1.0 or 0.0 in the float tensor ``spikes`` (the comparison
    written as float directly: comparing into bools and copying those took longer than the comparison)."""
    torch.sub(h, theta, out=work)
    return torch.gt(work, 0, out=spikes) if strict else torch.ge(work, 0, out=spikes)


def simulate_in_place(op: LIF, x_seq: torch.Tensor, traces: bool) -> tuple[torch.Tensor, ...]:
    """``op.simulate(x_seq)``: spikes, and with ``traces`` the post-reset membranes."""
    theta, leak = _param(op, "v_threshold", x_seq), _param(op, "leak", x_seq)
    strict, ternary = op.threshold_cmp == ">", type(op) is TernaryLIF
    spikes = torch.empty_like(x_seq)
    membranes = torch.empty_like(x_seq) if traces else None
    v = torch.full_like(x_seq[0], op.v_reset)
    h, work, spare = torch.empty_like(v), torch.empty_like(v), torch.empty_like(v)
    # a ternary neuron's -1 spikes, and pos + neg (what its reset reads)
    negative, both = (torch.empty_like(v), torch.empty_like(v)) if ternary else (None, None)
    for t in range(x_seq.shape[0]):
        _charge(op, v, x_seq[t], leak, h, work)
        spike = spikes[t]
        _fires(h, theta, strict, work, spike)
        reset = spike             # the reference's spike_d
        if ternary:               # pos - neg; the reset reads pos + neg
            torch.neg(h, out=work)
            _fires(work, theta, strict, work, negative)
            reset = torch.add(spike, negative, out=both)
            spike.sub_(negative)
        new = membranes[t] if traces else spare
        if op.reset == "subtract":  # h - s * theta
            torch.sub(h, torch.mul(reset, theta, out=work), out=new)
        else:                       # (1 - s) * h + s * v_reset
            torch.mul(reset, -1.0, out=new).add_(1.0).mul_(h)
            new.add_(0.0 if _plus_zero(op.v_reset) else reset * op.v_reset)
        if not traces:
            spare = v
        v = new
    return (spikes, membranes) if traces else (spikes,)


def float_neuron(op, args: Sequence[torch.Tensor], delay: int, states: Traces):
    """The :data:`~snncompile.ir.interpret.Kernel` of ``LIF`` and ``TernaryLIF`` on float32 CPU or GPU input
    (:func:`simulate_in_place`); anything else (a subclass, another dtype) runs the reference."""
    (x_seq,) = args
    if type(op) not in (LIF, TernaryLIF) or x_seq.dtype != torch.float32 or x_seq.dim() < 2:
        return reference(op, args, delay, states)
    found = simulate_in_place(op, x_seq, traces=states is not Traces.NONE)
    return delayed(found[0], delay), nonzero_states(found[1:]) if states is Traces.NONZERO else tuple(found[1:])


__all__ = ["float_neuron", "simulate_in_place"]

"""The simulator's fast exact kernels of the integer nodes (``snncompile.sim.kernels``) and the ops' reference
semantics (``run``/``simulate``), both pinned to plain transcriptions of the documented equations.

``LoihiLIF``/``LoihiTernaryLIF`` run in int32 with sign-bit comparisons, the synapses and the integer
attention accumulates in float32 GEMMs with the shift, bias and overflow applied only where the input's
range needs them, the synapse kernels write their delayed output directly, the interpreter drops dead values.
Every case here compares kernel and reference with a straightforward int64 (or exact float64) evaluation
written in this file from the docstrings, on random integers that include the extremes around the fast
paths' bounds (``|a|`` near 2^17 for the neurons, sums near 2^24 for the synapses), so both the fast paths
and their fall-backs are checked. No timing here: ``benchmarks/int_sim.py`` measures speed.
"""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from snncompile.ir import Graph, Node, interpret
from snncompile.ir.ops import (IntAdd, IntConv2d, IntDense, IntShift, Input, KVOuterAccumulate, LoihiLIF,
                               LoihiTernaryLIF, Output, QMAccumulate, ScoreValueAccumulate, SpikeScores, TokenSum)
from snncompile.ir.interval import Interval
from snncompile.ir.types import SPIKE, TensorType, int_type
from snncompile.sim import run_graph
from snncompile.sim.kernels import KERNELS
from snncompile.sim.kernels.attention import _kv_outer
from snncompile.sim.kernels.neurons import decay_i32, simulate_int32
from snncompile.sim.kernels.synapses import run_float32

TOP = 2 ** 23


# -- plain transcriptions of the docstring equations ---------------------------------------------------------------

def trunc_div(p: torch.Tensor, d: int) -> torch.Tensor:
    return torch.div(p, d, rounding_mode="trunc")


def i32(x: torch.Tensor) -> torch.Tensor:
    return (x + 2 ** 31) % 2 ** 32 - 2 ** 31


def wrap_bits(x: torch.Tensor, bits: int) -> torch.Tensor:
    return (x + 2 ** (bits - 1)) % 2 ** bits - 2 ** (bits - 1)


def ref_neuron(op, a: torch.Tensor):
    """``LoihiLIF``/``LoihiTernaryLIF`` per their docstrings: int64 throughout, Lava's int32 arithmetic."""
    a = a.to(torch.int64)
    bias = torch.from_numpy(np.array(op.bias_mant, dtype=np.int64)) << op.bias_exp
    u = torch.zeros_like(a[0])
    v = torch.zeros_like(a[0])
    ss, us, vs = [], [], []
    for t, a_t in enumerate(a):
        if t == getattr(op, "reset_at", 0):  # LoihiLIF restarts u and v from 0 (0: nothing to restart)
            u, v = torch.zeros_like(u), torch.zeros_like(v)
        big = i32(trunc_div(u * (4096 - op.current_decay), 4096) + i32(a_t * 64))
        u = torch.where(big > TOP, big - 2 ** 24, torch.where(big <= -TOP, big + 2 ** 24, big))
        h = i32(trunc_div(v * (4096 - op.voltage_decay), 4096) + u + bias).clamp(-(TOP - 1), TOP - 1)
        if isinstance(op, LoihiTernaryLIF):
            s = (h > op.vth_hi * 64).long() - (h < op.vth_lo * 64).long()
        else:
            s = (h > op.vth * 64).long()
        v = torch.where(s != 0, 0, h)
        ss.append(s), us.append(u), vs.append(v)
    return torch.stack(ss), torch.stack(us), torch.stack(vs)


def ref_synapse(op, x: torch.Tensor, delay: int | None = None) -> torch.Tensor:
    """``IntDense``/``IntConv2d`` per their docstrings: exact sums (float64 below 2^53), shift, bias from
    ``bias_start`` for ``bias_steps`` steps (0: to the end), wrap or saturation, then the delay."""
    xd = x.to(torch.float64)
    w = torch.from_numpy(op.weight.astype(np.float64))
    assert float(xd.abs().max()) * float(w.abs().sum()) < 2 ** 53
    if isinstance(op, IntConv2d):
        acc = torch.stack([F.conv2d(f, w, None, op.stride, op.padding, op.dilation, op.groups) for f in xd])
    else:
        acc = torch.matmul(xd, w.T)
    acc = acc.to(torch.int64)
    e = op.weight_exp
    y = acc * 2 ** e if e >= 0 else torch.div(acc, 2 ** -e, rounding_mode="floor")
    if op.bias is not None:
        b = torch.from_numpy(op.bias.astype(np.int64)).reshape(-1, *[1] * (2 if isinstance(op, IntConv2d) else 0))
        y = y.clone()
        y[op.bias_start:op.bias_start + op.bias_steps if op.bias_steps else None] += b
    half = 2 ** (op.out_bits - 1)
    y = wrap_bits(y, op.out_bits) if op.overflow == "wrap" else y.clamp(-half, half - 1)
    d = op.delay if delay is None else delay
    return torch.cat([torch.zeros_like(y[:d]), y[:y.shape[0] - d]]) if d else y


def equal(got: torch.Tensor, want: torch.Tensor) -> bool:
    return got.dtype == want.dtype and got.shape == want.shape and torch.equal(got, want)


def kernel(op, *args: torch.Tensor, delay: int = 0, states: interpret.Traces = interpret.Traces.NONE):
    """The op's fast kernel: its value (``delay`` steps later) and the state traces ``states`` asks for."""
    return KERNELS[type(op)](op, list(args), delay, states)


def both(op, *args: torch.Tensor) -> torch.Tensor:
    """``op.run(*args)`` after checking that the kernel gives exactly the same (dtype included)."""
    want = op.run(*args)
    assert equal(kernel(op, *args)[0], want)
    return want


# -- neurons --------------------------------------------------------------------------------------------------------

def neuron_inputs(rng: np.random.Generator, T: int, shape: tuple[int, ...], peak: int) -> torch.Tensor:
    """Sparse random integers up to ``peak`` with leading silent steps, plus the extremes +-peak."""
    a = rng.integers(-peak, peak + 1, size=(T, *shape)) * (rng.random((T, *shape)) < 0.4)
    a[:2] = 0
    a.reshape(T, -1)[3, :2] = [peak, -peak]
    return torch.from_numpy(a.astype(np.int64))


DECAYS = [(4096, 2048), (4096, 4096), (0, 0), (1000, 333), (333, 1000), (2048, 1024), (1, 4095), (4096, 1)]


@pytest.mark.parametrize("cd,vd", DECAYS)
@pytest.mark.parametrize("peak", [5, 3000, 2 ** 17 - 1, 2 ** 17, 2 ** 18 + 3])
def test_lif_matches_the_equations(cd, vd, peak):
    rng = np.random.default_rng(cd * 7 + vd + peak)
    a = neuron_inputs(rng, 24, (3, 5), peak)
    for kw in ({"vth": 0}, {"vth": 40}, {"vth": 2 ** 17 - 1}, {"vth": 7, "bias_mant": -4096, "bias_exp": 7},
               {"vth": 300, "bias_mant": rng.integers(-4096, 4096, size=(5,)), "bias_exp": 3},
               {"vth": 30, "bias_mant": rng.integers(-500, 500, size=(5,)), "bias_exp": 6, "reset_at": 9},
               {"vth": 5, "bias_mant": 3, "bias_exp": 7, "reset_at": 23}):
        op = LoihiLIF(current_decay=cd, voltage_decay=vd, **kw)
        assert op.problems() == []
        want = ref_neuron(op, a)
        got = op.simulate(a)
        assert all(equal(g, w) for g, w in zip(got, want)), kw
        spikes, traces = kernel(op, a, states=interpret.Traces.STATES)
        assert equal(spikes, want[0].to(torch.float32)) and all(equal(g, w) for g, w in zip(traces, want[1:])), kw
        assert equal(both(op, a), spikes)
        assert equal(both(op, a.to(torch.float32)), spikes)  # integers held in floats


@pytest.mark.parametrize("cd,vd", DECAYS)
def test_ternary_lif_matches_the_equations(cd, vd):
    rng = np.random.default_rng(cd + 3 * vd)
    for peak, (hi, lo), bias in itertools.product(
            [9, 2 ** 17 - 1, 2 ** 17], [(5, -5), (0, 0), (-3, -40), (40, 3), (TOP - 1, -TOP), (2, -TOP)],
            [0, rng.integers(-4096, 4096, size=(4,))]):
        a = neuron_inputs(rng, 20, (2, 4), peak)
        op = LoihiTernaryLIF(current_decay=cd, voltage_decay=vd, vth_hi=hi, vth_lo=lo, bias_mant=bias, bias_exp=2)
        assert op.problems() == []
        want = ref_neuron(op, a)
        assert all(equal(g, w) for g, w in zip(op.simulate(a), want)), (peak, hi, lo)
        spikes, traces = kernel(op, a, states=interpret.Traces.STATES)
        assert all(equal(g, w) for g, w in zip(traces, want[1:])), (peak, hi, lo)
        assert equal(spikes, want[0].to(torch.float32)) and equal(both(op, a), spikes)


def test_the_nonzero_state_form_is_where_the_reference_traces_are_non_zero():
    # counting asks only where u or v is non-zero after each step: one bool trace, computed step by step;
    # cd = 4096 keeps no u, the leading zero steps are skipped, reset_at restarts, peak 2^17 runs the reference
    rng = np.random.default_rng(11)
    for (cd, vd), peak, kw in itertools.product(
            [(4096, 2048), (0, 0), (1000, 333)], [3000, 2 ** 17],
            [{"vth": 40}, {"vth": 30, "bias_mant": rng.integers(-500, 500, size=(5,)), "bias_exp": 6, "reset_at": 9}]):
        a = neuron_inputs(rng, 16, (3, 5), peak)
        for op in (LoihiLIF(current_decay=cd, voltage_decay=vd, **kw),
                   LoihiTernaryLIF(current_decay=cd, voltage_decay=vd, vth_hi=kw["vth"], vth_lo=-kw["vth"])):
            _, u, v = op.simulate(a)
            spikes, traces = kernel(op, a, states=interpret.Traces.NONZERO)
            assert equal(spikes, kernel(op, a)[0]) and len(traces) == 1, (cd, vd, peak, kw)
            assert equal(traces[0], (u != 0) | (v != 0)), (cd, vd, peak, kw)
            assert traces[0].any() and not traces[0].all()


def test_a_lif_restarting_at_reset_at_runs_afresh_from_there():
    rng = np.random.default_rng(5)
    a = neuron_inputs(rng, 16, (2, 3), 3000)
    common = dict(current_decay=1024, voltage_decay=512, vth=200, bias_mant=rng.integers(-900, 900, (3,)), bias_exp=6)
    plain, restarted = LoihiLIF(**common), LoihiLIF(**common, reset_at=6)
    def fast(op, x):
        spikes, traces = kernel(op, x, states=interpret.Traces.STATES)
        return (spikes.to(torch.int64), *traces)

    for run in (lambda op, x: op.simulate(x), fast):
        before, after, whole = run(plain, a[:6]), run(plain, a[6:]), run(restarted, a)
        assert all(equal(w[:6], b) and equal(w[6:], f) for w, b, f in zip(whole, before, after))
        assert not all(equal(w[6:], p[6:]) for w, p in zip(whole, run(plain, a)))  # the restart changed something


def test_lif_state_saturates_and_folds_without_leak():
    # no current leak: u integrates 2^16 << 6 = 2^22 per step and folds; no voltage leak: v saturates at
    # -(2^23 - 1) (and, under the ternary neuron's out-of-reach thresholds, at +(2^23 - 1))
    a = torch.tensor([[2 ** 16, -(2 ** 16), 2 ** 17 - 1, -(2 ** 17 - 1)]] * 30)[:, None, :]
    reached = set()
    for op in (LoihiLIF(current_decay=0, voltage_decay=0, vth=2 ** 17 - 1),
               LoihiLIF(current_decay=4096, voltage_decay=0, vth=2 ** 17 - 1),
               LoihiTernaryLIF(current_decay=0, voltage_decay=0, vth_hi=TOP - 1, vth_lo=-TOP),
               LoihiTernaryLIF(current_decay=4096, voltage_decay=0, vth_hi=TOP - 1, vth_lo=-TOP)):
        want = ref_neuron(op, a)
        reached |= {("u", int(want[1].max())), ("v", int(want[2].min())), ("v", int(want[2].max()))}
        assert all(equal(g, w) for g, w in zip(op.simulate(a), want))
        assert all(equal(g, w) for g, w in zip(kernel(op, a, states=interpret.Traces.STATES)[1], want[1:]))
    assert {("u", TOP), ("v", -(TOP - 1)), ("v", TOP - 1)} <= reached  # the 24-bit bounds were reached


def test_lif_rejects_non_integers_and_takes_odd_shapes():
    op = LoihiLIF(current_decay=4096, voltage_decay=2048, vth=1)
    for run in (op.run, lambda a: kernel(op, a)):
        with pytest.raises(ValueError, match="integers"):
            run(torch.tensor([[0.0, 0.5]]))
        with pytest.raises(ValueError, match="integers"):
            run(torch.tensor([[0.0, float("nan")]]))
    for a in (torch.tensor([3, 0, -2, 7]), torch.zeros(5, 2, 0, dtype=torch.int64),  # [T] alone; empty frames
              torch.tensor([[1, 2], [3, 4]], dtype=torch.int32)):  # a narrower integer dtype
        want = ref_neuron(op, a)
        assert all(equal(g, w) for g, w in zip(op.simulate(a), want))
        spikes, traces = kernel(op, a, states=interpret.Traces.STATES)
        assert equal(spikes, want[0].to(torch.float32)) and all(equal(g, w) for g, w in zip(traces, want[1:]))


def test_decay_helper_is_exact_for_every_decay():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.integers(-2 ** 24, 2 ** 24 + 1, size=3000), [0, 1, -1, 4095, -4095, 4096, -4096,
                                                                        2 ** 24, -2 ** 24, TOP - 1, -TOP]])
    x64 = torch.from_numpy(x.astype(np.int64))
    x32 = x64.to(torch.int32)
    out = torch.empty_like(x32)
    for keep in range(4097):
        want = trunc_div(x64 * keep, 4096)
        assert torch.equal(decay_i32(x32, keep, out=out).to(torch.int64), want), keep


# -- synapses -------------------------------------------------------------------------------------------------------

def spikes(rng, shape, density=0.3, silent_steps=2, silent_frames=0.5) -> torch.Tensor:
    x = (rng.random(shape) < density).astype(np.float32)
    x[:silent_steps] = 0
    x[silent_steps:, rng.random(shape[1]) < silent_frames] = 0  # whole samples silent at some steps
    return torch.from_numpy(x)


CONV_GEOMETRY = [dict(), dict(stride=(2, 1), padding=(1, 1)), dict(padding=(2, 0), dilation=(2, 1)),
                 dict(groups=2, padding=(1, 1))]


@pytest.mark.parametrize("geometry", CONV_GEOMETRY)
def test_conv_matches_the_equations(geometry):
    rng = np.random.default_rng(len(str(geometry)))
    groups = geometry.get("groups", 1)
    T, B, C, O = 7, 12, 4, 6
    for e, bits, overflow, (bias_start, bias_steps, delay) in itertools.product(
            [-3, 0, 2], [8, 24], ["wrap", "saturate"], [(0, 0, 1), (3, 0, 0), (3, 2, 2), (1, 4, 1)]):
        w = rng.integers(-256, 256, size=(O, C // groups, 3, 3))
        op = IntConv2d(weight=w, weight_exp=e, bias=rng.integers(-100, 100, size=(O,)), bias_start=bias_start,
                       bias_steps=bias_steps, out_bits=bits, overflow=overflow, delay=delay, **geometry)
        for x in (spikes(rng, (T, B, C, 8, 7)),
                  torch.from_numpy(rng.integers(-40, 41, size=(T, B, C, 8, 7))),  # graded, both signs
                  torch.from_numpy(rng.integers(-2 ** 14, 2 ** 14, size=(T, B, C, 8, 7)))):  # sums beyond 2^24
            want = ref_synapse(op, x, delay=0)
            assert equal(both(op, x), want), (e, bits, overflow)
            assert equal(kernel(op, x, delay=delay)[0], ref_synapse(op, x)), (e, bits, overflow, delay)


def test_dense_matches_the_equations():
    rng = np.random.default_rng(5)
    for e, bits, overflow, bias in itertools.product([-2, 0, 3], [6, 13, 32], ["wrap", "saturate"], [True, False]):
        w = rng.integers(-256, 256, size=(9, 20))
        b = rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), size=(9,)) if bias else None
        op = IntDense(weight=w, weight_exp=e, bias=b, bias_start=2 if bias else 0,
                      bias_steps=3 if bias and e == 0 else 0, out_bits=bits, overflow=overflow, delay=1)
        assert op.problems() == []
        for x in (spikes(rng, (6, 10, 20)), torch.from_numpy(rng.integers(-300, 300, size=(6, 10, 20))),
                  torch.from_numpy(rng.integers(-2 ** 20, 2 ** 20, size=(6, 10, 20))),
                  torch.from_numpy(rng.integers(-9, 9, size=(6, 3, 2, 20)))):  # extra leading axes
            assert equal(both(op, x), ref_synapse(op, x, delay=0)), (e, bits, overflow)
            assert equal(kernel(op, x, delay=1)[0], ref_synapse(op, x)), (e, bits, overflow)


def test_synapse_wrap_needed_only_where_the_range_leaves_out_bits():
    # all-positive weights: the proven interval is [0, 5 * 255]; 12 bits hold it, 11 bits must wrap
    w = np.full((2, 5), 255)
    x = torch.ones(3, 1, 5)
    assert both(IntDense(weight=w, out_bits=12), x)[0, 0].tolist() == [1275, 1275]
    assert both(IntDense(weight=w, out_bits=11), x)[0, 0].tolist() == [1275 - 2048] * 2
    assert both(IntDense(weight=w, out_bits=11, overflow="saturate"), x)[0, 0].tolist() == [1023, 1023]


def test_synapse_rejects_non_integers():
    op = IntDense(weight=np.ones((2, 3), dtype=np.int64))
    for run in (op.run, lambda x: kernel(op, x)):
        with pytest.raises(ValueError, match="integers"):
            run(torch.tensor([[[0.0, 1.0, 0.25]]]))


# -- integer attention, plumbing, interpreter ---------------------------------------------------------------------------

def heads(x: torch.Tensor, h: int) -> torch.Tensor:
    T, B, C, Hs, Ws = x.shape
    return x.to(torch.int64).reshape(T, B, h, C // h, Hs * Ws).transpose(-1, -2)  # [T, B, H, N, d]


def channels(o: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return o.transpose(-1, -2).reshape(like.shape)


def test_attention_accumulates_match_the_equations():
    rng = np.random.default_rng(11)
    T, B, C, H = 6, 3, 8, 2
    q = spikes(rng, (T, B, C, 2, 3), silent_steps=1)
    k = torch.from_numpy(rng.integers(0, 200, size=(T, B, C, 2, 3)))
    v = torch.from_numpy(rng.integers(-1, 2, size=(T, B, C, 2, 3)).astype(np.float32))
    per_step = torch.einsum("tbhnd,tbhne->tbhde", heads(k, H), heads(v, H))
    for block, offset in [(1, 0), (1, 2), (2, 1), (4, 0)]:
        want = torch.zeros_like(per_step)
        for start in range(offset, T, block):
            want[start:start + block] = per_step[start:start + block].sum(0)
        got = both(KVOuterAccumulate(heads=H, block=block, block_offset=offset), k, v)
        assert equal(got, want)
        assert equal(both(KVOuterAccumulate(heads=H, block=block, block_offset=offset), k * 2 ** 20, v),
                     want * 2 ** 20)  # sums beyond 2^24: the exact int64 route
        m = want
        qm = channels(torch.einsum("tbhnd,tbhde->tbhne", heads(q, H), m), q)
        assert equal(both(QMAccumulate(heads=H), q, m), qm)
        assert equal(both(QMAccumulate(heads=H, out_bits=8, overflow="wrap"), q, m), wrap_bits(qm, 8))
        assert equal(both(QMAccumulate(heads=H), q, m * 2 ** 20), qm * 2 ** 20)  # beyond 2^24: int64
    scores = torch.einsum("tbhnd,tbhmd->tbhnm", heads(q, H), heads(q.flip(0), H))
    assert equal(both(SpikeScores(heads=H), q, q.flip(0)), scores)
    assert equal(both(SpikeScores(heads=H), q * 2 ** 22, q.flip(0) * 2 ** 22), scores * 2 ** 44)  # int64
    sv = channels(torch.einsum("tbhnm,tbhmd->tbhnd", scores, heads(v, H)), v)
    assert equal(both(ScoreValueAccumulate(heads=H), scores, v), sv)
    assert equal(both(ScoreValueAccumulate(heads=H), scores * 2 ** 22, v), sv * 2 ** 22)  # int64
    assert equal(both(ScoreValueAccumulate(heads=H, out_bits=4, overflow="saturate"), scores, v), sv.clamp(-8, 7))


def test_integer_plumbing_fits_only_out_of_range_values():
    x = torch.tensor([[[100, -100, 5]]])
    assert equal(IntAdd(out_bits=8, overflow="wrap").run(x, x), torch.tensor([[[-56, 56, 10]]]))
    assert equal(IntAdd(out_bits=9, overflow="wrap").run(x, x), torch.tensor([[[200, -200, 10]]]))
    assert equal(IntAdd(out_bits=8).run(x, x.float()), torch.tensor([[[127, -128, 10]]]))
    single = IntAdd(out_bits=16).run(x)
    assert equal(single, x) and single is not x
    assert equal(IntShift(shift=-1, out_bits=4, overflow="wrap").run(x), torch.tensor([[[2, -2, 2]]]))
    assert equal(TokenSum(out_bits=4).run(x.reshape(1, 1, 1, 3, 1).float()), torch.tensor([[[5]]]))


def test_a_sum_adds_its_bias_in_its_window_and_its_range_says_so():
    x = torch.tensor([[[100, -100, 5]], [[1, 2, 3]], [[7, 8, 9]]])  # [T=3, B=1, 3]
    add = IntAdd(out_bits=8, overflow="wrap", bias=np.array([30, -30, 1]), bias_start=1)
    assert equal(add.run(x, x), torch.tensor([[[-56, 56, 10]], [[32, -26, 7]], [[44, -14, 19]]]))
    assert equal(dataclasses.replace(add, bias_start=0, out_bits=16).run(x), x + torch.tensor([30, -30, 1]))
    r = add.value_range([Interval(-4, 4)], [TensorType((3,), int_type(4), "stream")], TensorType((3,), int_type(8)))
    assert (r.lo, r.hi) == (-34, 34)  # the hull of no bias (before bias_start) and -30 .. +30
    windowed = dataclasses.replace(add, bias_start=0, bias_steps=2)  # steps 0 and 1 only
    assert equal(windowed.run(x, x), torch.tensor([[[-26, 26, 11]], [[32, -26, 7]], [[14, 16, 18]]]))
    positive = dataclasses.replace(add, bias=np.array([30, 20, 1]), bias_start=0)

    def low(op):
        return op.value_range([Interval(-4, 4)], [TensorType((3,), int_type(4), "stream")],
                              TensorType((3,), int_type(8))).lo
    assert low(positive) == -3 and low(dataclasses.replace(positive, bias_steps=2)) == -4  # after it: no bias
    scheduled = add.scheduled(5, 4, 9, 1)
    assert (scheduled.bias_start, scheduled.bias_steps) == (5, 4)
    assert (scheduled.unscheduled(4).bias_start, scheduled.unscheduled(4).bias_steps) == (0, 0)
    assert IntAdd(bias_start=2).problems() == ["bias_start is set but there is no bias"]
    assert IntAdd(bias_steps=1).problems() == ["bias_steps is set but there is no bias"]
    assert add.problems() == [] and dataclasses.replace(add, bias_steps=-1).problems() == [
        "bias_steps must be an int >= 0, got -1"]
    assert "IntAdd bias has shape (2,)" in str(pytest.raises(Exception, IntAdd(bias=np.array([1, 2])).infer,
                                                             [TensorType((3,), int_type(4), "stream")]).value)


def test_interpreter_delays_synapses_and_drops_dead_values_exactly():
    rng = np.random.default_rng(2)
    nodes = {"x": Node(Input(shape=(6,), dtype=SPIKE)),
             "d1": Node(IntDense(weight=rng.integers(-50, 50, size=(5, 6)), bias=rng.integers(-9, 9, size=(5,)),
                                 bias_start=1, out_bits=16, delay=1), ("x",)),
             "n1": Node(LoihiLIF(current_decay=1000, voltage_decay=333, vth=3), ("d1",)),
             "d2": Node(IntDense(weight=rng.integers(-50, 50, size=(4, 5)), out_bits=16, delay=2), ("n1",)),
             "add": Node(IntAdd(out_bits=18), ("d2", "d2")),
             "out": Node(Output(), ("add",))}
    graph = Graph(nodes=nodes, outputs=["out"], time_steps=9)
    x = spikes(rng, (4, 7, 6), silent_steps=1, silent_frames=0.0)
    everything = run_graph(graph, {"x": x}, keep="all")
    d1 = ref_synapse(graph.op("d1"), torch.cat([x, torch.zeros(5, 7, 6)]))
    n1 = ref_neuron(graph.op("n1"), d1)[0].to(torch.float32)
    d2 = ref_synapse(graph.op("d2"), n1)
    assert equal(everything["d1"], d1) and equal(everything["n1"], n1) and equal(everything["d2"], d2)
    assert equal(everything["out"], 2 * d2)
    assert equal(run_graph(graph, {"x": x})["out"], everything["out"])
    reference = interpret.run_graph(graph, {"x": x}, keep="all")  # no kernels: every op's own run
    assert reference.keys() == everything.keys() and all(equal(reference[n], everything[n]) for n in reference)


def test_kernels_take_their_fast_routes_exactly_where_the_bounds_hold():
    # (else the cases above would pin only the fall-backs to the equations)
    lif = LoihiLIF(current_decay=1000, voltage_decay=333, vth=3)
    a = torch.zeros(4, 2, 3, dtype=torch.int64)
    assert simulate_int32(lif, a + (2 ** 17 - 1), interpret.Traces.NONE) is not None
    assert simulate_int32(lif, a + 2 ** 17, interpret.Traces.NONE) is None  # a << 6 could wrap Lava's int32
    dense = IntDense(weight=np.full((2, 4), 255), delay=0)
    x = torch.ones(3, 1, 4)
    assert run_float32(dense, x, 0, dense._frames) is not None
    assert run_float32(dense, x * (2 ** 24 // 1020 + 1), 0, dense._frames) is None  # a sum reaches 2^24
    kv = KVOuterAccumulate(heads=1, block=2)
    k, v = torch.ones(2, 1, 2, 2, 2), torch.ones(2, 1, 2, 2, 2)
    assert _kv_outer(kv, k, v) is not None and _kv_outer(kv, k * 2 ** 21, v) is None

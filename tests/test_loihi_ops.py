"""The Loihi integer nodes (snncompile/ir/ops/loihi.py): hand-computed integer sequences, parameter checks,
exact synapses, and bit-exactness against Lava 0.10.0's own fixed-point process models.

Hand values follow Lava's ``PyLifModelBitAcc`` (spec lava_loihi.md §4.1), per step:

    U = trunc0(u * (4096 - iDecay) / 4096) + (a << 6);  u = U - 2^24 if U > 2^23, U + 2^24 if U <= -2^23
    h = clip(trunc0(v * (4096 - vDecay) / 4096) + u + (bias_mant << bias_exp), -(2^23 - 1), 2^23 - 1)
    s = h > vth << 6;  v = 0 if s else h

The Lava tests build networks of Lava's own processes (no Process is defined here: Lava would exec every
module beside a Process definition) and always stop them (try/finally, pytest-timeout, RunSteps).
"""
from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import torch

from snncompile.ir import Graph, Node
from snncompile.ir.ops import IntConv2d, IntDense, Input, LoihiLIF, LoihiTernaryLIF, Output
from snncompile.ir.ops.int_synapse import lava_effective_weights
from snncompile.ir.types import FLOAT32, SPIKE, TERNARY, TensorType, int_type
from snncompile.sim import run_graph

TOP = 2 ** 23


def lif(**kw) -> LoihiLIF:
    op = LoihiLIF(**{"current_decay": 4096, "voltage_decay": 4096, "vth": 2 ** 17 - 1, **kw})
    assert op.problems() == []
    return op


def trace(op, *inputs_per_neuron):
    """(spikes, u, v) as lists per neuron for integer inputs given per neuron (one list per neuron)."""
    a = torch.tensor(list(zip(*inputs_per_neuron)), dtype=torch.int64).unsqueeze(1)  # [T, 1, N]
    s, u, v = op.simulate(a)
    return [[x[:, 0, n].tolist() for n in range(a.shape[2])] for x in (s, u, v)]


# ------------------------------------------------------------------------------------------------
# LoihiLIF: hand-computed integer sequences
# ------------------------------------------------------------------------------------------------

def test_current_wraps_as_measured_in_lava():
    # iDecay 0 (Lava du=-1): u holds. t0: U = 130048 << 6 = 8323072 (<= 2^23: kept)
    # t1: U = 8323072 + (32512 << 6 = 2080768) = 10403840 > 2^23 -> 10403840 - 2^24 = -6373376 (spec §4.1)
    # vDecay 4096: v forgets, so v = u (no bias), never above vth << 6 = 8388544
    (s,), (u,), (v,) = trace(lif(current_decay=0), [130048, 32512, 0])
    assert u == [8323072, -6373376, -6373376]
    assert v == u and s == [0, 0, 0]


def test_current_wrap_off_by_one_at_minus_2_pow_23():
    # U = -2^23 exactly (a = -131072): Lava's rule `U <= -2^23 -> U + 2^24` gives +2^23;
    # U = +2^23 (a = 131072) is not `> 2^23`, so it stays +2^23: both end at +2^23.
    # U = -2^23 + 64 stays; U = 2^23 + 64 wraps to -2^23 + 64.
    _, u, _ = trace(lif(), [-131072], [131072], [-131071], [131073])
    assert [x[0] for x in u] == [TOP, TOP, -TOP + 64, -TOP + 64]


def test_voltage_saturates_and_the_threshold_follows_the_clip():
    # iDecay 4096: u = a << 6 = 6400000 each step; vDecay 0: v accumulates, clipped to ±(2^23 - 1).
    # Negative side: -6400000, -12800000 -> -8388607, then -8388607 - 6400000 -> -8388607 again.
    (s,), _, (v,) = trace(lif(voltage_decay=0), [-100000, -100000, -100000])
    assert v == [-6400000, -(TOP - 1), -(TOP - 1)] and s == [0, 0, 0]
    # Positive side, seen through a ternary neuron whose upper threshold (2^23 - 1) << 6 is never reached.
    tern = LoihiTernaryLIF(current_decay=4096, voltage_decay=0, vth_hi=TOP - 1, vth_lo=-TOP)
    (s,), _, (v,) = trace(tern, [100000, 100000, 100000])
    assert v == [6400000, TOP - 1, TOP - 1] and s == [0, 0, 0]
    # With the largest LIF threshold, 131071 << 6 = 8388544 < 8388607: a saturated v always fires.
    (s,), _, (v,) = trace(lif(voltage_decay=0), [100000, 100000])
    assert s == [0, 1] and v == [6400000, 0]


def test_threshold_is_strict_and_bias_is_mant_shifted_by_exp():
    # vth 10 -> threshold 640; iDecay = vDecay = 4096: h = (a << 6) + bias, every step afresh.
    bias = np.array([0, 1, -1, 3, 0], np.int16)
    op = lif(vth=10, bias_mant=bias, bias_exp=2)  # effective biases 0, 4, -4, 12, 0
    s, u, v = trace(op, [10, 10], [10, 10], [10, 10], [10, 10], [11, 0])
    assert [x[0] for x in s] == [0, 1, 0, 1, 1]                # 640 not > 640; 644, 652 and 704 fire
    assert [x[0] for x in v] == [640, 0, 636, 0, 0]
    assert s[4] == [1, 0] and v[4] == [0, 0]
    op = lif(vth=10, bias_mant=1)                               # bias_exp 0: +1 is enough
    assert trace(op, [10])[0] == [[1]]


def test_decays_truncate_toward_zero():
    # iDecay 2048 halves u toward zero: -64, -32, ..., -1, then trunc0(-0.5) = 0 (floor would stay -1)
    (_,), (u,), _ = trace(lif(current_decay=2048), [-1] + [0] * 7)
    assert u == [-64, -32, -16, -8, -4, -2, -1, 0]
    # vDecay 2048 on v (u forgets): -192, -96, ..., -3, trunc0(-1.5) = -1, trunc0(-0.5) = 0
    _, _, (v,) = trace(lif(voltage_decay=2048), [-3] + [0] * 8)
    assert v == [-192, -96, -48, -24, -12, -6, -3, -1, 0]
    # the same positive: 192 ... 3, 1, 0 (symmetric)
    _, _, (v,) = trace(lif(voltage_decay=2048), [3] + [0] * 8)
    assert v == [192, 96, 48, 24, 12, 6, 3, 1, 0]
    # iDecay 1 (Lava du=0, its default): 128 -> 127 -> 126; -128 -> -127 (4095/4096, toward zero)
    (_, _), (up, un), _ = trace(lif(current_decay=1), [2, 0, 0], [-2, 0, 0])
    assert up == [128, 127, 126] and un == [-128, -127, -126]
    # iDecay 0 never decays, iDecay 4096 keeps only this step's input
    assert trace(lif(current_decay=0), [5, 0, 0])[1] == [[320, 320, 320]]
    assert trace(lif(current_decay=4096), [5, 0, 0])[1] == [[320, 0, 0]]


def test_reset_zeroes_v_but_not_u():
    # iDecay 0: u = 640 held; vDecay 0: v = 640, 1280 (> 1000: fire, v = 0), 640, 1280 (fire) ...
    (s,), (u,), (v,) = trace(lif(current_decay=0, voltage_decay=0, vth=1000 >> 6), [10, 0, 0, 0])
    assert 1000 >> 6 << 6 == 960
    assert u == [640, 640, 640, 640] and v == [640, 0, 640, 0] and s == [0, 1, 0, 1]


def test_run_returns_float_spikes_and_accepts_float_integers():
    op = lif(vth=0)
    x = torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]]])
    y = op.run(x)
    assert y.dtype == torch.float32 and y[:, 0].tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert torch.equal(op.run(x.to(torch.int64)), y)
    with pytest.raises(ValueError, match="must hold integers"):
        op.run(x + 0.5)


def test_ternary_thresholds_and_reset():
    op = LoihiTernaryLIF(current_decay=4096, voltage_decay=4096, vth_hi=10, vth_lo=-10)
    assert op.problems() == []
    s, _, v = trace(op, [10], [11], [-10], [-11])
    assert [x[0] for x in s] == [0, 1, 0, -1] and [x[0] for x in v] == [640, 0, -640, 0]
    # vDecay 0: v accumulates -6 << 6 = -384 per step; -768 < -640 fires -1 and resets v (not u)
    (s,), (u,), (v,) = trace(LoihiTernaryLIF(current_decay=4096, voltage_decay=0, vth_hi=10, vth_lo=-10), [-6] * 4)
    assert s == [0, -1, 0, -1] and v == [-384, 0, -384, 0] and u == [-384] * 4
    assert op.run(torch.tensor([[[11.0, -11.0, 0.0]]])).tolist() == [[[1.0, -1.0, 0.0]]]


# ------------------------------------------------------------------------------------------------
# parameter checks and typing
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields, message", [
    (dict(current_decay=4097), r"current_decay must lie in \[0, 4096\]"),
    (dict(current_decay=-1), r"current_decay must lie in \[0, 4096\]"),
    (dict(voltage_decay=5000), r"voltage_decay must lie in \[0, 4096\]"),
    (dict(current_decay=1.0), r"current_decay must be an int"),
    (dict(vth=-1), r"vth must lie in \[0, 131071\]"),
    (dict(vth=2 ** 17), r"vth must lie in \[0, 131071\]"),
    (dict(bias_mant=4096), r"bias_mant must lie in \[-4096, 4095\]"),
    (dict(bias_mant=np.array([0, -5000])), r"bias_mant must lie in \[-4096, 4095\].*\[-5000, 0\]"),
    (dict(bias_mant=np.array([0.5])), r"bias_mant must be an integer array"),
    (dict(bias_mant=np.array(3)), r"bias_mant is a 0-d array"),
    (dict(bias_exp=8), r"bias_exp must lie in \[0, 7\]"),
    (dict(bias_exp=-1), r"bias_exp must lie in \[0, 7\]"),
    (dict(state_bits=32), r"state_bits must be 24"),
    (dict(overflow="wrap"), r"overflow must be 'none'"),
])
def test_lif_problems(fields, message):
    op = LoihiLIF(**{"current_decay": 0, "voltage_decay": 0, "vth": 0, **fields})
    problems = op.problems()
    assert len(problems) == 1 and re.search(message, problems[0]), problems


def test_ternary_problems():
    base = dict(current_decay=0, voltage_decay=0)
    assert LoihiTernaryLIF(**base, vth_hi=TOP - 1, vth_lo=-TOP).problems() == []
    assert "vth_hi must lie in" in LoihiTernaryLIF(**base, vth_hi=TOP, vth_lo=0).problems()[0]
    assert "vth_lo=3 exceeds vth_hi=2" in LoihiTernaryLIF(**base, vth_hi=2, vth_lo=3).problems()[0]


@pytest.mark.parametrize("fields, message", [
    (dict(weight=np.ones((2, 3), np.float32)), "weight must be an integer array"),
    (dict(weight=np.array([[256, 0]])), r"weight must lie in \[-256, 255\] \(signed 9-bit\)"),
    (dict(weight=np.array([[256, 0]]), weight_bits=8), r"weight must lie in \[-128, 127\]"),
    (dict(weight_bits=40), r"weight_bits must be an int in 1\.\.32"),
    (dict(weight_exp=32), r"weight_exp must lie in \[-31, 31\]"),
    (dict(out_bits=33), r"out_bits must be an int in 2\.\.32"),
    (dict(overflow="none"), "overflow must be 'wrap' or 'saturate'"),
    (dict(weight=np.ones(3, np.int8)), r"weight must be \[out, in\]"),
])
def test_dense_problems(fields, message):
    problems = IntDense(**{"weight": np.ones((2, 3), np.int8), **fields}).problems()
    assert len(problems) == 1 and re.search(message, problems[0]), problems


def test_conv_problems_and_defaults():
    op = IntConv2d(weight=np.ones((4, 1, 3, 3), np.int16), groups=2)
    assert op.problems() == [] and op.delay == 1 and op.overflow == "wrap" and op.out_bits == 24
    bad = IntConv2d(weight=np.ones((3, 1, 3, 3), np.int16), groups=2, stride=(0, 1), overflow="none")
    text = "\n".join(bad.problems())
    assert "groups=2 does not divide C_out" in text and "stride (0, 1)" in text and "overflow must be" in text


def test_types():
    x = TensorType((2, 3), int_type(8))
    assert LoihiLIF(current_decay=0, voltage_decay=0, vth=1).infer([x]) == TensorType((2, 3), SPIKE)
    assert LoihiTernaryLIF(current_decay=0, voltage_decay=0, vth_hi=1, vth_lo=-1).infer([x]).dtype == TERNARY
    d = IntDense(weight=np.ones((5, 3), np.int8), out_bits=20)
    assert d.infer([x]) == TensorType((2, 5), int_type(20))
    assert d.infer([TensorType((3,), SPIKE)]) == TensorType((5,), int_type(20))
    c = IntConv2d(weight=np.ones((4, 2, 3, 3), np.int8), padding=(1, 1), stride=(2, 1))
    assert c.infer([TensorType((2, 5, 4), TERNARY)]) == TensorType((4, 3, 4), int_type(24))
    for op in (d, LoihiLIF(current_decay=0, voltage_decay=0, vth=1)):
        with pytest.raises(ValueError, match="integer stream"):
            op.infer([TensorType((3,), FLOAT32)])
    with pytest.raises(ValueError, match="per-neuron bias_mant has shape"):
        LoihiLIF(current_decay=0, voltage_decay=0, vth=1, bias_mant=np.zeros(4, np.int16)).infer([x])


# ------------------------------------------------------------------------------------------------
# integer synapses
# ------------------------------------------------------------------------------------------------

def test_dense_shift_floor_wrap_saturate():
    w = np.array([[1, 1], [-1, -2], [100, 100]], np.int16)
    x = torch.tensor([[[1, 2]]])  # acc = [3, -5, 300]
    assert IntDense(weight=w).run(x).tolist() == [[[3, -5, 300]]]
    assert IntDense(weight=w, weight_exp=-1).run(x).tolist() == [[[1, -3, 150]]]   # floor: -5 >> 1 = -3
    assert IntDense(weight=w, weight_exp=2).run(x).tolist() == [[[12, -20, 1200]]]
    assert IntDense(weight=w, out_bits=8).run(x).tolist() == [[[3, -5, 300 - 256]]]
    assert IntDense(weight=w, out_bits=8, overflow="saturate").run(x).tolist() == [[[3, -5, 127]]]
    assert IntDense(weight=w, out_bits=4, overflow="saturate").run(x).tolist() == [[[3, -5, 7]]]
    assert IntDense(weight=w).run(x).dtype == torch.int64


def test_dense_is_exact_beyond_float32_and_delays_one_step():
    # 2^24 + 1 is not a float32; int64 keeps it. Lava's Dense delivers on the next step (delay 1).
    w = np.array([[1, 1]], np.int8)
    graph = Graph({"x": Node(Input(shape=(2,), dtype=int_type(32))),
                   "d": Node(IntDense(weight=w, out_bits=32), ("x",)), "y": Node(Output(), ("d",))},
                  ("y",), time_steps=3)
    x = torch.tensor([[[2 ** 24, 1]], [[-7, 2]], [[0, 0]]])
    y = run_graph(graph, {"x": x})["y"]
    assert y.dtype == torch.int64 and y[:, 0, 0].tolist() == [0, 2 ** 24 + 1, -5]


def _conv_reference(x: np.ndarray, w: np.ndarray, stride, padding, dilation, groups) -> np.ndarray:
    """Exact (Python int) cross-correlation of one frame ``[C, H, W]``."""
    x = np.pad(x.astype(object), ((0, 0), (padding[0],) * 2, (padding[1],) * 2))
    co, cig, kh, kw = w.shape
    ho = (x.shape[1] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (x.shape[2] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((co, ho, wo), object)
    for o, h, q in itertools.product(range(co), range(ho), range(wo)):
        g = o // (co // groups)
        out[o, h, q] = sum(int(w[o, c, i, j]) * x[g * cig + c, stride[0] * h + dilation[0] * i,
                                                  stride[1] * q + dilation[1] * j]
                           for c, i, j in itertools.product(range(cig), range(kh), range(kw)))
    return out


@pytest.mark.parametrize("geometry", [dict(), dict(stride=(2, 1), padding=(1, 2)),
                                      dict(dilation=(2, 1), groups=2, padding=(2, 0))])
def test_conv_exact_integers(geometry):
    rng = np.random.default_rng(3)
    groups = geometry.get("groups", 1)
    w = rng.integers(-2 ** 20, 2 ** 20, (4, 4 // groups, 3, 2))
    x = rng.integers(-2 ** 20, 2 ** 20, (2, 1, 4, 7, 6))
    op = IntConv2d(weight=w, weight_bits=21, out_bits=32, overflow="saturate", delay=0, **geometry)
    assert op.problems() == []
    got = op.run(torch.from_numpy(x))
    full = IntConv2d(weight=w, weight_bits=21, out_bits=32, delay=0, **geometry).run(torch.from_numpy(x))
    for t in range(2):
        ref = _conv_reference(x[t, 0], w, op.stride, op.padding, op.dilation, op.groups)
        assert got[t, 0].tolist() == np.clip(ref, -2 ** 31, 2 ** 31 - 1).tolist()
        assert full[t, 0].tolist() == (((ref + 2 ** 31) % 2 ** 32) - 2 ** 31).tolist()


# ------------------------------------------------------------------------------------------------
# lava_effective_weights against lava.utils.weightutils
# ------------------------------------------------------------------------------------------------

def test_effective_weights_examples():
    w, mode = lava_effective_weights(np.array([3, -3, 127, 255, -255, 300, -300]))
    assert mode == "mixed" and w.tolist() == [2, -4, 126, 254, -256, 254, -256]
    w, _ = lava_effective_weights(np.array([3, -7, 100]), num_weight_bits=6)
    assert w.tolist() == [0, -8, 96]
    w, mode = lava_effective_weights(np.array([3, 255, 1, 400]))
    assert mode == "excitatory" and w.tolist() == [3, 255, 1, 255]
    w, mode = lava_effective_weights(np.array([-3, -255, 0, -400]))
    assert mode == "inhibitory" and w.tolist() == [-3, -255, 0, -255]
    with pytest.raises(ValueError, match="integers"):
        lava_effective_weights(np.array([0.5]))
    with pytest.raises(ValueError, match="num_weight_bits"):
        lava_effective_weights(np.array([1]), num_weight_bits=9)


def test_effective_weights_match_lava_weightutils():
    wu = pytest.importorskip("lava.utils.weightutils")
    rng = np.random.default_rng(0)
    for trial in range(60):
        lo, hi = [(-400, 400), (0, 400), (-400, 1), (-3, 3)][trial % 4]
        w = rng.integers(lo, hi, (7, 9))
        for bits in range(1, 9):
            got, mode = lava_effective_weights(w, num_weight_bits=bits)
            lava_mode = wu.determine_sign_mode(w)
            assert mode == lava_mode.name.lower()
            want = wu.truncate_weights(wu.clip_weights(w, lava_mode, num_bits=8), lava_mode, bits)
            assert got.dtype == want.dtype and np.array_equal(got, want), (trial, bits)
            # given the mode, Lava leaves the prepared weights as they are
            again = wu.truncate_weights(wu.clip_weights(got, lava_mode, num_bits=8), lava_mode, bits)
            assert np.array_equal(again, got)


# ------------------------------------------------------------------------------------------------
# bit-exactness against Lava itself (fixed_pt models)
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lava():
    """Lava's processes and a runner that always stops the runtime."""
    pytest.importorskip("lava.magma")
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF, TernaryLIF
    from lava.proc.monitor.process import Monitor

    def run(proc, steps: int, read):
        """Run the network of ``proc`` for ``steps`` in fixed_pt, return ``read()`` (called before stop)."""
        try:
            proc.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
            return read()
        finally:
            proc.stop()

    return dict(Conv=Conv, Dense=Dense, Sink=Sink, Source=Source, LIF=LIF, TernaryLIF=TernaryLIF,
                Monitor=Monitor, run=run)


def _neuron_params(rng, n: int) -> dict:
    return dict(current_decay=int(rng.choice([0, 1, 4096, rng.integers(0, 4097)])),
                voltage_decay=int(rng.choice([0, 4096, rng.integers(0, 4097)])),
                bias_mant=rng.integers(-300, 300, n).astype(np.int16), bias_exp=int(rng.integers(0, 8)))


def _lava_neuron(lava, op, n: int):
    """The Lava process equal to IR neuron ``op`` (Lava du = iDecay - 1, dv = vDecay)."""
    common = dict(shape=(n,), du=op.current_decay - 1, dv=op.voltage_decay, bias_mant=op.bias_mant,
                  bias_exp=op.bias_exp)
    if isinstance(op, LoihiTernaryLIF):
        return lava["TernaryLIF"](**common, vth_hi=op.vth_hi, vth_lo=op.vth_lo)
    return lava["LIF"](**common, vth=op.vth)


def _chain(n_in: int, in_dtype, *ops) -> Graph:
    nodes = {"x": Node(Input(shape=(n_in,), dtype=in_dtype))}
    prev = "x"
    for i, op in enumerate(ops):
        nodes[f"n{i}"] = Node(op, (prev,))
        prev = f"n{i}"
    nodes["y"] = Node(Output(), (prev,))
    return Graph(nodes, ("y",), time_steps=1)


def _ir_run(graph: Graph, data: np.ndarray) -> np.ndarray:
    """IR graph on a Lava-layout raster ``(N, T)`` -> ``(N_out, T)`` int array."""
    T = data.shape[-1]
    graph = Graph(graph.nodes, graph.outputs, time_steps=T)
    x = torch.from_numpy(np.moveaxis(data, -1, 0).astype(np.int64)).unsqueeze(1)  # [T, 1, N]
    y = run_graph(graph, {"x": x})["y"][:, 0]
    return np.moveaxis(y.to(torch.int64).numpy(), 0, -1)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_lif_matches_lava_on_graded_input_with_wraps(lava):
    """RingBuffer (graded int32) -> LIF -> sink, no synapse: Lava's LIF sees data[:, t] at step t, as the
    IR neuron does. Large inputs make u wrap, v saturate and Lava's int32 sums overflow; spikes, u and v
    are compared step by step for four neuron populations (random parameters) fed by one source."""
    rng = np.random.default_rng(11)
    N, T, K = 12, 24, 4
    scale = rng.choice([2 ** 6, 2 ** 12, 2 ** 17, 2 ** 20, 2 ** 27], (N, 1))  # per neuron: up to int32 overflow
    data = (rng.integers(-1000, 1000, (N, T)) * scale // 1000).astype(np.int32)
    data[:, ::5] = 0
    data[0] = 777 + np.arange(T) % 2  # population 0 reaches v == vth << 6 exactly (no spike), then + 64
    source = lava["Source"](data=data)
    ops, probes = [], []
    for k in range(K):
        params = _neuron_params(rng, N)
        if k == 0:
            op = LoihiLIF(current_decay=4096, voltage_decay=4096, vth=777)
        elif k == K - 1:
            op = LoihiTernaryLIF(**params, vth_hi=int(rng.integers(0, 2 ** 17)), vth_lo=-int(rng.integers(0, 2 ** 17)))
        else:
            op = LoihiLIF(**params, vth=int(rng.integers(0, 2 ** 17)))
        assert op.problems() == []
        neuron = _lava_neuron(lava, op, N)
        sink = lava["Sink"](shape=(N,), buffer=T)
        source.s_out.connect(neuron.a_in)
        neuron.s_out.connect(sink.a_in)
        mon_u, mon_v = lava["Monitor"](), lava["Monitor"]()
        mon_u.probe(neuron.u, T)
        mon_v.probe(neuron.v, T)
        ops.append(op)
        probes.append((neuron, sink, mon_u, mon_v))

    def read():
        return [(sink.data.get(), mu.get_data()[nr.name]["u"].T, mv.get_data()[nr.name]["v"].T)
                for nr, sink, mu, mv in probes]

    results = lava["run"](source, T, read)
    x = torch.from_numpy(data.T.astype(np.int64)).unsqueeze(1)
    wrapped = overflowed = 0
    for op, (spikes, u, v) in zip(ops, results):
        s_ir, u_ir, v_ir = (t[:, 0].numpy().T for t in op.simulate(x))
        assert np.array_equal(spikes, s_ir), type(op).__name__
        assert np.array_equal(u, u_ir) and np.array_equal(v, v_ir)
        wrapped += int((np.abs(u_ir) > 2 ** 22).sum())
        overflowed += int((np.abs(u_ir) > 2 ** 23).sum())
    assert wrapped and overflowed  # the test did reach the wrap and the out-of-24-bit currents
    assert results[0][0][0].tolist() == [0, 1] * (T // 2)  # strict threshold, as Lava has it


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("graded", [False, True])
def test_dense_lif_chain_matches_lava(lava, graded):
    """Source -> Dense -> LIF -> sink in Lava vs Input -> IntDense(delay=1) -> LoihiLIF -> Output.

    Timing: Lava's Dense sends at step t what it accumulated at step t-1 (a_buff), so the LIF at step t
    sees the source's data[:, t-1], and nothing at t = 0. IntDense's delay=1 shifts its stream by one step
    the same way; the LIF -> sink hop has no delay, so Lava's sink column t equals the IR output at t.
    Lava gets the raw random weights (it clips and truncates them itself); the IR gets
    lava_effective_weights of them. Four chains with random decays, thresholds, biases, weight bits and
    weight exponents share one source."""
    rng = np.random.default_rng(5 + graded)
    N_IN, N, T, K = 10, 8, 24, 4
    data = ((rng.random((N_IN, T)) < 0.35) * (rng.integers(-40, 40, (N_IN, T)) if graded else 1)).astype(np.int32)
    source = lava["Source"](data=data)
    graphs, sinks, spike_total = [], [], 0
    for k in range(K):
        w = rng.integers(-300, 300, (N, N_IN)) if k else rng.integers(0, 256, (N, N_IN))
        bits, exp = int(rng.integers(5, 9)), int(rng.integers(-2, 3))
        dense = lava["Dense"](weights=w, num_weight_bits=bits, weight_exp=exp, num_message_bits=8 if graded else 0)
        w_eff, _ = lava_effective_weights(w, bits)
        params = _neuron_params(rng, N)
        op = LoihiLIF(**params, vth=int(rng.integers(0, 3000 if graded else 600)))
        neuron = _lava_neuron(lava, op, N)
        sink = lava["Sink"](shape=(N,), buffer=T)
        source.s_out.connect(dense.s_in)
        dense.a_out.connect(neuron.a_in)
        neuron.s_out.connect(sink.a_in)
        graphs.append(_chain(N_IN, int_type(8) if graded else SPIKE, IntDense(weight=w_eff, weight_exp=exp), op))
        sinks.append(sink)
    results = lava["run"](source, T, lambda: [s.data.get() for s in sinks])
    for graph, lava_spikes in zip(graphs, results):
        ir = _ir_run(graph, data)
        assert np.array_equal(lava_spikes, ir), np.argwhere(lava_spikes != ir)
        spike_total += int(ir.sum())
    assert spike_total > 20  # the comparison saw spikes, not only silence


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_dense_ternary_lif_matches_lava(lava):
    """Source -> Dense -> TernaryLIF -> sink vs IntDense(delay=1) -> LoihiTernaryLIF (timing as above)."""
    rng = np.random.default_rng(21)
    N_IN, N, T = 10, 8, 24
    data = (rng.random((N_IN, T)) < 0.4).astype(np.int32)
    source = lava["Source"](data=data)
    graphs, sinks = [], []
    for k in range(3):
        w = rng.integers(-256, 256, (N, N_IN))
        dense = lava["Dense"](weights=w)
        op = LoihiTernaryLIF(**_neuron_params(rng, N), vth_hi=int(rng.integers(0, 400)), vth_lo=-int(rng.integers(0, 400)))
        neuron = _lava_neuron(lava, op, N)
        sink = lava["Sink"](shape=(N,), buffer=T)
        source.s_out.connect(dense.s_in)
        dense.a_out.connect(neuron.a_in)
        neuron.s_out.connect(sink.a_in)
        graphs.append(_chain(N_IN, SPIKE, IntDense(weight=lava_effective_weights(w)[0]), op))
        sinks.append(sink)
    results = lava["run"](source, T, lambda: [s.data.get() for s in sinks])
    signs = set()
    for graph, lava_spikes in zip(graphs, results):
        ir = _ir_run(graph, data)
        assert np.array_equal(lava_spikes, ir), np.argwhere(lava_spikes != ir)
        signs |= set(ir.flatten().tolist())
    assert signs == {-1, 0, 1}


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("graded", [False, True])
def test_conv_matches_lava(lava, graded):
    """Source -> Conv -> sink vs IntConv2d(weight_exp=0, out_bits=24, overflow='wrap', delay=1).

    Lava's Conv works on (W, H, C) maps with kernels [C_out, kW, kH, C_in] and convolves (scipy
    convolve2d flips the kernel), so its kernel is the IR's flipped and transposed; stride, padding and
    dilation are given as (x, y) = (columns, rows). Its fixed model adds no clip or truncation to the
    weights and wraps the sum to 24 bits; large graded inputs make that wrap happen."""
    rng = np.random.default_rng(7 + graded)
    C, H, W, T = 4, 6, 5, 12
    geometries = [dict(), dict(stride=(2, 1), padding=(1, 2), groups=2), dict(dilation=(1, 2), padding=(1, 1))]
    raster = (rng.random((T, C, H, W)) < 0.4) * (rng.integers(-2 ** 14, 2 ** 14, (T, C, H, W)) if graded else 1)
    data = raster.transpose(3, 2, 1, 0).astype(np.int32)  # (W, H, C, T)
    source = lava["Source"](data=data)
    ops, sinks = [], []
    for geo in geometries:
        g = geo.get("groups", 1)
        w = rng.integers(-2 ** 10 if graded else -256, 2 ** 10 if graded else 256, (6, C // g, 3, 2))
        op = IntConv2d(weight=w, weight_bits=11, **geo)
        lava_w = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))
        conv = lava["Conv"](weight=lava_w, input_shape=(W, H, C), padding=op.padding[::-1], stride=op.stride[::-1],
                            dilation=op.dilation[::-1], groups=g, num_message_bits=8 if graded else 0)
        sink = lava["Sink"](shape=conv.output_shape, buffer=T)
        source.s_out.connect(conv.s_in)
        conv.a_out.connect(sink.a_in)
        ops.append(op)
        sinks.append(sink)
    results = lava["run"](source, T, lambda: [s.data.get() for s in sinks])
    wrapped = 0
    for op, got in zip(ops, results):
        graph = Graph({"x": Node(Input(shape=(C, H, W), dtype=int_type(16) if graded else SPIKE)),
                       "c": Node(op, ("x",)), "y": Node(Output(), ("c",))}, ("y",), time_steps=T)
        y = run_graph(graph, {"x": torch.from_numpy(raster).unsqueeze(1)})["y"][:, 0]   # [T, C_out, H', W']
        assert np.array_equal(got, y.numpy().transpose(3, 2, 1, 0))
        full = IntConv2d(weight=op.weight, weight_bits=11, out_bits=32, delay=0, stride=op.stride,
                         padding=op.padding, dilation=op.dilation, groups=op.groups).run(
            torch.from_numpy(raster).unsqueeze(1))
        wrapped += int((full.abs() >= 2 ** 23).sum())
    assert (wrapped > 0) == graded

"""prove_ranges (snncompile/passes/prove_ranges.py) and the ``value_range`` / ``state_range`` rules it walks:
hand-computed intervals, soundness and tightness on random integer inputs run through the interpreter,
narrowing of ``out_bits``, overflow errors, Loihi neuron state bounds, and target precision limits."""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch

from snncompile.ir import SPIKE, TERNARY, Graph, Node, TensorType, int_type
from snncompile.ir.interval import Interval
from snncompile.ir.ops import (BlockLinearAttention, Delay, Flatten, Input, IntAdd, IntConv2d, IntDense, IntShift,
                               LoihiLIF, LoihiTernaryLIF, MaxPool2d, Op, Output, Quantize, ReLU, SpikeColumnSum,
                               SumPool2d, TemporalWindow, TokenSum)
from snncompile.passes import PassContext, PassError, run_pipeline
from snncompile.passes.prove_ranges import graded_edges, prove_ranges, value_ranges
from snncompile.sim import run_graph
from snncompile.targets import load_target

TOP = 2 ** 23
CTX = PassContext()


def chain(x: Input, *ops: Op, time_steps: int = 4) -> Graph:
    """``x -> ops[0] -> ops[1] ... -> Output``, nodes named x, n0, n1, ..., y."""
    nodes, prev = {"x": Node(x)}, "x"
    for i, op in enumerate(ops):
        nodes[f"n{i}"] = Node(op, (prev,))
        prev = f"n{i}"
    nodes["y"] = Node(Output(), (prev,))
    return Graph(nodes, ("y",), time_steps=time_steps)


def last_range(x: Input, *ops: Op) -> Interval:
    return value_ranges(chain(x, *ops))[f"n{len(ops) - 1}"]


def random_feed(graph: Graph, rng: np.random.Generator, batch: int = 6) -> dict[str, torch.Tensor]:
    """Random integers over each Input's whole dtype range, both extremes included at some positions."""
    feeds = {}
    for name in graph.inputs():
        op = graph.op(name)
        lo, hi = int(op.dtype.min), int(op.dtype.max)
        shape = (graph.time_steps, batch, *op.shape)
        x = rng.integers(lo, hi + 1, size=shape)
        x[:, 0] = lo  # a whole sample at each end: sums and pools reach their extremes
        x[:, 1] = hi
        feeds[name] = torch.from_numpy(x).to(torch.float32 if op.dtype.is_spike else torch.int64)
    return feeds


def assert_inside(graph: Graph, feeds) -> None:
    """Every node's actual values lie within its proven interval."""
    values = run_graph(graph, feeds, keep="all")
    for name, r in value_ranges(graph).items():
        if r is not None:
            v = values[name]
            assert r.lo <= int(v.min()) and int(v.max()) <= r.hi, (name, r, int(v.min()), int(v.max()))


# ------------------------------------------------------------------------------------------------
# hand-computed intervals
# ------------------------------------------------------------------------------------------------

def test_dense_on_spikes():
    # per output: positive weights take the spike's 1, negative ones too; row 0 spans [-2, 8], row 1 [-3, 0]
    w = np.array([[3, -2, 5], [-1, -1, -1]])
    assert last_range(Input(shape=(3,), dtype=SPIKE), IntDense(weight=w)) == Interval(-3, 8)
    assert last_range(Input(shape=(3,), dtype=SPIKE), IntDense(weight=w[:1])) == Interval(-2, 8)


def test_conv_with_bias_and_weight_exp():
    # uint3 input in [0, 7]. Channel 0: 4 * [0, 7] - 2 * [0, 7] = [-14, 28]; channel 1: -4 * [0, 7] = [-28, 0].
    # Over both: [-28, 28], floor-shifted right by 1: [-14, 14]; plus biases in [-3, 5]: [-17, 19].
    w = np.array([[[[1, -2], [3, 0]]], [[[-1, -1], [-1, -1]]]])
    op = IntConv2d(weight=w, weight_exp=-1, bias=np.array([5, -3]))
    assert last_range(Input(shape=(1, 3, 3), dtype=int_type(3, signed=False)), op) == Interval(-17, 19)
    # weight_exp 2 scales by 4 before the bias: [-112, 112] + [-3, 5]
    op = IntConv2d(weight=w, weight_exp=2, bias=np.array([5, -3]))
    assert last_range(Input(shape=(1, 3, 3), dtype=int_type(3, signed=False)), op) == Interval(-115, 117)


def test_int_add_shift_relu_maxpool_flatten():
    nodes = {"a": Node(Input(shape=(1, 4, 4), dtype=int_type(4))),                       # [-8, 7]
             "b": Node(Input(shape=(1, 4, 4), dtype=int_type(3, signed=False))),         # [0, 7]
             "add": Node(IntAdd(), ("a", "b")),                                          # [-8, 14]
             "left": Node(IntShift(shift=3), ("a",)),                                    # [-64, 56]
             "right": Node(IntShift(shift=-2), ("a",)),                                  # floor: [-2, 1]
             "relu": Node(ReLU(), ("a",)),                                               # [0, 7]
             "pool": Node(MaxPool2d(), ("a",)),                                          # -inf padding: [-8, 7]
             "flat": Node(Flatten(), ("pool",)),
             "y": Node(Output(), ("add",))}
    ranges = value_ranges(Graph(nodes, ("y",), time_steps=2))
    expected = {"add": (-8, 14), "left": (-64, 56), "right": (-2, 1), "relu": (0, 7), "pool": (-8, 7),
                "flat": (-8, 7), "y": (-8, 14)}
    assert {n: (ranges[n].lo, ranges[n].hi) for n in expected} == expected


def test_token_sum_counts_the_tokens():
    # uint2 [0, 3] over 3 x 4 = 12 tokens
    assert last_range(Input(shape=(2, 3, 4), dtype=int_type(2, signed=False)), TokenSum()) == Interval(0, 36)
    assert last_range(Input(shape=(2, 3, 4), dtype=TERNARY), TokenSum()) == Interval(-12, 12)


def test_quantize_is_its_dtype_and_float_edges_have_none():
    g = chain(Input(shape=(3,)), Quantize(scale=0.5, bits=5), ReLU())
    ranges = value_ranges(g)
    assert ranges["x"] is None
    assert ranges["n0"] == Interval(-16, 15) and ranges["n1"] == Interval(0, 15)
    assert last_range(Input(shape=(3,)), Quantize(scale=0.5, bits=4, signed=False)) == Interval(0, 15)


def test_delays_include_the_leading_zeros():
    # a bias keeps the undelayed sum away from 0: [3, 5]; a Delay or a delayed synapse starts with zeros
    dense = IntDense(weight=np.array([[1, 1]]), bias=np.array([3]), delay=0)
    x = Input(shape=(2,), dtype=SPIKE)
    assert last_range(x, dense) == Interval(3, 5)
    assert last_range(x, dense, Delay(delay=2)) == Interval(0, 5)
    assert last_range(x, IntDense(weight=np.array([[1, 1]]), bias=np.array([3]))) == Interval(0, 5)


def test_sum_pool_with_padding_includes_zeros():
    x = Input(shape=(1, 4, 4), dtype=int_type(3, signed=False))
    dense = IntConv2d(weight=np.ones((1, 1, 1, 1), np.int64), bias=np.array([2]), delay=0)   # [2, 9]
    assert last_range(x, dense, SumPool2d(kernel=(2, 2), stride=(2, 2))) == Interval(8, 36)
    assert last_range(x, dense, SumPool2d(kernel=(3, 3), stride=(1, 1), padding=(1, 1))) == Interval(0, 81)


def test_temporal_window_sees_zeros_before_the_first_step():
    # [3, 5] (int4) through weights [1, 2]: 1 * x[t] + 2 * x[t-1], with x[-1] = 0: [3, 15] would miss y[0] = 3..5
    dense = IntDense(weight=np.array([[1, 1]]), bias=np.array([3]), delay=0, out_bits=4)
    graph = chain(Input(shape=(2,), dtype=SPIKE), dense, TemporalWindow(weights=np.array([1, 2])))
    assert value_ranges(graph)["n1"] == Interval(0, 15)
    assert_inside(graph, random_feed(graph, np.random.default_rng(0)))


def offset(bias: int) -> IntConv2d:
    """Depthwise 1x1 conv of 4 spike channels plus ``bias``: values in [bias, bias + 1], never 0."""
    return IntConv2d(weight=np.ones((4, 1, 1, 1), np.int64), groups=4, bias=np.full(4, bias), delay=0, out_bits=3)


def attention_graph() -> Graph:
    nodes = {"q": Node(Input(shape=(4, 2, 2), dtype=SPIKE)),
             "k1": Node(offset(1), ("q",)),
             "v2": Node(offset(2), ("q",)),
             "pos": Node(BlockLinearAttention(heads=2, block=2), ("q", "k1", "v2")),
             "k": Node(Input(shape=(4, 2, 2), dtype=int_type(3))),                     # [-4, 3]
             "v": Node(Input(shape=(4, 2, 2), dtype=int_type(2, signed=False))),       # [0, 3]
             "ks": Node(Input(shape=(4, 2, 3), dtype=SPIKE)),
             "vs": Node(Input(shape=(4, 2, 3), dtype=SPIKE)),
             "att": Node(BlockLinearAttention(heads=2, block=2), ("q", "k", "v")),
             "col": Node(SpikeColumnSum(heads=2), ("ks", "vs")),
             "y": Node(Output(), ("att",)), "z": Node(Output(), ("col",)), "w": Node(Output(), ("pos",))}
    return Graph(nodes, ("y", "z", "w"), time_steps=4)


def test_attention_accumulates():
    # K V in [-12, 9]; M sums block * N = 2 * 4 of them: [-96, 72]; X sums d = 2 of Q M with Q in {0, 1}
    graph = attention_graph()
    ranges = value_ranges(graph)
    assert graph.types()["att"].dtype.kind == "int"
    assert ranges["att"] == Interval(-192, 144) and ranges["col"] == Interval(0, 6)  # 2 x 3 tokens
    # K V in [1 * 2, 2 * 3]: M in [16, 48], but a Q of zeros still gives X = 0: [0, 96]
    assert ranges["pos"] == Interval(0, 96)
    assert_inside(graph, random_feed(graph, np.random.default_rng(3)))


# ------------------------------------------------------------------------------------------------
# soundness and tightness on real runs
# ------------------------------------------------------------------------------------------------

def integer_network(rng: np.random.Generator, time_steps: int = 5) -> Graph:
    """Every integer node type on one graph, with a bias that keeps a conv's output away from 0 before a
    zero-padded conv (border windows then sum fewer values: the padding must enter the interval)."""
    c = 3
    w = lambda *shape: rng.integers(-6, 7, size=shape)  # noqa: E731
    nodes = {
        "img": Node(Input(shape=(c, 5, 5), dtype=int_type(5))),
        "spk": Node(Input(shape=(c, 5, 5), dtype=SPIKE)),
        "lift": Node(IntConv2d(weight=np.abs(w(c, c, 1, 1)) + 1, bias=np.full(c, 40), delay=0), ("spk",)),
        "conv": Node(IntConv2d(weight=np.abs(w(c, c, 3, 3)) + 1, padding=(1, 1), weight_exp=-2,
                               bias=w(c), delay=0), ("lift",)),
        "conv2": Node(IntConv2d(weight=w(c, c, 3, 3), stride=(2, 2), padding=(1, 1), bias=w(c)), ("img",)),
        "shift": Node(IntShift(shift=-1), ("img",)),
        "add": Node(IntAdd(), ("conv", "shift")),
        "relu": Node(ReLU(), ("add",)),
        "pool": Node(MaxPool2d(), ("relu",)),
        "tokens": Node(TokenSum(), ("conv2",)),
        "flat": Node(Flatten(), ("pool",)),
        "dense": Node(IntDense(weight=w(4, c * 9), weight_exp=-3), ("flat",)),
        "late": Node(Delay(delay=2), ("dense",)),
        "lif": Node(LoihiLIF(current_decay=1024, voltage_decay=512, vth=50), ("late",)),
        "ter": Node(LoihiTernaryLIF(current_decay=4096, voltage_decay=0, vth_hi=3, vth_lo=-3), ("tokens",)),
        "y": Node(Output(), ("lif",)),
        "z": Node(Output(), ("ter",)),
    }
    return Graph(nodes, ("y", "z"), time_steps=time_steps)


@pytest.mark.parametrize("seed", range(4))
def test_actual_values_lie_inside_the_proven_intervals(seed):
    rng = np.random.default_rng(seed)
    graph = integer_network(rng)
    assert_inside(graph, random_feed(graph, rng))
    narrowed = prove_ranges(graph, CTX)
    assert narrowed is not graph
    assert_inside(narrowed, random_feed(narrowed, rng))


def test_the_padding_rule_is_needed():
    # the zero-padded conv's border outputs fall below what 9 in-range inputs give
    rng = np.random.default_rng(0)
    graph = integer_network(rng)
    values = run_graph(graph, random_feed(graph, rng), keep="all")
    unpadded = dataclasses.replace(graph.op("conv"), padding=(0, 0))
    without_zeros = unpadded.value_range([value_ranges(graph)["lift"]], [], TensorType((), int_type(24)))
    assert value_ranges(graph)["lift"].lo == 40
    assert int(values["conv"].min()) < without_zeros.lo


def test_dense_interval_is_reached_at_both_ends():
    w = np.array([[3, -2, 5, 0], [-1, -4, -1, 2], [7, 2, -3, -3]])
    graph = chain(Input(shape=(4,), dtype=SPIKE), IntDense(weight=w, delay=0), time_steps=1)
    r = value_ranges(graph)["n0"]
    top = w.clip(min=0).sum(1).argmax()
    bottom = w.clip(max=0).sum(1).argmin()
    x = torch.from_numpy(np.stack([w[top] > 0, w[bottom] < 0])[None]).to(torch.float32)  # [T=1, B=2, 4]
    y = run_graph(graph, {"x": x})["y"]
    assert (r.lo, r.hi) == (-6, 9)
    assert int(y.max()) == r.hi and int(y.min()) == r.lo


# ------------------------------------------------------------------------------------------------
# narrowing and overflow
# ------------------------------------------------------------------------------------------------

def dense_graph(**dense) -> Graph:
    w = np.array([[3, -2, 5], [-1, -1, -1]])
    return chain(Input(shape=(3,), dtype=SPIKE), IntDense(weight=w, **dense), time_steps=3)


def test_out_bits_narrow_to_the_proven_width_with_identical_outputs():
    graph = dense_graph()
    out = run_pipeline(graph, [prove_ranges])
    assert out.op("n0").out_bits == 5 and out.types()["n0"].dtype == int_type(5)  # [-3, 8]
    report = out.history[-1].options
    assert report["narrowed"] == {"n0": [24, 5]} and report["bits"] == {"n0": 5, "y": 5}
    assert report["ranges"]["n0"] == [-3, 8] and report["saturating"] == {} and report["graded"] == []
    x = torch.from_numpy(np.random.default_rng(1).integers(0, 2, size=(3, 32, 3))).to(torch.float32)
    assert torch.equal(run_graph(graph, {"x": x})["y"], run_graph(out, {"x": x})["y"])


def test_a_second_run_changes_nothing():
    once = prove_ranges(dense_graph(), CTX)
    assert prove_ranges(once, CTX) is once
    exact = dense_graph(out_bits=5)
    assert prove_ranges(exact, CTX) is exact


def test_narrowing_keeps_two_bits_and_a_valid_bias():
    zero = chain(Input(shape=(2,), dtype=SPIKE), IntDense(weight=np.zeros((1, 2), np.int64)))
    assert prove_ranges(zero, CTX).op("n0").out_bits == 2
    # the sums reach [-100 + 0, -100 + 2]; the bias alone, -100, still needs 8 bits
    biased = chain(Input(shape=(2,), dtype=SPIKE), IntDense(weight=np.ones((1, 2), np.int64),
                                                            bias=np.array([-100])))
    assert prove_ranges(biased, CTX).op("n0").out_bits == 8


def test_wrap_overflow_names_node_interval_and_width():
    with pytest.raises(PassError, match=r"(?s)prove_ranges.*'n0' \(IntDense\): proven values \[-3, 8\] need 5 bits; "
                                        r"its int4 output \(overflow='wrap'\) would wrap"):
        run_pipeline(dense_graph(out_bits=4), [prove_ranges])


def test_saturate_overflow_is_reported_not_an_error():
    graph = dense_graph(out_bits=4, overflow="saturate")
    out = run_pipeline(graph, [prove_ranges])
    assert out.op("n0").out_bits == 4
    assert out.history[-1].options["saturating"] == {"n0": {"proven": [-3, 8], "bits": 4}}
    assert value_ranges(out)["n0"] == Interval(-3, 7)  # what the saturated edge carries


def test_an_integer_node_without_a_rule_is_an_error():
    class Negate(Op):
        INTEGER_INPUTS = True

        def infer(self, inputs):
            return inputs[0]

        def run(self, x):
            return -x

    graph = chain(Input(shape=(2,), dtype=int_type(4)), Negate(), IntShift(shift=1))
    with pytest.raises(ValueError, match=r"'n0' \(Negate\): no proven range") as e:
        prove_ranges(graph, CTX)
    assert "'n1'" not in str(e.value)  # the node downstream is not blamed


# ------------------------------------------------------------------------------------------------
# Loihi neuron state
# ------------------------------------------------------------------------------------------------

def test_a_current_that_can_wrap_is_an_error_naming_the_neuron():
    # no leak: u = -128 << 6 = -8192 per step; 1023 steps reach -8380416, 1024 reach -2^23: Lava wraps it
    lif = LoihiLIF(current_decay=0, voltage_decay=4096, vth=100)
    x = Input(shape=(1,), dtype=int_type(8))
    assert prove_ranges(chain(x, lif, time_steps=1023), CTX) is not None
    with pytest.raises(ValueError, match=r"'n0' \(LoihiLIF\): current u may reach \[-8388608, 8323072\] "
                                         r"within 1024 steps.*u would wrap"):
        prove_ranges(chain(x, lif, time_steps=1024), CTX)
    _, u, _ = lif.simulate(torch.full((1024, 1, 1), -128, dtype=torch.int64))
    assert int(u[-2]) == -8380416 and int(u[-1]) == TOP  # the wrap the error warns of


def test_an_input_beyond_the_documented_limit_is_an_error():
    lif = LoihiLIF(current_decay=4096, voltage_decay=4096, vth=100)
    with pytest.raises(ValueError, match=r"'n0' \(LoihiLIF\): input \[-131072, 131071\] exceeds the limit"):
        prove_ranges(chain(Input(shape=(1,), dtype=int_type(18)), lif), CTX)
    assert prove_ranges(chain(Input(shape=(1,), dtype=int_type(17)), lif), CTX) is not None


def test_voltage_saturation_is_reported():
    # |a| < 2^16, no voltage leak: v can reach -(2^23 - 1) (the LIF has no negative reset)
    lif = LoihiLIF(current_decay=4096, voltage_decay=0, vth=100)
    out = run_pipeline(chain(Input(shape=(1,), dtype=int_type(17)), lif), [prove_ranges])
    entry = out.history[-1].options["saturating"]["n0"]
    assert entry["state"] == "v" and entry["bits"] == 24 and entry["proven"][0] < -TOP
    quiet = chain(Input(shape=(1,), dtype=int_type(8)), lif)
    assert run_pipeline(quiet, [prove_ranges]).history[-1].options["saturating"] == {}


def neuron_cases():
    rng = np.random.default_rng(7)
    for i in range(24):
        common = dict(current_decay=int(rng.choice([0, 1, 512, 2048, 4095, 4096, rng.integers(0, 4097)])),
                      voltage_decay=int(rng.choice([0, 1, 2048, 4096, rng.integers(0, 4097)])),
                      bias_mant=rng.integers(-4096, 4096, size=3) if i % 3 else int(rng.integers(-50, 50)),
                      bias_exp=int(rng.integers(0, 8)))
        if i % 2:
            hi = int(rng.integers(-2 ** 12, 2 ** 17))
            op = LoihiTernaryLIF(**common, vth_hi=hi, vth_lo=hi - int(rng.integers(0, 2 ** 16)))
        else:
            op = LoihiLIF(**common, vth=int(rng.integers(0, 2 ** 17)))
        lo = int(rng.integers(-2 ** 10, 2 ** 10))
        yield op, Interval(lo, lo + int(rng.integers(0, 2 ** 11)))


@pytest.mark.parametrize("op, a", list(neuron_cases()))
def test_state_range_bounds_hold_on_random_inputs(op, a):
    steps = 40
    u_range, v_range = op.state_range(a, steps)
    rng = np.random.default_rng(a.hi - a.lo)
    x = rng.integers(a.lo, a.hi + 1, size=(steps, 64, 3))
    x[:, 0], x[:, 1] = a.lo, a.hi                               # constant extremes drive u and v furthest
    x[: steps // 2, 2], x[steps // 2:, 2] = a.hi, a.lo          # a swing from one end to the other
    s, u, v = op.simulate(torch.from_numpy(x))
    assert u_range.lo <= int(u.min()) and int(u.max()) <= u_range.hi
    assert (int(u.min()), int(u.max())) == (u_range.lo, u_range.hi)  # u's bound is exact
    # h, the voltage before saturation and reset, from the stored v of the step before
    prev = torch.cat([torch.zeros_like(v[:1]), v[:-1]])
    keep = prev * (4096 - op.voltage_decay)
    bias = torch.as_tensor(np.asarray(op.bias_mant, np.int64) << op.bias_exp)
    h = torch.sign(keep) * (keep.abs() >> 12) + u + bias
    for values in (v, h):
        assert v_range.lo <= int(values.min()) and int(values.max()) <= v_range.hi


def test_the_voltage_interval_holds_the_reset_value():
    # every step h = 64 a in [640, 1280] > 64 fires: the stored v is always 0, outside h's own interval
    lif = LoihiLIF(current_decay=4096, voltage_decay=4096, vth=1)
    u_range, v_range = lif.state_range(Interval(10, 20), 8)
    assert u_range == Interval(640, 1280) and v_range == Interval(0, 1280)
    s, _, v = lif.simulate(torch.full((8, 1, 1), 10, dtype=torch.int64))
    assert int(s.min()) == 1 and int(v.abs().max()) == 0


def test_long_horizons_use_the_geometric_bound():
    op = LoihiLIF(current_decay=1, voltage_decay=4096, vth=0)
    a = Interval(-3, 5)
    exact, _ = op.state_range(a, 4096)
    bound, _ = op.state_range(a, None)
    assert bound.hi == 5 * 64 * 4096 and bound.lo == -3 * 64 * 4096  # |A| * 4096 / current_decay
    assert bound.lo <= exact.lo and exact.hi <= bound.hi
    with pytest.raises(ValueError, match="without leak"):
        LoihiLIF(current_decay=0, voltage_decay=4096, vth=0).state_range(a)


# ------------------------------------------------------------------------------------------------
# graded messages and target limits
# ------------------------------------------------------------------------------------------------

def graded_graph() -> Graph:
    """Spikes -> dense -> dense (a graded spike: integers sent into another core's synapses) -> LIF."""
    x = Input(shape=(3,), dtype=SPIKE)
    return chain(x, IntDense(weight=np.ones((2, 3), np.int64)), IntDense(weight=np.ones((2, 2), np.int64)),
                 LoihiLIF(current_decay=4096, voltage_decay=4096, vth=1))


def test_graded_edges_are_integer_messages_between_processes():
    graph = graded_graph()
    assert graded_edges(graph, graph.types()) == [("n0", "n1")]  # n1 -> n2 is synaptic input, in-core
    report = run_pipeline(graph, [prove_ranges]).history[-1].options
    assert report["graded"] == ["n0"]


def test_a_target_without_graded_spikes_rejects_the_edge(tmp_path):
    message = r"'n0' \(IntDense\): sends integer values \[0, 3\] to 'n1', a graded spike; target 'loihi1'"
    with pytest.raises(PassError, match=message):
        run_pipeline(graded_graph(), [prove_ranges], PassContext(target="loihi1"))
    run_pipeline(graded_graph(), [prove_ranges], PassContext(target="loihi2"))  # 32-bit graded payloads
    # the figure decides, not the name: Loihi 2 with its graded payload set to 0
    text = load_target("loihi2").path.read_text()
    binary = re.sub(r"(\[precision\.graded_spike_payload_bits\]\nvalue = )\d+", r"\g<1>0", text)
    assert binary != text
    path = tmp_path / "loihi2.toml"
    path.write_text(binary)
    with pytest.raises(PassError, match=r"'n0' \(IntDense\).*graded_spike_payload_bits = 0"):
        run_pipeline(graded_graph(), [prove_ranges], PassContext(target=str(path)))


def test_target_input_bits_bound_the_synaptic_input():
    # int17 fits the neuron's own limit (|a| < 2^17) but not the targets' 16-bit input
    graph = chain(Input(shape=(1,), dtype=int_type(17)), LoihiLIF(current_decay=4096, voltage_decay=4096, vth=1))
    assert prove_ranges(graph, CTX) is graph
    with pytest.raises(ValueError, match=r"'n0' \(LoihiLIF\): synaptic input from 'x' spans \[-65536, 65535\], "
                                         r"beyond target 'loihi2''s 16-bit"):
        prove_ranges(graph, PassContext(target="loihi2"))
    fits = chain(Input(shape=(1,), dtype=int_type(16)), LoihiLIF(current_decay=4096, voltage_decay=4096, vth=1))
    assert prove_ranges(fits, PassContext(target="loihi2")) is fits


def test_target_weight_bits_plus_sign():
    x = Input(shape=(2,), dtype=SPIKE)
    ok = chain(x, IntDense(weight=np.array([[-256, 255]])))
    assert prove_ranges(ok, PassContext(target="loihi2")) is not None
    wide = chain(x, IntDense(weight=np.array([[-256, 256]]), weight_bits=10))
    with pytest.raises(ValueError, match=r"'n0' \(IntDense\): weights span \[-256, 256\], beyond target 'loihi2'"):
        prove_ranges(wide, PassContext(target="loihi2"))
    assert prove_ranges(wide, CTX) is not None  # without a target the node's own weight_bits rule

"""Residual sums feeding neurons as converging connections in Lava's per_op plan
(``backends/lava/converging_sums.py``): which sums converge (all readers neurons: no adder left; a neuron beside
other readers: the adder stays for them), where their constant terms go (the neurons, or bias messages from Lava's
RingBuffer and Dense), what keeps an adder, and that Lava runs the result bit-exactly."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from snncompile.ir import SPIKE, int_type
from snncompile.ir.ops import Input, IntAdd, IntDense, IntShift, LoihiLIF, LoihiTernaryLIF, Output
from snncompile.ir.timing import latencies
from snncompile.sim import run_graph

pytest.importorskip("lava")  # the plans import Lava's processes

from snncompile.backends.lava.converging_sums import CONVERGED, bias_messages_reach, converge_sums  # noqa: E402
from snncompile.backends.lava.fidelity import plan_classes  # noqa: E402
from snncompile.backends.lava.mapping import plan_lava  # noqa: E402
from snncompile.backends.lava.runner import run_lava_session  # noqa: E402
from snncompile.backends.lava.stock import BIAS_CLOCK, BIAS_WEIGHTS  # noqa: E402
from test_lava_backend import B, _feeds, assert_equal  # noqa: E402
from test_lava_synapse_biases import UNITY, _scheduled, _window_equal  # noqa: E402

BIAS1, BIAS2 = np.array([30, -20, 5, 0, 44]), np.array([-7, 12, 0, 25, -40])


def residual(also=None, sum_bits: int = 14, neuron=None, steps: int = 8):
    """x -> biased dense d1 -+-> IntAdd s -> neuron n -> out; with ``also``: s also read by a shift -> LIF o.
    x -> biased dense d2 --/                                                           (the SDT stem's sum)"""
    rng = np.random.default_rng(7)
    nodes = {"x": (Input(shape=(6,), dtype=SPIKE),),
             "d1": (IntDense(weight=2 * rng.integers(-60, 60, (5, 6)), bias=BIAS1, delay=0, out_bits=12), "x"),
             "d2": (IntDense(weight=2 * rng.integers(-60, 60, (5, 6)), bias=BIAS2, delay=0, out_bits=12), "x"),
             "s": (IntAdd(out_bits=sum_bits, overflow="wrap"), "d1", "d2"),
             "n": (neuron or LoihiLIF(vth=60, **UNITY), "s"), "y": (Output(), "n")}
    outputs = ("y",)
    if also:
        nodes.update(q=(IntShift(shift=-1, out_bits=12), "s"), o=(LoihiLIF(vth=30, **UNITY), "q"), z=(Output(), "o"))
        outputs = ("y", "z")
    return _scheduled(nodes, outputs, steps)


def test_a_sum_only_neurons_read_becomes_converging_connections_its_constant_in_the_neuron():
    graph = residual()
    plan = plan_lava(graph, granularity="per_op", batch=B)
    assert plan.converging == ("s",) and "s" not in [p[0] for p in plan.processes()]
    assert plan_classes(plan)["s"] == "InPort" and plan.stock == {"d1": "Dense", "d2": "Dense", "n": "LIFReset"}
    s, n = plan.graph.op("s"), plan.graph.op("n")
    assert s.bias is None and plan.graph.nodes["n"].inputs == ("s",)
    assert np.array_equal(n.bias_mant, BIAS1 + BIAS2) and (n.bias_exp, n.reset_at) == (6, latencies(graph)["s"])
    feeds = _feeds(graph, 3)
    _window_equal(graph, plan.graph, feeds, ["n", "y"])
    ref = run_graph(graph, feeds, keep="all")
    assert ref["n"].sum() > 0 and not torch.equal(ref["s"], run_graph(plan.graph, feeds, keep="all")["s"])


def test_a_sum_with_other_readers_keeps_its_adder_and_feeds_its_neurons_by_converging_connections():
    graph = residual(also=True)
    plan = plan_lava(graph, granularity="per_op", batch=B)
    moved = plan.graph
    assert plan.converging == ("s" + CONVERGED,)
    assert moved.nodes["n"].inputs == ("s" + CONVERGED,) and moved.nodes["q"].inputs == ("s",)
    assert moved.nodes["s" + CONVERGED].inputs == moved.nodes["s"].inputs == ("d1", "d2")
    assert np.array_equal(moved.op("s").bias, BIAS1 + BIAS2)  # the adder keeps the constant for the shift
    assert moved.op("s" + CONVERGED).bias is None and np.array_equal(moved.op("n").bias_mant, BIAS1 + BIAS2)
    assert moved.schedule.latency["s" + CONVERGED] == moved.schedule.latency["s"]
    _window_equal(graph, moved, _feeds(graph, 4), ["s", "q", "o", "n", "y", "z"])


def test_a_sum_without_a_constant_converges_into_any_neuron_graded_values_as_they_are():
    rng = np.random.default_rng(2)
    nodes = {"x": (Input(shape=(6,), dtype=int_type(5)),), "w": (Input(shape=(5,), dtype=int_type(7)),),
             "d": (IntDense(weight=2 * rng.integers(-30, 30, (5, 6)), delay=0, out_bits=16), "x"),
             "s": (IntAdd(out_bits=18), "d", "w"),
             "t": (LoihiTernaryLIF(vth_hi=40, vth_lo=-40, current_decay=1024, voltage_decay=512), "s"),
             "y": (Output(), "t")}
    graph = _scheduled(nodes, ("y",))
    moved, converging = converge_sums(graph)
    assert converging == ("s",) and moved.op("t") is graph.op("t") and moved.op("s") is not graph.op("s")


def test_what_keeps_an_adder():
    graph = residual()
    from snncompile.backends.lava.synapse_biases import move_synapse_biases
    moved = move_synapse_biases(graph)
    assert converge_sums(moved, keep={"s"}) == (moved, ())  # read by name: its value must come back
    narrow = move_synapse_biases(residual(sum_bits=10))  # its wrap could act: the adder computes it
    assert converge_sums(narrow)[1] == ()
    assert plan_lava(graph, granularity="per_op", expose="all").converging == ()
    # a constant no neuron takes stays in the sum only where a bias source can send it: from step 1 on (Lava's
    # Dense delivers a step after its clock spikes), in two signed 8-bit weight digits
    start = latencies(graph)["s"]
    assert bias_messages_reach(IntAdd(out_bits=18, bias=np.array([-32896, 32639]), bias_start=start))
    assert not bias_messages_reach(IntAdd(out_bits=18, bias=np.array([5, 32640]), bias_start=start))
    assert not bias_messages_reach(IntAdd(out_bits=18, bias=np.array([5, 7]), bias_start=0))


LEAKY = LoihiLIF(vth=60, current_decay=2048, voltage_decay=1024)  # a leaky current cannot take a constant exactly


def test_a_constant_no_neuron_can_take_stays_in_the_sum_as_bias_messages():
    graph = residual(neuron=LEAKY)
    plan = plan_lava(graph, granularity="per_op", batch=B)
    s = plan.graph.op("s")
    assert plan.converging == ("s",) and plan.graph.op("n") is graph.op("n")  # the neuron as it was
    assert np.array_equal(s.bias, BIAS1 + BIAS2) and plan_classes(plan)["s"] == "InPort+Dense"
    assert [p for p in plan.processes() if p[2] == ("s",)] == [  # the biases fit one 8-bit digit: one Dense
        ("s" + BIAS_CLOCK, "RingBuffer", ("s",)), ("s" + BIAS_WEIGHTS + "0", "Dense", ("s",))]
    feeds = _feeds(graph, 3)
    ref, got = run_graph(graph, feeds, keep="all"), run_graph(plan.graph, feeds, keep="all")
    assert all(torch.equal(ref[n], got[n]) for n in ("s", "n", "y")) and ref["n"].sum() > 0  # on every step


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("also, neuron", [(None, None), (True, None), (None, LEAKY)],
                         ids=["only-neurons", "with-adder", "bias-messages"])
def test_converging_sums_run_bit_exactly_on_lava(also, neuron):
    graph = residual(also=also, neuron=neuron, steps=12)
    feeds = _feeds(graph, 5)
    run = run_lava_session(graph, feeds, granularity="per_op", timeout=500)  # every neuron comes back
    assert run.plan.converging
    assert_equal(run.values, run_graph(run.plan.graph, feeds, keep="all"))
    assert_equal(run.values, run_graph(graph, feeds, keep="all"), graph)
    assert all(run.values[n].sum() > 0 for n in ("n", "o") if n in run.values)

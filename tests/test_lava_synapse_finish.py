"""Synapses split into Lava's own bias-free sums and an adder with their bias and saturation, where nothing
downstream can take them (``backends/lava/synapse_finish.py``): the split, its values on every step, where it is
refused, the adder converging at its neuron with its bias sent by a bias source of Lava's own processes (the bias's
8-bit weight digits), a saturating one staying custom, and Lava running them bit-exactly."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from snncompile.ir import SPIKE
from snncompile.ir.ops import Input, IntAdd, IntDense, LoihiLIF, LoihiTernaryLIF, Output
from snncompile.ir.ops.int_synapse import lava_effective_weights
from snncompile.sim import run_graph

pytest.importorskip("lava")  # the plans import Lava's processes

from snncompile.backends.lava.fidelity import plan_classes  # noqa: E402
from snncompile.backends.lava.mapping import plan_lava  # noqa: E402
from snncompile.backends.lava.runner import run_lava_session  # noqa: E402
from snncompile.backends.lava.stock import bias_digits  # noqa: E402
from test_lava_backend import B, _feeds, assert_equal  # noqa: E402
from test_lava_synapse_biases import UNITY, _scheduled, biased_chain  # noqa: E402

BIAS = [30, -20, 5, 0, 44]  # biased_chain's
WIDE = [4136, -5000, 30, -129, 300]  # beyond the 13-bit compartment mantissa; two 8-bit weight digits


def ternary_chain():
    """x -> a biased dense -> a LIF its bias would fire before its data -> a ternary neuron -> out: the bias can
    go nowhere (the early spikes would reach the ternary neuron, which Lava cannot restart)."""
    return biased_chain(vth=0, after=("t", LoihiTernaryLIF(vth_hi=4, vth_lo=-4, **UNITY)))


def saturating_chain():
    """x -> a biased dense that saturates to 8 bits (its sums without the bias: -320..146) -> a LIF -> out."""
    rng = np.random.default_rng(3)
    nodes = {"x": (Input(shape=(6,), dtype=SPIKE),),
             "d": (IntDense(weight=2 * rng.integers(-60, 60, (5, 6)), bias=np.array(BIAS), delay=0, out_bits=8,
                            overflow="saturate"), "x"),
             "n": (LoihiLIF(vth=60, **UNITY), "d"), "y": (Output(), "n")}
    return _scheduled(nodes, ("y",))


def wide_bias_chain():
    """x -> a dense whose bias no neuron can hold (``WIDE``) -> a LIF -> out (DS2TA's ``q_conv``)."""
    rng = np.random.default_rng(3)
    nodes = {"x": (Input(shape=(6,), dtype=SPIKE),),
             "d": (IntDense(weight=2 * rng.integers(-60, 60, (5, 6)), bias=np.array(WIDE), delay=0, out_bits=16), "x"),
             "n": (LoihiLIF(vth=200, **UNITY), "d"), "y": (Output(), "n")}
    return _scheduled(nodes, ("y",))


def _every_step_equal(graph, plan, feeds) -> dict:
    """The plan's graph equals ``graph`` on every step at every node but the split synapses, whose adders carry
    their values instead; returns the reference's values."""
    ref, got = run_graph(graph, feeds, keep="all"), run_graph(plan.graph, feeds, keep="all")
    split = {n for n in graph.nodes if n + ".finish" in plan.graph.nodes}
    assert_equal({n: got[n + ".finish" if n in split else n] for n in graph.nodes}, ref)
    return ref


@pytest.mark.parametrize("build, bits, overflow", [(ternary_chain, 12, "wrap"), (saturating_chain, 8, "saturate")],
                         ids=["ternary", "saturating"])
def test_a_synapse_whose_bias_or_saturation_stays_splits_into_stock_sums_and_an_adder(build, bits, overflow):
    graph = build()
    plan = plan_lava(graph, granularity="per_op", batch=B)
    bare, finish = plan.graph.op("d"), plan.graph.op("d.finish")
    assert plan.stock["d"] == "Dense" and bare.bias is None and bare.overflow == "wrap"
    assert bare.out_bits == max(bits, 10)  # the sums' proven range, -320..146, needs 10 signed bits
    assert isinstance(finish, IntAdd) and (finish.out_bits, finish.overflow, finish.bias_start) == (bits, overflow, 1)
    assert np.array_equal(finish.bias, BIAS) and plan.graph.nodes["n"].inputs == ("d.finish",)
    assert plan.chip.index("d.finish") == plan.chip.index("d") + 1 and "d.finish" not in plan.stock
    # its fit never acts: it converges at the neuron, its bias from a bias source; a saturation stays custom
    assert plan.converging == (() if overflow == "saturate" else ("d.finish",))
    assert plan_classes(plan)["d.finish"] == ("UnaryNode" if overflow == "saturate" else "InPort+Dense")
    ref = _every_step_equal(graph, plan, _feeds(graph, 4))
    if overflow == "saturate":
        assert (ref["d"].abs() == 128).any() or (ref["d"] == 127).any()  # it saturates: not an identity


def test_a_bias_splits_into_signed_8_bit_digits_that_lavas_weights_keep():
    digits = bias_digits(np.array(WIDE))
    assert [d.tolist() for d in digits] == [[40, 120, 30, 127, 44], [16, -20, 0, -1, 1]]
    assert sum(d << (8 * i) for i, d in enumerate(digits)).tolist() == WIDE
    assert [d.tolist() for d in bias_digits(np.array([127, -128]))] == [[127, -128]]  # one digit where it fits
    assert bias_digits(np.array([32639, -32896])) is not None and bias_digits(np.array([32640])) is None
    every = 2 * np.arange(-128, 128)  # each digit d is the mixed-sign weight 2 d, which Lava keeps as it is
    assert np.array_equal(lava_effective_weights(every, 8, "mixed")[0], every)
    plan = plan_lava(wide_bias_chain(), granularity="per_op", batch=B)
    assert plan.converging == ("d.finish",) and plan.graph.op("n").bias_mant == 0
    assert [p[1] for p in plan.processes() if p[2] == ("d.finish",)] == ["RingBuffer", "Dense", "Dense"]


def test_a_read_synapse_is_not_split():
    graph = ternary_chain()
    plan = plan_lava(graph, granularity="per_op", expose=["d"])
    assert "d.finish" not in plan.graph.nodes and "d" not in plan.stock
    assert "d.finish" not in plan_lava(graph, granularity="fused").graph.nodes  # per_op only


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("build", [ternary_chain, saturating_chain, wide_bias_chain],
                         ids=["ternary", "saturating", "wide-bias"])
def test_split_synapses_run_bit_exactly_on_lavas_own_processes(build):
    graph = build()
    feeds = _feeds(graph, 5)
    run = run_lava_session(graph, feeds, granularity="per_op", timeout=500)  # every neuron comes back
    assert run.plan.stock["d"] == "Dense" and set(run.values) >= {"n", "y"}
    assert_equal(run.values, run_graph(run.plan.graph, feeds, keep="all"))
    assert_equal(run.values, run_graph(graph, feeds, keep="all"))  # on every step: the bias arrives in its window
    assert 0 < run.values["n"].sum() < run.values["n"].numel()
    assert any(torch.any(v != 0) for v in run.values.values())

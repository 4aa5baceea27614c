"""Synapses split into Lava's own bias-free sums and a custom adder with their bias and saturation, where nothing
downstream can take them (``backends/lava/synapse_finish.py``): the split, its values on every step, where it is
refused, and Lava running it bit-exactly."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from snncompile.ir import SPIKE
from snncompile.ir.ops import Input, IntAdd, IntDense, LoihiLIF, LoihiTernaryLIF, Output
from snncompile.sim import run_graph

pytest.importorskip("lava")  # the plans import Lava's processes

from snncompile.backends.lava.mapping import plan_lava  # noqa: E402
from snncompile.backends.lava.runner import run_lava_session  # noqa: E402
from test_lava_backend import B, _feeds, assert_equal  # noqa: E402
from test_lava_synapse_biases import UNITY, _scheduled, biased_chain  # noqa: E402

BIAS = [30, -20, 5, 0, 44]  # biased_chain's


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
    ref = _every_step_equal(graph, plan, _feeds(graph, 4))
    if overflow == "saturate":
        assert (ref["d"].abs() == 128).any() or (ref["d"] == 127).any()  # it saturates: not an identity


def test_a_read_synapse_is_not_split():
    graph = ternary_chain()
    plan = plan_lava(graph, granularity="per_op", expose=["d"])
    assert "d.finish" not in plan.graph.nodes and "d" not in plan.stock
    assert "d.finish" not in plan_lava(graph, granularity="fused").graph.nodes  # per_op only


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("build", [ternary_chain, saturating_chain], ids=["ternary", "saturating"])
def test_split_synapses_run_bit_exactly_on_lavas_own_processes(build):
    graph = build()
    feeds = _feeds(graph, 5)
    run = run_lava_session(graph, feeds, granularity="per_op", timeout=500)  # every neuron comes back
    assert run.plan.stock["d"] == "Dense" and set(run.values) >= {"n", "y"}
    assert_equal(run.values, run_graph(run.plan.graph, feeds, keep="all"))
    assert any(torch.any(v != 0) for v in run.values.values())

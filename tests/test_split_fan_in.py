"""split_fan_in: a convolution whose compartments read more input axons than a core receives becomes relayed
partial sums, every value unchanged, one synaptic hop later, and placement then meets the axon limit."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from snncompile.backends.design_rules import check
from snncompile.backends.placement import core_lower_bound, place
from snncompile.ir import SPIKE, Graph, Node
from snncompile.ir.ops import BlockSum, GradedRelay, Input, IntAdd, IntConv2d, LoihiLIF, Output
from snncompile.ir.ops.relay import joined_splits
from snncompile.ir.timing import unschedule
from snncompile.ir.types import int_type
from snncompile.passes import PassContext, prove_ranges, run_pipeline, schedule, split_fan_in
from snncompile.report.counts import count_activity
from snncompile.sim import run_graph
from test_placement import changed_target, recounted

C_IN, C_OUT, SIDE, T = 16, 8, 6, 5


def residual_conv(weight_exp: int) -> Graph:
    """spikes [16, 6, 6] -> conv 3x3 (16 -> 8, a bias) + an integer residual -> LIF -> output: each sum reads
    16 x 9 = 144 spikes and one residual value."""
    rng = np.random.default_rng(1)
    conv = IntConv2d(weight=rng.integers(-40, 41, (C_OUT, C_IN, 3, 3)), padding=(1, 1), weight_exp=weight_exp,
                     bias=rng.integers(-300, 300, C_OUT), delay=0)
    nodes = {
        "x": Node(Input(shape=(C_IN, SIDE, SIDE), dtype=SPIKE, time="stream")),
        "res": Node(Input(shape=(C_OUT, SIDE, SIDE), dtype=int_type(8), time="stream")),
        "conv": Node(conv, ("x",)),
        "add": Node(IntAdd(out_bits=24), ("res", "conv")),
        "lif": Node(LoihiLIF(current_decay=4096, voltage_decay=1024, vth=300), ("add",)),
        "y": Node(Output(), ("lif",)),
    }
    return Graph(nodes, ("y", "add"), time_steps=T).validate()


def feeds() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"x": (torch.rand(T, 3, C_IN, SIDE, SIDE, generator=g) < 0.4).float(),
            "res": torch.randint(-128, 128, (T, 3, C_OUT, SIDE, SIDE), generator=g)}


@pytest.fixture
def axons_64(tmp_path):
    return changed_target(tmp_path, "loihi2", "axons64", {"fan_in_axons_per_core": 64})


@pytest.mark.parametrize("weight_exp", [1, -3])
def test_split_is_bit_exact_and_meets_the_axon_limit(axons_64, weight_exp):
    graph = residual_conv(weight_exp)
    ctx = PassContext(target=str(axons_64.path))
    split = split_fan_in(graph, ctx)
    # 144 + 1 axons > 64: 16 channels in groups whose windows fit (4, 8 or 16 of them); 8 groups of 2 channels
    # need the fewest cores by the estimate (a core holds 18 positions' windows of 2 channels, 4 of 4)
    k = split.op("conv").blocks
    assert isinstance(split.op("conv"), BlockSum) and k == 8
    assert split.nodes["conv"].inputs == ("conv.relay",) and isinstance(split.op("conv.relay"), GradedRelay)
    partial = split.op("conv.partial")
    assert partial.groups == k and partial.weight.shape == (k * C_OUT, C_IN // k, 3, 3) and partial.bias is None
    # block g of the partial kernel is the original kernel's input channels 2g, 2g + 1
    assert np.array_equal(partial.weight[5 * C_OUT + 3], graph.op("conv").weight[3, 10:12])
    before = run_graph(graph, feeds(), keep="all")
    after = run_graph(split, feeds(), keep="all")
    assert 0 < before["y"].mean() < 1  # the neurons fire, not always
    for name in graph.nodes:
        assert torch.equal(before[name], after[name]), name
    # the relayed sums cross one more synapse: scheduled, the split graph is one step later, the same values
    lowered = run_pipeline(split, (prove_ranges, schedule), ctx)
    plain = run_pipeline(graph, (prove_ranges, schedule), ctx)
    assert lowered.schedule.latency["conv"] == plain.schedule.latency["conv"] + 1
    assert lowered.time_steps == plain.time_steps + 1
    assert torch.equal(run_graph(unschedule(lowered), feeds())["y"], before["y"])
    # placed: the unsplit graph breaks the limit (one compartment reads 145 axons), the split one fits
    broken = check(plain, place(plain, axons_64), axons_64)
    assert broken and {v.rule for v in broken} == {"fan_in_axons_per_core_within_limit"}
    p = place(lowered, axons_64)
    assert not check(lowered, p, axons_64)
    assert p.unit_of("conv") == ["add"] and "conv.relay" in p.nodes and p.unit_of("conv.partial") == ["conv.relay"]
    assert max(c.fan_in_axons for c in p.cores if c.node == "add") <= 64
    # both units are cut into boxes (the sum reads the same box of each relayed block), costed exactly
    assert p.nodes["add"].order.startswith("boxes:") and p.nodes["conv.relay"].order.startswith("boxes:")
    assert recounted(lowered, p) == [(c.fan_in_axons, c.fan_out_axons) for c in p.cores]
    # the bound: each position's 8 channels fit one core's kernel memory, and a core holds at most 3 positions
    # (3 x (16 channels + 1 residual) <= 64 axons): 36 positions need 12 cores
    assert core_lower_bound(plain, axons_64).by_resource["kernels and windows"] == 12
    assert core_lower_bound(lowered, axons_64).cores <= p.cores_used


def test_nothing_to_split(axons_64):
    graph = residual_conv(0)
    assert split_fan_in(graph, PassContext()) is graph  # no target: no limit
    small = dataclasses.replace(graph, nodes={**graph.nodes, "conv": Node(
        dataclasses.replace(graph.op("conv"), weight=graph.op("conv").weight[:, :6]),
        ("x6",)), "x6": Node(Input(shape=(6, SIDE, SIDE), dtype=SPIKE, time="stream"))})
    # 6 x 9 + 1 = 55 axons fit, for one position per core (8 compartments); in 3 groups of 2 channels a core
    # holds 18 positions' windows (6 x 3, clipped to 6 x 5 inputs): split only where it saves cores
    keep = PassContext(target=str(axons_64.path), options={"split_fan_in": {"save_cores": False}})
    assert split_fan_in(small, keep) is small
    assert split_fan_in(small, PassContext(target=str(axons_64.path))).op("conv").blocks == 3


def test_option_parts_asks_for_more_groups(axons_64):
    ctx = PassContext(target=str(axons_64.path), options={"split_fan_in": {"parts": 5}})
    assert split_fan_in(residual_conv(0), ctx).op("conv").blocks == 8  # the fewest groups >= 5 dividing 16


def observed(graph: Graph, observes) -> dict[str, torch.Tensor]:
    """Every node's value as the simulator's observer sees it when it needs only ``observes``."""
    seen = {}
    run_graph(graph, feeds_for(graph), observer=lambda name, op, args, value, traces: seen.update({name: value}),
              observes=observes)
    return seen


def feeds_for(graph: Graph) -> dict[str, torch.Tensor]:
    """:func:`feeds` drained with zeros to the (scheduled) graph's steps."""
    return {n: torch.cat([v, v.new_zeros((graph.time_steps - T, *v.shape[1:]))]) for n, v in feeds().items()}


@pytest.mark.parametrize("weight_exp", [1, -3])
def test_simulation_joins_a_split_synapse_nobody_watches(axons_64, weight_exp):
    ctx = PassContext(target=str(axons_64.path))
    plain = run_pipeline(residual_conv(weight_exp), (prove_ranges, schedule), ctx)
    graph = run_pipeline(residual_conv(weight_exp), (split_fan_in, prove_ranges, schedule), ctx)
    partial, relay, total = graph.op("conv.partial"), graph.op("conv.relay"), graph.op("conv")
    assert total.bias_start > 0 and partial.delay == total.delay == 1  # the bias window moves with the hops
    # the unsplit synapse: the original kernel, shift, bias and width, two synaptic hops (partial, relay)
    (joined, inputs), = joined_splits(graph, graph.types(), set(graph.outputs)).values()
    original = plain.op("conv")
    assert inputs == ("x",) and joined.groups == 1 and np.array_equal(joined.weight, original.weight)
    assert (joined.weight_exp, joined.out_bits, joined.delay) == (weight_exp, total.out_bits, 2)
    assert np.array_equal(joined.bias, original.bias) and joined.bias_start == total.bias_start - 1
    # the simulation evaluates it in place of the three nodes: every other node's value as the split graph's
    reference = run_graph(graph, feeds_for(graph), keep="all")
    seen = observed(graph, observes=())
    assert set(reference) - set(seen) == {"conv.partial", "conv.relay"}
    assert reference["add"].abs().max() > 0
    for name, value in seen.items():
        assert torch.equal(value, reference[name]), name
    # a node someone watches is evaluated as it is; so are partial sums that could leave their width
    assert "conv.partial" in observed(graph, observes=("conv.relay",))
    narrow = dataclasses.replace(partial, out_bits=partial.out_bits - 1)
    assert total.joined(narrow, graph.types()["x"], relay.delay) is None
    assert "conv.partial" in observed(dataclasses.replace(graph, nodes={**graph.nodes, "conv.partial": Node(
        narrow, ("x",))}), observes=())


def test_relays_count_as_neuron_updates_and_their_sums_as_synaptic_operations(axons_64):
    graph = run_pipeline(residual_conv(1), (split_fan_in, prove_ranges, schedule), PassContext(
        target=str(axons_64.path)))
    x = feeds_for(graph)
    values = run_graph(graph, x, keep="all")
    activity = count_activity(graph, x)
    partial, relayed = values["conv.partial"], values["conv.relay"]
    # a relay compartment keeps nothing: its update is active where its partial sum is non-zero
    relay = activity.neurons["conv.relay"]
    assert relay.neurons == math.prod(partial.shape[2:]) and relay.samples == 3
    assert list(relay.active) == [int((step != 0).sum()) for step in partial]
    assert 0 < sum(relay.active) < relay.neurons * relay.samples * graph.time_steps
    # each non-zero relayed value is one graded synaptic operation into its receiving compartment
    total = activity.synapses["conv"]
    assert total.kind == "MAC" and list(total.ops) == [int((step != 0).sum()) for step in relayed]
    assert total.connections == math.prod(relayed.shape[2:])
    # per output element: one relayed value from each block
    op, shape = graph.op("conv"), tuple(relayed.shape[2:])
    outputs = math.prod(shape) // op.blocks
    fan = op.fan_out(shape, [np.arange(0, 5), np.arange(5, outputs)])
    assert fan.shape == (2, *shape) and torch.equal(fan.sum(0), torch.ones(shape, dtype=torch.float64))
    assert fan[0].reshape(op.blocks, -1)[:, :5].eq(1).all() and fan[0].sum() == 5 * op.blocks
    events = (relayed != 0).to(torch.float64)
    landed = op.received(events, len(shape))
    assert landed.shape == (*relayed.shape[:2], *values["conv"].shape[2:])
    assert torch.equal(landed.flatten(2).sum(2).sum(1), torch.tensor(total.ops, dtype=torch.float64))
    # (fan_out and received are the weight-1 synapse's, computed without its mostly-zero kernel)
    synapse = op.as_synapse(shape)
    assert torch.equal(synapse.received(events, len(shape)), landed)
    assert torch.equal(synapse.fan_out(shape, [np.arange(0, 5), np.arange(5, outputs)]), fan)
    # as a synapse of weight-1 connections it gives the node's values
    assert torch.equal(run_graph(Graph({"r": Node(Input(shape=shape, dtype=int_type(32), time="stream")),
                                        "s": Node(op.as_synapse(shape), ("r",)), "y": Node(Output(), ("s",))},
                                       ("y",), time_steps=graph.time_steps), {"r": relayed})["y"], values["conv"])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_split_graph_on_lava_equals_run_graph(axons_64):
    pytest.importorskip("lava.magma")
    from snncompile.backends.lava.fidelity import plan_classes
    from snncompile.backends.lava.mapping import plan_lava
    from snncompile.backends.lava.runner import run_lava_session
    ctx = PassContext(target=str(axons_64.path))
    graph = run_pipeline(residual_conv(-3), (split_fan_in, prove_ranges, schedule), ctx)
    x = feeds_for(graph)
    ref = run_graph(graph, x, keep="all")
    run = run_lava_session(graph, x, granularity="per_op", expose="all", timeout=240)
    assert {"conv.partial", "conv.relay", "conv"} <= set(run.values)
    for name, value in run.values.items():
        assert torch.equal(value.to(torch.float64), ref[name].to(torch.float64)), name
    # where only the neurons are read, Lava's own processes run the relays and their sum (its bias in the sum
    # that follows; on Sparse, as one channel pair in 8 of its 1x1 kernel holds a weight): the same spikes
    classes = plan_classes(plan_lava(graph, granularity="per_op"))
    assert (classes["conv.partial"], classes["conv.relay"], classes["conv"]) == ("Conv", "GradedVec", "Sparse")
    run = run_lava_session(graph, x, granularity="per_op", timeout=240)
    assert "lif" in run.values
    for name, value in run.values.items():
        assert torch.equal(value.to(torch.float64), ref[name].to(torch.float64)), name

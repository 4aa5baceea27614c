"""The Lava backend (``snncompile.backends.lava``): lowered integer graphs run as Lava processes, bit-exact with
the reference simulator (``run_graph``) for every exposed node, in both granularities.

- the step machinery alone (no Lava): every node of the tiny graphs stepped equals ``run_graph``;
- tiny hand-built graphs covering every on-chip node type (Lava's own LIF, TernaryLIF, Dense and Conv
  where they apply, custom processes elsewhere), per-op and fused, every node exposed;
- what Lava cannot run is refused before anything starts, naming the node;
- every zoo model and the Sinabs CNN (NIR) on 8 test inputs, per-op and fused (slow);
- 20 runs leave no process behind; a run past its timeout is stopped with a clear error.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from snncompile.ir import SPIKE, Graph, Node, int_type
from snncompile.ir.ops import (LIF, Delay, Flatten, Input, IntAdd, IntConv2d, IntDense, IntShift, KVOuterAccumulate,
                               Linear, LoihiLIF, LoihiTernaryLIF, MaxPool2d, Mul, Output, QMAccumulate, ReLU, Scale,
                               ScoreLUT, ScoreValueAccumulate, SpikeColumnSum, SpikeMask, SpikeScores, SumPool2d,
                               TemporalWindow, TokenSum)

pytest.importorskip("lava.magma")

from snncompile.backends.lava.mapping import LavaBackendError, bus_layouts, plan_lava  # noqa: E402
from snncompile.backends.lava.models import from_lava, lava_shape, stepper, to_lava  # noqa: E402
from snncompile.backends.lava.runner import run_lava, run_lava_session  # noqa: E402
from snncompile.backends.lava.session import (LavaTimeoutError, descendants, group_members, run_isolated,  # noqa: E402
                                              stopped)
from snncompile.ir.timing import data_steps, latencies  # noqa: E402
from snncompile.sim import run_graph  # noqa: E402

from conftest import shared_path  # noqa: E402

T, B = 8, 3


def _graph(nodes: dict, outputs: tuple[str, ...], steps: int = T) -> Graph:
    return Graph({n: Node(op, tuple(inputs)) for n, (op, *inputs) in nodes.items()}, outputs, time_steps=steps)


def synapse_graph() -> Graph:
    """Synapses (stock and custom), neurons (stock), sums, shifts, delays, pools, products, flatten."""
    rng = np.random.default_rng(0)
    even = lambda *shape: 2 * rng.integers(-128, 128, shape)  # noqa: E731 -- weights Lava's Dense keeps
    nodes = {
        "x": (Input(shape=(2, 4, 4), dtype=SPIKE),),
        "g": (Input(shape=(2, 4, 4), dtype=int_type(6)),),
        # Lava's Conv: no bias, exponent 0, delay 1, a range neither out_bits nor Lava's 24-bit wrap touches
        "conv": (IntConv2d(weight=rng.integers(-255, 256, (2, 2, 3, 3)), padding=(1, 1)), "x"),
        "gconv": (IntConv2d(weight=rng.integers(-255, 256, (2, 1, 3, 3)), padding=(1, 1), groups=2), "g"),
        # custom: bias from step 2, a right shift, saturation to 10 bits, delay 2
        # Lava's Conv with the exponent in its weights; Lava's Dense with its own (a floor shift of the sum)
        "econv": (IntConv2d(weight=rng.integers(-255, 256, (2, 2, 3, 3)), padding=(1, 1), weight_exp=3), "x"),
        "cconv": (IntConv2d(weight=rng.integers(-255, 256, (2, 2, 3, 3)), padding=(1, 1), bias=np.array([300, -200]),
                            bias_start=2, weight_exp=-1, out_bits=10, overflow="saturate", delay=2), "x"),
        "lif": (LoihiLIF(current_decay=1024, voltage_decay=128, vth=40, bias_exp=2,
                         bias_mant=rng.integers(-20, 40, (2, 4, 4))), "conv"),
        "lif2": (LoihiLIF(current_decay=4096, voltage_decay=0, vth=300), "gconv"),
        "tlif": (LoihiTernaryLIF(current_decay=2048, voltage_decay=64, vth_hi=20, vth_lo=-20), "cconv"),
        "add": (IntAdd(out_bits=9, overflow="wrap"), "conv", "cconv", "gconv"),
        "shift": (IntShift(shift=-1, out_bits=8, overflow="saturate"), "add"),
        "delay": (Delay(delay=2), "shift"),
        "maxint": (MaxPool2d(kernel=(2, 2), stride=(2, 2)), "delay"),
        "maxor": (MaxPool2d(kernel=(2, 2), stride=(2, 2), mode="or"), "lif"),
        "sump": (SumPool2d(kernel=(2, 2), stride=(2, 2)), "lif2"),
        "relu": (ReLU(), "maxint"),
        "mul": (Mul(), "lif", "lif2"),
        "tsum": (TokenSum(), "add"),
        "flat": (Flatten(), "sump"),
        # Lava's Dense (graded input, mixed even weights), then a custom dense with odd weights and a bias
        "dense": (IntDense(weight=even(5, 8)), "flat"),
        "lif3": (LoihiLIF(current_decay=512, voltage_decay=0, vth=3), "dense"),
        "edense": (IntDense(weight=even(3, 5), weight_exp=-3, out_bits=16), "lif3"),
        "cdense": (IntDense(weight=rng.integers(-255, 256, (4, 5)), bias=np.array([5, -7, 100, 0]), bias_start=3,
                            weight_exp=1, out_bits=9, overflow="wrap", delay=2), "lif3"),
        # Lava's LIFReset: a bias from step 0, u and v restarted at step 3
        "rlif": (LoihiLIF(current_decay=4096, voltage_decay=1024, vth=50, bias_mant=rng.integers(-20, 60, (3,)),
                          bias_exp=6, reset_at=3), "edense"),
        "out": (Output(), "cdense"),
        "out_relu": (Output(), "relu"),
        "out_maxor": (Output(), "maxor"),
        "out_mul": (Output(), "mul"),
        "out_tsum": (Output(), "tsum"),
        "out_tlif": (Output(), "tlif"),
        "out_g": (Output(), "g"),  # the host output part also reads a host value
        "out_econv": (Output(), "econv"),
        "out_edense": (Output(), "edense"),
        "out_rlif": (Output(), "rlif"),
    }
    return _graph(nodes, tuple(n for n in nodes if n.startswith("out")))


def attention_graph() -> Graph:
    """The integer attention nodes on spike Q, K, V: scores, LUT, score x V, temporal blocks of KᵀV, Q M, SDSA's
    column sum and mask, a temporal window."""
    nodes = {
        "q": (Input(shape=(4, 2, 2), dtype=SPIKE),),
        "k": (Input(shape=(4, 2, 2), dtype=SPIKE),),
        "v": (Input(shape=(4, 2, 2), dtype=SPIKE),),
        "scores": (SpikeScores(heads=2), "q", "k"),
        "lut": (ScoreLUT(table=np.array([[0, 3, -5], [1, 2, 7]])), "scores"),
        "sv": (ScoreValueAccumulate(heads=2), "lut", "v"),
        "kv": (KVOuterAccumulate(heads=2, block=2, block_offset=1, delay=1), "k", "v"),
        "qd": (Delay(delay=1), "q"),
        "qm": (QMAccumulate(heads=2, out_bits=4, overflow="saturate"), "qd", "kv"),
        "cs": (SpikeColumnSum(heads=2), "k", "v"),
        "cs_lif": (LoihiLIF(current_decay=4096, voltage_decay=4096, vth=0), "cs"),
        "mask": (SpikeMask(heads=2, erode=True), "q", "cs_lif"),
        "tw": (TemporalWindow(weights=np.array([4, 2, 1])), "v"),
        "sv_lif": (LoihiLIF(current_decay=4096, voltage_decay=1024, vth=2), "sv"),
        "o_qm": (Output(), "qm"),
        "o_mask": (Output(), "mask"),
        "o_tw": (Output(), "tw"),
        "o_sv": (Output(), "sv_lif"),
    }
    return _graph(nodes, tuple(n for n in nodes if n.startswith("o_")))


def _feeds(graph: Graph, seed: int, batch: int = B) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    feeds = {}
    for name in graph.inputs():
        op = graph.op(name)
        shape = (graph.time_steps - 2, batch, *op.shape)  # shorter than the run: zero-padded, as run_graph does
        if op.dtype == SPIKE:
            feeds[name] = (torch.rand(shape, generator=g) < 0.5).to(torch.float32)
        else:
            feeds[name] = torch.randint(0, 1 << (op.dtype.bits - 1), shape, generator=g).to(torch.float32)
    return feeds


def assert_equal(values: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], graph: Graph | None = None) -> None:
    """Every value equal to the reference's, on every step; with ``graph`` (scheduled), on each stream's data
    window only (its latency on, ``data_steps`` long)."""
    assert values
    latency, steps = (latencies(graph), data_steps(graph)) if graph is not None else ({}, 0)
    for name, value in values.items():
        want = ref[name]
        assert value.shape == want.shape, name
        if name in latency and graph.types()[name].time == "stream":
            value, want = value[latency[name]:latency[name] + steps], want[latency[name]:latency[name] + steps]
        assert torch.equal(value.to(torch.float64), want.to(torch.float64)), (
            f"{name}: {(value.to(torch.float64) != want.to(torch.float64)).sum().item()} values differ")


# ------------------------------------------------------------------------------------------------
# without Lava: the step machinery and the layouts
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("build", [synapse_graph, attention_graph])
def test_stepping_every_node_equals_run_graph(build):
    """Each on-chip node stepped one timestep at a time (its own ``run`` and its fast kernel, or Lava's LIF code
    for neurons), fed the reference's input streams, reproduces its reference stream exactly."""
    graph = build()
    feeds = _feeds(graph, 1)
    ref = run_graph(graph, feeds, keep="all")
    plan = plan_lava(graph, granularity="fused_model", expose="all", batch=B)
    for name in plan.chip:
        inputs = graph.nodes[name].inputs
        for fast in (False, True):  # its own run (per_op's custom processes), its fast kernel (fused)
            step = stepper(graph.op(name), graph.time_steps, fast)
            got = torch.stack([step.step(t, [ref[s][t] for s in inputs]) for t in range(graph.time_steps)])
            assert torch.equal(got.to(torch.float64), ref[name].to(torch.float64)), name


def test_lava_layout_round_trips():
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    a = to_lava(x, (3, 4, 5))
    assert a.shape == lava_shape((3, 4, 5), 2) == (5, 4, 6)
    assert a[4, 1, 1 * 3 + 2] == x[1, 2, 1, 4]  # (W, H, B*C): sample 1, channel 2, row 1, column 4
    assert np.array_equal(from_lava(a, (3, 4, 5), 2), x)
    assert np.array_equal(from_lava(to_lava(x.reshape(2, 60), (60,)), (60,), 2), x.reshape(2, 60))


def test_plan_maps_to_lavas_own_processes_where_they_match():
    plan = plan_lava(synapse_graph(), granularity="per_op", batch=B)
    assert plan.stock == {"conv": "Conv", "gconv": "Conv", "econv": "Conv", "lif": "LIF", "lif2": "LIF",
                          "tlif": "TernaryLIF", "dense": "Dense", "lif3": "LIF", "edense": "Dense", "rlif": "LIFReset"}
    assert [p[1] for p in plan.processes()].count("Extractor") == len(plan.recorded)
    assert plan.sources == ("x", "g")
    assert set(plan.recorded) == {"lif", "lif2", "tlif", "lif3", "cdense", "relu", "maxor", "mul", "tsum", "econv",
                                  "edense", "rlif"}
    assert plan.host_out == ("out", "out_relu", "out_maxor", "out_mul", "out_tsum", "out_tlif", "out_g", "out_econv",
                             "out_edense", "out_rlif")
    named = plan_lava(synapse_graph(), expose=["x", "lif"], batch=B)
    assert named.exposed_host == ("x",) and "lif" in named.recorded and "lif2" not in named.recorded


def test_the_stock_share_counts_what_lavas_own_processes_execute_per_op():
    from snncompile.backends.lava.fidelity import lava_classes, lava_plans, stock_share
    from snncompile.report.counts import count_activity
    graph = synapse_graph()
    plan = plan_lava(graph, granularity="per_op", batch=B)
    totals = count_activity(graph, _feeds(graph, 0)).node_totals()
    share = stock_share(plan, totals)
    synaptic = share["synaptic_ops"]
    ops = {n: totals[n].get("ACs", 0) + totals[n].get("MACs", 0)
           for n in ("conv", "gconv", "econv", "dense", "edense", "cconv", "cdense")}
    assert totals["gconv"]["MACs"] and totals["dense"]["MACs"]  # graded inputs count too
    assert synaptic["stock"] == ops["conv"] + ops["gconv"] + ops["dense"] + ops["econv"] + ops["edense"] > 0
    assert synaptic["total"] == synaptic["stock"] + ops["cconv"] + ops["cdense"]
    assert synaptic["fraction"] == synaptic["stock"] / synaptic["total"] < 1
    assert share["neuron_updates"]["fraction"] == 1.0  # every neuron a stock LIF or TernaryLIF
    classes = lava_classes(graph, lava_plans(graph, batch=B))
    assert list(classes) == graph.topo_order()
    assert classes["conv"] == {"per_op": "Conv", "fused": "FusedNodes", "fused_model": "FusedNodes"}
    assert classes["cconv"]["per_op"] == "UnaryNode" and classes["mul"]["per_op"] == "BinaryNode"
    assert classes["x"]["per_op"] == classes["out"]["fused"] == "host"
    with pytest.raises(ValueError, match="per_op plan"):
        stock_share(plan_lava(graph), totals)


def test_unsupported_nodes_are_refused_naming_the_node():
    spikes = {"x": (Input(shape=(4,), dtype=SPIKE),)}
    float_neuron = _graph({**spikes, "neuron": (LIF(leak=2.0), "x"), "y": (Output(), "neuron")}, ("y",))
    with pytest.raises(LavaBackendError, match=r"node 'neuron' \(LIF\): no Lava mapping for this node type: "
                                               + re.escape(LIF.BACKENDS.lava.reason)):  # the type's own reason
        plan_lava(float_neuron)
    early = _graph({"k": (Input(shape=(4, 2, 2), dtype=SPIKE),), "v": (Input(shape=(4, 2, 2), dtype=SPIKE),),
                    "kv": (KVOuterAccumulate(heads=2, block=3, delay=1), "k", "v"), "y": (Output(), "kv")}, ("y",))
    with pytest.raises(LavaBackendError, match=r"node 'kv' \(KVOuterAccumulate\): delay 1 < block - 1"):
        plan_lava(early)
    real = _graph({"x": (Input(shape=(4,)),), "r": (ReLU(), "x"), "y": (Output(), "r")}, ("y",))
    with pytest.raises(LavaBackendError, match=r"node 'r' \(ReLU\): its output float32\[4\] is not an integer"):
        plan_lava(real)
    with pytest.raises(ValueError, match="granularity"):
        plan_lava(synapse_graph(), granularity="per_block")
    with pytest.raises(ValueError, match="unknown nodes"):
        plan_lava(synapse_graph(), expose=["nope"])


def test_the_host_parts_follow_each_op_types_declarations():
    """A readout the host computes whatever feeds it (Scale, role host) runs on the host after the chip; a float
    synapse the host computes only before the chip (Linear, role synapse) is refused where it reads the chip."""
    chip = {"x": (Input(shape=(4,), dtype=SPIKE),), "d": (IntDense(weight=np.array([[2, -4, 6, 8]] * 3)), "x"),
            "n": (LoihiLIF(current_decay=4096, voltage_decay=0, vth=0), "d")}
    plan = plan_lava(_graph({**chip, "s": (Scale(scale=0.5), "n"), "y": (Output(), "s")}, ("y",)))
    assert (plan.host_in, plan.chip, plan.host_out) == (("x",), ("d", "n"), ("s", "y"))
    late = _graph({**chip, "lin": (Linear(weight=np.ones((2, 3))), "n"), "y": (Output(), "lin")}, ("y",))
    with pytest.raises(LavaBackendError, match=r"node 'lin' \(Linear\): the host computes this node type only before "
                                               r"the chip, but it reads \['n'\] from the chip"):
        plan_lava(late)


# ------------------------------------------------------------------------------------------------
# tiny graphs on Lava
# ------------------------------------------------------------------------------------------------

def blocks_graph() -> Graph:
    """Three fused Processes (``blk.<i>.`` names): blocks 0 and 1 read the host's input, block 1 also block 0's
    spikes, block 2 only block 1's."""
    rng = np.random.default_rng(1)
    lif = LoihiLIF(current_decay=2048, voltage_decay=1024, vth=60)
    nodes = {"x": (Input(shape=(6,), dtype=SPIKE),),
             "blk.0.d": (IntDense(weight=rng.integers(-64, 128, (5, 6))), "x"), "blk.0.n": (lif, "blk.0.d"),
             "blk.1.d": (IntDense(weight=rng.integers(-64, 128, (4, 5))), "blk.0.n"),
             "blk.1.e": (IntDense(weight=rng.integers(-64, 128, (4, 6))), "x"),
             "blk.1.s": (IntAdd(), "blk.1.d", "blk.1.e"), "blk.1.n": (lif, "blk.1.s"),
             "blk.2.d": (IntDense(weight=rng.integers(-64, 128, (3, 4))), "blk.1.n"), "blk.2.n": (lif, "blk.2.d"),
             "y": (Output(), "blk.2.n")}
    return _graph(nodes, ("y",))


def test_each_fused_bus_holds_what_its_senders_hand_their_readers():
    """Ports a connection joins share a layout (the host's RingBuffer, block 0 and both their readers); block
    2's in-port is a bus of its own with block 1's spikes alone, not the host's input; no two values of one
    layout overlap."""
    graph = blocks_graph()
    plan = plan_lava(graph, granularity="fused", batch=B)
    assert [g[0] for g in plan.groups] == ["blk.0.d", "blk.1.d", "blk.2.d"]
    buses = bus_layouts(plan, {n: tuple(t.shape) for n, t in graph.types().items()})
    joined = buses[("out", -1)]
    assert all(buses[port] is joined for port in [("out", 0), ("in", 0), ("in", 1)])
    assert [(n, s.offset, s.end) for n, s in joined.items()] == [("x", 0, 6 * B), ("blk.0.n", 6 * B, 11 * B)]
    assert buses[("out", 1)] is buses[("in", 2)]
    assert [(n, s.offset, s.end) for n, s in buses[("in", 2)].items()] == [("blk.1.n", 0, 4 * B)]
    assert ("out", 2) not in buses  # nothing reads the last block on the chip


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("granularity", ["per_op", "fused"])
@pytest.mark.parametrize("build", [synapse_graph, attention_graph, blocks_graph])
def test_tiny_graphs_on_lava_equal_run_graph(build, granularity):
    graph = build()
    feeds = _feeds(graph, 2)
    ref = run_graph(graph, feeds, keep="all")
    run = run_lava_session(graph, feeds, granularity=granularity, expose="all", timeout=240)
    assert set(run.values) == set(run.plan.chip) | set(graph.outputs)
    assert_equal(run.values, ref)
    assert any(ref[n].abs().sum() > 0 for n in graph.outputs)  # not only silence


# ------------------------------------------------------------------------------------------------
# every zoo model and the Sinabs CNN
# ------------------------------------------------------------------------------------------------

ZOO = ["statten-digits", "sdsa-digits", "ssa-digits", "a2os2a-digits", "ds2ta-digits", "statten-event-digits",
       "spikformer-a2os2a-digits", "spikformer-ds2ta-digits"]
UPSTREAM = {"upstream-statten": "STAtten", "upstream-sdsa": "SDT"}  # upstream-format checkpoints, by attention
_LOWERED: dict[str, tuple] = {}


def _lowered(model: str):
    """The scheduled integer graph of a model (calibrated on 16 training samples), 8 test inputs and their
    reference values of every node (cached for the module)."""
    if model not in _LOWERED:
        from snncompile.passes import lower_to_loihi
        from snncompile.sim.dataset import graph_feeds
        if model.startswith("upstream-"):  # an upstream-format (timm CheckpointSaver) file, random images
            import tempfile
            from snncompile.frontend import export
            from snncompile.zoo.checkpoint import load_checkpoint
            from upstream_files import small_cfg, trained_like, upstream_args, write_upstream
            attention = UPSTREAM[model]
            path = Path(tempfile.mkdtemp()) / "checkpoint-199.pth.tar"
            write_upstream(path, trained_like(small_cfg(img_size=32, attention=attention)),
                           upstream_args(attention_mode=attention))
            graph = export(load_checkpoint(path).model)
            g = torch.Generator().manual_seed(1)
            integer = lower_to_loihi(graph, graph_feeds(graph, torch.rand(16, 3, 32, 32, generator=g)))
            feeds = graph_feeds(integer, torch.rand(8, 3, 32, 32, generator=g))
        elif model == "cnn-sinabs":
            from snncompile.frontend.nir_import import from_nir
            graph = from_nir(str(shared_path("data", "nir", "cnn_sinabs.nir")), time_steps=4)
            g = torch.Generator().manual_seed(0)
            integer = lower_to_loihi(graph, {"input": torch.poisson(torch.full((4, 16, 2, 34, 34), 0.3), generator=g)})
            feeds = {"input": torch.poisson(torch.full((4, 8, 2, 34, 34), 0.3), generator=g)}
        else:
            from snncompile.data import load_dataset
            from snncompile.frontend import export
            from snncompile.zoo.checkpoint import load_checkpoint
            from snncompile.zoo.registry import find_entry
            entry = find_entry(model)
            loaded = load_checkpoint(entry.checkpoint)
            graph = export(loaded.model)
            train = load_dataset(entry.data, loaded.config, "train")
            test = load_dataset(entry.data, loaded.config, "test")
            integer = lower_to_loihi(graph, graph_feeds(graph, torch.stack([train[i][0] for i in range(16)])))
            feeds = graph_feeds(integer, torch.stack([test[i][0] for i in range(8)]))
        _LOWERED[model] = integer, feeds, run_graph(integer, feeds, keep="all")
    return _LOWERED[model]


PER_OP_SAMPLES = 2


def _first_samples(graph: Graph, values: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """The first ``n`` samples of each node's value (a stream ``[T, B, ...]``, a static value ``[B, ...]``)."""
    types = graph.types()
    return {name: v[:, :n] if types[name].time == "stream" else v[:n] for name, v in values.items()}


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("granularity", ["per_op", "fused"])
@pytest.mark.parametrize("model", ZOO + list(UPSTREAM) + ["cnn-sinabs"])
def test_models_on_lava_equal_the_reference_simulator(model, granularity):
    """8 inputs in one fused Lava run, the first 2 of them per_op (Lava's stock ``Conv`` runs one scipy
    convolution per channel pair and sample each step: minutes at 8). Per-op exposes every neuron (and the head
    the host reads), fused every node; both give the graph output, and the predictions, exactly."""
    from snncompile.sim.dataset import logits_of
    graph, feeds, ref = _lowered(model)
    if granularity == "per_op":
        feeds, ref = _first_samples(graph, feeds, PER_OP_SAMPLES), _first_samples(graph, ref, PER_OP_SAMPLES)
    expose = "all" if granularity == "fused" else None
    run = run_lava_session(graph, feeds, granularity=granularity, expose=expose, timeout=600)
    neurons = {n for n in run.plan.chip if isinstance(run.plan.graph.op(n), (LoihiLIF, LoihiTernaryLIF))}
    assert neurons <= set(run.values) and set(graph.outputs) <= set(run.values)
    if granularity == "fused":
        assert set(run.plan.chip) <= set(run.values)
        assert len(run.plan.groups) >= (1 if model == "cnn-sinabs" else 3)  # stem, blocks, head
        assert_equal(run.values, ref)
    else:  # Lava runs the plan's graph (synapse biases in neurons and sums): equal to it on every step, and
        assert_equal(run.values, run_graph(run.plan.graph, feeds, keep="all"))
        assert_equal(run.values, ref, graph)  # to the compiled graph on every data window
    out = graph.outputs[0]
    assert torch.equal(logits_of(run.values[out], graph).argmax(-1), logits_of(ref[out], graph).argmax(-1))
    assert sum(ref[n].sum() for n in neurons) > 0


# ------------------------------------------------------------------------------------------------
# processes: nothing left behind, timeouts
# ------------------------------------------------------------------------------------------------

def _tiny() -> Graph:
    return _graph({"x": (Input(shape=(4,), dtype=SPIKE),),
                   "d": (IntDense(weight=np.array([[2, -4, 6, 8]] * 3), bias=np.array([1, 2, 3])), "x"),
                   "n": (LoihiLIF(current_decay=4096, voltage_decay=0, vth=0), "d"), "y": (Output(), "n")}, ("y",))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_twenty_runs_leave_no_process_behind():
    graph = _tiny()
    feeds = _feeds(graph, 3)
    before = set(descendants(os.getpid()))
    for i in range(20):
        run = run_lava_session(graph, feeds, granularity=["fused", "per_op"][i % 2], timeout=120,
                               expose=["x", "d", "n"] if i < 2 else None)
        assert_equal(run.values, run_graph(run.plan.graph, feeds, keep="all"))  # (per_op: d's bias in n)
        assert set(run.values) == ({"x", "d", "n", "y"} if i < 2 else {"n", "y"})
        assert run.os_processes >= 3  # Lava did fork (the Processes, its runtime service ...)
        assert group_members(run.pgid) == []  # Lava's processes were all in the run's group
        assert not set(run.pids) & set(descendants(os.getpid()))
    assert set(descendants(os.getpid())) == before


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_run_past_its_timeout_is_stopped_with_a_clear_error():
    graph = Graph(_tiny().nodes, ("y",), time_steps=100_000)  # minutes of Lava steps
    feeds = _feeds(_tiny(), 4)
    before = set(descendants(os.getpid()))
    with pytest.raises(LavaTimeoutError, match=r"exceeded its timeout of 5 s; its processes were stopped") as info:
        run_lava(graph, feeds, granularity="fused", timeout=5)
    assert info.value.pgid and group_members(info.value.pgid) == []
    assert set(descendants(os.getpid())) == before


def _divide(a: int, b: int) -> float:
    return a / b


def test_a_failed_session_brings_back_the_childs_traceback_and_leaves_nothing():
    before, cleanup = set(descendants(os.getpid())), {}
    with pytest.raises(LavaBackendError, match=r"(?s)probe failed: ZeroDivisionError.*in the Lava child.*_divide"):
        run_isolated(_divide, 1, 0, timeout=60, what="probe", cleanup=cleanup)
    assert cleanup["stragglers"] == 0 and group_members(cleanup["pgid"]) == []
    assert set(descendants(os.getpid())) == before


def test_a_session_stops_its_runtime_whatever_happens():
    class Runtime:
        stops = 0

        def stop(self):
            self.stops += 1

    runtime, timings = Runtime(), {}
    with pytest.raises(RuntimeError, match="mid-run"):
        with stopped(runtime, timings):
            raise RuntimeError("mid-run")
    assert runtime.stops == 1 and timings["stop"] >= 0


@pytest.mark.timeout(240)
def test_lava_runs_under_any_start_method_of_the_caller():
    """Lava's first import sets multiprocessing's start method to fork, and fails where one is set: a caller on
    spawn keeps spawn, while Lava's own processes (in the session's child) fork."""
    script = """if True:
        import multiprocessing as mp, sys
        mp.set_start_method("spawn")
        from snncompile.backends.lava.session import import_lava, run_isolated

        def probe():
            import lava.proc.lif.process  # imports Lava's multiprocessing module, which sets the start method
            return mp.get_start_method()

        print(run_isolated(probe, timeout=120)[0], any(m.startswith("lava") for m in sys.modules))
        import_lava("lava.proc.lif.process")
        print("lava.proc.lif.process" in sys.modules, mp.get_start_method())
    """
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=200)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["fork", "False", "True", "spawn"]


def test_the_backend_imports_under_any_start_method_of_the_caller():
    """The backend's modules import Lava at their top: through ``first_import``, so a caller on spawn can import
    them (Lava's own first import would raise) and stays on spawn."""
    script = """if True:
        import multiprocessing as mp
        mp.set_start_method("spawn")
        import snncompile.backends.lava.fidelity, snncompile.backends.lava.runner
        print(mp.get_start_method())
    """
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=200)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["spawn"]

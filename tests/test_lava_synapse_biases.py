"""Synapse biases moved into neurons and sums for Lava's per_op plan (``backends/lava/synapse_biases.py``): where
they go, that every node the host or a test reads keeps its values on its data window, that early spikes are
forgotten downstream or the move refused, that Lava runs the moved graph bit-exactly, and the stock share of the
zoo models it gives."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from snncompile.ir import SPIKE
from snncompile.ir.ops import (Input, IntAdd, IntConv2d, IntDense, IntShift, LoihiLIF, LoihiTernaryLIF, MaxPool2d,
                               Output, TemporalWindow)
from snncompile.ir.timing import latencies
from snncompile.sim import run_graph

pytest.importorskip("lava")  # the plans import Lava's processes

from snncompile.backends.lava.mapping import plan_lava  # noqa: E402
from snncompile.backends.lava.runner import run_lava_session  # noqa: E402
from snncompile.backends.lava.synapse_biases import move_synapse_biases  # noqa: E402
from snncompile.backends.lava.synapse_finish import FINISH  # noqa: E402
from test_lava_backend import B, _feeds, _graph, assert_equal  # noqa: E402

UNITY = dict(current_decay=4096, voltage_decay=1024)


def _scheduled(nodes: dict, outputs: tuple[str, ...], steps: int = 8):
    from snncompile.passes import PassContext, run_pipeline, schedule
    return run_pipeline(_graph(nodes, outputs, steps), [schedule], PassContext())


def biased_chain(vth: int = 60, steps: int = 8, after=None, clamp: int | None = None):
    """x -> a biased dense -> (a ``clamp``-bit clamp ->) a LIF whose current keeps only this step's input ->
    (``after`` ->) out, scheduled."""
    rng = np.random.default_rng(3)
    nodes = {"x": (Input(shape=(6,), dtype=SPIKE),),
             "d": (IntDense(weight=2 * rng.integers(-60, 60, (5, 6)), bias=np.array([30, -20, 5, 0, 44]), delay=0,
                            out_bits=12), "x"),
             "n": (LoihiLIF(vth=vth, **UNITY), "c" if clamp else "d"), "y": (Output(), after[0] if after else "n")}
    if clamp:
        nodes["c"] = (IntShift(shift=0, out_bits=clamp), "d")  # saturates
    if after:
        nodes[after[0]] = (after[1], "n")
    return _scheduled(nodes, ("y",), steps)


def residual_stem():
    """x -> conv c (bias) -> max-pool m -> LIF n -> conv c2 (bias) -+-> IntAdd s -> shift -> LIF o -> out
                                       \\------- (delay line) -------/
    (the Spike-Driven Transformer's stem: a current max-pooled, read by a neuron and by the residual sum)."""
    rng = np.random.default_rng(5)
    nodes = {"x": (Input(shape=(2, 6, 6), dtype=SPIKE),),
             "c": (IntConv2d(weight=rng.integers(-40, 41, (3, 2, 3, 3)), padding=(1, 1), bias=np.array([90, -60, 7]), delay=0,
                             out_bits=14), "x"),
             "m": (MaxPool2d(kernel=(3, 3), stride=(2, 2), padding=(1, 1)), "c"),
             "n": (LoihiLIF(vth=40, **UNITY), "m"),
             "c2": (IntConv2d(weight=rng.integers(-40, 41, (3, 3, 3, 3)), padding=(1, 1), bias=np.array([-5, 12, 30]), delay=0,
                              out_bits=14), "n"),
             "s": (IntAdd(out_bits=16, overflow="wrap"), "m", "c2"),
             "q": (IntShift(shift=1, out_bits=14), "s"),
             "o": (LoihiLIF(vth=50, **UNITY), "q"), "y": (Output(), "o")}
    return _scheduled(nodes, ("y",))


def _window_equal(graph, moved, feeds, unchanged) -> None:
    ref, got = run_graph(graph, feeds, keep="all"), run_graph(moved, feeds, keep="all")
    assert_equal({n: got[n] for n in unchanged}, ref, graph)


def test_a_bias_moves_into_the_neurons_it_feeds():
    graph = biased_chain()
    plan = plan_lava(graph, granularity="per_op", batch=B)
    moved = plan.graph
    assert moved.op("d").bias is None and plan.stock == {"d": "Dense", "n": "LIFReset"}
    assert np.array_equal(moved.op("n").bias_mant, np.broadcast_to([30, -20, 5, 0, 44], (5,)))
    assert (moved.op("n").bias_exp, moved.op("n").reset_at) == (6, 1)
    feeds = _feeds(graph, 4)
    ref, got = run_graph(graph, feeds, keep="all"), run_graph(moved, feeds, keep="all")
    assert torch.equal(ref["n"], got["n"]) and ref["n"].sum() > 0 and not torch.equal(ref["d"], got["d"])
    assert plan_lava(graph, granularity="per_op", expose=["d"]).graph.op("d").bias is not None  # d is read
    assert move_synapse_biases(graph, keep={"d"}) is graph


def test_a_neuron_its_bias_fires_early_restarts_what_follows_or_keeps_its_synapse_bias():
    eager = biased_chain(vth=0)  # its bias alone fires it before its data arrive
    moved = move_synapse_biases(eager)
    assert moved.op("d").bias is None and moved.op("n").reset_at == 1
    feeds = _feeds(eager, 6)
    ref, got = run_graph(eager, feeds, keep="all"), run_graph(moved, feeds, keep="all")
    assert got["n"][0].sum() > 0 == ref["n"][0].sum()  # the early spike, before the data's arrival ...
    _window_equal(eager, moved, feeds, ["n", "y"])      # ... and nothing changed from then on
    # a LIF downstream restarts when its data arrive, forgetting the early spike
    chained = biased_chain(vth=0, after=("n2", LoihiLIF(vth=0, **UNITY)))
    assert chained.op("n2").reset_at == 0 and move_synapse_biases(chained).op("n2").reset_at == 1
    # a ternary neuron cannot restart on Lava: the bias stays in the synapse
    ternary = biased_chain(vth=0, after=("t", LoihiTernaryLIF(vth_hi=4, vth_lo=-4, **UNITY)))
    assert move_synapse_biases(ternary) is ternary
    # a temporal window (DS2TA) restarts: it reads its input from its data's arrival on
    window = biased_chain(vth=0, after=("w", TemporalWindow(weights=np.array([3, 1]))))
    moved = move_synapse_biases(window)
    assert moved.op("w").start == latencies(window)["w"] == 1 and moved.op("d").bias is None
    _window_equal(window, moved, _feeds(window, 7), ["n", "w", "y"])


def test_a_bias_moves_into_a_neurons_input_clamp():
    """A clamp between a synapse and its neuron (the target's input width: an ``IntShift`` by 0 that saturates)
    takes the bias as a sum of one input that saturates the same way (the synapse's sums stay on Lava's own
    process; the clamp was custom already)."""
    clamped = biased_chain(clamp=8)
    moved = move_synapse_biases(clamped)
    c = moved.op("c")
    assert isinstance(c, IntAdd) and (c.out_bits, c.overflow, c.bias_start) == (8, "saturate", 1)
    assert np.array_equal(c.bias, [30, -20, 5, 0, 44]) and moved.op("d").bias is None
    feeds = _feeds(clamped, 4)
    ref, got = run_graph(clamped, feeds, keep="all"), run_graph(moved, feeds, keep="all")
    assert torch.equal(ref["c"], got["c"]) and (ref["c"].abs() == 128).any()  # it saturates: not an identity


def test_biases_pass_a_max_pool_and_a_delay_into_a_neuron_and_a_residual_sum():
    graph = residual_stem()
    line = next(n for n in graph.nodes if n.startswith("m.delay"))  # the schedule's line from m to the sum
    moved = move_synapse_biases(graph)
    assert moved.op("c").bias is None and moved.op("c2").bias is None
    assert np.array_equal(moved.op("n").bias_mant, np.broadcast_to(np.array([90, -60, 7]).reshape(3, 1, 1), (3, 3, 3)))
    s = moved.op("s")
    assert s.bias_start == latencies(graph)["s"] and np.array_equal(
        s.bias, np.broadcast_to(np.array([85, -48, 37]).reshape(3, 1, 1), (3, 3, 3)))  # 90 - 5, -60 + 12, 7 + 30
    assert moved.op(line) is graph.op(line)  # the line carries the max-pool's value, now without the bias
    _window_equal(graph, moved, _feeds(graph, 2), ["n", "s", "q", "o", "y"])
    # read nodes keep what they are: a recorded max-pool stops the bias of c
    assert move_synapse_biases(graph, keep={"m"}).op("c").bias is not None


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("build", [lambda: biased_chain(steps=12), lambda: biased_chain(vth=0, steps=12),
                                   residual_stem, lambda: biased_chain(steps=12, clamp=8),
                                   lambda: biased_chain(vth=0, steps=12, after=("w", TemporalWindow(weights=np.array(
                                       [3, 1]))))], ids=["chain", "early", "residual", "clamp", "window"])
def test_moved_biases_run_bit_exactly_on_lavas_own_processes(build):
    graph = build()
    feeds = _feeds(graph, 5)
    run = run_lava_session(graph, feeds, granularity="per_op", timeout=500)  # every neuron comes back
    synapses = {n for n in run.plan.chip if graph.op(n).ROLE == "synapse"}
    assert synapses and all(run.plan.stock.get(n) in ("Dense", "Conv") for n in synapses)
    assert_equal(run.values, run_graph(run.plan.graph, feeds, keep="all"))


@pytest.mark.parametrize("model", ["statten-digits", "sdsa-digits", "ssa-digits", "statten-event-digits",
                                   "spikformer-ds2ta-digits", "qkformer-digits", "ds2ta-digits", "a2os2a-digits",
                                   "spikformer-a2os2a-digits", "sdt-v3-digits"])
def test_the_zoo_models_synapses_run_on_lavas_own_processes_per_op(model):
    """The goal of the Lava fidelity work: >= 95 % of the synaptic operations and every neuron update of the
    chip on Lava's own process models (the head, read by the host, keeps its bias: a custom process). Where a
    bias can go nowhere (DS2TA's 13-bit mantissa, A2OS2A's ternary V) or a synapse saturates (A2OS2A's K), its
    sums run on Lava's own process and an adder finishes them (``synapse_finish``): converging at its neurons,
    its bias sent by Lava's RingBuffer and Dense, except where its saturation acts (no Lava process clips).
    SDT-V3's quantisers run as one Lava LIF per level (``level_neurons``)."""
    from snncompile.backends.lava.fidelity import stock_share
    from snncompile.report.counts import count_activity, trace_run
    from zoo_lowering import lowered_zoo_model
    lowered = lowered_zoo_model(model)
    graph, feeds = lowered.integer, lowered.test_feeds(2)
    plan = plan_lava(graph, granularity="per_op")  # (built without running Lava)
    share = stock_share(plan, count_activity(graph, trace=trace_run(graph, feeds)).node_totals())
    assert share["neuron_updates"]["fraction"] == 1.0
    head = {s for n in plan.host_out for s in graph.nodes[n].inputs if graph.op(s).ROLE == "synapse"}
    custom = {n for n in plan.chip if plan.graph.op(n).ROLE == "synapse" and n not in plan.stock}
    assert custom == head and share["synaptic_ops"]["fraction"] >= 0.95
    adders = [n for n in plan.chip if n.endswith(FINISH) and n not in plan.converging]
    assert all(plan.graph.op(n).overflow == "saturate" for n in adders)
    # every node but the synapses, those their biases passed (a max-pool, delay lines) and the sums that only
    # converge into neurons that took their constant term: none is read (a quantiser's level is compared: the
    # sum of its LIFs' spikes, or of the D neurons per element of its merged LIF)
    unchanged = [n for n in graph.nodes if graph.op(n).ROLE != "synapse" and not graph.op(n).BIAS_PASSES
                 and (n not in plan.converging or n in plan.executed_by)]
    ref, got = run_graph(graph, feeds, keep="all"), run_graph(plan.graph, feeds, keep="all")
    for q, (lif, *more) in plan.executed_by.items():
        if not more:  # neuron c * D + k: level k of element c
            shape, d = tuple(graph.types()[q].shape), len(graph.op(q).thresholds)
            got[q] = got[lif].reshape(*got[lif].shape[:2], shape[0], d, *shape[1:]).sum(3)
    assert_equal({n: got[n] for n in unchanged}, ref, graph)

"""lava-dl netx export (snncompile/backends/lava/netx*.py): what netx can express of a lowered graph, the HDF5
it writes, and bit-exact runs of that HDF5 in Lava (``netx.hdf5.Network``, ``fixed_pt``) against the IR.

Alignment checked here (netx.py's docstring): Lava step ``t`` (1-based) is IR timestep ``t - 1`` for every
exported layer; Lava's one-step Dense/Conv buffer is the scheduled synapse ``delay=1``, so no shift is applied.

The Lava tests run Lava only through ``run_netx``: one forked worker per call, leading its own process group,
under a timeout; they check that no process of it outlives the call.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os

import h5py
import numpy as np
import pytest
import torch

from conftest import shared_path
from snncompile.backends.lava import (NetxExportError, NetxRunError, expressible_chain, netx_dense_weights, plan_netx,
                                      run_netx, write_netx)
from snncompile.ir import SPIKE, Graph, Node, int_type
from snncompile.ir.ops import (Flatten, Input, IntConv2d, IntDense, LoihiLIF, LoihiTernaryLIF, Output, SumPool2d)
from snncompile.ir.ops.int_synapse import lava_effective_weights
from snncompile.ir.timing import latencies
from snncompile.passes import PassContext, lower_to_loihi, run_pipeline, schedule
from snncompile.sim import run_graph


def scheduled(nodes: dict, outputs=("y",), T: int = 8) -> Graph:
    return run_pipeline(Graph(nodes, outputs, time_steps=T), [schedule], PassContext())


def mlp(in_dtype=SPIKE, seed: int = 0, T: int = 12) -> Graph:
    """Input -> IntDense -> LoihiLIF -> IntDense -> LoihiLIF, leaky, with neuron biases netx can carry
    (multiples of 64: a scalar 3 << 6 and per-neuron (2m) << 5), one non-leaky current (Lava du = -1)."""
    rng = np.random.default_rng(seed)
    w1, _ = lava_effective_weights(rng.integers(-90, 130, (24, 16)))
    w2, _ = lava_effective_weights(rng.integers(-110, 150, (10, 24)))
    nodes = {"x": Node(Input(shape=(16,), dtype=in_dtype)),
             "d1": Node(IntDense(weight=w1, delay=0), ("x",)),
             "l1": Node(LoihiLIF(current_decay=410, voltage_decay=128, vth=120 if in_dtype == SPIKE else 900,
                                 bias_mant=3, bias_exp=6), ("d1",)),
             "d2": Node(IntDense(weight=w2, delay=0), ("l1",)),
             "l2": Node(LoihiLIF(current_decay=0, voltage_decay=2048, vth=400,
                                 bias_mant=2 * rng.integers(-20, 20, 10).astype(np.int64), bias_exp=5), ("d2",)),
             "y": Node(Output(), ("l2",))}
    return scheduled(nodes, T=T)


def sinabs_cnn(seed: int = 6):
    """The imported Sinabs N-MNIST CNN lowered on Poisson event frames, and a frame generator."""
    from snncompile.frontend.nir_import import from_nir

    graph = from_nir(shared_path("data", "nir", "cnn_sinabs.nir"), time_steps=4)
    gen = torch.Generator().manual_seed(seed)
    frames = lambda n: torch.poisson(torch.full((4, n, 2, 34, 34), 0.3), generator=gen)  # noqa: E731
    return lower_to_loihi(graph, {"input": frames(16)}), frames


# -- what netx can express ------------------------------------------------------------------------------------------

def test_hand_built_chain_is_expressible_and_written_as_netx_reads_it(tmp_path):
    g = mlp()
    assert (g.op("l1").reset_at, g.op("l2").reset_at) == (1, 2)  # biased: they restart when their data arrive
    nodes, problems = expressible_chain(g)
    assert nodes == ["x", "d1", "l1", "d2", "l2", "y"] and problems == {}
    late = dict(g.nodes)
    late["l2"] = Node(dataclasses.replace(g.op("l2"), reset_at=5), ("d2",))
    nodes, problems = expressible_chain(Graph(late, g.outputs, time_steps=g.time_steps, schedule=g.schedule))
    assert "l2" not in nodes and problems["l2"].startswith("reset_at=5: a netx network restarts each layer once")
    export = write_netx(g, tmp_path / "mlp.h5")
    plan = export.plan
    assert plan.feed == "x" and plan.input_message_bits == 0 and plan.steps == g.time_steps == 14
    assert [(L.synapse, L.neuron, L.latency) for L in plan.layers] == [("d1", "l1", 1), ("d2", "l2", 2)]
    with h5py.File(export.path, "r") as f:
        layer = f["layer"]
        assert sorted(layer, key=int) == ["0", "1", "2"]
        assert layer["0/type"][0] == b"input" and list(layer["0/shape"][()]) == [16]
        d1, d2 = layer["1"], layer["2"]
        assert d1["type"][0] == b"dense" and list(d1["shape"][()]) == [24]
        assert np.array_equal(d1["weight"][()], g.op("d1").weight)  # the IR's effective weights, as they are
        assert d1["neuron/type"][()] == b"CUBA"
        # netx builds LIF(du=iDecay-1, dv=vDecay, vth=vThMant, bias_mant=bias, bias_exp=6)
        assert (d1["neuron/iDecay"][()], d1["neuron/vDecay"][()], d1["neuron/vThMant"][()]) == (410, 128, 120)
        assert np.array_equal(d1["bias"][()], np.full(24, 3))                   # (3 << 6) >> 6
        assert np.array_equal(d2["bias"][()] << 6, g.op("l2").bias_mant << 5)  # per neuron
        assert d2["neuron/iDecay"][()] == 0  # non-leaky current: Lava du = -1
        assert f.attrs["snncompile.feed"] == "x" and f.attrs["snncompile.input_message_bits"] == 0


def test_a_chain_inside_the_graph_starts_at_its_feed_and_restarts_with_its_data(tmp_path):
    g = mlp()
    export = write_netx(g, tmp_path / "inner.h5", feed="l1")
    plan = export.plan
    assert plan.feed == "l1" and plan.input_message_bits == 0 and plan.nodes == ("d2", "l2", "y")
    assert [(L.synapse, L.neuron, L.latency) for L in plan.layers] == [("d2", "l2", 2)]
    assert plan.problems["d1"] == "upstream of the netx network's input 'l1'"
    with h5py.File(export.path, "r") as f:
        assert (f.attrs["snncompile.restart"], f.attrs["snncompile.reset_offset"]) == (1, 2)
    # a neuron that does not restart when its data arrive, fed by a node that may send earlier: refused
    quiet = dict(g.nodes)
    quiet["l2"] = Node(dataclasses.replace(g.op("l2"), bias_mant=0, reset_at=0), ("d2",))
    graph = Graph(quiet, g.outputs, time_steps=g.time_steps, schedule=g.schedule)
    assert "may send values before its data arrive" in plan_netx(graph, feed="l1").problems["l2"]
    assert [L.neuron for L in plan_netx(graph).layers] == ["l1", "l2"]  # from the input: nothing arrives early
    with pytest.raises(ValueError, match="feed 'nope' is not a node"):
        plan_netx(g, feed="nope")


def test_refusals_name_the_node_and_the_reason():
    rng = np.random.default_rng(1)
    w, _ = lava_effective_weights(rng.integers(-100, 100, (8, 6)))
    base = lambda **kw: {"x": Node(Input(shape=(6,), dtype=SPIKE)),  # noqa: E731
                         "d": Node(IntDense(weight=w, delay=0, **kw.get("dense", {})), ("x",)),
                         "n": Node(kw.get("neuron", LoihiLIF(current_decay=4096, voltage_decay=0, vth=10)), ("d",)),
                         "y": Node(Output(), ("n",))}

    def refused(nodes, outputs=("y",)):
        return expressible_chain(scheduled(nodes, outputs=outputs))

    nodes, problems = refused(base(dense=dict(bias=np.arange(8) - 3)))
    assert nodes == ["x"] and "synapse bias" in problems["d"] and "leading empty steps" in problems["d"]
    _, problems = refused(base(neuron=LoihiLIF(current_decay=4096, voltage_decay=0, vth=10, bias_mant=5, bias_exp=3)))
    assert "multiple of 64" in problems["n"]
    _, problems = refused(base(neuron=LoihiTernaryLIF(current_decay=4096, voltage_decay=0, vth_hi=10, vth_lo=-10)))
    assert problems["n"] == LoihiTernaryLIF.BACKENDS.netx.reason  # the op type's own netx refusal
    _, problems = refused(base(dense=dict(weight_exp=-1)) if np.any(w % 2) else base(dense=dict(weight_exp=-2)))
    assert "floors the accumulated sum" in problems["d"]
    unscheduled = Graph(base(), ("y",), time_steps=4)
    nodes, problems = expressible_chain(unscheduled)
    assert nodes == ["x"] and "delay=0" in problems["d"] and "schedule" in problems["d"]
    # a fan-out ends the chain after the neuron: both consumers are named
    fan = base()
    fan.update(d2=Node(IntDense(weight=np.ones((3, 8), np.int32), delay=0), ("n",)),
               d3=Node(IntDense(weight=np.ones((3, 8), np.int32), delay=0), ("n",)))
    nodes, problems = refused(fan, outputs=("y", "d2", "d3"))
    assert nodes == ["x", "d", "n", "y"] and "fan-out" in problems["d2"] and "fan-out" in problems["d3"]
    # two inputs: no single feed, nothing exported
    two = base()
    two.update(x2=Node(Input(shape=(6,), dtype=SPIKE)), d2=Node(IntDense(weight=w, delay=0), ("x2",)))
    plan = plan_netx(scheduled(two, outputs=("y", "d2")))
    assert plan.feed is None and not plan.layers and plan.problems["x2"].startswith("netx networks have one input")
    # nothing expressible: write_netx refuses, naming every node
    with pytest.raises(NetxExportError, match=r"node 'd': a synapse bias"):
        write_netx(scheduled(base(dense=dict(bias=np.ones(8, np.int64)))), "/nonexistent/never-written.h5")


def test_sum_pools_fold_exactly_into_the_next_synapse_or_are_refused():
    """netx has no pool layer: SumPool2d -> IntConv2d and SumPool2d -> Flatten -> IntDense are written as one
    synapse on the unpooled map. The folded synapses reproduce the IR's pooled ones exactly (checked here with
    the IR's own ops, no Lava)."""
    rng = np.random.default_rng(3)
    conv = lambda c_out, c_in, k, **kw: IntConv2d(  # noqa: E731
        weight=lava_effective_weights(rng.integers(-40, 60, (c_out, c_in // kw.get("groups", 1), k, k)))[0],
        delay=0, **kw)
    lif = lambda: LoihiLIF(current_decay=4096, voltage_decay=0, vth=20)  # noqa: E731
    nodes = {"x": Node(Input(shape=(4, 11, 11), dtype=SPIKE)),
             "c1": Node(conv(6, 4, 3, padding=(1, 1)), ("x",)), "n1": Node(lif(), ("c1",)),
             "p1": Node(SumPool2d(kernel=(3, 3), stride=(2, 2), padding=(1, 1)), ("n1",)),
             "c2": Node(conv(6, 6, 3, padding=(1, 1), groups=2), ("p1",)), "n2": Node(lif(), ("c2",)),
             "p2": Node(SumPool2d(kernel=(2, 2), stride=(2, 2)), ("n2",)),
             "f": Node(Flatten(), ("p2",)),
             "d": Node(IntDense(weight=lava_effective_weights(rng.integers(-30, 30, (5, 54)))[0], delay=0), ("f",)),
             "n3": Node(lif(), ("d",)), "y": Node(Output(), ("n3",))}
    g = scheduled(nodes, T=6)
    plan = plan_netx(g)
    assert not plan.problems and [L.folded for L in plan.layers] == [(), ("p1",), ("p2", "f")]
    assert plan.layers[1].geometry["padding"] == (3, 3) and plan.layers[1].weight.shape[2:] == (7, 7)
    assert plan.layers[2].flatten and plan.layers[2].weight.shape == (5, 6 * 6 * 6)
    x = (torch.rand(6, 3, 4, 11, 11) < 0.4).float()
    values = run_graph(g, {"x": x}, keep="all")
    for layer, src in zip(plan.layers[1:], ("n1", "n2")):
        shape = tuple(values[src].shape[2:])
        if layer.kind == "conv":
            op = IntConv2d(weight=layer.weight, weight_bits=12, delay=1, **layer.geometry)
        else:
            op = IntDense(weight=layer.weight, weight_bits=12, delay=1)
        folded = Graph({"s": Node(Input(shape=shape if layer.kind == "conv" else (int(np.prod(shape)),),
                                        dtype=SPIKE)), "o": Node(op, ("s",))}, ("o",), time_steps=g.time_steps)
        feed = values[src] if layer.kind == "conv" else values[src].flatten(2)
        assert torch.equal(run_graph(folded, {"s": feed})["o"], values[layer.synapse])
    # a pool whose border windows the next conv's zero padding would turn into real pixels: refused by name
    nodes["p1"] = Node(SumPool2d(kernel=(3, 3), stride=(2, 2)), ("n1",))  # k > s + p
    for n in ("p2", "f", "d", "n3"):
        del nodes[n]
    nodes["y"] = Node(Output(), ("n2",))
    exported, problems = expressible_chain(scheduled(nodes, T=6))
    assert exported == ["x", "c1", "n1"] and "zeros that would cover real pixels" in problems["p1"]


def test_statten_digits_reports_every_unsupported_node_by_name():
    """The default zoo model lowered: its stem's first neuron, fed by the host's repeated image directly (no
    synapse), is netx's Input block; its synapse biases keep every synapse out; every node is named with its
    reason."""
    import snncompile
    from snncompile.data import load_dataset
    from snncompile.frontend import export
    from snncompile.sim.dataset import graph_feeds
    from snncompile.zoo.registry import find_entry

    entry = find_entry("statten-digits")
    loaded = snncompile.load_checkpoint(entry.checkpoint)
    graph = export(loaded.model)
    train = load_dataset(entry.data, loaded.config, "train")
    integer = lower_to_loihi(graph, graph_feeds(graph, torch.stack([train[i][0] for i in range(16)])))
    nodes, problems = expressible_chain(integer)
    assert nodes == ["patch_embed.proj_lif"] and set(problems) == set(integer.nodes) - set(nodes)
    kinds = {n: integer.op(n).type_name() for n in integer.nodes}
    attention = [n for n, k in kinds.items() if k in ("KVOuterAccumulate", "QMAccumulate")]
    assert attention and all(problems[n].startswith("attention: netx has no layer that multiplies") for n in attention)
    assert all("residual" in problems[n] for n, k in kinds.items() if k == "IntAdd")
    assert "sum over tokens" in problems["token_mean.sum"] and "scaling" in problems["token_mean"]
    assert "max pooling" in problems["patch_embed.maxpool2"]
    assert "netx network's input" in problems["patch_embed.proj_conv"]  # the Repeat: the host's stream
    assert "synapse bias" in problems["block.0.attn.q_conv"]
    with pytest.raises(NetxExportError, match="block.0.attn.core.kv"):
        write_netx(integer, "/nonexistent/never-written.h5")
    # with the synapse biases in the neurons (Lava's per_op form), the stem and the MLPs are netx chains
    from snncompile.backends.lava.synapse_biases import move_synapse_biases
    moved = move_synapse_biases(integer)
    stem = plan_netx(moved)  # from the host's stream: its first neuron is netx's Input block
    assert stem.feed == "patch_embed.proj_conv" and stem.input_neuron == "patch_embed.proj_lif"
    assert stem.input_params == {"iDecay": 4096, "vDecay": 2048, "vThMant": 512, "refDelay": 1}
    assert [(L.synapse, L.neuron, L.latency) for L in stem.layers] == [
        ("patch_embed.proj_conv1", "patch_embed.proj_lif1", 1), ("patch_embed.proj_conv2", "patch_embed.proj_lif2", 2)]
    assert stem.reset_offset == 0 and stem.input_message_bits == 16
    assert "max pooling" in stem.problems["patch_embed.maxpool2"]
    for i in (0, 1):
        mlp_chain = plan_netx(moved, feed=f"block.{i}.mlp.fc1_lif")
        assert [(L.synapse, L.neuron) for L in mlp_chain.layers] == [
            (f"block.{i}.mlp.fc1_conv", f"block.{i}.mlp.fc2_lif")]
        assert "only consumer is a CUBA neuron" in mlp_chain.problems[f"block.{i}.mlp.fc2_conv"]  # into the sum


# -- Lava: netx's and Lava's weight handling, and bit-exact runs ----------------------------------------------------

@pytest.fixture(scope="module")
def netx():
    """lava-dl's netx (importing it takes several seconds: torch, slayer)."""
    return pytest.importorskip("lava.lib.dl.netx")


def _processes(field: int, value: int) -> set[int]:
    """Live processes whose /proc stat field (1: parent pid, 2: process group) is ``value``."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[field]) == value and fields[0] != "Z":
                found.add(int(entry))
    return found


class NoProcessLeft:
    """Children of this process and multiprocessing children before, compared after (plus the worker's group)."""

    def __enter__(self):
        self.children, self.mp_children = _processes(1, os.getpid()), set(multiprocessing.active_children())
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            assert _processes(1, os.getpid()) == self.children
            assert set(multiprocessing.active_children()) == self.mp_children

    @staticmethod
    def check(run):
        assert run.stragglers == 0 and _processes(2, run.worker_pid) == set()


@pytest.mark.slow  # importing netx alone takes ~10 s
def test_netx_dense_weights_mirror_netx_and_lava(netx):
    """Our mirror of netx's optimize_weight_bits + Lava's Dense clip/truncate against the real functions."""
    from lava.utils import weightutils as wu

    rng = np.random.default_rng(4)
    cases = [lava_effective_weights(rng.integers(-300, 300, (6, 7)))[0],  # mixed, even, -256..254
             rng.integers(-255, 255, (6, 7)) | 1,                         # mixed, odd: netx uses 9 weight bits
             rng.integers(0, 256, (5, 5)), rng.integers(-255, 0, (5, 5)),  # excitatory, inhibitory
             rng.integers(-2, 3, (4, 4)) * 2, np.array([[0, 128], [64, 0]]), np.array([[0, -254], [-2, 0]])]
    for w in cases:
        ours, bits, exp = netx_dense_weights(w)
        with np.errstate(divide="ignore"):  # netx divides by a zero largest weight (then takes the other scale)
            scaled, n_bits, w_exp, _ = netx.utils.optimize_weight_bits(w)
        mode = wu.determine_sign_mode(scaled)
        lava = wu.truncate_weights(wu.clip_weights(scaled, mode, num_bits=8), mode, n_bits)
        assert (bits, exp) == (n_bits, w_exp) and np.array_equal(ours, lava) and np.array_equal(lava, w << -exp)
    # refused: what netx clips, what would make Lava shift by a negative count, all zeros
    for w, why in [(np.array([[255, -3]]), "clips"), (np.array([[0, -255], [-3, 0]]), "truncation shift"),
                   (np.zeros((2, 2), int), "all dense weights are zero"), (np.array([[300, 1]]), "negative count")]:
        with pytest.raises(ValueError, match=why):
            netx_dense_weights(w)


def _check_bit_exact(graph: Graph, feeds: dict, tmp_path, name: str, timeout: float = 400.0, feed: str | None = None):
    export = write_netx(graph, tmp_path / f"{name}.h5", feed=feed)
    values = run_graph(graph, feeds, keep="all")
    frames = export.plan.frames(values)
    with NoProcessLeft():
        run = run_netx(export.path, frames, timeout=timeout)
    NoProcessLeft.check(run)
    want = export.plan.spikes(values)
    assert run.neurons == export.plan.neurons
    latency, types = latencies(graph), graph.types()
    for neuron, ir, lava in zip(export.plan.neurons, want, run.spikes):
        assert lava.shape == ir.shape == (frames.shape[0], graph.time_steps, *types[neuron].shape)
        assert np.array_equal(lava, ir), f"{neuron}: {int((lava != ir).sum())} spikes differ"
        assert ir.sum() > 0, f"{neuron} never spikes: the comparison would be vacuous"
        if feed is None and not graph.op(neuron).reset_at:  # nothing before the scheduled latency, in either
            assert not ir[:, :latency[neuron]].any()
    samples = run.timings["samples"]
    print(f"\n{name}: {frames.shape[0]} samples x {graph.time_steps} steps, {samples[0]['lava_processes']} Lava "
          f"processes; total {run.timings['total_s']:.1f} s, per sample run "
          f"{np.mean([s['run_s'] for s in samples]):.2f} s, stop {np.mean([s['stop_s'] for s in samples]):.2f} s; "
          f"spikes per layer {[int(s.sum()) for s in want]}")
    return run


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("in_dtype", [SPIKE, int_type(6)], ids=["spike", "int6"])
def test_hand_built_chain_runs_bit_exactly_in_lava(netx, tmp_path, in_dtype):
    """Input (spikes, or graded int6 payloads: input_message_bits=6) -> IntDense -> LoihiLIF -> IntDense ->
    LoihiLIF, 8 samples, every layer's spikes equal for all T + 2 steps."""
    g = mlp(in_dtype)
    gen = torch.Generator().manual_seed(5)
    if in_dtype == SPIKE:
        x = (torch.rand(12, 8, 16, generator=gen) < 0.3).float()
    else:
        x = torch.randint(-32, 32, (12, 8, 16), generator=gen) * (torch.rand(12, 8, 16, generator=gen) < 0.5)
    assert plan_netx(g).input_message_bits == (0 if in_dtype == SPIKE else 6)
    _check_bit_exact(g, {"x": x}, tmp_path, f"mlp-{in_dtype}")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sinabs_cnn_runs_bit_exactly_in_lava(netx, tmp_path):
    """The whole imported Sinabs CNN (conv, conv, sum pool + conv, sum pool + flatten + dense, dense, each into
    an IF neuron): the host quantises the event frames, netx runs the rest; 8 samples."""
    graph, frames = sinabs_cnn()
    nodes, problems = expressible_chain(graph)
    assert set(problems) == {"input", "input.quant"} and "netx network's input" in problems["input.quant"]
    assert [graph.op(n).type_name() for n in nodes].count("LoihiLIF") == 5
    assert plan_netx(graph).input_message_bits == 4  # uint4 event counts: graded payloads
    _check_bit_exact(graph, {"input": frames(8)}, tmp_path, "sinabs-cnn", timeout=800)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_run_past_its_timeout_is_killed_with_all_its_processes(netx, tmp_path):
    """A run that cannot finish in time: the worker's whole process group is killed and the shared memory its
    Lava channels held is unlinked."""
    g = mlp(T=3000)
    export = write_netx(g, tmp_path / "long.h5")
    frames = np.zeros((4, g.time_steps, 16), np.int64)
    run_netx(export.path, frames[:1, :2], timeout=120)  # preloads netx here: the next timeout measures Lava only
    with NoProcessLeft():
        with pytest.raises(NetxRunError, match="did not finish within") as err:
            run_netx(export.path, frames, timeout=6)
    assert _processes(2, err.value.worker_pid) == set()
    assert not any(os.path.exists(path) for path in err.value.segments)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_statten_digits_stem_and_mlp_chains_run_bit_exactly_in_netx(netx, tmp_path):
    """The default model's chains netx can express, from the Lava per_op plan's graph (synapse biases in the
    neurons, which restart when their data arrive): the stem (its first neuron as netx's Input block, fed the
    host's graded stream, then two conv -> LIF layers) and block 0's MLP fc1 conv -> LIF, fed the reference
    run's spikes of the neuron before it; netx's spikes equal the reference simulator's at every step, on one
    test sample."""
    from snncompile.backends.lava.mapping import plan_lava
    from zoo_lowering import lowered_zoo_model

    lowered = lowered_zoo_model("statten-digits")
    graph = plan_lava(lowered.integer, granularity="per_op").graph
    feeds = lowered.test_feeds(1)
    for feed, name in [(None, "stem"), ("block.0.mlp.fc1_lif", "mlp")]:
        plan = plan_netx(graph, feed=feed)
        assert plan.restart and all(graph.op(L.neuron).reset_at == L.latency for L in plan.layers)
        assert len(plan.neurons) == (3 if feed is None else 1)
        _check_bit_exact(graph, feeds, tmp_path, f"statten-digits-{name}", timeout=800, feed=feed)

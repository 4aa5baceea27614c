"""Synaptic-operation counts (:func:`snncompile.report.counts.count_activity`) against NeuroBench 2.3.0.

The claim under test: on networks without attention our ``ACs`` / ``MACs`` equal NeuroBench's
``SynapticOperations`` (``Effective_ACs`` / ``Effective_MACs``) for the same model and input, as exact
integers. NeuroBench is run through its own ``Benchmark`` loop on a ``TorchModel``, so what is compared is
what a NeuroBench user would report.

Conventions that the comparison has to line up (NeuroBench behaviour read from its 2.3.0 source):

- NeuroBench divides by ``data[0].size(0)`` of each loader batch, so the data set is batch-first and the
  wrapper below turns it into our time-major stream. Its loader here uses two batches (2 + 1 samples)
  while our side counts the three samples in one run: the per-sample figures must still agree.
- NeuroBench classifies each call of a connection layer by value (AC when every input is -1, 0 or 1);
  ``count_activity`` classifies a synapse by the declared dtype of its input. Where the two differ (binary
  events through a float-typed ``Input``) the totals agree and the split differs, as documented in counts.py.
- NeuroBench's ``Dense`` sets every weight to 1, zero weights included; so does ``connections``.
- NeuroBench sums a layer's binarised outputs in float32; exactness needs every per-call total below
  2**24, which these sizes keep by a wide margin.
- A static image: the torch model repeats the frame T times, so NeuroBench sees the first convolution T
  times, and so does the exported float graph (its ``Repeat`` streams the image into the convolution).
  The lowered graph computes that convolution once per sample on the host (``host_MACs``), which is why
  the lowered comparison uses a torch twin that also computes it once.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from neurobench.benchmarks import Benchmark
from neurobench.metrics.workload import SynapticOperations
from neurobench.models import TorchModel

from snncompile.frontend import export
from snncompile.frontend.nir_import import from_nir
from snncompile.ir import SPIKE, Graph
from snncompile.nn.neurons import MultiStepLIF
from snncompile.nn.seq import PerStep
from snncompile.passes import lower_to_loihi
from snncompile.report.counts import count_activity
from snncompile.sim import run_graph
from snncompile.sim.dataset import graph_feeds

from conftest import shared_path

T, SAMPLES, LOADER_BATCH = 4, 3, 2
SHAPE = (2, 16, 16)


# -- NeuroBench's side --------------------------------------------------------------------------------

def neurobench_synops(net: nn.Module, x: torch.Tensor) -> dict:
    """NeuroBench's raw integer sums (``AC``, ``MAC``, ``Dense``, ``samples``) and its per-sample result."""
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x))), batch_size=LOADER_BATCH)
    bench = Benchmark(TorchModel(net), loader, [], [], [[], [SynapticOperations]])
    result = bench.run(quiet=True)["SynapticOperations"]
    # run_metrics swallows a failing metric and reports 0.0: the raw sums show whether it really ran
    metric = bench.workload_metric_manager.metrics["SynapticOperations"]
    return {"AC": metric.AC, "MAC": metric.MAC, "Dense": metric.total_synops, "samples": metric.total_samples,
            "per_sample": result}


def assert_same_synops(nb: dict, act, ac_layers: int, mac_layers: int) -> None:
    """Raw sums and per-sample figures equal, non-zero, and both kinds exercised on our side."""
    ours = act.totals
    kinds = [c.kind for c in act.synapses.values() if c.total > 0]
    assert kinds.count("AC") >= ac_layers and kinds.count("MAC") >= mac_layers, act.synapses
    assert nb["samples"] == act.samples == SAMPLES
    assert nb["AC"] > 0 and nb["MAC"] > 0
    assert (nb["AC"], nb["MAC"]) == (ours["ACs"], ours["MACs"] + ours["host_MACs"])
    # the same division NeuroBench does, on our integers
    assert nb["per_sample"]["Effective_ACs"] == ours["ACs"] / act.samples
    assert nb["per_sample"]["Effective_MACs"] == (ours["MACs"] + ours["host_MACs"]) / act.samples


# -- models -------------------------------------------------------------------------------------------

def user_model(prune: bool, seed: int = 0) -> nn.Sequential:
    """Conv-BN-LIF x2, max-pool, Linear-BN-LIF, Linear; biases everywhere (not synaptic operations), BN
    biases raised so every layer fires, and with ``prune`` a fifth of the weights exactly zero (binarised
    weights: a zero weight is no operation)."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        PerStep(nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8)), MultiStepLIF(),
        PerStep(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16)), MultiStepLIF(),
        PerStep(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.BatchNorm1d(32)), MultiStepLIF(),
        PerStep(nn.Linear(32, 10)))
    with torch.no_grad():
        for m in net.modules():
            if prune and isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(torch.rand(m.weight.shape) > 0.2)
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                m.momentum = None
        net.train()
        net(torch.rand(T, 8, *SHAPE) * 2)
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                m.bias.fill_(1.0)
    return net.eval()


class BatchFirst(nn.Module):
    """NeuroBench's batch-first data to the time-major model: a static frame repeated ``T`` times, or a
    ``[B, T, ...]`` clip transposed."""

    def __init__(self, net: nn.Module, static: bool):
        super().__init__()
        self.net, self.static = net, static

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.unsqueeze(0).expand(T, *x.shape) if self.static else x.transpose(0, 1))


def user_input(kind: str, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "static":
        return torch.rand(SAMPLES, *SHAPE, generator=g) * 2
    clip = torch.rand(SAMPLES, T, *SHAPE, generator=g)
    return clip * 2 if kind == "graded" else (clip < 0.3).float()


def exported(net: nn.Module, x: torch.Tensor, kind: str) -> tuple[Graph, dict]:
    """The float graph and its feeds, checked to reproduce the torch logits (so both sides saw the same
    input at every layer)."""
    graph = export(net, input_shape=SHAPE, time_steps=T, events=kind != "static")
    feeds = graph_feeds(graph, x)
    with torch.no_grad():
        logits = BatchFirst(net, kind == "static")(x)
    assert torch.equal(run_graph(graph, feeds)["output"], logits)
    return graph, feeds


class GraphTwin(nn.Module):
    """A torch model of an IR graph for NeuroBench: the graph runs in our interpreter, whose observer passes
    every synapse node's input through a bias-free ``nn.Linear`` / ``nn.Conv2d`` holding the node's
    weights (per-step frames ``[T*B, ...]`` for a stream, ``[B, ...]`` once for a static node).

    NeuroBench reads only a connection layer's input and weights, so these layers show it exactly what
    each synapse node reads; the node's value (bias, integer shift, delay) stays the interpreter's.
    """

    def __init__(self, graph: Graph):
        super().__init__()
        self.graph = graph
        self.layers = nn.ModuleList()
        types = graph.types()
        self.taps: dict[str, tuple[nn.Module, bool]] = {}  # synapse node -> its layer, whether it reads a stream
        for name, node in graph.nodes.items():
            if node.op.WORK == "synaptic":
                self.taps[name] = (self._layer(node.op), types[node.inputs[0]].time == "stream")
                self.layers.append(self.taps[name][0])
        (self.input,) = graph.inputs()
        self.stream = types[self.input].time == "stream"

    @staticmethod
    def _layer(op) -> nn.Module:
        w = torch.tensor(op.weight, dtype=torch.float32)  # integer weights are small: exact in float32
        if w.dim() == 2:
            layer = nn.Linear(w.shape[1], w.shape[0], bias=False)
        else:
            layer = nn.Conv2d(w.shape[1] * op.groups, w.shape[0], tuple(w.shape[2:]), tuple(op.stride),
                              tuple(op.padding), tuple(op.dilation), op.groups, bias=False)
        layer.weight.data.copy_(w)
        return layer

    def _tap(self, name: str, op, inputs: list[torch.Tensor], value: torch.Tensor, traces) -> None:
        """The interpreter's observer: each synapse node's input reaches NeuroBench once per forward."""
        if name in self.taps:
            layer, stream = self.taps[name]
            layer(inputs[0].flatten(0, 1).to(torch.float32) if stream else inputs[0].to(torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feed = x.transpose(0, 1).contiguous() if self.stream else x
        return run_graph(self.graph, {self.input: feed}, observer=self._tap)[self.graph.outputs[0]]


def sinabs_cnn(spikes: bool) -> tuple[Graph, torch.Tensor]:
    """The NIR Sinabs N-MNIST CNN, batch-first input: Poisson event counts (graded: first layer MACs), or
    0/1 events into a spike-typed ``Input`` (first layer ACs)."""
    graph = from_nir(shared_path("data", "nir", "cnn_sinabs.nir"), time_steps=T,
                     **({"input_dtype": SPIKE} if spikes else {}))
    gen = torch.Generator().manual_seed(6)
    counts = torch.poisson(torch.full((SAMPLES, T, 2, 34, 34), 0.3), generator=gen)
    return graph, counts.clamp(max=1) if spikes else counts


# -- the torch models themselves against the exported float graph ----------------------------------------

@pytest.mark.parametrize("kind", ["static", "graded"])
def test_user_model_synops_equal_neurobench(kind):
    """Graded first layer (MACs, T times per sample in both) and spiking layers (ACs); zero weights and
    biases present, so binarised weights and the bias exclusion are both exercised."""
    net, x = user_model(prune=True), user_input(kind)
    graph, feeds = exported(net, x, kind)
    act = count_activity(graph, feeds)
    nb = neurobench_synops(BatchFirst(net, kind == "static"), x)
    assert act.totals["host_MACs"] == 0  # the float graph streams the repeated frame
    assert_same_synops(nb, act, ac_layers=3, mac_layers=1)


def test_connections_equal_neurobench_dense_without_zero_weights():
    net, x = user_model(prune=False), user_input("graded")
    graph, feeds = exported(net, x, "graded")
    act = count_activity(graph, feeds)
    nb = neurobench_synops(BatchFirst(net, False), x)
    assert_same_synops(nb, act, ac_layers=3, mac_layers=1)
    dense = sum(c.connections for c in act.synapses.values()) * T * act.samples
    assert nb["Dense"] == dense > 0


def test_connections_equal_neurobench_dense_with_zero_weights():
    net, x = user_model(prune=True), user_input("graded")
    graph, feeds = exported(net, x, "graded")
    act = count_activity(graph, feeds)
    nb = neurobench_synops(BatchFirst(net, False), x)
    assert nb["Dense"] == sum(c.connections for c in act.synapses.values()) * T * act.samples


def test_binary_events_operations_agree_with_neurobench():
    net, x = user_model(prune=True), user_input("events")
    graph, feeds = exported(net, x, "events")
    act = count_activity(graph, feeds)
    nb = neurobench_synops(BatchFirst(net, False), x)
    assert nb["AC"] + nb["MAC"] == act.totals["ACs"] + act.totals["MACs"] > 0


def test_binary_events_through_a_float_input_split_by_type_not_value():
    """The one documented difference: NeuroBench counts the 0/1 first layer as ACs (by value); the exported
    graph's input is typed float, so count_activity counts it as MACs, the rest of the split agreeing."""
    net, x = user_model(prune=True), user_input("events")
    graph, feeds = exported(net, x, "events")
    act = count_activity(graph, feeds)
    nb = neurobench_synops(BatchFirst(net, False), x)
    first = next(n for n, c in act.synapses.items() if c.kind == "MAC")
    assert not graph.types()[graph.nodes[first].inputs[0]].dtype.is_spike
    assert (nb["AC"], nb["MAC"]) == (act.totals["ACs"] + act.synapses[first].total,
                                     act.totals["MACs"] - act.synapses[first].total)


# -- graph twins: an imported NIR graph and lowered integer graphs ---------------------------------------

@pytest.mark.parametrize("spikes", [False, True], ids=["counts", "spikes"])
def test_sinabs_cnn_synops_equal_neurobench(spikes):
    """Sum-pooled spikes (0..4) are graded on both sides, so the two layers after the pools are MACs."""
    graph, x = sinabs_cnn(spikes)
    feeds = {"input": x.transpose(0, 1).contiguous()}
    act = count_activity(graph, feeds)
    assert act.synapses["0"].kind == ("AC" if spikes else "MAC")
    twin = GraphTwin(graph)
    assert torch.equal(twin(x), run_graph(graph, feeds)["output"])
    assert_same_synops(neurobench_synops(twin, x), act, ac_layers=2, mac_layers=2)


@pytest.mark.parametrize("spikes", [False, True], ids=["counts", "spikes"])
def test_lowered_sinabs_cnn_synops_equal_neurobench(spikes):
    """Integer weights (quantisation zeroes some), one-step synaptic delays and the drained steps of the
    scheduled graph."""
    graph, x = sinabs_cnn(spikes)
    feeds = {"input": x.transpose(0, 1).contiguous()}
    low = lower_to_loihi(graph, feeds)
    act = count_activity(low, feeds)
    assert {c.op for c in act.synapses.values()} == {"IntConv2d", "IntDense"}
    assert_same_synops(neurobench_synops(GraphTwin(low), x), act, ac_layers=2, mac_layers=2)


def test_lowered_static_first_layer_counts_once_per_sample():
    """The host convolution runs once per sample in the lowered graph and in its twin, so NeuroBench's
    MACs are exactly ``host_MACs``; the repeating torch model (and the float graph) count it T times."""
    net, x = user_model(prune=True), user_input("static")
    graph, feeds = exported(net, x, "static")
    low = lower_to_loihi(graph, feeds)
    act = count_activity(low, feeds)
    assert act.totals["MACs"] == 0 and act.totals["host_MACs"] > 0
    assert_same_synops(neurobench_synops(GraphTwin(low), x), act, ac_layers=3, mac_layers=1)
    repeated = neurobench_synops(BatchFirst(net, True), x)
    assert repeated["MAC"] == T * act.totals["host_MACs"]

"""Reference simulator: run a graph (float or lowered integer) on a batch and record what it did.

:func:`run_graph` is the IR's interpreter (:func:`snncompile.ir.interpret.run_graph`) with the simulator's
fast exact kernels (:mod:`snncompile.sim.kernels`): every node's arithmetic is its op's own ``run`` (and, for
neurons, ``simulate``); nothing here re-implements a node. Membranes are recorded by a hook rather than
by running neurons twice: the graph is shallow-copied and, on each neuron node whose membranes are
wanted, the copy's ``simulate`` is shadowed by a wrapper that calls the class's ``simulate``, keeps
its state traces and returns them unchanged, so the op's own ``run`` (which calls ``simulate``) does the
work once. An op whose ``run`` does not go through ``simulate`` gets one extra ``simulate`` call (the
only case that costs a second run of a node).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import torch

from ..ir import Graph, interpret
from ..ir.graph import Node
from .kernels import KERNELS

RECORDABLE = ("spikes", "membranes")


@dataclass(frozen=True)
class NodeCounts:
    """Activity of one spiking node: plain integers, no pricing.

    ``spikes[t]``: the number of non-zero outputs at timestep ``t`` summed over the batch (a ternary
    -1 counts as one event); ``neurons``: output elements per sample and timestep; ``samples``: batch
    size(s) summed; ``op``: the node type (so callers can keep neurons apart from pools or reshapes
    of spikes, which are spike-typed too).
    """

    op: str
    neurons: int
    samples: int
    spikes: tuple[int, ...]

    @property
    def timesteps(self) -> int:
        return len(self.spikes)

    @property
    def total(self) -> int:
        return sum(self.spikes)

    def __add__(self, other: "NodeCounts") -> "NodeCounts":
        if (self.op, self.neurons, self.timesteps) != (other.op, other.neurons, other.timesteps):
            raise ValueError(f"cannot add counts of different nodes: {self} and {other}")
        return NodeCounts(self.op, self.neurons, self.samples + other.samples,
                          tuple(a + b for a, b in zip(self.spikes, other.spikes)))

    def to_dict(self) -> dict:
        return {"op": self.op, "neurons": self.neurons, "samples": self.samples, "timesteps": self.timesteps,
                "spikes": list(self.spikes), "total": self.total}


def merge_counts(parts: Iterable[Mapping[str, NodeCounts]]) -> dict[str, NodeCounts]:
    """Node-wise sum of count dicts (node order of the first one that names each node)."""
    out: dict[str, NodeCounts] = {}
    for part in parts:
        for name, c in part.items():
            out[name] = out[name] + c if name in out else c
    return out


@dataclass
class SimResult:
    """What :func:`simulate` saw.

    ``outputs``: graph output name -> value (exactly ``run_graph``'s). ``spikes``: spiking node
    (SPIKE/TERNARY stream output) -> its ``[T, B, *shape]`` output trace, as the next node sees it
    (after the node's ``delay``), when ``"spikes"`` is recorded. ``membranes``: neuron node (an op with
    ``simulate()``) -> post-reset membrane ``v`` ``[T, B, *shape]``; ``currents``: ``u`` for the neurons
    that have one (Loihi); both when ``"membranes"`` is recorded, in the neuron's own time (before its
    output ``delay``; all exported and lowered neurons have ``delay`` 0). ``counts``: every spiking node's
    :class:`NodeCounts`, always.
    """

    outputs: dict[str, torch.Tensor]
    spikes: dict[str, torch.Tensor] = field(default_factory=dict)
    membranes: dict[str, torch.Tensor] = field(default_factory=dict)
    currents: dict[str, torch.Tensor] = field(default_factory=dict)
    counts: dict[str, NodeCounts] = field(default_factory=dict)


def spiking_nodes(graph: Graph) -> list[str]:
    """Non-input nodes whose output is a spike or ternary stream, in topological order."""
    types = graph.types()
    return [n for n in graph.topo_order() if graph.op(n).type_name() != "Input"
            and types[n].dtype.is_spike and types[n].time == "stream"]


def zero_counts(graph: Graph) -> dict[str, NodeCounts]:
    """Every spiking node's :class:`NodeCounts` for no samples (the neutral element of a sum)."""
    types = graph.types()
    return {n: NodeCounts(op=graph.op(n).type_name(), neurons=math.prod(types[n].shape), samples=0,
                          spikes=(0,) * graph.time_steps) for n in spiking_nodes(graph)}


def count_spikes(trace: torch.Tensor, op: str) -> NodeCounts:
    """:class:`NodeCounts` of one ``[T, B, *shape]`` trace."""
    per_step = (trace != 0).flatten(1).sum(1)
    return NodeCounts(op=op, neurons=math.prod(trace.shape[2:]), samples=trace.shape[1],
                      spikes=tuple(int(v) for v in per_step.tolist()))


def run_graph(graph: Graph, feeds: Mapping[str, torch.Tensor], keep: str = "outputs") -> dict[str, torch.Tensor]:
    """:func:`snncompile.ir.interpret.run_graph` with the fast exact kernels (same arguments, same values)."""
    return interpret.run_graph(graph, feeds, keep, kernels=KERNELS)


def _on_device(op, device: torch.device):
    """A shallow copy of ``op`` whose ``Op.tensor`` parameters live on ``device``."""
    clone = copy.copy(op)
    if device.type != "cpu":
        clone.__dict__["_tensors"] = {k: v.to(device) for k, v in op._tensors.items()}
    return clone


def _recording(op, sink: dict):
    """Shadow ``op.simulate`` (an instance attribute over the class method) so that the op's own
    ``run`` records the state traces it computes anyway."""
    inner = type(op).simulate

    def simulate(x_seq):
        result = inner(op, x_seq)
        sink["states"] = result[1:]
        return result

    object.__setattr__(op, "simulate", simulate)
    return op


def simulate(graph: Graph, feeds: Mapping[str, torch.Tensor], *, record: Iterable[str] = ("spikes",),
             device: str | torch.device = "cpu") -> SimResult:
    """Run ``graph`` on a batch (``feeds`` as for :func:`run_graph`) and record its activity.

    ``record``: any of ``"spikes"`` (per-node spike traces) and ``"membranes"`` (neuron state traces);
    counts are always kept. ``device``: where tensors live (``"cuda"``: every node runs there, the
    integer nodes bit-exactly as on the CPU; ``benchmarks/int_sim_device.py`` checks it).
    """
    record = tuple(record)
    unknown = [r for r in record if r not in RECORDABLE]
    if unknown:
        raise ValueError(f"record takes {RECORDABLE}, got {unknown}")
    device = torch.device(device)
    spiking = spiking_nodes(graph)
    sinks: dict[str, dict] = {}
    nodes = {}
    for name, node in graph.nodes.items():
        op = node.op
        if device.type != "cpu" or ("membranes" in record and hasattr(op, "simulate")):
            op = _on_device(op, device)
        if "membranes" in record and hasattr(op, "simulate"):
            sinks[name] = {}
            op = _recording(op, sinks[name])
        nodes[name] = Node(op, node.inputs)
    shadow = Graph(nodes=nodes, outputs=graph.outputs, time_steps=graph.time_steps, history=graph.history)
    values = run_graph(shadow, {k: v.to(device) for k, v in feeds.items()}, keep="all")

    result = SimResult(outputs={n: values[n] for n in graph.outputs})
    for name in spiking:
        result.counts[name] = count_spikes(values[name], graph.op(name).type_name())
        if "spikes" in record:
            result.spikes[name] = values[name]
    for name, sink in sinks.items():
        if "states" not in sink:  # run() did not go through simulate(): the one documented extra run
            args = [values[s] for s in graph.nodes[name].inputs]
            if not graph.op(name).INTEGER_INPUTS:
                args = [a if a.is_floating_point() else a.to(torch.float32) for a in args]
            sink["states"] = type(graph.op(name)).simulate(nodes[name].op, *args)[1:]
        states = sink["states"]
        result.membranes[name] = states[-1]
        if len(states) > 1:
            result.currents[name] = states[0]
    return result

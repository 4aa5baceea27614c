"""Reference simulator: run a graph (float or lowered integer) on a batch and record what it did.

:func:`run_graph` is the IR's interpreter (:func:`snncompile.ir.interpret.run_graph`) with the simulator's
fast exact kernels (:mod:`snncompile.sim.kernels`): the values of every node are its op's reference
semantics exactly, computed faster. :func:`simulate` records a run through the interpreter's observer,
which sees each node's value and, for a neuron whose membranes are wanted, the state traces its evaluation
computed anyway: one run of every node, nothing patched.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Collection, Iterable, Mapping

import torch

from ..ir import Graph
from ..ir import interpret
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
    (after the node's ``delay``), when ``"spikes"`` is recorded. ``membranes``: neuron node (role
    ``neuron``) -> post-reset membrane ``v`` ``[T, B, *shape]``; ``currents``: ``u`` for the neurons
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


def run_graph(graph: Graph, feeds: Mapping[str, torch.Tensor], keep: str = "outputs", *,
              observer: interpret.Observer | None = None, states: Collection[str] = (),
              traces: interpret.Traces = interpret.Traces.STATES, observes: Collection[str] | None = None
              ) -> dict[str, torch.Tensor]:
    """:func:`snncompile.ir.interpret.run_graph` with the fast exact kernels (same arguments, same values)."""
    return interpret.run_graph(graph, feeds, keep, kernels=KERNELS, observer=observer, states=states,
                               traces=traces, observes=observes)


def evaluate_node(op, args: list[torch.Tensor], *, stream: bool, states: bool = False
                  ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One node as :func:`run_graph` evaluates it (:func:`snncompile.ir.interpret.evaluate` with the fast
    exact kernels): its value and, with ``states``, the state traces of an op that has ``simulate``."""
    traces = interpret.Traces.STATES if states else interpret.Traces.NONE
    return interpret.evaluate(op, args, stream=stream, states=traces, kernels=KERNELS)


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
    spiking = set(spiking_nodes(graph))
    neurons = [n for n, node in graph.nodes.items() if node.op.ROLE == "neuron"] if "membranes" in record else []
    result = SimResult(outputs={})

    def observe(name: str, op, inputs, value: torch.Tensor, traces: tuple[torch.Tensor, ...]) -> None:
        if name in spiking:
            result.counts[name] = count_spikes(value, op.type_name())
            if "spikes" in record:
                result.spikes[name] = value
        if traces:
            result.membranes[name] = traces[-1]
            if len(traces) > 1:
                result.currents[name] = traces[0]

    result.outputs = run_graph(graph, {k: v.to(device) for k, v in feeds.items()}, observer=observe, states=neurons,
                               observes=spiking)
    return result

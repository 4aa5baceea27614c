"""Exact activity counts of one simulation run: plain integers per node and per timestep, no prices.

:func:`count_activity` runs a graph once (:func:`record`: :func:`snncompile.sim.run_graph` with an observer,
which the neurons' evaluation hands one bool trace of where their state is non-zero, never the state itself)
and counts each node as it is evaluated (:class:`ActivityCounter`), so no value outlives its last reader; or
it counts a recorded run (:func:`trace_run`, every value kept, read back by :func:`replay`). Counts are summed
over the batch (the number of samples is recorded, so per-sample figures are a division away):

Spikes (:class:`snncompile.sim.run.NodeCounts`, every spiking node): ``spikes[t]`` non-zero outputs (a
ternary -1 is an event), ``neurons`` elements per sample; firing rate ``spikes / (neurons * samples * T)``
and activation sparsity ``1 - rate`` are derived.

What a node counts is its op type's ``WORK`` (``snncompile.ir.ops.support.WORK_KINDS``): ``"synaptic"``,
``"attention"``, ``"neuron"``, or ``"none"`` (nothing, by declaration: routing, reshapes, host arithmetic, float
ops that exist only before lowering). An op type that declares none of these is an error, never a zero.

Synapses (:class:`SynapseCounts`; WORK ``"synaptic"``: ``IntDense``, ``IntConv2d``, the float ``Linear``,
``Conv2d``, and ``BlockSum``'s weight-1 connections from the graded relays of a split synapse)::

    ops[t] = sum over input elements e with x[t, b, e] != 0 of fanout(e)
    fanout(e) = number of (output element, weight) pairs with a non-zero weight that read e

(``Op.fan_out``; for ``Linear``/``IntDense``: the non-zero weights in column ``e``'s input index; for a
convolution: the transposed convolution of the non-zero-weight mask with an all-ones output, so a border input
reached by fewer windows, or padding, counts fewer). That is NeuroBench's SynOps (binarised input times binarised
weights, bias excluded), computed from the graph alone, never from a target. ``kind`` says what one
operation is: ``"AC"`` (an accumulate) when the input is *typed* a spike or ternary stream (binary events),
``"MAC"`` (a multiply-accumulate) when it is typed graded (multi-bit integers or reals). NeuroBench decides
per call by value instead (AC when every input is -1, 0 or 1), so binary events fed through a float-typed
input count as MACs here and ACs there (the totals agree); the type is what decides how the hardware
sends them. ``connections`` is the same sum with every input non-zero and every weight, zero or not,
counted (NeuroBench's "Dense" per sample and step; the work of dense storage). A synapse on a *static*
input (the host-side first layer ``*.host``, computed once per sample) is ``static``: its single entry
``ops[0]`` counts every sample once, as MACs.

Neuron updates (:class:`NeuronCounts`; WORK ``"neuron"``, on a streamed input: LoihiLIF, LoihiTernaryLIF,
the float neurons, and the graded relays of split synapses, ``GradedRelay``, which keep no state): a neuron is
*active* at step t when its input is non-zero at t, or any of its state (``u``, ``v``; the float neurons' ``v``)
carried in from step t-1 is non-zero, or it has a non-zero bias (a bias charges it every step); all other
neurons are *inactive* (nothing changes: an idle update).
``active[t]`` is summed over the batch; ``inactive[t] = neurons * samples - active[t]``.

Attention accumulates (:class:`AttentionCounts`; WORK ``"attention"``, the products NeuroBench does not see;
``Op.work`` gives them per output element), per step, summed over batch and heads, rows ``n`` (tokens) of the
per-head ``[N, d]`` operands::

    KVOuterAccumulate  sum_n nnz(K[n, :]) * nnz(V[n, :])     additions into M = K^T V (steps >= block_offset)
    QMAccumulate       nnz(Q) * d                            each Q event adds one row of M (d values)
    SpikeScores        sum_j nnz(Q[:, j]) * nnz(K[:, j])     coincidences added into A = Q K^T
    ScoreValueAccumulate  nnz(V) * N                         each V event adds one column of S (N values)
    SpikeColumnSum     sum_n (K AND V)[n, :]                 SDSA: one addition per AND term summed (its output)
    HeadChannelSum     sum_j Q[n, j]                         Token-QK: one addition per Q spike counted (its output)

Counts are kept apart from prices: an :class:`Activity` can be re-priced without re-simulating, and
``merge`` (or ``+``) sums the counts of several batches of one graph.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Callable, Iterable, Mapping

import numpy as np
import torch

from ..ir import Graph
from ..ir.interpret import Traces
from ..ir.ops.support import WORK_KINDS
from ..sim.run import NodeCounts, count_spikes, run_graph, spiking_nodes


def _ints(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(v) for v in x.tolist())


def _add_steps(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    if len(a) != len(b):
        raise ValueError(f"cannot add counts over {len(a)} and {len(b)} steps")
    return tuple(x + y for x, y in zip(a, b))


@dataclass(frozen=True)
class _StepCounts:
    """Per-step integers of one node, summed over ``samples``; ``+`` sums batches of the same node."""

    op: str
    samples: int

    _STEPS = ()   # the per-step tuple fields
    _SAME = ()    # fields that must agree to add

    def __add__(self, other):
        if type(self) is not type(other) or any(getattr(self, f) != getattr(other, f) for f in ("op", *self._SAME)) \
                or any(len(getattr(self, f)) != len(getattr(other, f)) for f in self._STEPS):
            raise ValueError(f"cannot add counts of different nodes: {self} and {other}")
        changes = {f: _add_steps(getattr(self, f), getattr(other, f)) for f in self._STEPS}
        return type(self)(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes,
                             "samples": self.samples + other.samples})

    def to_dict(self) -> dict:
        out = {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}
        out.update({k: getattr(self, k) for k in self._DERIVED})
        return out

    _DERIVED = ()


@dataclass(frozen=True)
class SynapseCounts(_StepCounts):
    """Synaptic operations of one synapse node (see the module docstring for the formula).

    ``kind``: ``"AC"`` (binary input events) or ``"MAC"`` (graded input); ``connections``: operations per
    sample and step if every input element were non-zero; ``static``: the node runs once per sample on a
    static value (``ops`` then has one entry); ``ops[t]``: operations at input step ``t``, summed over
    the batch.
    """

    kind: str = "AC"
    connections: int = 0
    static: bool = False
    ops: tuple[int, ...] = ()

    _STEPS = ("ops",)
    _SAME = ("kind", "connections", "static")
    _DERIVED = ("total",)

    @property
    def total(self) -> int:
        return sum(self.ops)


@dataclass(frozen=True)
class NeuronCounts(_StepCounts):
    """Neuron updates of one neuron node: ``active[t]`` summed over the batch, ``inactive`` the rest."""

    neurons: int = 0
    active: tuple[int, ...] = ()

    _STEPS = ("active",)
    _SAME = ("neurons",)
    _DERIVED = ("inactive",)

    @property
    def inactive(self) -> tuple[int, ...]:
        return tuple(self.neurons * self.samples - a for a in self.active)


@dataclass(frozen=True)
class AttentionCounts(_StepCounts):
    """Additions of one integer attention node per step, summed over batch and heads (formulas above);
    ``connections``: additions per sample and step if every operand were non-zero."""

    accumulates: tuple[int, ...] = ()
    connections: int = 0

    _STEPS = ("accumulates",)
    _SAME = ("connections",)
    _DERIVED = ("total",)

    @property
    def total(self) -> int:
        return sum(self.accumulates)


def _merge_dicts(a: Mapping, b: Mapping) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = out[k] + v if k in out else v
    return out


@dataclass
class Activity:
    """Everything :func:`count_activity` counted on a batch (or, merged, a data set)."""

    samples: int
    time_steps: int
    spikes: dict[str, NodeCounts] = field(default_factory=dict)
    synapses: dict[str, SynapseCounts] = field(default_factory=dict)
    neurons: dict[str, NeuronCounts] = field(default_factory=dict)
    attention: dict[str, AttentionCounts] = field(default_factory=dict)

    def _synapse_total(self, kind: str, static: bool) -> int:
        return sum(c.total for c in self.synapses.values() if c.kind == kind and c.static == static)

    @property
    def totals(self) -> dict[str, int]:
        """Whole-run sums over the batch: ``ACs`` and ``MACs`` (streamed synapses), ``host_MACs`` (static
        synapses, once per sample), ``attention_accumulates``, ``spikes`` (neuron outputs only),
        ``neuron_updates_active`` / ``_inactive``."""
        return {
            "ACs": self._synapse_total("AC", False),
            "MACs": self._synapse_total("MAC", False),
            "host_MACs": sum(c.total for c in self.synapses.values() if c.static),
            "attention_accumulates": sum(c.total for c in self.attention.values()),
            "spikes": sum(self.spikes[n].total for n in self.neurons if n in self.spikes),
            "neuron_updates_active": sum(sum(c.active) for c in self.neurons.values()),
            "neuron_updates_inactive": sum(sum(c.inactive) for c in self.neurons.values()),
        }

    def node_totals(self) -> dict[str, dict[str, int]]:
        """Per counted node, its own part of :attr:`totals` (a neuron node's spikes with its updates)."""
        out: dict[str, dict[str, int]] = {}
        for n, c in self.synapses.items():
            out[n] = {"host_MACs" if c.static else f"{c.kind}s": c.total}
        for n, c in self.attention.items():
            out[n] = {"attention_accumulates": c.total}
        for n, c in self.neurons.items():
            out[n] = {"neuron_updates_active": sum(c.active), "neuron_updates_inactive": sum(c.inactive),
                      "spikes": self.spikes[n].total if n in self.spikes else 0}
        return out

    def ann_macs(self) -> int:
        """Multiply-accumulates per sample of the same architecture run as an ANN: one pass (T = 1) with
        every activation non-zero, so every connection of every synapse and attention product once."""
        return sum(c.connections for c in self.synapses.values()) + sum(c.connections for c in self.attention.values())

    def __add__(self, other: "Activity") -> "Activity":
        if self.time_steps != other.time_steps:
            raise ValueError(f"cannot add activity over {self.time_steps} and {other.time_steps} steps")
        return Activity(self.samples + other.samples, self.time_steps,
                        *(_merge_dicts(getattr(self, f), getattr(other, f))
                          for f in ("spikes", "synapses", "neurons", "attention")))

    def to_dict(self) -> dict:
        """A JSON-ready form (plain ints, lists and strings)."""
        return {"samples": self.samples, "time_steps": self.time_steps, "totals": self.totals,
                "node_totals": self.node_totals(), **{f: {n: c.to_dict() for n, c in getattr(self, f).items()}
                   for f in ("spikes", "synapses", "neurons", "attention")}}


def merge(parts: Iterable[Activity]) -> Activity:
    """The sum of the activities of several batches of one graph."""
    parts = list(parts)
    if not parts:
        raise ValueError("merge needs at least one Activity")
    out = parts[0]
    for p in parts[1:]:
        out = out + p
    return out


# -- synapses -----------------------------------------------------------------------------------------------------

def _synapse_counts(op, x: torch.Tensor, graded: bool, static: bool) -> SynapseCounts:
    shape = tuple(x.shape[1:]) if static else tuple(x.shape[2:])
    fan = op.fan_out(shape)[0].flatten()

    def ops_of(frame: torch.Tensor) -> int:  # float64 sums of integers below 2^53: exact
        return int(((frame != 0).flatten(1).to(torch.float64) @ fan).sum())

    if static:  # [B, ...]: once per sample
        ops = (ops_of(x),)
        samples = x.shape[0]
    else:  # [T, B, ...]: a step at a time (a float64 copy of one step, never of the whole stream)
        ops = tuple(ops_of(frame) for frame in x)
        samples = x.shape[1]
    return SynapseCounts(op=op.type_name(), samples=samples, kind="MAC" if graded or static else "AC",
                         connections=int(op.fan_out(shape, all_weights=True).sum()), static=static, ops=ops)


# -- attention ----------------------------------------------------------------------------------------------------

def attention_accumulates(op, args: list[torch.Tensor]) -> torch.Tensor:
    """``[T, B]`` additions of one integer attention node per step and sample, summed over heads."""
    return op.work(args).flatten(2).sum(2)


def _attention_counts(op, args: list[torch.Tensor]) -> AttentionCounts:
    dense = attention_accumulates(op, [torch.ones_like(a[:, :1]) for a in args]).max()
    return AttentionCounts(op=op.type_name(), samples=args[0].shape[1],
                           accumulates=_ints(attention_accumulates(op, args).sum(1)), connections=int(dense))


# -- neurons ------------------------------------------------------------------------------------------------------

def _has_bias(op) -> bool:
    mant = getattr(op, "bias_mant", 0)
    return bool(np.any(np.asarray(mant) != 0))


def active_neurons(op, x: torch.Tensor, states) -> torch.Tensor:
    """``[T, B, *shape]`` bool: neuron updates that are active (see the module docstring); ``states``: the
    neuron's state traces, or one bool trace of where any is non-zero (the run's ``Traces.NONZERO`` form); none
    for a compartment that keeps no state (a graded relay): active where its input is non-zero."""
    if _has_bias(op):
        return torch.ones_like(x, dtype=torch.bool)
    live = x != 0
    for s in states:  # state carried into step t: s[t - 1] (zero at t = 0)
        live[1:] |= s[:-1] != 0
    return live


def _neuron_counts(op, active: torch.Tensor) -> NeuronCounts:
    return NeuronCounts(op=op.type_name(), samples=active.shape[1], neurons=math.prod(active.shape[2:]),
                        active=_ints(active.flatten(1).sum(1)))


# -- the run ------------------------------------------------------------------------------------------------------

@dataclass
class Trace:
    """One recorded run of a graph: every node's value, the active-update mask of every neuron node on a
    stream, the graph's types and the batch size. Counting and per-core counting both read it."""

    values: dict[str, torch.Tensor]
    active: dict[str, torch.Tensor]
    types: dict
    samples: int


#: ``see(name, op, inputs, value, active)``: one node of a run, in topological order (``active``: a neuron's
#: active updates on a stream, else None), as :func:`record` and :func:`replay` hand it to the counters
See = Callable[[str, object, list, torch.Tensor, "torch.Tensor | None"], None]


def _stream_neurons(graph: Graph, types) -> list[str]:
    return [n for n, node in graph.nodes.items() if node.op.WORK == "neuron" and types[node.inputs[0]].time == "stream"]


def batch_samples(graph: Graph, feeds: Mapping[str, torch.Tensor]) -> int:
    """The batch size of ``feeds`` for ``graph`` (0 for a graph without inputs)."""
    types = graph.types()
    first = graph.inputs()[0] if graph.inputs() else None
    return 0 if first is None else feeds[first].shape[1 if types[first].time == "stream" else 0]


def record(graph: Graph, feeds: Mapping[str, torch.Tensor], see: See) -> None:
    """Run ``graph`` once on a batch, handing every node to ``see`` as it is evaluated; each value is freed
    after its last reader (nothing of the run is kept)."""
    neurons = set(_stream_neurons(graph, graph.types()))

    def observe(name: str, op, inputs, value: torch.Tensor, traces: tuple[torch.Tensor, ...]) -> None:
        see(name, op, inputs, value, active_neurons(op, inputs[0], traces) if name in neurons else None)

    run_graph(graph, feeds, observer=observe, states=neurons, traces=Traces.NONZERO)


def replay(graph: Graph, trace: Trace, see: See) -> None:
    """Hand every node of a recorded run to ``see``, as :func:`record` would have."""
    for name in graph.topo_order():
        see(name, graph.op(name), [trace.values[s] for s in graph.nodes[name].inputs], trace.values[name],
            trace.active.get(name))


def trace_run(graph: Graph, feeds: Mapping[str, torch.Tensor]) -> Trace:
    """Run ``graph`` once on a batch (``feeds`` as for :func:`run_graph`), keeping every value and each
    neuron's active updates (from where its state is non-zero, as its evaluation hands the observer)."""
    types = graph.types()
    active = {}
    neurons = set(_stream_neurons(graph, types))

    def observe(name: str, op, inputs, value: torch.Tensor, traces: tuple[torch.Tensor, ...]) -> None:
        if name in neurons:
            active[name] = active_neurons(op, inputs[0], traces)

    values = run_graph(graph, feeds, keep="all", observer=observe, states=neurons, traces=Traces.NONZERO)
    return Trace(values, active, types, batch_samples(graph, values))


class ActivityCounter:
    """The :class:`Activity` of one batch of ``samples``, counted node by node as the graph runs (:meth:`see`):
    only the counts are kept."""

    def __init__(self, graph: Graph, samples: int):
        self.graph, self.types, self.spiking = graph, graph.types(), set(spiking_nodes(graph))
        self.activity = Activity(samples=samples, time_steps=graph.time_steps)

    def see(self, name: str, op, inputs: list[torch.Tensor], value: torch.Tensor,
            active: torch.Tensor | None) -> None:
        act = self.activity
        if name in self.spiking:
            act.spikes[name] = count_spikes(value, op.type_name())
        if op.WORK == "synaptic":
            src = self.types[self.graph.nodes[name].inputs[0]]
            act.synapses[name] = _synapse_counts(op, inputs[0], not src.dtype.is_spike, src.time != "stream")
        elif op.WORK == "attention":
            act.attention[name] = _attention_counts(op, inputs)
        elif op.WORK == "neuron":
            if active is not None:  # a neuron on a static input updates once per sample: not counted
                act.neurons[name] = _neuron_counts(op, active)
        elif op.WORK != "none":
            raise ValueError(f"node {name!r}: op type {op.type_name()} declares WORK={op.WORK!r}, not one of "
                             f"{', '.join(WORK_KINDS)}: its activity cannot be counted")


def count_activity(graph: Graph, feeds: Mapping[str, torch.Tensor] | None = None, trace: Trace | None = None
                   ) -> Activity:
    """Count ``graph``'s activity exactly on a batch: from ``feeds`` (one run, streamed: no value kept past its
    last reader) or an existing ``trace``."""
    if trace is None:
        counter = ActivityCounter(graph, batch_samples(graph, feeds))
        record(graph, feeds, counter.see)
    else:
        counter = ActivityCounter(graph, trace.samples)
        replay(graph, trace, counter.see)
    return counter.activity


__all__ = ["Activity", "ActivityCounter", "AttentionCounts", "Trace", "trace_run", "record", "replay",
           "batch_samples", "active_neurons", "attention_accumulates",
           "NeuronCounts", "SynapseCounts", "count_activity", "merge"]

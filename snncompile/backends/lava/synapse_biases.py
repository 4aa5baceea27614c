"""Synapse biases moved where Loihi keeps them, so that Lava's own bias-free ``Dense``/``Conv`` run the synapses.

A lowered synapse adds BatchNorm's folded bias ``b`` (one per output channel) to its sums from the step its data
arrive (``bias_start``); Lava's ``Dense`` and ``Conv`` have no bias. :func:`move_synapse_biases` follows each
bias downstream, past nodes it commutes with (``BIAS_PASSES``: a max-pool of currents, ``max(x + b) = max(x) + b``
per channel, its ``-inf`` padding never winning; a delay line, which delays the bias with the data), to where
Loihi adds constants:

- a **neuron** (``LoihiLIF`` whose current keeps only this step's input, ``current_decay = 4096``, with no bias
  of its own): the compartment bias ``b << 6`` (``bias_mant = b``, ``bias_exp = 6``), restarting when its data
  arrive (``reset_at``: Lava's ``LIFReset``), and keeps it after its data window, where the synapse's stopped
  (Lava's LIF has no bias window: this plan's neurons go on after their data, which nothing reads). The neuron
  computes ``clip(decay(v) + ((c + b) << 6))`` before
  and ``clip(decay(v) + (c << 6) + (b << 6))`` after, the same int32 sum, where the synapse's proven range with
  and without the bias stays inside its ``out_bits`` (no wrap or saturation) and inside ``(-2^17, 2^17)``
  (``a << 6`` never folds ``u``). Its bias charges it from step 0 and it restarts from zero when its data
  arrive, its input being zero before (the leading steps of a scheduled graph are empty): the state the
  unbiased neuron had;
- a **sum** (``IntAdd``: the residual stream, computed by an adder, on Loihi the receiving dendrite): its own
  constant term in its data window (``IntAdd.bias``, ``bias_start``, ``bias_steps``), so that its value is
  unchanged at every step;
- a neuron's input **clamp** (an ``IntShift`` by 0 to the target's input width, a custom process: Lava's
  neurons do not saturate their input): a one-input ``IntAdd`` with the bias in its data window, the
  clamp's width and overflow, the same value at every step.

"The synapse's proven range" starts from the values its input carries in the graph as rewritten so far
(``prove_ranges.analyse``), not from its input's dtype.

Early spikes. Where a neuron's bias alone fires it before its data arrive
(:meth:`~snncompile.ir.ops.LoihiLIF.fires_before_restart`), those spikes run down the graph ahead of the data:
the move is made only where every node downstream forgets what reaches it before its own data arrive
(:meth:`~snncompile.ir.ops.Op.restarted`: a neuron downstream restarts at its latency too, an attention block
starts with its data, a temporal window reads its input from then on, a stateless node forgets anyway; a
ternary neuron cannot: Lava's ``TernaryLIF`` has no reset). Every node's values in its data window (from its
latency on, for the data steps: what the host reads) are then unchanged; the steps before differ, and those
after where a neuron kept a bias, and the reference simulator runs the moved graph exactly as Lava does.

Nodes whose values change (the synapse, which lost its bias, and the nodes the bias passed) are never ones whose
value is read (``keep``: recorded or exposed nodes; graph outputs). The result is an IR graph like any other;
``tests/test_lava_backend.py`` holds it equal to the original on every node's data window for every zoo model,
and Lava equal to it on every step.
"""
from __future__ import annotations

import dataclasses
from typing import Collection

import numpy as np

from snncompile.ir import Graph, Node
from snncompile.ir.interval import Interval
from snncompile.ir.ops import IntAdd, IntConv2d, IntDense, IntShift, LoihiLIF
from snncompile.ir.ops.loihi import ACT_SHIFT, BIAS_MANT_RANGE, DECAY_UNITY, without_bias
from snncompile.ir.timing import latencies
from snncompile.passes.prove_ranges import analyse

INPUT_LIMIT = 1 << (23 - ACT_SHIFT)  # |a| below it: a << 6 stays inside u's 24 bits


def fits(r: Interval | None, bits: int) -> bool:
    """Whether the proven interval ``r`` (``None``: no proof) lies inside ``bits`` signed bits."""
    return r is not None and -(1 << (bits - 1)) <= r.lo and r.hi <= (1 << (bits - 1)) - 1


def plain_neuron(op, latency: int) -> bool:
    """A LIF whose current keeps one step's input, with no bias of its own, restarting (if at all) when its data
    arrive."""
    return (type(op) is LoihiLIF and op.current_decay == DECAY_UNITY and op.reset_at in (0, latency)
            and not op.delay and not np.any(np.asarray(op.bias_mant)))


def per_element_bias(syn, shape: tuple[int, ...]) -> np.ndarray:
    """The synapse's per-output-channel bias at every element of a value of ``shape`` (int64)."""
    b = syn.bias.astype(np.int64)
    return np.broadcast_to(b.reshape(-1, 1, 1) if isinstance(syn, IntConv2d) else b, shape)


class RewriteGraph:
    """The graph being rewritten: its nodes as earlier moves left them, readers, types and latencies (shared by the
    bias moves and :mod:`.converging_sums`)."""

    def __init__(self, graph: Graph, keep: Collection[str]):
        self.graph, self.nodes, self.types, self.latency = graph, dict(graph.nodes), graph.types(), latencies(graph)
        self.readers: dict[str, list[str]] = {n: [] for n in graph.nodes}
        for n, node in graph.nodes.items():
            for s in node.inputs:
                self.readers[s].append(n)
        self.fixed = {*keep, *graph.outputs}
        self._carried: dict[str, Interval | None] = {}
        self._changed: set[str] = set(graph.nodes)  # nodes rewritten since the ranges were proven (all: none yet)

    def carried(self, name: str) -> Interval:
        """The proven interval of the values ``name`` sends, in the graph as rewritten so far (its dtype's range
        where there is no proof); proven again only where a rewritten node feeds ``name``."""
        if self._fed_by_changed(name):
            self._carried = analyse(dataclasses.replace(self.graph, nodes=self.nodes)).carried
            self._changed = set()
        return self._carried[name] or Interval.of_dtype(self.types[name].dtype)

    def _fed_by_changed(self, name: str) -> bool:
        seen, stack = set(), [name]
        while stack:
            node = stack.pop()
            if node in self._changed:
                return True
            if node not in seen:
                seen.add(node)
                stack += self.nodes[node].inputs
        return False

    def update(self, changed: dict[str, Node]) -> None:
        self.nodes.update(changed)
        self._changed.update(changed)

    def op(self, name: str):
        return self.nodes[name].op

    def replaced(self, name: str, op) -> Node:
        return Node(op, self.nodes[name].inputs)


def _synapse_ok(g: RewriteGraph, name: str) -> bool:
    """A biased synapse whose proven range (from its input's proven values), with and without its bias, never
    wraps or saturates."""
    syn = g.op(name)
    if not isinstance(syn, (IntDense, IntConv2d)) or syn.bias is None or name in g.fixed:
        return False
    return all(fits(r, syn.out_bits) for r in _ranges(g, name, syn))


def _ranges(g: RewriteGraph, name: str, syn) -> list[Interval | None]:
    """The synapse's proven range with and without its bias."""
    src = g.nodes[name].inputs[0]
    x = [g.carried(src)]
    return [op.value_range(x, [g.types[src]], g.types[name]) for op in (syn, without_bias(syn))]


def _neuron_takes(g: RewriteGraph, syn, name: str) -> bool:
    """Whether a neuron fed by synapse ``name`` (``syn``), directly or past nodes its bias passes, can hold its
    bias: a mantissa in range, and an input that never folds ``u`` (``a << 6`` inside 24 bits) with or without
    it (a max-pool or a delay keeps the range)."""
    lo, hi = BIAS_MANT_RANGE
    return (lo <= int(syn.bias.min()) and int(syn.bias.max()) <= hi
            and all(-INPUT_LIMIT < r.lo and r.hi < INPUT_LIMIT for r in _ranges(g, name, syn)))


def _destinations(g: RewriteGraph, syn, name: str, arrival: int, neurons_take: bool
                  ) -> dict[str, Node] | None:
    """The nodes that change when the bias of synapse ``syn``, carried by node ``name`` (the synapse, or a node it
    passed) to its readers at step ``arrival``, moves into the neurons (where ``neurons_take`` it) and sums
    downstream; None where it cannot."""
    changed = {}
    for reader in g.readers[name]:
        op = g.op(reader)
        if plain_neuron(op, g.latency[reader]) and g.latency[reader] == arrival and neurons_take:
            changed[reader] = g.replaced(reader, dataclasses.replace(
                op, bias_mant=per_element_bias(syn, tuple(g.types[reader].shape)).astype(np.int16), bias_exp=ACT_SHIFT,
                reset_at=arrival))
        elif isinstance(op, IntAdd) and g.latency[reader] - op.delay == arrival and (
                op.bias is None or (op.bias_start, op.bias_steps) == (arrival, syn.bias_steps)):
            bias = per_element_bias(syn, tuple(g.types[reader].shape)) + (0 if op.bias is None else op.bias)
            changed[reader] = g.replaced(reader, dataclasses.replace(op, bias=bias, bias_start=arrival,
                                                                     bias_steps=syn.bias_steps))
        elif isinstance(op, IntShift) and op.shift == 0 and g.latency[reader] - op.delay == arrival:
            bias = per_element_bias(syn, tuple(g.types[reader].shape))  # a clamp: a sum of one input, the bias its own
            changed[reader] = g.replaced(reader, IntAdd(out_bits=op.out_bits, overflow=op.overflow, delay=op.delay,
                                                        bias=bias, bias_start=arrival, bias_steps=syn.bias_steps))
        elif op.BIAS_PASSES and reader not in g.fixed:
            further = _destinations(g, syn, reader, arrival + op.delay, neurons_take)
            if further is None:
                return None
            changed.update(further)
        else:
            return None
    return changed if g.readers[name] else None


def restarts_downstream(g: RewriteGraph, moved: dict[str, Node], early: Collection[str]
                        ) -> dict[str, Node] | None:
    """The nodes downstream of ``early`` (neurons that may fire before their data arrive) made to forget what
    reaches them before their own data do (:meth:`~snncompile.ir.ops.Op.restarted`), or None where one cannot."""
    downstream, frontier = set(), [r for n in early for r in g.readers[n]]
    while frontier:
        name = frontier.pop()
        if name not in downstream:
            downstream.add(name)
            frontier += g.readers[name]
    changed = {}
    for name in (n for n in g.graph.topo_order() if n in downstream):
        op = (moved.get(name) or g.nodes[name]).op
        new = op.restarted(g.latency[name] - op.delay)
        if new is None:
            return None
        if new is not op:
            changed[name] = g.replaced(name, new)
    return changed


def move_synapse_biases(graph: Graph, keep: Collection[str] = ()) -> Graph:
    """``graph`` (lowered, scheduled) with every synapse bias that can move exactly moved into the neurons and sums
    downstream (see the module docstring); ``keep``: nodes whose values must stay as they are."""
    g = RewriteGraph(graph, keep)
    for name in graph.topo_order():
        if not _synapse_ok(g, name):
            continue
        syn = g.op(name)
        moved = _destinations(g, syn, name, syn.bias_start + syn.delay, _neuron_takes(g, syn, name))
        if moved is None:
            continue
        early = [n for n, node in moved.items() if isinstance(node.op, LoihiLIF)
                 and node.op.fires_before_restart(tuple(g.types[n].shape))]
        restarts = restarts_downstream(g, moved, early) if early else {}
        if restarts is None:
            continue
        g.update({name: g.replaced(name, without_bias(syn)), **moved, **restarts})
    return graph if g.nodes == dict(graph.nodes) else dataclasses.replace(graph, nodes=g.nodes)


__all__ = ["INPUT_LIMIT", "RewriteGraph", "fits", "move_synapse_biases", "per_element_bias", "plain_neuron",
           "restarts_downstream"]

"""Residual sums that feed neurons become converging connections: Lava sums what arrives at a neuron's InPort.

On Loihi a neuron's dendrite adds every synapse group that reaches its compartment; in Lava several OutPorts
connected to one InPort are summed by the port (``PyInPortVectorDense.recv``, in int32 here: every producer
sends int32). So a sum (``IntAdd``) read by a neuron needs no adder of its own: its producers connect to the
neuron's ``a_in`` and Lava's ``LIF`` (or ``TernaryLIF``) receives their sum, graded values as they are.

:func:`converge_sums` rewrites a ``per_op`` plan's graph (after :func:`~.synapse_biases.move_synapse_biases`)
so that the neuron readers of a sum read a sum that runs as converging connections (no Process,
``LavaPlan.converging``). Exact where:

- the sum has no delay (a converging connection delivers on the step it is sent), is not read by the host or
  asked for by name (``keep``), and its proven range (its inputs' proven ranges, ``passes.prove_ranges``,
  summed) never reaches its ``out_bits``, with and without its constant term: its wrap or saturation never
  acts, so the adder computes the plain sum Lava's port computes;
- its constant term (``IntAdd.bias``: the producers' synapse biases moved there, from their arrival
  ``bias_start``, or a split synapse's bias, :mod:`.synapse_finish`) has a place on Lava's own processes:

  - preferably, as on Loihi, in each neuron reader's compartment bias, exactly as a synapse bias moves
    (:mod:`.synapse_biases`): a ``LoihiLIF`` with ``current_decay = 4096`` and no bias of its own, restarting
    when its data arrive (``reset_at``, Lava's ``LIFReset``) at ``bias_start``, a 13-bit mantissa
    (``bias_exp = 6``), the sum's range inside ``(-2^17, 2^17)`` so ``a << 6`` never folds ``u``; where its
    bias fires it before its data, every node downstream must restart then too
    (:meth:`~snncompile.ir.ops.Op.restarted`);
  - where a reader cannot take it (a ternary or leaky neuron, a bias wider than the mantissa, early spikes that
    something downstream cannot forget), it stays in the sum as *bias messages*: a bias source of Lava's own
    processes (:func:`~.stock.build_bias_source`: a ``RingBuffer`` spiking in the window, a ``Dense`` per
    signed 8-bit digit of the bias) converges with the producers, so the port receives ``sum + bias`` in the
    window and ``sum`` outside it: the adder's value at every step. It needs the window to start at step 1 or
    later (``Dense`` delivers a step after its source spikes) and a bias of two digits
    (:data:`~.stock.BIAS_DIGITS`: Loihi's weight exponents). The neurons are unchanged.

  A sum without a constant term converges into any neuron reader (its input is unchanged).

Where every reader of a sum converges, the sum itself becomes the converging sum and its adder Process
disappears. Where a sum has other readers too (a delay line to the next residual sum, a clamp, a token sum:
everything but a neuron needs the sum's value as a message), the adder stays for them and the neurons read a
new node ``<sum>.converged`` (the same inputs; its constant term in them or as bias messages): the neuron's
input and bias then run on Lava's own port and processes, at the cost of one more connection per producer.
"""
from __future__ import annotations

import dataclasses
from typing import Collection, Mapping

import numpy as np

from snncompile.backends.lava.stock import bias_digits
from snncompile.backends.lava.synapse_biases import (INPUT_LIMIT, RewriteGraph, fits, plain_neuron,
                                                     restarts_downstream)
from snncompile.ir import Graph, Node
from snncompile.ir.interval import Interval
from snncompile.ir.ops import IntAdd
from snncompile.ir.ops.loihi import ACT_SHIFT, BIAS_MANT_RANGE, without_bias
from snncompile.passes.prove_ranges import value_ranges

CONVERGED = ".converged"  # suffix of the converging sum the neuron readers of a still-needed adder read


def _sum_ranges(g: RewriteGraph, name: str, op: IntAdd, proven: Mapping[str, Interval | None]
                ) -> tuple[Interval, Interval] | None:
    """The sum's proven range without and with its constant term (its inputs' proven ranges summed; None: no
    proof)."""
    total = None
    for s in g.nodes[name].inputs:
        r = proven.get(s)
        if r is None:
            return None
        total = r if total is None else total + r
    if op.bias is None:
        return total, total
    return total, total + Interval(int(op.bias.min()), int(op.bias.max()))


def _takes_bias(g: RewriteGraph, op: IntAdd, reader: str, ranges: tuple[Interval, Interval]) -> bool:
    """Whether neuron ``reader`` can hold the sum's constant term as its compartment bias (the module
    docstring)."""
    lo, hi = BIAS_MANT_RANGE
    return (plain_neuron(g.op(reader), g.latency[reader]) and g.latency[reader] == op.bias_start
            and lo <= int(op.bias.min()) and int(op.bias.max()) <= hi
            and all(-INPUT_LIMIT < r.lo and r.hi < INPUT_LIMIT for r in ranges))


def _converging_readers(g: RewriteGraph, name: str, op: IntAdd, proven: Mapping[str, Interval | None]
                        ) -> tuple[list[str], tuple[Interval, Interval] | None]:
    """The neuron readers of sum ``name`` that can read it as converging connections (its constant term aside),
    and the sum's proven ranges without and with that term."""
    if op.delay or name in g.fixed:
        return [], None
    ranges = _sum_ranges(g, name, op, proven)
    if ranges is None or not all(fits(r, op.out_bits) for r in ranges):
        return [], None
    return [r for r in g.readers[name] if g.op(r).BACKENDS.lava == "neuron"], ranges


def _into_neurons(g: RewriteGraph, op: IntAdd, readers: list[str], ranges: tuple[Interval, Interval]
                  ) -> dict[str, Node] | None:
    """The neuron ``readers`` with the sum's constant term as their compartment bias and the nodes downstream
    made to forget their early spikes; None where one cannot take it or something downstream cannot forget."""
    if not readers or not all(_takes_bias(g, op, r, ranges) for r in readers):
        return None
    changed = {}
    for r in readers:
        shape = tuple(g.types[r].shape)
        changed[r] = g.replaced(r, dataclasses.replace(
            g.op(r), bias_mant=np.broadcast_to(op.bias, shape).astype(np.int16), bias_exp=ACT_SHIFT,
            reset_at=op.bias_start))
    early = [r for r, node in changed.items() if node.op.fires_before_restart(tuple(g.types[r].shape))]
    restarts = restarts_downstream(g, changed, early) if early else {}
    return None if restarts is None else {**changed, **restarts}


def bias_messages_reach(op: IntAdd) -> bool:
    """Whether a bias source (:func:`~.stock.build_bias_source`) can send sum ``op``'s constant term: its window
    starts at step 1 or later and :data:`~.stock.BIAS_DIGITS` signed 8-bit digits hold it."""
    return op.bias_start >= 1 and bias_digits(op.bias) is not None


def converge_sums(graph: Graph, keep: Collection[str] = ()) -> tuple[Graph, tuple[str, ...]]:
    """``(graph', converging)``: ``graph`` with the neuron readers of its sums reading converging connections
    where that is exact (the module docstring), and the ``IntAdd`` nodes of ``graph'`` that run as converging
    connections (no Process: their producers, and the bias source of those that keep a constant term, connect
    to their readers' ports). ``keep``: nodes whose values must stay as they are (recorded, exposed)."""
    g = RewriteGraph(graph, keep)
    proven = value_ranges(graph)  # (converging changes no value a sum's inputs carry)
    converging: list[str] = []
    for name in graph.topo_order():
        op = g.op(name)
        if not isinstance(op, IntAdd):
            continue
        readers, ranges = _converging_readers(g, name, op, proven)
        if not readers:
            continue
        changed: dict[str, Node] = {}
        converged = without_bias(op)
        if op.bias is not None:
            into = _into_neurons(g, op, readers, ranges)
            if into is None and bias_messages_reach(op):
                converged = op  # its constant term stays in the sum: a bias source sends it
            else:
                if into is None:  # only some neurons can take it: they converge, the others read the adder
                    readers = [r for r in readers if _takes_bias(g, op, r, ranges)]
                    into = _into_neurons(g, op, readers, ranges)
                if into is None:
                    continue
                changed.update(into)
        if len(readers) == len(g.readers[name]):  # only neurons read it: no adder left
            changed[name] = g.replaced(name, converged)
            target = name
        else:
            target = name + CONVERGED
            changed[target] = g.replaced(name, converged)
            for r in readers:
                changed[r] = Node((changed.get(r) or g.nodes[r]).op, (target,))
        g.nodes.update(changed)
        converging.append(target)
    if not converging:
        return graph, ()
    nodes = {}
    for n in graph.topo_order():  # each new converging sum right after its sum: dependency order kept
        nodes[n] = g.nodes[n]
        if n + CONVERGED in g.nodes:
            nodes[n + CONVERGED] = g.nodes[n + CONVERGED]
    schedule = graph.schedule
    if schedule is not None:  # a new converging sum arrives with its sum
        latency = {n: schedule.latency[n.removesuffix(CONVERGED) if n not in graph.nodes else n] for n in nodes}
        schedule = dataclasses.replace(schedule, latency=latency)
    return dataclasses.replace(graph, nodes=nodes, schedule=schedule), tuple(converging)


__all__ = ["CONVERGED", "bias_messages_reach", "converge_sums"]

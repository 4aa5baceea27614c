"""Synapse biases moved into the neurons they feed, as on Loihi, so Lava's own Dense/Conv and LIFReset run them.

A lowered synapse adds BatchNorm's folded bias ``b`` to its sums from the step its data arrive
(``bias_start``); Lava's ``Dense`` and ``Conv`` have no bias. Where every consumer of the synapse is a
``LoihiLIF`` whose current keeps only this step's input (``current_decay = 4096``) and which has no bias of
its own, :func:`move_biases_to_neurons` gives the neurons the compartment bias ``b << 6`` (``bias_mant = b``,
``bias_exp = 6``, per output channel) and the synapse none. Exact, node for node on every neuron, because:

- the sums: the neuron computes ``h = clip(decay(v) + ((c + b) << 6))`` before and ``clip(decay(v) + (c << 6)
  + (b << 6))`` after, the same int32 sum, where the synapse's proven range with and without the bias stays
  inside its ``out_bits`` (no wrap or saturation) and inside ``(-2^17, 2^17)`` (``a << 6`` never folds ``u``);
- the time: the neuron's bias charges from step 0, and it restarts when its data arrive (``reset_at`` = its
  latency = ``bias_start + delay``: Lava's ``LIFReset``); its input before that step is zero (the leading
  steps of a scheduled graph are empty), so it restarts from the state the unbiased neuron had, and
  :meth:`~snncompile.ir.ops.LoihiLIF.fires_before_restart` proves its bias alone fires nothing before.

The synapse's own value changes (it lost its bias): a synapse whose value is read (``keep``: recorded or
exposed nodes, graph outputs) keeps its bias. The result is an IR graph the reference simulator runs like any
other; ``tests/test_lava_backend.py`` holds it equal to the original on every neuron of every zoo model.
"""
from __future__ import annotations

import dataclasses
from typing import Collection

import numpy as np

from snncompile.ir import Graph, Node
from snncompile.ir.interval import Interval
from snncompile.ir.ops import IntConv2d, IntDense, LoihiLIF
from snncompile.ir.ops.loihi import ACT_SHIFT, BIAS_MANT_RANGE, DECAY_UNITY
from snncompile.ir.timing import latencies

INPUT_LIMIT = 1 << (23 - ACT_SHIFT)  # |a| below it: a << 6 stays inside u's 24 bits


def fits(r: Interval | None, bits: int) -> bool:
    """Whether the proven interval ``r`` (``None``: no proof) lies inside ``bits`` signed bits."""
    return r is not None and -(1 << (bits - 1)) <= r.lo and r.hi <= (1 << (bits - 1)) - 1


def _plain_neuron(op) -> bool:
    return (type(op) is LoihiLIF and op.current_decay == DECAY_UNITY and not op.reset_at and not op.delay
            and not np.any(np.asarray(op.bias_mant)))


def _neuron_bias(syn, shape: tuple[int, ...]) -> np.ndarray:
    """The synapse's per-output-channel bias as one mantissa per neuron of ``shape``."""
    b = syn.bias.astype(np.int64)
    return np.broadcast_to(b.reshape(-1, 1, 1) if isinstance(syn, IntConv2d) else b, shape).astype(np.int16)


def _movable(graph: Graph, types, name: str, readers: list[str], latency: dict[str, int]) -> bool:
    syn = graph.op(name)
    if not isinstance(syn, (IntDense, IntConv2d)) or syn.bias is None or not readers:
        return False
    lo, hi = BIAS_MANT_RANGE
    if int(syn.bias.min()) < lo or int(syn.bias.max()) > hi:
        return False
    if not all(_plain_neuron(graph.op(r)) and latency[r] == syn.bias_start + syn.delay for r in readers):
        return False
    src = graph.nodes[name].inputs[0]
    x = [Interval.of_dtype(types[src].dtype)]
    plain = dataclasses.replace(syn, bias=None, bias_start=0)
    for op in (syn, plain):  # neither wraps nor folds u, with or without the bias
        r = op.value_range(x, [types[src]], types[name])
        if not (fits(r, syn.out_bits) and -INPUT_LIMIT < r.lo and r.hi < INPUT_LIMIT):
            return False
    return True


def move_biases_to_neurons(graph: Graph, keep: Collection[str] = ()) -> Graph:
    """``graph`` (lowered, scheduled) with every synapse bias it can move exactly moved into the neurons it
    feeds (see the module docstring); ``keep``: nodes whose values must stay as they are."""
    types, latency = graph.types(), latencies(graph)
    readers: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for n, node in graph.nodes.items():
        for s in node.inputs:
            readers[s].append(n)
    nodes = dict(graph.nodes)
    for name in graph.topo_order():
        if name in keep or name in graph.outputs or not _movable(graph, types, name, readers[name], latency):
            continue
        syn = graph.op(name)
        biased = {r: dataclasses.replace(graph.op(r), bias_mant=_neuron_bias(syn, tuple(types[r].shape)),
                                         bias_exp=ACT_SHIFT, reset_at=latency[r]) for r in readers[name]}
        if any(op.fires_before_restart(tuple(types[r].shape)) for r, op in biased.items()):
            continue
        nodes[name] = Node(dataclasses.replace(syn, bias=None, bias_start=0), graph.nodes[name].inputs)
        nodes.update({r: Node(op, graph.nodes[r].inputs) for r, op in biased.items()})
    return graph if nodes == dict(graph.nodes) else dataclasses.replace(graph, nodes=nodes)


__all__ = ["fits", "move_biases_to_neurons"]

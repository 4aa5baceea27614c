"""Synapses whose bias or saturation nothing downstream can take, split so that Lava's own processes still
compute their sums.

:func:`~.synapse_biases.move_synapse_biases` moves a synapse's bias into the neurons and sums that read it
where that is exact. Where it cannot (a ternary neuron reads it: Lava's ``TernaryLIF`` has no restart; a
neuron its bias would fire before its data arrive feeds one; the bias exceeds the 13-bit compartment bias
mantissa), or where the synapse's result exceeds its ``out_bits`` (it saturates there, as A2OS2A's ``K``
does, or wraps; Lava's ``Dense``, ``Conv`` and ``Sparse`` never saturate and wrap only at 24 or 32 bits), the
synapse ``s`` computing ``fit(sum + b)`` (``b`` from its data's arrival on) becomes two nodes:

- ``s``: the same sums without the bias, wide enough that they never wrap (``out_bits`` the proven range of
  the sum needs, at least the node's own), run by Lava's ``Dense``/``Conv``/``Sparse`` (:mod:`.stock`);
- ``s.finish``: a one-input ``IntAdd`` with the bias from the data's arrival (``bias_start``) and the
  synapse's ``out_bits`` and overflow, so ``fit(sum + b)``: the synapse's value at every step, which every
  reader of ``s`` now reads. Where neurons read it and its fit never acts, :mod:`.converging_sums` makes it
  converging connections with its bias sent by a bias source of Lava's own processes
  (:func:`~.stock.build_bias_source`); else (a saturation that acts: no Lava process clips) it is a custom
  adder process.

The split is exact on every step, not only on the data window, and applies only where the synapse's value
is not read (``keep``, graph outputs) and the bare synapse maps to a stock process. The adder is not a
synaptic operation (no accumulate of inputs by weights), so the synapse's operations count as run by Lava's
own process; a saturation that acts is what a custom process still computes.
"""
from __future__ import annotations

import dataclasses
from typing import Collection

from snncompile.backends.lava.stock import stock_process
from snncompile.backends.lava.synapse_biases import per_element_bias
from snncompile.ir import Graph, Node
from snncompile.ir.ops import IntAdd, IntConv2d, IntDense
from snncompile.ir.ops.loihi import without_bias
from snncompile.passes.prove_ranges import analyse

FINISH = ".finish"  # the name of a split synapse's adder: the synapse's name and this


def _bare(op, r) -> object:
    """Synapse ``op`` without its bias, wide enough for its proven unbiased range ``r`` never to wrap."""
    bits = max(op.out_bits, r.dtype().bits + (not r.dtype().signed))  # signed: Lava's messages are
    return dataclasses.replace(without_bias(op), out_bits=bits, overflow="wrap")


def _finish(op, shape: tuple[int, ...]) -> IntAdd:
    """The adder that gives a bare synapse's sums back the bias (per element) and the fit of synapse ``op``."""
    if op.bias is None:
        return IntAdd(out_bits=op.out_bits, overflow=op.overflow)
    bias = per_element_bias(op, shape).copy()
    return IntAdd(out_bits=op.out_bits, overflow=op.overflow, bias=bias, bias_start=op.bias_start + op.delay,
                  bias_steps=op.bias_steps)


def split_synapse_finishes(graph: Graph, chip: Collection[str], keep: Collection[str] = (),
                           batch: int = 1) -> tuple[Graph, tuple[str, ...]]:
    """``graph`` (as :func:`~.synapse_biases.move_synapse_biases` left it) with every ``chip`` synapse that a
    stock process cannot run only because of its bias or its ``out_bits`` split in two (the module docstring),
    and the chip's nodes in dependency order with the adders after their synapses. ``keep``: nodes whose values
    must stay as they are; ``batch``: the plan's batch (a stock process must hold it)."""
    types, carried = graph.types(), analyse(graph).carried
    fixed = {*keep, *graph.outputs}
    splits: dict[str, Node] = {}  # synapse -> its bare form
    for name in chip:
        op, srcs = graph.op(name), graph.nodes[name].inputs
        if not isinstance(op, (IntDense, IntConv2d)) or name in fixed or len(srcs) != 1 or name + FINISH in \
                graph.nodes:
            continue
        in_type, x = types[srcs[0]], carried[srcs[0]]
        if stock_process(op, in_type, types[name], x, batch):
            continue  # Lava runs it as it is
        r = without_bias(op).value_range([x], [in_type], types[name]) if x else None
        if r is None:
            continue
        bare = _bare(op, r)
        if stock_process(bare, in_type, bare.infer([in_type]), x, batch):
            splits[name] = Node(bare, srcs)
    if not splits:
        return graph, tuple(chip)
    nodes, order = {}, []
    for name, node in graph.nodes.items():
        inputs = tuple(s + FINISH if s in splits else s for s in node.inputs)
        nodes[name] = splits.get(name) or (node if inputs == node.inputs else Node(node.op, inputs))
        if name in splits:
            nodes[name + FINISH] = Node(_finish(graph.op(name), tuple(types[name].shape)), (name,))
    for name in chip:
        order += [name, name + FINISH] if name in splits else [name]
    schedule = graph.schedule and dataclasses.replace(graph.schedule, latency={
        **graph.schedule.latency, **{s + FINISH: graph.schedule.latency[s] for s in splits}})
    return dataclasses.replace(graph, nodes=nodes, schedule=schedule), tuple(order)


__all__ = ["FINISH", "split_synapse_finishes"]

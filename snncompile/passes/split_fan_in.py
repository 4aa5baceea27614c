"""split_fan_in: split a convolution whose every output reads more input axons than one core of the target
receives into partial sums on other cores, added exactly in the receiving compartment.

A compartment receives each source element it reads on its own core's input axon, whichever core holds it,
so placement cannot help a compartment that alone reads more than ``fan_in_axons_per_core`` (a 3x3
convolution over 512 channels reads 4,608; Loihi allows 4,096). Loihi's way around it is the graded relay
(``snncompile.ir.ops.relay``): the inputs are cut into ``K`` channel groups, each group's partial sums are
computed in compartments of their own (any core) and sent on as graded spikes, and the receiving
compartment adds the ``K`` relayed values in its dendrite. For a convolution ``S`` (``groups == 1``) this pass
writes::

    S.partial  IntConv2d, groups=K: output g*C_out + c = sum over input group g of S's kernel row c
               (no shift, no bias: the exact integer partial sums)
    S.relay    GradedRelay: the partial sums' compartments, which send them on
    S          BlockSum(blocks=K): sum of the K partial sums, then S's shift, bias and overflow

so every value ``S`` had is unchanged (integer sums in any grouping are equal; the shift, bias and overflow
act on the whole sum as before) and each node reading ``S`` is untouched. The relayed values cross one
more synapse: ``schedule`` gives ``BlockSum`` the target's synapse delay, so the receiving side is one step
later, which the latency report shows.

A convolution is split when the compartment it feeds would read more than the limit: its own window
(``C_in x kH x kW``) plus, once per element, every other stream the compartment adds (a residual; other
synaptic sums' windows). ``K`` divides ``C_in`` into equal channel groups whose partial window fits the
limit; of those, the one with the fewest estimated cores (:func:`_cores`: a core holds the partial sums of
as many channels as its kernel memory stores times as many positions as their windows' axons allow, or its
neurons; the receiving compartments read ``K`` relayed values each; option ``parts``: at least that many
groups). A convolution whose compartments fit is split too where that is estimated to need fewer cores
(option ``save_cores``): a 3x3 convolution over 256 channels reads 3,072 axons for two positions, so a
core holds few of its sums, while 4 groups of 64 channels hold a core's 8,192 compartments. Grouped
convolutions and dense layers are left as they are (placement's design rules report what still does not
fit).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..ir import Graph, Node
from ..ir.ops import BlockSum, GradedRelay, IntConv2d, ops_where
from ..ir.ops.loihi import without_bias
from ..targets import Target, load_target
from .pipeline import PassContext, as_pass
from .prove_ranges import in_core

DEFAULTS = {"parts": 1, "save_cores": True}
SYNAPSES = ops_where(ROLE="synapse", INTEGER_INPUTS=True)
DENDRITIC = ops_where(DENDRITIC=True)


def _window(graph: Graph, name: str) -> int:
    """Input axons one output element of synapse ``name`` reads (its kernel's extent, padding aside)."""
    weight = graph.op(name).weight
    return int(np.prod(weight.shape[1:]))


def _axons(graph: Graph, name: str, core: set[str], seen: dict[str, int]) -> int:
    """Input axons one output element of ``name`` pulls into the compartment that computes it: a synapse's
    window, and for dendritic arithmetic the sum over its inputs (a sum in the same core: its own axons; a
    relayed block: one per block; any other stream: one)."""
    if name not in seen:
        op, inputs = graph.op(name), graph.nodes[name].inputs
        if isinstance(op, SYNAPSES):
            seen[name] = _window(graph, name)
        elif isinstance(op, BlockSum):
            seen[name] = op.blocks
        elif isinstance(op, DENDRITIC):
            seen[name] = sum(_axons(graph, s, core, seen) if s in core else 1 for s in inputs)
        else:
            seen[name] = 1
    return seen[name]


def _receivers(graph: Graph, name: str, core: set[str]) -> list[str]:
    """``name`` and the dendritic arithmetic downstream of it in the compartments it feeds."""
    found, stack = [name], [name]
    while stack:
        for c in graph.consumers(stack.pop()):
            if isinstance(graph.op(c), DENDRITIC) and c not in found:
                found.append(c)
                if c in core:  # beyond a sum that leaves the core, other compartments read it
                    stack.append(c)
    return found


def _positions(op: IntConv2d, shape, group: int, axons: int, channels: int, others: int) -> int:
    """The most output positions of a rectangle of ``shape``'s grid whose windows over ``group`` input
    channels, and the ``others`` streams each of its ``channels`` compartments adds, fit ``axons``."""
    (kh, kw), (sh, sw), (h, w) = op.weight.shape[2:], op.stride, shape[1:]
    best = 0
    for th in range(1, h + 1):
        rows = min(h * sh, (th - 1) * sh + kh)
        lo, hi = 0, w  # the widest tile of th rows that fits
        while lo < hi:
            tw = (lo + hi + 1) // 2
            if rows * min(w * sw, (tw - 1) * sw + kw) * group + th * tw * channels * others <= axons:
                lo = tw
            else:
                hi = tw - 1
        best = max(best, th * lo)
    return best


def _cores(op: IntConv2d, shape, k: int, others: int, target: Target) -> float:
    """Estimated cores (a heuristic, not a bound) of ``op``'s sums with its inputs in ``k`` channel groups
    (1: unsplit): its compartments over what a core holds within kernel memory, windows and neurons, and
    with ``k > 1`` the receiving compartments' relayed values and other streams over the axon limit."""
    group, taps = op.weight.shape[1] // k, math.prod(op.weight.shape[2:])
    axons, elements = int(target.fan_in_axons_per_core.value), math.prod(shape)
    memory = target.synaptic_memory_per_core.value * 1024 * 8
    channels = min(shape[0], int(memory // (group * taps * op.weight_bits)))
    per_core = min(target.neurons_per_core.value,
                   channels * _positions(op, shape, group, axons, channels, 0 if k > 1 else others))
    if per_core == 0:
        return math.inf
    return math.ceil(k * elements / per_core) + (math.ceil(elements * (k + others) / axons) if k > 1 else 0)


def _parts(op: IntConv2d, shape, others: int, target: Target, least: int, required: bool) -> int | None:
    """How many equal channel groups to split ``op`` into: of those (at least ``least``) whose partial window,
    and whose ``K`` relayed values plus ``others``, fit the axon limit, the one with the fewest estimated
    cores (:func:`_cores`); None where the split is not ``required`` (the unsplit synapse fits) and saves
    no cores, or where no split fits."""
    channels, taps = op.weight.shape[1], math.prod(op.weight.shape[2:])
    axons = int(target.fan_in_axons_per_core.value)
    fitting = [k for k in range(max(2, least), channels + 1)
               if channels % k == 0 and taps * (channels // k) <= axons and k + others <= axons]
    if not fitting or target.neurons_per_core is None or target.synaptic_memory_per_core is None:
        return fitting[0] if fitting and required else None
    cost = {k: _cores(op, shape, k, others, target) for k in fitting}
    best = min(fitting, key=lambda k: (cost[k], k))
    return best if required or cost[best] < _cores(op, shape, 1, others, target) else None


def _split(op: IntConv2d, k: int) -> tuple[IntConv2d, BlockSum]:
    out, channels = op.weight.shape[:2]
    grouped = op.weight.reshape(out, k, channels // k, *op.weight.shape[2:]).swapaxes(0, 1)
    partial = dataclasses.replace(without_bias(op), weight=np.ascontiguousarray(grouped.reshape(k * out, channels // k,
                                                                                  *op.weight.shape[2:])),
                                  groups=k, weight_exp=0, out_bits=32, overflow="wrap",
                                  delay=0)
    return partial, BlockSum(blocks=k, shift=op.weight_exp, bias=op.bias, out_bits=op.out_bits,
                             overflow=op.overflow)


def _report(before: Graph, after: Graph) -> dict:
    return {"split": {n: after.op(n).blocks for n in after.nodes
                      if isinstance(after.op(n), BlockSum) and n in before.nodes
                      and not isinstance(before.op(n), BlockSum)}}


@as_pass(report=_report, exact=True)
def split_fan_in(graph: Graph, ctx: PassContext) -> Graph:
    """Split every convolution whose receiving compartment reads more input axons than the target's
    ``fan_in_axons_per_core`` into relayed partial sums (see the module docstring).

    Requires: a lowered, unscheduled integer graph (no delays yet); ``ctx.target`` (without a target, or a
    target without the limit, the graph is returned unchanged). Options: ``parts`` (1), the fewest channel
    groups a split uses; ``save_cores`` (True), also split a convolution that fits where the split is
    estimated to need fewer cores (each costs a step of latency). Guarantees: every node of the input keeps
    its name and every value; the new nodes are ``<synapse>.partial`` and ``<synapse>.relay``."""
    options = {**DEFAULTS, **ctx.options_for(split_fan_in)}
    if set(options) != set(DEFAULTS):
        raise ValueError(f"split_fan_in: unknown options {sorted(set(options) - set(DEFAULTS))}")
    target = load_target(ctx.target) if ctx.target else None
    if target is None or target.fan_in_axons_per_core is None:
        return graph
    limit, core, seen, plans = int(target.fan_in_axons_per_core.value), in_core(graph), {}, {}
    shapes = {n: tuple(t.shape) for n, t in graph.types().items()}
    for name, node in graph.nodes.items():
        op = node.op
        if not isinstance(op, IntConv2d) or op.groups != 1 or op.delay:
            continue
        total = max(_axons(graph, r, core, seen) for r in _receivers(graph, name, core))
        if total > limit or options["save_cores"]:
            k = _parts(op, shapes[name], total - _window(graph, name), target, int(options["parts"]),
                       required=total > limit)
            if k is not None:
                plans[name] = k
    if not plans:
        return graph
    nodes: dict[str, Node] = {}
    scales = dict(graph.scales) if graph.scales is not None else None
    for name, node in graph.nodes.items():
        if name not in plans:
            nodes[name] = node
            continue
        partial, total = _split(node.op, plans[name])
        nodes[f"{name}.partial"] = Node(partial, node.inputs)
        nodes[f"{name}.relay"] = Node(GradedRelay(), (f"{name}.partial",))
        nodes[name] = Node(total, (f"{name}.relay",))
        if scales is not None and name in scales:  # a partial sum's step: the synapse's before its shift
            scales[f"{name}.partial"] = scales[f"{name}.relay"] = scales[name] * 2.0 ** node.op.weight_exp
    return dataclasses.replace(graph, nodes=nodes, scales=scales)


__all__ = ["split_fan_in"]

"""SDT-V3's level quantisers on Lava's own LIF, so that ``per_op`` checks them with code snncompile did not write.

A ``LevelThreshold`` sends ``level = #{k : a >= thresholds[k]}`` (D levels, graded) of its integer input ``a``;
Lava has no such process. :func:`split_level_neurons` rewrites a ``per_op`` plan's graph (placement and energy
keep the graded quantiser) so that, for each quantiser ``q``:

- **D stateless LIFs** ``q.level1 .. q.levelD`` read ``a``, one Lava ``LIF`` process each: current and voltage
  decay 4096 (nothing kept from the step before), no bias, ``vth = thresholds[k] - 1``. Lava's ``LIF`` computes
  ``u = a << 6`` and fires where ``v = u > vth << 6``, that is ``a > vth``: ``a >= thresholds[k]``, on every
  step (ties included: the half-level thresholds of ``passes/multilevel.py`` are the least integers of each
  level). Exact where ``a << 6`` never folds ``u``'s 24 bits (``a`` proven inside ``(-2^17, 2^17)``); otherwise
  ``a`` is first saturated to 17 bits by a custom ``IntAdd`` ``q.clamp``, which keeps every comparison when each
  threshold lies in ``1 .. 2^16 - 1``. A silent input (``a = 0``) stays silent: every threshold is at least 1.
- **``q`` itself** becomes the sum of the D spikes (an ``IntAdd``), run as converging connections
  (``LavaPlan.converging``): each of q's readers (a ``Conv``/``Dense`` reading graded levels, an attention
  product, an extractor) gets the D spike ports on its own InPort, which Lava sums into the level, on the same
  step. So the readers stay as they were, stock synapses included.

:func:`split_level_neurons` runs before :func:`~.synapse_biases.move_synapse_biases`: the LIFs are plain
neurons, so a synapse bias that fed ``q`` moves into their compartment bias (Lava's ``LIFReset``) and a residual
sum that fed it converges into them, as on Loihi. After the moves, :func:`merge_level_neurons` makes the D LIFs
one process where a synapse Lava runs alone feeds them and only synapses read ``q``: one LIF of D neurons per
element, its thresholds in the per-neuron bias (Lava's LIF has one ``vth``), the synapse's output channels and
the readers' input channels repeated D times. Elsewhere a ``(D, *shape)`` LIF would need ``a`` tiled D times on
its input, and Lava 0.10 tiles only through a synapse (one step of delay, which would shift every later node of
the schedule) or a ``ConcatPort`` (``NotImplementedError`` in its compiler). Every node's values stay those of
the graph at every step where no bias moved, and in every data window where one did
(``tests/test_lava_level_neurons.py``, ``tests/test_sdt_v3_lowering.py``, ``tests/test_lava_synapse_biases.py``).
"""
from __future__ import annotations

import dataclasses
from typing import Collection

import numpy as np

from snncompile.backends.lava.stock import stock_process
from snncompile.backends.lava.synapse_biases import INPUT_LIMIT
from snncompile.ir import Graph, Node
from snncompile.ir.interval import Interval
from snncompile.ir.ops import IntAdd, IntConv2d, IntDense, LevelThreshold, LoihiLIF
from snncompile.ir.ops.loihi import ACT_SHIFT, BIAS_MANT_RANGE, DECAY_UNITY, STATE_BITS, VTH_BITS
from snncompile.ir.types import SPIKE, TensorType
from snncompile.passes.prove_ranges import analyse, value_ranges

LEVEL = ".level"  # a quantiser's k-th LIF: its name, this and k (1 .. D)
MERGED = ".levels"  # a quantiser's D LIFs as one process of D neurons per element
CLAMP = ".clamp"  # the saturation of a quantiser's input that Lava's u could not hold
CLAMP_BITS = STATE_BITS - ACT_SHIFT - 1  # 17 signed bits: inside (-INPUT_LIMIT, INPUT_LIMIT)
CLAMP_TOP = (1 << (CLAMP_BITS - 1)) - 1  # the largest threshold the saturation keeps: sat(a) >= t iff a >= t


def _holds(r: Interval | None) -> bool:
    """Whether inputs in the proven interval ``r`` never fold Lava's ``u`` (``a << 6`` inside 24 bits)."""
    return r is not None and -INPUT_LIMIT < r.lo and r.hi < INPUT_LIMIT


def _splits(op, r: Interval | None) -> bool:
    """Whether quantiser ``op`` on inputs proven in ``r`` runs exactly as LIFs (saturated first where ``r`` does
    not fit ``u``)."""
    if not isinstance(op, LevelThreshold) or op.encoding != "graded" or not op.levels:
        return False
    top = 1 << VTH_BITS if _holds(r) else CLAMP_TOP  # vth = t - 1 in 17 unsigned bits; the saturation's reach
    return int(op.thresholds[0]) >= 1 and int(op.thresholds[-1]) <= top


def level_neurons(name: str, levels: int) -> tuple[str, ...]:
    """The names of quantiser ``name``'s ``levels`` LIFs."""
    return tuple(f"{name}{LEVEL}{k}" for k in range(1, levels + 1))


def split_level_neurons(graph: Graph, chip: Collection[str]
                        ) -> tuple[Graph, tuple[str, ...], dict[str, tuple[str, ...]]]:
    """``(graph', chip', levels)``: ``graph`` with every ``chip`` quantiser that runs exactly on Lava's LIF
    rewritten (the module docstring), the chip's nodes in dependency order (each quantiser's clamp and LIFs
    before it), and per rewritten quantiser the LIFs that compute it (its sum runs as converging
    connections)."""
    ranges = value_ranges(graph)
    split = {n for n in chip if _splits(graph.op(n), ranges.get(graph.nodes[n].inputs[0]))}
    if not split:
        return graph, tuple(chip), {}
    nodes: dict[str, Node] = {}
    added: dict[str, list[str]] = {}  # quantiser -> the nodes that come before it
    levels: dict[str, tuple[str, ...]] = {}
    for name, node in graph.nodes.items():
        if name not in split:
            nodes[name] = node
            continue
        op, source = node.op, node.inputs
        added[name] = []
        if not _holds(ranges.get(source[0])):
            clamp = name + CLAMP
            nodes[clamp] = Node(IntAdd(out_bits=CLAMP_BITS, overflow="saturate"), source)
            added[name].append(clamp)
            source = (clamp,)
        levels[name] = level_neurons(name, op.levels)
        for lif, threshold in zip(levels[name], op.thresholds):
            nodes[lif] = Node(LoihiLIF(current_decay=DECAY_UNITY, voltage_decay=DECAY_UNITY, vth=int(threshold) - 1),
                              source)
        added[name] += levels[name]
        nodes[name] = Node(IntAdd(out_bits=op.levels.bit_length() + 1, overflow="wrap"), levels[name])
    order = tuple(m for n in chip for m in (*added.get(n, ()), n))
    schedule = graph.schedule
    if schedule is not None:  # the new nodes compute on their quantiser's steps
        schedule = dataclasses.replace(schedule, latency={
            **schedule.latency, **{m: schedule.latency[q] for q, new in added.items() for m in new}})
    return dataclasses.replace(graph, nodes=nodes, schedule=schedule), order, levels


def _merged_bias(lifs: list[LoihiLIF], shape: tuple[int, ...], conv: bool) -> tuple[np.ndarray, int] | None:
    """The per-neuron bias mantissa (the channels of a convolution's ``[C, H, W]``, the features of a dense
    layer's output, D times each: neuron ``c * D + k`` the ``k``-th level of ``c``) and the common ``vth`` of one LIF that computes the D LIFs ``lifs`` (equal but for ``vth``, a bias of
    ``bias_exp = 6`` or none), or None where a 13-bit mantissa or the 17-bit ``vth`` cannot hold them: row k
    fires where ``a + b + (vth + 1 - t_k) > vth``, that is ``a + b >= t_k``."""
    first = lifs[0]
    bias = np.broadcast_to(np.asarray(first.bias_mant, np.int64), shape)
    if any(not np.array_equal(np.broadcast_to(np.asarray(op.bias_mant, np.int64), shape), bias)
           or (op.bias_exp, op.reset_at) != (first.bias_exp, first.reset_at) for op in lifs):
        return None
    if bias.any() and first.bias_exp != ACT_SHIFT:
        return None
    t = np.array([op.vth + 1 for op in lifs], np.int64)  # the thresholds on a + b
    lo, hi = BIAS_MANT_RANGE
    top = max(1, int(t[-1]) - int(bias.min()) + lo)  # vth + 1: the least keeping every mantissa >= lo
    if top > int(t[0]) - int(bias.max()) + hi or top > 1 << VTH_BITS:
        return None
    axis = 0 if conv else len(shape) - 1  # a convolution's channels, a dense layer's features
    per_level = np.tile(top - t, shape[axis]).reshape([-1 if i == axis else 1 for i in range(len(shape))])
    return (np.repeat(bias, len(lifs), axis=axis) + per_level).astype(np.int16), top - 1


def merge_level_neurons(graph: Graph, chip: Collection[str], levels: dict[str, tuple[str, ...]],
                        keep: Collection[str] = (), batch: int = 1
                        ) -> tuple[Graph, tuple[str, ...], dict[str, tuple[str, ...]]]:
    """``(graph', chip', levels')``: where a quantiser's D LIFs (after the bias moves) read one synapse nothing
    else reads, which Lava runs, and only synapses read the quantiser, one LIF ``q.levels`` of ``D * C`` neurons
    replaces them (neuron ``c * D + k``: level ``k`` of channel ``c``; their thresholds in the per-neuron bias,
    :func:`_merged_bias`), the synapse computes each output channel D times (its weights repeated) and every
    reader reads the D spikes of each channel with its weights repeated (``sum_k s_k w = level w``), each
    still on the Lava process it ran on; the quantiser's sum goes. One process per quantiser instead of D;
    every other node's values unchanged on every step. A synapse that reads a merged LIF is not widened too (its
    Lava process would compute D^2 times its sums: twice the tiny SDT-V3's run time). ``keep``: nodes whose
    values must stay."""
    types, carried = graph.types(), analyse(graph).carried
    fixed = {*keep, *graph.outputs}
    readers: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for n, node in graph.nodes.items():
        for s in node.inputs:
            readers[s].append(n)
    changed: dict[str, Node] = {}
    merged: dict[str, str] = {}  # quantiser -> its one LIF
    spike_input: dict[str, TensorType] = {}  # a synapse now reading a merged LIF's spikes: that input's type

    def current(n: str):
        return changed[n].op if n in changed else graph.op(n)

    def input_of(n: str) -> tuple[TensorType, Interval | None]:
        """The type and proven range of what synapse ``n`` reads now."""
        if n in spike_input:
            return spike_input[n], Interval(0, 1)
        s = graph.nodes[n].inputs[0]
        return types[s], carried[s]

    for q, lifs in levels.items():
        src = graph.nodes[lifs[0]].inputs[0]
        syn, users = current(src), readers[q]
        if (q in fixed or src in fixed or sorted(readers[src]) != sorted(lifs) or not users or src in spike_input
                or not isinstance(syn, (IntConv2d, IntDense))
                or any(not isinstance(graph.op(u), (IntConv2d, IntDense)) for u in users)):
            continue  # (a synapse reading a merged LIF widened again would do D^2 times its work in Lava)
        d, shape, conv = len(lifs), tuple(types[q].shape), isinstance(syn, IntConv2d)
        found = _merged_bias([graph.op(n) for n in lifs], shape, conv)
        a = carried[src]
        if found is None or a is None or not (-INPUT_LIMIT < a.lo + int(found[0].min())
                                             and a.hi + int(found[0].max()) < INPUT_LIMIT):
            continue  # (v = (a + b + offset) << 6 inside the 24-bit voltage)
        wide = dataclasses.replace(syn, weight=np.repeat(syn.weight, d, axis=0))
        in_type, in_range = input_of(src)
        wide_type = wide.infer([in_type])
        spikes = TensorType(wide_type.shape, SPIKE, wide_type.time)
        reads = {u: dataclasses.replace(graph.op(u), weight=np.repeat(graph.op(u).weight, d, axis=1)) for u in users}
        if not stock_process(wide, in_type, wide_type, in_range, batch) or any(
                bool(stock_process(graph.op(u), types[q], types[u], carried[q], batch))
                != bool(stock_process(op, spikes, types[u], Interval(0, 1), batch)) for u, op in reads.items()):
            continue  # (the synapses Lava ran must stay on Lava's processes)
        bias, vth = found
        changed[src] = Node(wide, (changed.get(src) or graph.nodes[src]).inputs)
        changed[q + MERGED] = Node(dataclasses.replace(graph.op(lifs[0]), vth=vth, bias_mant=bias,
                                                       bias_exp=ACT_SHIFT), (src,))
        changed.update({u: Node(op, (q + MERGED,)) for u, op in reads.items()})
        spike_input.update(dict.fromkeys(users, spikes))
        merged[q] = q + MERGED
    if not merged:
        return graph, tuple(chip), levels
    first = {levels[q][0]: q for q in merged}  # each merged LIF takes its first level's place
    gone = {n for q in merged for n in (q, *levels[q])}
    nodes: dict[str, Node] = {}
    for name, node in graph.nodes.items():
        if name in first:
            nodes[merged[first[name]]] = changed[merged[first[name]]]
        if name not in gone:
            nodes[name] = changed.get(name, node)
    order = tuple(merged[first[n]] if n in first else n for n in chip if n in first or n not in gone)
    schedule = graph.schedule and dataclasses.replace(graph.schedule, latency={
        **{n: t for n, t in graph.schedule.latency.items() if n not in gone},
        **{m: graph.schedule.latency[q] for q, m in merged.items()}})
    scales = graph.scales and {n: v for n, v in graph.scales.items() if n not in gone}
    graph = dataclasses.replace(graph, nodes=nodes, schedule=schedule, scales=scales)
    return graph, order, {q: ((merged[q],) if q in merged else lifs) for q, lifs in levels.items()}


__all__ = ["CLAMP", "LEVEL", "MERGED", "level_neurons", "merge_level_neurons", "split_level_neurons"]

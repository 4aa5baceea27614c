"""How few cores any placement of a graph can use, from the graph alone (no cut is made): shown next to the
cores a placement uses (``snncompile compile``, the run report, ``benchmarks/scale.py``).

A placement (:mod:`.placement`) gives every unit cores of its own (no two units share a core), and every
unit's cores together hold all its compartments, store each of its kernel rows at least once, receive every
source element it reads and send every element it emits to each core that reads it. So a unit needs at least
``ceil(need / per-core limit)`` cores for each resource:

- ``neurons``: its compartments;
- ``synaptic memory``: its kernel rows (and tables), each stored once;
- ``input axons``: the distinct source elements it reads;
- ``output axons``: for each element it emits, the fewest cores that must receive it: a convolution that
  reads it computes all ``C_out / groups`` output channels of its group from it, and one core stores the
  kernels of at most ``ch_max = kernel memory / one channel's kernel bits`` of them, so the element reaches
  at least ``ceil(C_out / groups / ch_max)`` cores of that unit (a dense layer's rows likewise); any other
  reader at least one core; the host one axon. Summed over the units that read it (their cores differ);
- ``kernels and windows``: for a stride-1 convolution whose windows are centred on input elements (1x1
  unpadded, or odd kernels padded by half), each output position's ``C_out`` channels lie on cores of at
  most ``ch_max`` channels each, so on at least ``ceil(C_out / ch_max)`` cores, and one core holds at most
  ``A_max`` positions: each reads the ``C_in / groups`` channels of its own centre element, and each element
  a core holds also reads one element of every other source its unit adds there (a residual), so
  ``A_max * (C_in / groups + others) <= input axons``. Counting (core, position) pairs, the convolution needs
  ``ceil(positions * ceil(C_out / ch_max) / A_max)`` cores;
- ``rows and columns``: an attention accumulate (``KVOuterAccumulate``, ``QMAccumulate``, ``SpikeScores``,
  ``ScoreValueAccumulate``) whose two inputs are distinct sources outside its group: each output is a (row,
  column) pair of a head reading a whole row of one input and a whole column of the other, so one core holds
  at most the outputs of the rectangle its input axons allow (:mod:`.placement_outer`); and each element of
  those inputs reaches at least ``ceil(columns / c_max)`` of its cores (rows likewise: counted in its
  sources' output axons above, ``c_max`` the columns a core holding one row can read).

The graph needs the sum over its units of the largest of these (``CoreBound.cores``; each unit's in
``by_unit``); ``by_resource`` gives each resource's sum alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from ..ir import Graph
from ..ir.ops import Delay, IntConv2d, IntDense, Op
from ..targets import Target, load_target
from .placement import _groups, _limit, _Unit, host_nodes
from .placement_outer import outer, outputs_per_core, receivers

RESOURCES = ("neurons", "synaptic memory", "input axons", "output axons", "kernels and windows", "rows and columns")


@dataclass(frozen=True)
class CoreBound:
    """A lower bound on the cores a placement of the graph needs (``cores``), per resource the bound that
    resource alone gives (``by_resource``: :data:`RESOURCES`), and per unit its own bound (``by_unit``: where a
    placement's cores and the bound part)."""

    cores: int
    by_resource: Mapping[str, int]
    by_unit: Mapping[str, int]


def _channels_per_core(op, bits_limit: int | None) -> int | None:
    """The most output channels (convolution) or rows (dense) whose kernels one core stores."""
    if bits_limit is None or not isinstance(op, (IntConv2d, IntDense)):
        return None
    return max(1, bits_limit // (math.prod(op.weight.shape[1:]) * op.weight_bits))


def _outer_reads(graph: Graph, member: str, members: list[str], shapes):
    """``member``'s outputs as an outer product (:func:`.placement_outer.outer`) where its two inputs are
    distinct sources outside the group (their reads are then the unit's input axons); else None."""
    node = graph.nodes[member]
    shape = outer(node.op, [shapes[s] for s in node.inputs])
    if shape is None or len(set(node.inputs)) != 2 or any(s in members for s in node.inputs):
        return None
    return shape


def _receivers(op, which: int, bits_limit: int | None, shape, axons: int | None) -> int:
    """The fewest cores of one unit that receive an element of input ``which`` its member ``op`` reads
    (``shape``: the member as an outer product, or None)."""
    if shape is not None and axons is not None:
        return receivers(shape, which, axons)
    most = _channels_per_core(op, bits_limit)
    if most is None:
        return 1
    outputs = op.weight.shape[0] // (op.groups if isinstance(op, IntConv2d) else 1)
    return -(-outputs // most)


def _centred(op: IntConv2d) -> bool:
    kh, kw = op.weight.shape[2:]
    return tuple(op.stride) == (1, 1) and tuple(op.dilation) == (1, 1) and \
        all(k % 2 == 1 and p == k // 2 for k, p in zip((kh, kw), op.padding))


def _others(graph: Graph, members: list[str], conv: str, shapes) -> int:
    """Sources outside the group that the members of ``conv``'s shape read element by element (a residual)."""
    return sum(1 for m in members if m != conv and shapes[m] == shapes[conv] and type(graph.op(m)).reads is Op.reads
               for s in graph.nodes[m].inputs if s not in members)


def _kernels_and_windows(graph: Graph, members: list[str], shapes, limits) -> int:
    found = 0
    for m in members:
        op = graph.op(m)
        if not isinstance(op, IntConv2d) or not _centred(op) or limits["input axons"] is None:
            continue
        most = _channels_per_core(op, limits["synaptic memory"])
        positions_per_core = limits["input axons"] // (op.weight.shape[1] + _others(graph, members, m, shapes))
        if most is None or positions_per_core == 0:
            continue
        channels, *grid = shapes[m]
        found = max(found, -(-math.prod(grid) * -(-channels // most) // positions_per_core))
    return found


def _rows_and_columns(graph: Graph, members: list[str], shapes, limits) -> int:
    found = 0
    for m in members:
        shape = _outer_reads(graph, m, members, shapes)
        if shape is not None and limits["input axons"] is not None:
            most = outputs_per_core(shape, limits["input axons"])
            if limits["neurons"] is not None:
                most = min(most, limits["neurons"])
            found = max(found, -(-shape.outputs // most) if most else 0)
    return found


def _sends(graph: Graph, groups: dict[str, list[str]], shapes, host: set[str], limits) -> dict[str, int]:
    """Per unit, the fewest output axons its elements need (see the module docstring)."""
    sends = {u: 0 for u in groups}
    for u in groups:
        if u in graph.outputs or any(c in host for c in graph.consumers(u)):
            sends[u] += math.prod(shapes[u])
    for members in groups.values():
        per_source: dict[str, np.ndarray] = {}
        for m in members:
            node = graph.nodes[m]
            reads = None
            for i, src in enumerate(node.inputs):
                if src in members or src not in sends:
                    continue
                reads = reads or node.op.reads(np.ones(shapes[m], bool), [shapes[s] for s in node.inputs])
                need = reads[i].reshape(-1) * _receivers(node.op, i, limits["synaptic memory"],
                                                         _outer_reads(graph, m, members, shapes),
                                                         limits["input axons"])
                per_source[src] = need if src not in per_source else np.maximum(per_source[src], need)
        for src, need in per_source.items():
            sends[src] += int(need.sum())
    return sends


def lower_bound(graph: Graph, target: Target | str | Path) -> CoreBound:
    """The bound of the module docstring for ``graph`` on ``target``."""
    target = load_target(target)
    shapes = {n: tuple(t.shape) for n, t in graph.types().items()}
    limits = {"neurons": _limit(target.neurons_per_core),
              "synaptic memory": _limit(target.synaptic_memory_per_core, 1024 * 8),
              "input axons": _limit(target.fan_in_axons_per_core),
              "output axons": _limit(target.fan_out_axons_per_core)}
    groups = _groups(graph, graph.types())[1]
    sends = _sends(graph, groups, shapes, set(host_nodes(graph)), limits)
    per_resource, per_unit = dict.fromkeys(RESOURCES, 0), {}
    for u, members in groups.items():
        counted = [m for m in members if not isinstance(graph.op(m), Delay)] or [u]
        unit = _Unit(u, members, max(1, max(math.prod(shapes[m]) for m in counted)), shapes, graph)
        need = {"neurons": unit.neurons, "synaptic memory": unit.synaptic_bits(0, unit.neurons),
                "input axons": sum(int(m.sum()) for m in unit.fan_in(0, unit.neurons).values()),
                "output axons": sends[u]}
        cores = {k: -(-need[k] // limits[k]) if limits[k] else 1 for k in need}
        cores["kernels and windows"] = _kernels_and_windows(graph, members, shapes, limits)
        cores["rows and columns"] = _rows_and_columns(graph, members, shapes, limits)
        for k in per_resource:
            per_resource[k] += cores[k]
        per_unit[u] = max(1, *cores.values())
    return CoreBound(sum(per_unit.values()), per_resource, per_unit)


__all__ = ["CoreBound", "lower_bound", "RESOURCES"]

"""Lowering of SDT-V3's multi-level activations, exact against the float graph.

- :func:`fold_level_norms`: every quantiser that divides its level by ``D`` (a power of two) sends the level
  itself, and the ``1/D`` moves into what reads it: the convolution weights (``(w / D) k`` and ``w (k / D)`` are
  the same real product, so every rounding is the same) and the attention scale (``1/D^3`` for Q, K and V). The
  quantiser before the head has ``norm = 1`` already: the head reads levels 0..D as upstream does.
- :func:`lower_level_attention`: once folded, each ``MultiLevelAttention`` on levels and its quantiser become an
  integer ``LevelAttention`` (the accumulate ``(Q K^T) V`` in ``0 .. N d D^3``, its width proven by
  ``LevelAttention.value_range``: the "1/64 steps" of D = 4 are integers) and a ``LevelThreshold`` whose D
  thresholds are the least accumulates at which the float rounding ``round_half_even(acc * scale)`` rises,
  found on the float expression itself, so ties (exact halves) go where torch sends them.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..ir import Graph, Node
from ..ir.ops import Conv2d, LevelAttention, LevelThreshold, MultiLevelAttention, MultiLevelSpike

EXACT_LIMIT = 2 ** 24  # integers up to here are exact in float32: the accumulate the float graph computes


class LevelLoweringError(ValueError):
    """A multi-level node cannot be lowered exactly; the message names it."""


def _is_power_of_two(x: float) -> bool:
    return x >= 1 and float(x).is_integer() and int(x) & (int(x) - 1) == 0


def fold_level_norms(graph: Graph) -> Graph:
    """The graph with every power-of-two quantiser norm moved into its readers (convolutions, attention)."""
    nodes = dict(graph.nodes)
    folded = {}
    for name, node in graph.nodes.items():
        op = node.op
        if not isinstance(op, MultiLevelSpike) or op.norm == 1 or not _is_power_of_two(op.norm):
            continue
        readers = graph.consumers(name)
        if readers and all(isinstance(graph.op(r), (Conv2d, MultiLevelAttention)) for r in readers):
            folded[name] = op.norm
            nodes[name] = Node(dataclasses.replace(op, norm=1.0), node.inputs)
    for name, node in graph.nodes.items():
        op, norms = node.op, [folded.get(src) for src in node.inputs]
        if isinstance(op, Conv2d) and norms[0]:
            nodes[name] = Node(dataclasses.replace(op, weight=op.weight * np.float32(1 / norms[0])), node.inputs)
        elif isinstance(op, MultiLevelAttention) and any(norms):
            if not all(norms):
                raise LevelLoweringError(f"node {name!r}: only some of Q, K, V fold their norms")
            nodes[name] = Node(dataclasses.replace(op, scale=op.scale / float(np.prod(norms))), node.inputs)
    return dataclasses.replace(graph, nodes=nodes).validate()


def lower_level_attention(graph: Graph) -> Graph:
    """Each folded ``MultiLevelAttention`` and its one quantiser as ``LevelAttention`` + ``LevelThreshold``."""
    nodes = dict(graph.nodes)
    types = graph.types()
    for name, node in graph.nodes.items():
        op = node.op
        if not isinstance(op, MultiLevelAttention):
            continue
        operands = [graph.op(src) for src in node.inputs]
        readers = graph.consumers(name)
        if not all(isinstance(o, MultiLevelSpike) and o.norm == 1 for o in operands):
            raise LevelLoweringError(f"node {name!r}: Q, K and V must be levels (fold_level_norms first)")
        if len(readers) != 1 or not isinstance(graph.op(readers[0]), MultiLevelSpike):
            raise LevelLoweringError(f"node {name!r}: its one reader must be a MultiLevelSpike quantiser")
        levels = operands[0].levels
        accumulate = LevelAttention(heads=op.heads, levels=levels)
        bound = accumulate.bound(types[node.inputs[0]].shape)
        if bound >= EXACT_LIMIT:
            raise LevelLoweringError(f"node {name!r}: accumulates up to {bound} are not exact in float32 (>= 2^24)")
        quantiser = graph.op(readers[0])
        scale = op.scale

        def float_level(acc: torch.Tensor, top=quantiser.levels) -> torch.Tensor:
            return torch.clamp(acc.to(torch.float32) * scale, 0, top)  # what the float graph computes

        thresholds = level_thresholds(float_level, quantiser.levels, bound)
        nodes[name] = Node(accumulate, node.inputs)
        nodes[readers[0]] = Node(LevelThreshold(thresholds=thresholds, encoding=quantiser.encoding), (name,))
        if quantiser.norm != 1:
            raise LevelLoweringError(f"node {readers[0]!r}: its norm {quantiser.norm} is not folded")
    return dataclasses.replace(graph, nodes=nodes).validate()


def level_thresholds(value, levels: int, bound: int) -> np.ndarray:
    """For a nondecreasing float map ``value`` of the integers ``0 .. bound``, the least integer at which
    ``round_half_even(value(x))`` reaches each level 1..``levels`` (``bound + 1``: never), by bisection."""
    def level(x: int) -> int:
        return int(torch.round(value(torch.tensor([x]))).item())

    out = []
    for k in range(1, levels + 1):
        lo, hi = 0, bound + 1
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if level(mid) >= k else (mid + 1, hi)
        out.append(lo)
    return np.array(out, dtype=np.int64)


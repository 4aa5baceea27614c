"""Lowering of SDT-V3's multi-level activations, exact against the float graph.

- :func:`fold_level_norms`: every quantiser that divides its level by ``D`` (a power of two) sends the level
  itself, and the ``1/D`` moves into what reads it: the convolution weights (``(w / D) k`` and ``w (k / D)`` are
  the same real product, so every rounding is the same) and the attention scale (``1/D^3`` for Q, K and V). The
  quantiser before the head has ``norm = 1`` already: the head reads levels 0..D as upstream does.
- :func:`lower_level_attention`: once folded, each ``MultiLevelAttention`` on levels and its quantiser become
  integer ``LevelScores`` (``Q K^T`` in ``0 .. d D^2``) and ``LevelScoreValue`` (``(Q K^T) V`` in ``0 .. N d D^3``;
  widths proven by their ``value_range``: the "1/64 steps" of D = 4 are integers) and a ``LevelThreshold`` whose D
  thresholds are the least accumulates at which the float rounding ``round_half_even(acc * scale)`` rises,
  found on the float expression itself, so ties (exact halves) go where torch sends them.
- :data:`lower_levels`: both, as the ``loihi`` pipeline's pass before ``quantize``, which then puts every other
  quantiser on its integer input (:func:`half_level_thresholds`).
"""
from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import torch

from ..ir import Graph, Node
from ..ir.ops import Conv2d, LevelScores, LevelScoreValue, LevelThreshold, MultiLevelAttention, MultiLevelSpike
from .pipeline import Alignment, PassContext, as_pass

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
    """Each folded ``MultiLevelAttention`` (node ``a``) and its one quantiser as ``LevelScores`` (new node
    ``a.scores``) + ``LevelScoreValue`` (node ``a``) + ``LevelThreshold`` (the quantiser's node)."""
    types = graph.types()
    nodes: dict[str, Node] = {}
    lowered: dict[str, Node] = {}
    for name, node in graph.nodes.items():
        op = node.op
        if isinstance(op, MultiLevelAttention):
            reader, scores, product = _lowered_attention(graph, types, name)
            nodes[f"{name}.scores"] = Node(scores, node.inputs[:2])
            nodes[name] = Node(product, (f"{name}.scores", node.inputs[2]))
            lowered[graph.consumers(name)[0]] = reader
        else:
            nodes[name] = lowered.get(name, node)
    return dataclasses.replace(graph, nodes=nodes).validate()


def _lowered_attention(graph: Graph, types: dict, name: str) -> tuple[Node, LevelScores, LevelScoreValue]:
    """The quantiser node reading attention ``name``, and the two accumulates, checked to be exact."""
    op = graph.op(name)
    operands = [graph.op(src) for src in graph.nodes[name].inputs]
    readers = graph.consumers(name)
    if not all(isinstance(o, MultiLevelSpike) and o.norm == 1 for o in operands):
        raise LevelLoweringError(f"node {name!r}: Q, K and V must be levels (fold_level_norms first)")
    if len(readers) != 1 or not isinstance(graph.op(readers[0]), MultiLevelSpike) or graph.op(readers[0]).norm != 1:
        raise LevelLoweringError(f"node {name!r}: its one reader must be a MultiLevelSpike quantiser sending levels")
    levels = operands[0].levels
    scores, product = LevelScores(heads=op.heads, levels=levels), LevelScoreValue(heads=op.heads, levels=levels)
    q, v = types[graph.nodes[name].inputs[0]], types[graph.nodes[name].inputs[2]]
    s = scores.infer([q, q])
    bound = int(product.value_range([None, None], [s, v], v).hi)
    if bound >= EXACT_LIMIT:
        raise LevelLoweringError(f"node {name!r}: accumulates up to {bound} are not exact in float32 (>= 2^24)")
    quantiser, scale = graph.op(readers[0]), op.scale

    def float_level(acc: torch.Tensor) -> torch.Tensor:
        return torch.clamp(acc.to(torch.float32) * scale, 0, quantiser.levels)  # what the float graph computes

    thresholds = level_thresholds(float_level, quantiser.levels, bound)
    reader = Node(LevelThreshold(thresholds=thresholds, encoding=quantiser.encoding), (name,))
    return reader, scores, product


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



def half_level_thresholds(scale: float, levels: int) -> np.ndarray:
    """The least integer ``a`` at which ``round_half_even(clamp(scale * a, 0, levels))`` reaches each level
    1..``levels``, in exact rational arithmetic (``scale`` > 0, taken as the float64 it is): level ``k`` starts
    just above the half-level ``(k - 1/2) / scale``; where that half-level is itself an integer, the tie goes to
    the even neighbour, so it starts there for an even ``k`` and one step above it for an odd ``k``."""
    step = Fraction(scale)
    out = []
    for k in range(1, levels + 1):
        half = Fraction(2 * k - 1, 2) / step
        least = math.ceil(half)
        out.append(least + 1 if least == half and k % 2 else least)
    return np.array(out, dtype=np.int64)


def _aligned(before: Graph, after: Graph) -> Alignment:
    """A folded quantiser's levels are ``norm`` times its old values; an integer attention accumulate is its old
    value over the folded scale."""
    scale = {}
    for name, node in after.nodes.items():
        old = before.op(name) if name in before.nodes else None
        if isinstance(old, MultiLevelSpike):
            scale[name] = getattr(node.op, "norm", 1.0) / old.norm
        elif isinstance(old, MultiLevelAttention):
            norms = [before.op(src).norm for src in before.nodes[name].inputs]
            scale[name] = old.scale / float(np.prod(norms))
    return Alignment(scale=scale)


@as_pass(align=_aligned)
def lower_levels(graph: Graph, ctx: PassContext) -> Graph:
    """SDT-V3's levels ready for ``quantize``: every power-of-two norm folded into the readers
    (:func:`fold_level_norms`), every ``MultiLevelAttention`` as its exact integer form
    (:func:`lower_level_attention`). Exact against its input (levels in units of ``1/norm``, tested).
    Returns ``graph`` itself when it has no multi-level node."""
    if not any(isinstance(node.op, (MultiLevelSpike, MultiLevelAttention)) for node in graph.nodes.values()):
        return graph
    return lower_level_attention(fold_level_norms(graph))

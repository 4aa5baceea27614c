"""What SDT-V3's multi-level activations cost sent either way (``MultiLevelSpike.encoding``), from one run.

For every quantiser node (level ``k`` in ``0 .. D`` per element) and the synapses that read it:

- ``graded``: one message per non-zero level, carrying ``k`` (Loihi 2 graded spikes); each message is a
  multiply-accumulate at every synapse it reaches (``MACs``); one step per layer.
- ``unary``: ``k`` binary spikes over ``D`` sub-steps; each spike an accumulate at every synapse it reaches
  (``ACs``); ``D`` steps per layer.

The attention's products are counted as the accumulates of its integer form (``LevelScores``, then
``LevelScoreValue``): graded, one per non-zero product (their ``work``); unary, one per coincidence of unit spikes
(the accumulates' values).
Steps are the quantiser layers on the longest path times 1 or ``D``. Energy prices these counts with a target's
figures (:func:`snncompile.report.cost.price`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from ..ir import Graph
from ..ir.ops import LevelScores, LevelScoreValue, LevelThreshold, MultiLevelAttention, MultiLevelSpike
from .cost import price

ENCODINGS = ("graded", "unary")


@dataclass(frozen=True)
class EncodingCost:
    """Per sample: steps, messages, synaptic operations, attention accumulates, and energy (pJ) on a target."""

    encoding: str
    steps: int
    messages: float
    synaptic_ops: float
    attention_accumulates: float
    energy_pj: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def quantiser_levels(graph: Graph, values: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each quantiser node's integer levels (int64), from a run's values (float or lowered graph alike)."""
    out = {}
    for name, node in graph.nodes.items():
        if isinstance(node.op, MultiLevelSpike):
            out[name] = torch.round(values[name].float() * node.op.norm).to(torch.int64)
        elif isinstance(node.op, LevelThreshold):
            out[name] = values[name].to(torch.int64)
    return out


def _depth(graph: Graph, quantisers: set[str]) -> int:
    """The most quantisers on one path from the input (the layers a message crosses one after another)."""
    depth: dict[str, int] = {}
    for name in graph.topo_order():
        before = max((depth[s] for s in graph.nodes[name].inputs), default=0)
        depth[name] = before + (name in quantisers)
    return max(depth.values(), default=0)


def encoding_costs(graph: Graph, values: Mapping[str, torch.Tensor], target: str = "loihi2"
                   ) -> dict[str, EncodingCost]:
    """The cost of each encoding (``ENCODINGS``) of ``graph``'s quantisers, per sample, from ``values`` (a
    ``run_graph(..., keep="all")`` of one batch)."""
    levels = quantiser_levels(graph, values)
    types = graph.types()
    samples = next(iter(levels.values())).shape[1] if levels else 1
    top = max((graph.op(n).levels for n in levels), default=1)
    counts = {e: {"messages": 0.0, "synaptic_ops": 0.0, "attention": 0.0} for e in ENCODINGS}
    for name, level in levels.items():
        sent = {"graded": (level > 0).to(torch.float64), "unary": level.to(torch.float64)}
        for e in ENCODINGS:
            counts[e]["messages"] += float(sent[e].sum())
        for reader in graph.consumers(name):
            op = graph.op(reader)
            if op.WORK == "synaptic":
                fan = op.fan_out(types[name].shape)[0].to(torch.float64)
                for e in ENCODINGS:
                    counts[e]["synaptic_ops"] += float((sent[e] * fan).sum())
    for name, node in graph.nodes.items():
        if isinstance(node.op, MultiLevelAttention):
            q, k, v = (levels[s] for s in node.inputs)
        elif isinstance(node.op, LevelScoreValue):
            (q, k), v = graph.nodes[node.inputs[0]].inputs, node.inputs[1]
            q, k, v = levels[q], levels[k], levels[v]
        else:
            continue
        scores, product = LevelScores(heads=node.op.heads), LevelScoreValue(heads=node.op.heads)
        s = scores.run(q, k)
        counts["graded"]["attention"] += float(scores.work([q, k]).sum() + product.work([s, v]).sum())
        counts["unary"]["attention"] += float(s.sum() + product.run(s, v).sum())
    depth = _depth(graph, set(levels))
    out = {}
    for e, c in counts.items():
        synapse_kind = "MACs" if e == "graded" else "ACs"
        totals = {synapse_kind: c["synaptic_ops"], "spikes": c["messages"], "attention_accumulates": c["attention"]}
        energy = price(totals, samples, target).total_pj
        out[e] = EncodingCost(e, depth * (1 if e == "graded" else top), c["messages"] / samples,
                              c["synaptic_ops"] / samples, c["attention"] / samples, energy)
    return out

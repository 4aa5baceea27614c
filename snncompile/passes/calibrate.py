"""Calibration ranges: the largest and smallest value each node of a graph reaches on calibration data,
gathered batch by batch so that memory does not grow with the number of calibration samples.

The passes that choose a scale from data (``lower_attention``'s K, ``quantize``'s headroom) need only each
node's extremes, never its values: the feeds are cut into batches of ``CALIBRATION_BATCH`` samples, each
batch runs through the reference simulator (its fast kernels, the float neurons included) keeping no value
past its last reader, and an observer folds the value of every node a pass reads into its running extremes as
it is computed; only those nodes and what they depend on run. Every graph these passes see computes each
sample independently, so the extremes are those of one run on all samples at once, up to the last bit of a
float kernel whose rounding depends on the batch size (a convolution's summation order).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Collection, Iterator, Mapping

import torch

from ..ir import Graph
from ..sim import run_graph

CALIBRATION_BATCH = 8   # samples per calibration run: bounds the memory of the largest values held at once


@dataclass
class Ranges:
    """Per node, the largest value (``high``), the smallest (``low``) and the largest magnitude (``peak``)
    seen on the calibration data; nodes with empty values are absent."""

    high: dict[str, float] = field(default_factory=dict)
    low: dict[str, float] = field(default_factory=dict)

    @property
    def peak(self) -> dict[str, float]:
        return {n: max(abs(self.high[n]), abs(self.low[n])) for n in self.high}

    def observe(self, name: str, value: torch.Tensor) -> None:
        if not value.numel():
            return
        low, high = (float(v) for v in torch.aminmax(value))
        self.high[name] = max(high, self.high.get(name, high))
        self.low[name] = min(low, self.low.get(name, low))


def batches(graph: Graph, feeds: Mapping[str, object], size: int) -> Iterator[dict[str, torch.Tensor]]:
    """``feeds`` cut into runs of at most ``size`` samples (static feeds ``[B, ...]`` on their first axis,
    streams ``[T, B, ...]`` on their second)."""
    types = graph.types()
    tensors = {n: torch.as_tensor(v) for n, v in feeds.items()}
    axis = {n: 1 if n in types and types[n].time == "stream" else 0 for n in tensors}
    samples = {t.shape[axis[n]] for n, t in tensors.items()}
    if len(samples) != 1:
        raise ValueError(f"calibration feeds disagree on the number of samples: {sorted(samples)}")
    (count,) = samples
    for start in range(0, count, size):
        yield {n: t.narrow(axis[n], start, min(size, count - start)) for n, t in tensors.items()}


def _ancestors(graph: Graph, names: Collection[str]) -> set[str]:
    """``names`` and every node they read, directly or not."""
    found, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo.extend(graph.nodes[name].inputs)
    return found


def _restricted(graph: Graph, needed: set[str]) -> Graph:
    """``graph`` cut down to ``needed`` (closed under inputs), its outputs the needed nodes no needed node
    reads (so every other value is still freed after its last reader)."""
    read = {s for n in needed for s in graph.nodes[n].inputs}
    return dataclasses.replace(graph, nodes={n: node for n, node in graph.nodes.items() if n in needed},
                               outputs=tuple(n for n in graph.nodes if n in needed and n not in read))


def value_ranges(graph: Graph, feeds: Mapping[str, object], *, batch: int = CALIBRATION_BATCH,
                 nodes: Collection[str] | None = None) -> Ranges:
    """The extremes of ``nodes`` (default: every node) over ``feeds`` (``run_graph`` style), ``batch`` samples
    at a time. Only the part of the graph these nodes depend on runs."""
    ranges = Ranges()
    wanted = set(graph.nodes if nodes is None else nodes)
    needed = _ancestors(graph, wanted)
    if graph.schedule is None and graph.scales is None and needed != set(graph.nodes):
        graph = _restricted(graph, needed)  # (a scheduled or quantised graph's records name all its nodes)
    fed = set(graph.inputs())

    def observe(name, op, inputs, value, traces):
        if name in wanted:
            ranges.observe(name, value)

    for part in batches(graph, {n: v for n, v in feeds.items() if n in fed}, batch):
        run_graph(graph, part, observer=observe)
    return ranges


__all__ = ["CALIBRATION_BATCH", "Ranges", "batches", "value_ranges"]

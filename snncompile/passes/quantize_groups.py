"""quantize's scale groups: the float edges that must share one scale (an ``Add``'s inputs and output, a
``MaxPool2d``, ``ReLU``, ``Delay`` or ``Flatten``'s input and output), found by union-find."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import Graph
from ..ir.ops import Add, Delay, Flatten, Input, MaxPool2d, Output, ReLU


@dataclass
class Group:
    """Float edges sharing one scale."""

    members: list[str] = field(default_factory=list)
    fixed: float | None = None        #: scale imposed by a fixed-scale source (spikes, integer attention)
    scale: float | None = None        #: the chosen scale


class ScaleGroups:
    """The float edges of ``graph`` in their scale groups (union-find); the lowering chooses each group's
    scale."""

    def __init__(self, graph: Graph, types):
        self.graph, self.types = graph, types
        self.time_steps = graph.time_steps
        self.parent: dict[str, str] = {}
        for name in graph.topo_order():
            if self.types[name].dtype.kind == "float" and not isinstance(graph.op(name), (Input, Output)):
                self.parent[name] = name
        for name in graph.topo_order():
            op, inputs = graph.op(name), graph.nodes[name].inputs
            if isinstance(op, (Add, MaxPool2d, ReLU, Delay, Flatten)) and name in self.parent:
                for src in inputs:
                    if src in self.parent:
                        self._union(src, name)

    def _find(self, name: str) -> str:
        while self.parent[name] != name:
            self.parent[name] = self.parent[self.parent[name]]
            name = self.parent[name]
        return name

    def _union(self, a: str, b: str) -> None:
        self.parent[self._find(a)] = self._find(b)

    def groups(self) -> dict[str, Group]:
        out: dict[str, Group] = {}
        for name in self.parent:
            out.setdefault(self._find(name), Group()).members.append(name)
        return out

    def group_of(self, name: str) -> str:
        return self._find(name)


__all__ = ["Group", "ScaleGroups"]

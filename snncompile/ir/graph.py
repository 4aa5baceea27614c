"""The graph container: named nodes, their ordered inputs, the outputs, and the pass history.

A graph is data plus a few queries. Editing lives in passes (which build new graphs); running lives
in ``interpret.py`` and the simulators.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from .ops.base import Op, TypeMismatch
from .types import TensorType


class GraphError(ValueError):
    """A graph is invalid; the message lists every problem, each naming its node."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid graph:\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class Node:
    op: Op
    inputs: tuple[str, ...] = ()  # producer node names, in the op's input-port order


@dataclass(frozen=True)
class HistoryEntry:
    """One pass applied to a graph: its name, options and a digest of the resulting graph."""

    name: str
    options: Mapping[str, object] = field(default_factory=dict)
    digest: str = ""


@dataclass(frozen=True)
class Graph:
    nodes: Mapping[str, Node]
    outputs: tuple[str, ...]
    time_steps: int
    history: tuple[HistoryEntry, ...] = ()

    # -- queries ------------------------------------------------------------------------------
    def op(self, name: str) -> Op:
        return self.nodes[name].op

    def inputs(self) -> list[str]:
        """Names of the graph's Input nodes, in node order."""
        return [n for n, node in self.nodes.items() if node.op.type_name() == "Input"]

    def consumers(self, name: str) -> list[str]:
        return [n for n, node in self.nodes.items() if name in node.inputs]

    def edges(self) -> list[tuple[str, str]]:
        return [(src, dst) for dst, node in self.nodes.items() for src in node.inputs]

    def topo_order(self) -> list[str]:
        """Nodes ordered so that every producer comes before its consumers (raises on a cycle)."""
        order, state = [], {}

        def visit(name: str, path: tuple[str, ...]):
            if state.get(name) == "done":
                return
            if state.get(name) == "active":
                cycle = path[path.index(name):] + (name,)
                raise GraphError([f"cycle through {' -> '.join(cycle)}"])
            state[name] = "active"
            for src in self.nodes[name].inputs:
                if src in self.nodes:
                    visit(src, path + (name,))
            state[name] = "done"
            order.append(name)

        for name in self.nodes:
            visit(name, ())
        return order

    # -- validation -----------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Every structural and type problem of the graph, each naming its node."""
        problems = []
        if self.time_steps < 1:
            problems.append(f"time_steps must be >= 1, got {self.time_steps}")
        for name, node in self.nodes.items():
            problems += [f"node {name!r} ({node.op.type_name()}): {p}" for p in node.op.problems()]
            for src in node.inputs:
                if src not in self.nodes:
                    problems.append(f"node {name!r}: input {src!r} does not exist (dangling edge)")
            arity = node.op.ARITY
            if arity is not None and len(node.inputs) != arity:
                problems.append(f"node {name!r} ({node.op.type_name()}) takes {arity} input(s), "
                                f"has {len(node.inputs)}")
            if arity is None and not node.inputs:
                problems.append(f"node {name!r} ({node.op.type_name()}) needs at least one input")
        for out in self.outputs:
            if out not in self.nodes:
                problems.append(f"graph output {out!r} is not a node")
        if not self.outputs:
            problems.append("graph has no outputs")
        if problems:
            return problems
        try:
            order = self.topo_order()
        except GraphError as e:
            return e.problems
        types: dict[str, TensorType] = {}
        for name in order:
            node = self.nodes[name]
            if any(src not in types for src in node.inputs):
                continue  # an upstream node already failed
            try:
                types[name] = node.op.infer([types[src] for src in node.inputs])
            except TypeMismatch as e:
                problems.append(f"node {name!r} ({node.op.type_name()}): {e}")
        return problems

    def validate(self) -> "Graph":
        """Return ``self`` if valid, else raise :class:`GraphError` listing every problem."""
        problems = self.problems()
        if problems:
            raise GraphError(problems)
        return self

    def types(self) -> dict[str, TensorType]:
        """The output type of every node (the graph must be valid)."""
        self.validate()
        types: dict[str, TensorType] = {}
        for name in self.topo_order():
            node = self.nodes[name]
            types[name] = node.op.infer([types[src] for src in node.inputs])
        return types

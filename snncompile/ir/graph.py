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
        """Every structural and type problem of the graph at once, each naming its node.

        Checked: the node's own parameters, dangling inputs, arity, a ``time_steps`` field that differs
        from the graph's, the outputs, every cycle, and the types of every node whose inputs are sound
        (a node downstream of a broken one or of a cycle is not type-checked: it has no input type).
        """
        problems = []
        if self.time_steps < 1:
            problems.append(f"time_steps must be >= 1, got {self.time_steps}")
        broken = set()
        for name, node in self.nodes.items():
            what = f"node {name!r} ({node.op.type_name()})"
            steps = getattr(node.op, "time_steps", None)
            if isinstance(steps, int) and steps != self.time_steps:  # infer still makes sense
                problems.append(f"{what}: time_steps={steps} differs from the graph's {self.time_steps}")
            own = [f"{what}: {p}" for p in node.op.common_problems() + node.op.problems()]
            own += [f"{what}: input {src!r} does not exist (dangling edge)" for src in node.inputs
                    if src not in self.nodes]
            arity = node.op.ARITY
            if arity is not None and len(node.inputs) != arity:
                own.append(f"{what} takes {arity} input(s), has {len(node.inputs)}")
            if arity is None and not node.inputs:
                own.append(f"{what} needs at least one input")
            if own:
                broken.add(name)
                problems += own
        for out in self.outputs:
            if out not in self.nodes:
                problems.append(f"graph output {out!r} is not a node")
        if not self.outputs:
            problems.append("graph has no outputs")
        order, cycles = self._order_and_cycles()
        problems += ["cycle: " + " -> ".join(cycle + [cycle[0]]) for cycle in cycles]
        types: dict[str, TensorType] = {}
        for name in order:
            node = self.nodes[name]
            if name in broken or any(src not in types for src in node.inputs):
                continue  # this node or an upstream one already failed
            try:
                types[name] = node.op.infer([types[src] for src in node.inputs])
            except TypeMismatch as e:
                problems.append(f"node {name!r} ({node.op.type_name()}): {e}")
        return problems

    def _order_and_cycles(self) -> tuple[list[str], list[list[str]]]:
        """Dependency order of the nodes not on or behind a cycle, and one listing per cycle
        (in data-flow order). Iterative, so deep graphs need no recursion."""
        pending = {n: sum(src in self.nodes for src in node.inputs) for n, node in self.nodes.items()}
        consumers: dict[str, list[str]] = {n: [] for n in self.nodes}
        for n, node in self.nodes.items():
            for src in node.inputs:
                if src in self.nodes:
                    consumers[src].append(n)
        ready = [n for n, k in pending.items() if k == 0]
        order = []
        while ready:
            n = ready.pop()
            order.append(n)
            for c in consumers[n]:
                pending[c] -= 1
                if pending[c] == 0:
                    ready.append(c)
        left = {n for n in self.nodes if pending[n] > 0}
        # Drop what only hangs behind a cycle: keep nodes that feed another left-over node.
        changed = True
        while changed:
            changed = False
            for n in list(left):
                if not any(c in left for c in consumers[n]):
                    left.discard(n)
                    changed = True
        cycles, seen = [], set()
        for start in self.nodes:
            if start not in left or start in seen:
                continue
            path, index, cur = [start], {start: 0}, start
            while True:  # walk producer-wards; every node left has a producer left
                nxt = next(src for src in self.nodes[cur].inputs if src in left)
                if nxt in index:
                    cycles.append(path[index[nxt]:][::-1])
                    break
                if nxt in seen:
                    break
                index[nxt] = len(path)
                path.append(nxt)
                cur = nxt
            seen.update(path)
        position = {n: i for i, n in enumerate(self.nodes)}
        rotated = []
        for c in cycles:  # start each listing at its first node in node order (deterministic)
            i = c.index(min(c, key=position.get))
            rotated.append(c[i:] + c[:i])
        return order, rotated

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

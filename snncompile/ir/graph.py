"""The graph container: named nodes, their ordered inputs, the outputs, what the lowering decided about
them (the schedule, the quantisation scales), and the pass history.

A graph is data plus a few queries. Editing lives in passes (which build new graphs); running lives
in ``interpret.py`` and the simulators; timing queries (latencies, data window, ``unschedule``) in
``timing.py``.
"""
from __future__ import annotations

import math
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
class Schedule:
    """The timing the ``schedule`` pass gave a graph for a time-stepped target.

    The graph runs ``run_steps = data_steps + max latency`` steps (its ``time_steps``): its inputs carry
    ``data_steps`` steps of data, zeros after, and each node's values arrive from its latency on.
    """

    data_steps: int                   #: ``T``: timesteps of input data (the graph's before scheduling)
    latency: Mapping[str, int]        #: every node -> steps from the graph's inputs to its output (static: 0)
    delay_lines: tuple[str, ...] = ()  #: the ``Delay`` nodes the schedule inserted to re-align paths

    @property
    def run_steps(self) -> int:
        return self.data_steps + max(self.latency.values(), default=0)

    def summary(self) -> str:
        """Where a sample's steps come from: ``19 data steps + 3 of latency``."""
        return f"{self.data_steps} data steps + {self.run_steps - self.data_steps} of latency"

    def problems(self, graph: "Graph") -> list[str]:
        """Where this schedule does not describe ``graph`` (its nodes, its ``time_steps``)."""
        problems = []
        if not (isinstance(self.data_steps, int) and self.data_steps >= 1):
            problems.append(f"schedule: data_steps must be an int >= 1, got {self.data_steps!r}")
        missing = [n for n in graph.nodes if n not in self.latency]
        unknown = [n for n in self.latency if n not in graph.nodes]
        if missing or unknown:
            problems.append(f"schedule: latencies must name every node once; missing {missing[:5]}, "
                            f"not nodes {unknown[:5]}")
        bad = {n: v for n, v in self.latency.items() if not (isinstance(v, int) and v >= 0)}
        if bad:
            problems.append(f"schedule: latencies must be ints >= 0, got {dict(list(bad.items())[:5])}")
        lines = [n for n in self.delay_lines if n not in graph.nodes or graph.nodes[n].op.type_name() != "Delay"]
        if lines:
            problems.append(f"schedule: delay lines {lines[:5]} are not Delay nodes of the graph")
        if not bad and isinstance(self.data_steps, int) and self.run_steps != graph.time_steps:
            problems.append(f"schedule: data_steps {self.data_steps} + largest latency "
                            f"{self.run_steps - self.data_steps} = {self.run_steps} steps, but the graph runs "
                            f"{graph.time_steps}")
        return problems


@dataclass(frozen=True)
class Graph:
    nodes: Mapping[str, Node]
    outputs: tuple[str, ...]
    time_steps: int
    history: tuple[HistoryEntry, ...] = ()  #: provenance: the passes applied, their options and reports
    schedule: Schedule | None = None        #: set by the ``schedule`` pass; None: the graph is unscheduled
    #: set by ``quantize``: node -> the real value of one integer step of its output (a node it does not
    #: name: 1); None: the graph was not quantised
    scales: Mapping[str, float] | None = None

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
        """Nodes ordered so that every producer comes before its consumers (raises on a cycle): a depth-first
        walk of each node's inputs in port order, nodes in node order. Iterative, so a deep graph (a long chain
        listed consumer first) needs no recursion."""
        order, state = [], {}
        for root in self.nodes:
            if state.get(root) == "done":
                continue
            state[root] = "active"
            stack = [(root, iter(self.nodes[root].inputs))]
            while stack:
                name, pending = stack[-1]
                src = next((s for s in pending if s in self.nodes and state.get(s) != "done"), None)
                if src is None:
                    stack.pop()
                    state[name] = "done"
                    order.append(name)
                elif state.get(src) == "active":
                    path = [n for n, _ in stack]
                    cycle = path[path.index(src):] + [src]
                    raise GraphError([f"cycle through {' -> '.join(cycle)}"])
                else:
                    state[src] = "active"
                    stack.append((src, iter(self.nodes[src].inputs)))
        return order

    # -- validation -----------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Every structural and type problem of the graph at once, each naming its node.

        Checked: the node's own parameters, dangling inputs, arity, a ``time_steps`` field that differs
        from the graph's, the outputs, every cycle, the types of every node whose inputs are sound
        (a node downstream of a broken one or of a cycle is not type-checked: it has no input type), and
        that the schedule and the scales name the graph's nodes.
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
            own = [f"{what}: {p}" for p in node.op.all_problems]
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
        if self.schedule is not None:
            problems += self.schedule.problems(self)
        if self.scales is not None:
            unknown = [n for n in self.scales if n not in self.nodes]
            if unknown:
                problems.append(f"scales: {unknown[:5]} are not nodes of the graph")
            bad = {n: s for n, s in self.scales.items() if not (isinstance(s, (int, float)) and not
                                                               isinstance(s, bool) and math.isfinite(s) and s > 0)}
            if bad:
                problems.append(f"scales: must be finite numbers > 0, got {dict(list(bad.items())[:5])}")
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

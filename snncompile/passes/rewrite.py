"""Local rewrites: "find X, replace it by Y" as data.

A rule is a pair ``(match, rewrite)``: ``match(graph, name) -> bool`` says whether the rule applies at
node ``name``; ``rewrite(graph, name) -> Edit`` says what replaces it. :func:`rewrite_graph` applies a
list of rules until none matches anywhere. Rules are passed explicitly; nothing is discovered.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from ..ir import Graph, Node

Match = Callable[[Graph, str], bool]


@dataclass(frozen=True)
class Edit:
    """One local change, applied by :func:`apply_edit`.

    ``replace``: name -> new node (an existing name keeps its place in node order; a new name is
    inserted just before the matched node). ``remove``: names to delete. ``rename``: every reference to
    an old name (node inputs, graph outputs) is redirected to the new name.
    """

    replace: Mapping[str, Node] = field(default_factory=dict)
    remove: tuple[str, ...] = ()
    rename: Mapping[str, str] = field(default_factory=dict)


Rule = tuple[Match, Callable[[Graph, str], Edit]]


class RewriteError(ValueError):
    """The rules do not settle (they keep matching)."""


def apply_edit(graph: Graph, at: str, edit: Edit) -> Graph:
    """A new graph: ``graph`` with ``edit`` applied at node ``at`` (history, schedule and scales kept; not
    validated)."""
    def ref(name: str) -> str:
        return edit.rename.get(name, name)

    nodes: dict[str, Node] = {}
    for name, node in graph.nodes.items():
        if name == at:
            nodes.update((n, new) for n, new in edit.replace.items() if n not in graph.nodes)
        if name in edit.remove:
            continue
        node = edit.replace.get(name, node)
        nodes[name] = Node(node.op, tuple(ref(src) for src in node.inputs))
    # history, schedule and scales kept: one that no longer names the nodes makes the graph invalid
    return dataclasses.replace(graph, nodes=nodes, outputs=tuple(ref(o) for o in graph.outputs))


def rewrite_graph(graph: Graph, rules: Sequence[Rule], *, max_rewrites: int | None = None) -> Graph:
    """Apply ``rules`` until none matches: sweeps over the nodes in topological order, trying the rules
    in list order at each node still present, and repeats while a sweep changed something. Returns
    ``graph`` itself when no rule ever matched. Raises :class:`RewriteError` after ``max_rewrites``
    edits (default: 4 per node, plus 16)."""
    limit = 4 * len(graph.nodes) + 16 if max_rewrites is None else max_rewrites
    current, done = graph, 0
    while True:
        changed = False
        for name in current.topo_order():
            if name not in current.nodes:
                continue  # removed earlier in this sweep
            for match, rewrite in rules:
                if match(current, name):
                    if done == limit:
                        raise RewriteError(f"the rewrite rules still match after {limit} edits (at node "
                                           f"{name!r}): they do not settle")
                    current, done, changed = apply_edit(current, name, rewrite(current, name)), done + 1, True
                    break
        if not changed:
            return current


__all__ = ["Edit", "Rule", "Match", "RewriteError", "apply_edit", "rewrite_graph"]

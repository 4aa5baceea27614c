"""Reading a NIR file and checking the structure of its graph (for :func:`snncompile.frontend.nir_import.from_nir`).

:func:`read_nir` loads a file; :func:`flat_graph` flattens nested subgraphs into one node/edge list and
:func:`feed_forward_order` refuses what the IR cannot represent (repeated edges, cycles, nodes without input)
and orders the rest. Every refusal is a :class:`NIRImportError` naming the node(s) or edge(s).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import numpy as np


class NIRImportError(ValueError):
    """A NIR graph cannot be imported; the message names the NIR node(s) or edge(s) and why."""


# -- reading ------------------------------------------------------------------------------------------
def read_nir(path: str | Path, type_check: bool | None = None):
    """``nir.read`` with type checking, retried without it (Rockpool and Norse 1.1.0 files fail the
    nir 1.0.8 checks); ``type_check`` True/False forces one. The importer re-infers every shape itself."""
    import nir

    if type_check is not None:
        return nir.read(path, type_check=type_check)
    try:
        return nir.read(path)
    except (ValueError, AssertionError, NotImplementedError):
        return nir.read(path, type_check=False)


def as_array(value) -> np.ndarray:
    """A parameter as numpy (NIR graphs built in memory may hold torch tensors, Norse's are 0-d)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def as_text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return as_text(value[()])
    return str(value)


def declared_input(node) -> tuple[int, ...] | None:
    t = getattr(node, "input_type", None)
    if not isinstance(t, dict) or len(t) != 1:
        return None
    v = next(iter(t.values()))
    if v is None:
        return None
    a = as_array(v).reshape(-1)
    return tuple(int(s) for s in a) if a.size else None


# -- flattening subgraphs ------------------------------------------------------------------------------
def _flatten_subgraphs(graph) -> tuple[dict[str, Any], list[tuple[str, str]], set[str]]:
    """Flatten nested NIRGraphs: ``(nodes, edges, identities)``. Subgraph nodes are named ``sub.node``; the
    Input/Output nodes of subgraphs become identities (removed later)."""
    import nir

    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    identities: set[str] = set()

    def ports(g, prefix: str, kind) -> dict[str, str]:
        return {k: prefix + k for k, n in g.nodes.items() if isinstance(n, kind)}

    def resolve(g, prefix: str, name: str, side: str) -> str:
        """The flat name an edge endpoint ``name`` (inside graph ``g``) stands for."""
        if name in g.nodes:
            node = g.nodes[name]
            if not isinstance(node, nir.NIRGraph):
                return prefix + name
            kind = nir.Input if side == "dst" else nir.Output
            found = ports(node, prefix + name + ".", kind)
            if len(found) != 1:
                raise NIRImportError(f"edge endpoint {prefix + name!r} is the subgraph {prefix + name!r}, which "
                                     f"has {len(found)} {kind.__name__} nodes; address one as "
                                     f"'{name}.<port>' ({sorted(found)})")
            return next(iter(found.values()))
        parts = name.split(".")
        for i in range(1, len(parts)):  # "sub.port", where "sub" may itself contain dots
            head, rest = ".".join(parts[:i]), ".".join(parts[i:])
            if isinstance(g.nodes.get(head), nir.NIRGraph):
                return resolve(g.nodes[head], prefix + head + ".", rest, side)
        raise NIRImportError(f"edge endpoint {prefix + name!r} is not a node of the graph")

    def walk(g, prefix: str, nested: bool):
        for name, node in g.nodes.items():
            if isinstance(node, nir.NIRGraph):
                walk(node, prefix + name + ".", True)
                continue
            flat = prefix + name
            if flat in nodes:
                raise NIRImportError(f"two nodes flatten to the name {flat!r}")
            nodes[flat] = node
            if nested and isinstance(node, (nir.Input, nir.Output)):
                identities.add(flat)
        for src, dst in g.edges:
            edges.append((resolve(g, prefix, src, "src"), resolve(g, prefix, dst, "dst")))

    walk(graph, "", False)
    return nodes, edges, identities


def _remove_identities(nodes: dict, edges: list[tuple[str, str]], identities: set[str]):
    for ident in identities:
        preds = [s for s, d in edges if d == ident]
        new: list[tuple[str, str]] = []
        for s, d in edges:
            if d == ident:
                continue
            if s == ident:
                new += [(p, d) for p in preds]
            else:
                new.append((s, d))
        edges = new
        del nodes[ident]
    return nodes, edges


# -- cycles --------------------------------------------------------------------------------------------
def _recurrence_error(nodes: Mapping[str, Any], edges: list[tuple[str, str]],
                      roots: list[str]) -> NIRImportError | None:
    """A NIRImportError naming every recurrent (back) edge and its cycle, or None if acyclic."""
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for s, d in edges:
        succ[s].append(d)
    state: dict[str, int] = {}
    back: list[tuple[list[str], tuple[str, str]]] = []
    starts = list(roots) + [n for n in nodes if n not in roots]
    for start in starts:
        if state.get(start):
            continue
        stack = [(start, iter(succ[start]))]
        path = [start]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif state.get(nxt) == 1:
                back.append((path[path.index(nxt):] + [nxt], (node, nxt)))
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
                path.append(nxt)
    if not back:
        return None
    lines = [f"recurrent edge {s} -> {d} (cycle {' -> '.join(cycle)})" for cycle, (s, d) in back]
    return NIRImportError(
        "the NIR graph is recurrent, which is not supported: " + "; ".join(lines) + ". The IR is a feed-forward "
        "(acyclic) graph whose nodes run over all timesteps one after the other, so a spike fed back to an "
        "earlier node in the next step cannot be represented; import a feed-forward graph, or unroll the "
        "recurrence into the neuron model first.")




# -- the graph as a whole ------------------------------------------------------------------------------------
def flat_graph(graph) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``(nodes, edges)`` of ``graph`` with nested NIRGraphs flattened (nodes ``sub.node``) and the Input/Output
    nodes of subgraphs removed (their edges joined through)."""
    nodes, edges, identities = _flatten_subgraphs(graph)
    return _remove_identities(nodes, edges, identities)


def feed_forward_order(nodes: Mapping[str, Any], edges: list[tuple[str, str]]
                       ) -> tuple[list[str], dict[str, list[str]], dict[str, list[str]]]:
    """``(order, predecessors, successors)`` of a flat graph: the nodes in topological (Kahn) order,
    deterministic in node order, and each node's edge sources/destinations in edge order. Refuses repeated
    edges, cycles, and nodes without an incoming edge that are not Inputs."""
    import nir

    dup = [e for e, k in Counter(edges).items() if k > 1]
    if dup:
        raise NIRImportError(f"duplicate edge(s) {dup}: NIR edges are identities summed at fan-in; a repeated "
                             f"edge is ambiguous")
    inputs = [n for n, node in nodes.items() if isinstance(node, nir.Input)]
    error = _recurrence_error(nodes, edges, inputs)
    if error is not None:
        raise error
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    succs: dict[str, list[str]] = {n: [] for n in nodes}
    for s, d in edges:
        preds[d].append(s)
        succs[s].append(d)
    orphans = [n for n in nodes if not preds[n] and n not in inputs]
    if orphans:
        raise NIRImportError(f"node(s) {orphans} have no incoming edge and are not Input nodes")

    pending = {n: len(preds[n]) for n in nodes}
    ready = [n for n in nodes if pending[n] == 0]
    order: list[str] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for d in succs[n]:
            pending[d] -= 1
            if pending[d] == 0:
                ready.append(d)
    return order, preds, succs

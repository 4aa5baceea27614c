"""Checking the structure of a NIR graph (for :func:`snncompile.frontend.nir_import.from_nir`).

:func:`flat_graph` flattens nested subgraphs into one node/edge list and :func:`feed_forward_order` refuses what
the IR cannot represent (repeated edges, cycles, nodes without input) and orders the rest. Every refusal is a
:class:`NIRImportError` naming the node(s) or edge(s). (Reading a file: :mod:`~snncompile.frontend.nir_file`.)
"""
from __future__ import annotations

from collections import Counter, deque
from typing import Any, Mapping

import numpy as np


class NIRImportError(ValueError):
    """A NIR graph cannot be imported; the message names the NIR node(s) or edge(s) and why (and the file, for a
    file). It is one line: line breaks of values shown in it become spaces."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


# -- values ----------------------------------------------------------------------------------------------
def as_array(value) -> np.ndarray:
    """A parameter as numpy (NIR graphs built in memory may hold torch tensors, Norse's are 0-d)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def numbers(name: str, field: str, value, integral: bool = False) -> np.ndarray:
    """A node's parameter as an array of finite numbers (``integral``: whole numbers within int32, as int64), else
    a NIRImportError naming the node and the field (a file may hold text, a group, NaN or 1e300 anywhere)."""
    if value is None:
        raise NIRImportError(f"node {name!r}: parameter {field} is missing")
    a = as_array(value)
    if a.dtype.kind not in "biuf":
        raise NIRImportError(f"node {name!r}: {field} is not a number ({a.dtype} {a.shape})")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise NIRImportError(f"node {name!r}: {field} holds NaN or infinite values")
    if integral:
        if (a != np.round(a)).any() or (np.abs(a) >= 2**31).any():
            raise NIRImportError(f"node {name!r}: {field} must be whole numbers within int32, got {a.reshape(-1)[:4]}")
        return a.astype(np.int64)
    return a


def float32(name: str, field: str, a: np.ndarray) -> np.ndarray:
    """``a`` in float32, the IR's number type; a value beyond its range is refused, not made infinite."""
    with np.errstate(over="ignore"):
        out = np.asarray(a).astype(np.float32)
    if not np.isfinite(out).all():
        raise NIRImportError(f"node {name!r}: {field} overflows float32")
    return out


def as_text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return as_text(value[()])
    return str(value)


MAX_RANK = 8  # axes of a value's per-sample shape
MAX_NODES = 5_000  # nodes of a graph, its subgraphs' included
MAX_EDGES = 10_000  # edges of a graph, its subgraphs' included (after joining them)
MAX_NAME = 256  # characters of a node name or edge endpoint


def declared_input(node) -> tuple[int, ...] | None:
    """The one input shape a node declares, if it declares one of whole numbers and at most MAX_RANK axes."""
    t = getattr(node, "input_type", None)
    if not isinstance(t, dict) or len(t) != 1:
        return None
    v = next(iter(t.values()))
    if v is None:
        return None
    a = as_array(v).reshape(-1)
    if not 0 < a.size <= MAX_RANK or a.dtype.kind not in "iuf" or not np.isfinite(a).all() or (a != np.round(a)).any():
        return None
    return tuple(int(s) for s in a)


# -- flattening subgraphs ------------------------------------------------------------------------------
def _flatten_subgraphs(graph) -> tuple[dict[str, Any], list[tuple[str, str]], set[str]]:
    """Flatten nested NIRGraphs: ``(nodes, edges, identities)``. Subgraph nodes are named ``sub.node``; the
    Input/Output nodes of subgraphs become identities (removed later)."""
    import nir

    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    identities: set[str] = set()
    port_lists: dict[tuple[int, type], dict[str, str]] = {}

    def ports(g, prefix: str, kind) -> dict[str, str]:
        key = (id(g), kind)
        if key not in port_lists:
            port_lists[key] = {k: prefix + k for k, n in g.nodes.items() if isinstance(n, kind)}
        return port_lists[key]

    def resolve(g, prefix: str, name: str, side: str) -> str:
        """The flat name an edge endpoint ``name`` (inside graph ``g``) stands for."""
        if not isinstance(name, str) or len(name) > MAX_NAME:
            raise NIRImportError(f"edge endpoint {str(name)[:40]!r}... is not a node name of at most {MAX_NAME} "
                                 f"characters")
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
            if len(nodes) == MAX_NODES:
                raise NIRImportError(f"the graph has more than {MAX_NODES} nodes (the limit)")
            nodes[flat] = node
            if nested and isinstance(node, (nir.Input, nir.Output)):
                identities.add(flat)
        for src, dst in g.edges:
            if len(edges) == MAX_EDGES:
                raise NIRImportError(f"the graph has more than {MAX_EDGES} edges (the limit)")
            edges.append((resolve(g, prefix, src, "src"), resolve(g, prefix, dst, "dst")))

    walk(graph, "", False)
    return nodes, edges, identities


def _remove_identities(nodes: dict, edges: list[tuple[str, str]], identities: set[str]):
    """Join the edges through the identities: every edge leaving one is replaced, where it stands, by one edge from
    each of the identity's sources (themselves joined through, in edge order)."""
    into: dict[str, list[str]] = {i: [] for i in identities}
    for s, d in edges:
        if d in into:
            into[d].append(s)
    joined: list[tuple[str, str]] = []
    sources: dict[str, list[str]] = {}
    for s, d in edges:
        if d in into:
            continue
        for src in (_sources(s, into, sources) if s in into else [s]):
            if len(joined) == MAX_EDGES:
                raise NIRImportError(f"the graph has more than {MAX_EDGES} edges once its subgraphs are joined "
                                     f"(the limit)")
            joined.append((src, d))
    for ident in identities:
        del nodes[ident]
    return nodes, joined


def _sources(ident: str, into: dict[str, list[str]], sources: dict[str, list[str]]) -> list[str]:
    """The nodes that feed the identity ``ident`` through any chain of identities (memoised in ``sources``);
    depth-first without recursion, a chain of identities that closes on itself is refused."""
    stack, open_ = [(ident, False)], set()
    while stack:
        node, expanded = stack.pop()
        if node in sources:
            continue
        if expanded:
            sources[node] = [r for p in into[node] for r in (sources[p] if p in into else [p])]
            if len(sources[node]) > MAX_EDGES:
                raise NIRImportError(f"{node!r} joins more than {MAX_EDGES} sources (the limit)")
            open_.discard(node)
            continue
        if node in open_:
            raise NIRImportError(f"the Input/Output nodes of subgraphs form a cycle through {node!r}")
        open_.add(node)
        stack.append((node, True))
        stack.extend((p, False) for p in into[node] if p in into and p not in sources)
    return sources[ident]


# -- cycles --------------------------------------------------------------------------------------------
REPORTED = 5  # recurrent edges a refusal names (a hostile graph may have thousands)


def _some(items: list) -> str:
    """The first REPORTED items of a list for a message, and how many there are in all."""
    return str(items) if len(items) <= REPORTED else f"{items[:REPORTED]} ({len(items)} in all)"


def _shortened(cycle: list[str]) -> list[str]:
    return cycle if len(cycle) <= 12 else cycle[:6] + ["..."] + cycle[-6:]


def _recurrence_error(nodes: Mapping[str, Any], edges: list[tuple[str, str]],
                      roots: list[str]) -> NIRImportError | None:
    """A NIRImportError naming the recurrent (back) edges and their cycles (the first REPORTED of them, and how
    many more), or None if acyclic."""
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for s, d in edges:
        succ[s].append(d)
    state: dict[str, int] = {}
    back: list[tuple[list[str], tuple[str, str]]] = []
    unreported = 0
    first = set(roots)
    for start in list(roots) + [n for n in nodes if n not in first]:
        if state.get(start):
            continue
        stack = [(start, iter(succ[start]))]
        path, position = [start], {start: 0}  # the current path, and where each node on it stands
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                del position[path.pop()]
                state[node] = 2
            elif state.get(nxt) == 1:
                if len(back) < REPORTED:
                    back.append((path[position[nxt]:] + [nxt], (node, nxt)))
                else:
                    unreported += 1
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
                position[nxt] = len(path)
                path.append(nxt)
    if not back:
        return None
    lines = [f"recurrent edge {s} -> {d} (cycle {' -> '.join(_shortened(cycle))})" for cycle, (s, d) in back]
    if unreported:
        lines.append(f"and {unreported} more recurrent edges")
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
        raise NIRImportError(f"duplicate edge(s) {_some(dup)}: NIR edges are identities summed at fan-in; a "
                             f"repeated edge is ambiguous")
    inputs = [n for n, node in nodes.items() if isinstance(node, nir.Input)]
    error = _recurrence_error(nodes, edges, inputs)
    if error is not None:
        raise error
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    succs: dict[str, list[str]] = {n: [] for n in nodes}
    for s, d in edges:
        preds[d].append(s)
        succs[s].append(d)
    orphans = [n for n, node in nodes.items() if not preds[n] and not isinstance(node, nir.Input)]
    if orphans:
        raise NIRImportError(f"node(s) {_some(orphans)} have no incoming edge and are not Input nodes")

    pending = {n: len(preds[n]) for n in nodes}
    ready = deque(n for n in nodes if pending[n] == 0)
    order: list[str] = []
    while ready:
        n = ready.popleft()
        order.append(n)
        for d in succs[n]:
            pending[d] -= 1
            if pending[d] == 0:
                ready.append(d)
    return order, preds, succs

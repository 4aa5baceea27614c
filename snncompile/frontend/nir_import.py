"""NIR (``nir`` 1.0.8) -> snncompile graph IR.

``from_nir(graph_or_path, time_steps=T, dt=...)`` turns a NIR graph written by any framework into an
IR :class:`~snncompile.ir.Graph` that :func:`~snncompile.ir.run_graph` executes. NIR is declarative and
continuous-time; the IR is discrete. The conventions applied here (full discussion: ``docs/nir.md``):

Time. Neurons are discretised with forward Euler and step ``dt`` (default: the ``snncompile.dt`` the
file was written with by :mod:`snncompile.backends.nir_export`, else 1.0). NIR files carry no ``dt``:
pass the one the graph was trained with (snnTorch/Rockpool Braille and single-neuron graphs: 1e-4,
Norse: 1e-3). A neuron whose Euler factor ``dt/tau`` exceeds 1 is refused (wrong ``dt``, or Norse's bug).

- ``LIF``  ``tau dv/dt = (v_leak - v) + r I`` ->  IR ``LIF``, ``decay_input=True``, ``v_rest = v_leak``::

      h[t] = v[t-1] + (x[t] - (v[t-1] - v_leak)) * rate     rate = fl32(fl32(dt) * fl32(1/tau))

  (``leak_encoding="multiply_by_rate"``: Norse's float order ``dt * tau_inv``); with
  ``leak_encoding="divide_by_tau"`` (SpikingJelly's order) ``leak = tau/dt`` divides instead. A ``Scale(r)``
  node feeds the neuron when ``r != 1``; when ``r == tau/dt`` (snnTorch's export of ``beta``) the neuron
  takes ``decay_input=False`` instead: ``h = v - (v - v_leak) * rate + x``.
- ``IF``  ``dv/dt = r I`` -> IR ``LIF`` with ``leak_encoding="none"``: ``h[t] = v[t-1] + r x[t]``. The
  input is an impulse per step, ``dt`` does not enter (Norse ``IAFCell``, Sinabs ``IAF``, NIR's Lava and
  SpiNNaker2 back ends all do this).
- ``LI`` / ``I`` -> IR ``LI`` (membrane output, no threshold), as LIF / IF without the spike.
- ``CubaLIF`` -> IR ``CubaLIF`` with ``dt`` (current updated first, Euler).
- Spikes: ``s = [v - v_threshold > 0]`` (NIR's Heaviside; ``threshold_cmp=">="`` for SpikingJelly or
  Sinabs ``SingleSpike`` sources), then reset to ``v_reset`` (``reset="subtract"`` subtracts
  ``v_threshold`` instead, as Sinabs' and snnTorch's defaults do). The membrane starts at ``v_reset``
  (LIF, IF, CubaLIF) or ``v_leak`` (LI): NIR leaves the initial state open.
- Norse 1.1.0 exports ``tau = dt/tau_inv`` instead of ``1/tau_inv`` (norse#411): ``norse_tau_bug=True``
  uses ``tau/dt`` as the time constant. Norse also writes 0-d torch tensors and leaks the batch dimension
  into ``Input`` (``[1, n]``); both are accepted (parameters are broadcast to the neuron shape; a leading
  1 is dropped when the Input's consumers expect the rest).

Graph structure. Fan-in edges are summed (an ``Add`` node, inputs in edge order); nested ``NIRGraph``
subgraphs are flattened (names ``sub.node``; edges may address ``sub`` or ``sub.port``); ``Affine`` ->
``Linear`` with bias, ``Linear`` -> ``Linear``; ``Conv2d`` (``"same"``/``"valid"`` padding resolved);
``SumPool2d``; ``AvgPool2d`` -> ``SumPool2d`` + ``Scale(1/(kH*kW))`` (NIR's own definition; bit-equal to
PyTorch ``avg_pool2d`` when ``kH*kW`` is a power of two); ``Scale``; ``Flatten`` (per-sample shapes: the
NIR reading of ``start_dim`` and, failing a full flatten, the PyTorch one counting a batch axis).
Refused with :class:`NIRImportError`: recurrent graphs (cycles; the IR is acyclic), ``Delay``,
``Threshold``, ``CubaLI``, ``Conv1d``, and anything that does not give a full flatten or a 1-D ``Affine``
input.
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np

from ..ir import FLOAT32, DType, Graph, GraphError, HistoryEntry, Node, TensorType
from ..ir.ops import (LI, LIF, Add, Conv2d, CubaLIF, Flatten, Input, Linear, Op, Output, Scale, SumPool2d,
                      TypeMismatch)

__all__ = ["NIRImportError", "from_nir", "read_nir"]

HINT = "snncompile."  # prefix of the metadata keys written by snncompile's exporter (exactness hints only)


class NIRImportError(ValueError):
    """A NIR graph cannot be imported; the message names the NIR node(s) or edge(s) and why."""


# -- reading -----------------------------------------------------------------------------------------
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


def _arr(value) -> np.ndarray:
    """A parameter as numpy (NIR graphs built in memory may hold torch tensors, Norse's are 0-d)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return _text(value[()])
    return str(value)


def _f32(value) -> np.ndarray:
    """A weight as float32, the IR's number type (float64 / integer NIR weights are cast; integers below
    2**24 exactly)."""
    return _arr(value).astype(np.float32)


def _pair(value, what: str) -> tuple[int, int]:
    a = _arr(value).reshape(-1)
    if a.size == 1:
        return int(a[0]), int(a[0])
    if a.size == 2:
        return int(a[0]), int(a[1])
    raise NIRImportError(f"{what} must be an int or a pair, got {value!r}")


def _declared_input(node) -> tuple[int, ...] | None:
    t = getattr(node, "input_type", None)
    if not isinstance(t, dict) or len(t) != 1:
        return None
    v = next(iter(t.values()))
    if v is None:
        return None
    a = _arr(v).reshape(-1)
    return tuple(int(s) for s in a) if a.size else None


# -- flattening subgraphs ------------------------------------------------------------------------------
def _flatten_graph(graph) -> tuple[dict[str, Any], list[tuple[str, str]], set[str]]:
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


# -- parameters ----------------------------------------------------------------------------------------
class _Ctx:
    def __init__(self, *, dt, threshold_cmp, reset, leak_encoding, norse_tau_bug):
        self.dt = float(dt)
        self.threshold_cmp = threshold_cmp
        self.reset = reset
        self.leak_encoding = leak_encoding
        self.norse_tau_bug = norse_tau_bug


def _per_neuron(name: str, field: str, value, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    if value is None:
        raise NIRImportError(f"node {name!r}: parameter {field} is missing")
    a = _arr(value).astype(np.float64)
    if a.shape == shape:
        out = a
    elif a.size == 1:
        out = np.full(shape, a.reshape(-1)[0])
    elif a.size == math.prod(shape):
        out = a.reshape(shape)
    else:
        raise NIRImportError(f"node {name!r}: {field} has shape {a.shape}, its input is {shape}")
    return out.astype(dtype)


def _compact(a: np.ndarray):
    """A float when every entry is equal (the IR's per-layer constant), else the per-neuron array."""
    flat = a.reshape(-1)
    return float(flat[0]) if flat.size and np.all(flat == flat[0]) else a


def _scalar(name: str, field: str, a: np.ndarray) -> float:
    value = _compact(a)
    if isinstance(value, np.ndarray):
        raise NIRImportError(f"node {name!r}: per-neuron {field} (values {np.unique(a)[:4]} ...) is not supported: "
                             f"the IR neurons take one {field} per layer")
    return value


def _hints(node) -> dict[str, str]:
    meta = getattr(node, "metadata", None) or {}
    return {k[len(HINT):]: _text(v) for k, v in meta.items() if isinstance(k, str) and k.startswith(HINT)}


def _threshold(name: str, node, shape, ctx: _Ctx, hints) -> tuple[np.ndarray, str]:
    theta = _per_neuron(name, "v_threshold", node.v_threshold, shape)
    cmp = ctx.threshold_cmp
    if hints.get("threshold_cmp") == ">=":
        # the exporter wrote the float32 predecessor of θ with ">": h > pred(θ) <=> h >= θ
        theta, cmp = np.nextafter(theta, np.float32(np.inf)).astype(np.float32), ">="
    return theta, cmp


def _time_constant(name: str, field: str, value, shape, ctx: _Ctx) -> np.ndarray:
    tau = _per_neuron(name, field, value, shape, np.float64)
    if ctx.norse_tau_bug:
        tau = tau / ctx.dt
    if np.any(tau <= 0):
        raise NIRImportError(f"node {name!r}: {field} must be > 0, got {np.unique(tau)[:4]}")
    factor = ctx.dt / tau
    if np.any(factor > 1 + 1e-6):
        hint = (" Norse 1.1.0 files store dt*tau (norse#411): pass norse_tau_bug=True." if not ctx.norse_tau_bug
                else "")
        raise NIRImportError(
            f"node {name!r}: the Euler factor dt/{field} = {float(np.max(factor)):.4g} exceeds 1 (dt={ctx.dt:g}, "
            f"{field}={float(np.min(tau)):.4g}): NIR files carry no dt; pass the step the graph was made for, "
            f"e.g. from_nir(..., dt=1e-4).{hint}")
    return tau


def _leak(tau: np.ndarray, ctx: _Ctx, encoding: str) -> np.ndarray:
    if encoding == "divide_by_tau":
        return (tau / ctx.dt).astype(np.float32)
    # Norse's order: the factor is dt * (1/tau), both float32, multiplied in float32
    return (np.float32(ctx.dt) * (1.0 / tau).astype(np.float32)).astype(np.float32)


def _leaky(name: str, node, shape, ctx: _Ctx, hints, field: str = "tau") -> tuple[dict, np.ndarray | None]:
    """Fields of an IR LIF/LI for a NIR LIF/LI, and the input scale ``r`` to apply first (None: none)."""
    tau = _time_constant(name, field, getattr(node, field), shape, ctx)
    r = _per_neuron(name, "r", node.r, shape, np.float64)
    encoding = hints.get("leak_encoding") or ctx.leak_encoding or "multiply_by_rate"
    if encoding not in ("multiply_by_rate", "divide_by_tau"):
        raise NIRImportError(f"leak_encoding must be 'multiply_by_rate' or 'divide_by_tau', got {encoding!r}")
    scale = None
    if np.all(r == 1):
        decay_input = True
    elif np.allclose(r, tau / ctx.dt, rtol=1e-6, atol=0):
        decay_input = False  # r = tau/dt: the input enters undecayed (snnTorch's beta form)
    else:
        decay_input, scale = True, r.astype(np.float32)
    fields = dict(leak=_compact(_leak(tau, ctx, encoding)), leak_encoding=encoding, decay_input=decay_input,
                  v_rest=_scalar(name, "v_leak", _per_neuron(name, "v_leak", node.v_leak, shape)))
    return fields, scale


# -- node conversion -----------------------------------------------------------------------------------
def _flatten_shape(shape: tuple[int, ...], start: int, end: int) -> tuple[int, ...] | None:
    n = len(shape)
    s = start + n if start < 0 else start
    e = end + n if end < 0 else end
    if not (0 <= s < n and s <= e < n):
        return None
    return (*shape[:s], math.prod(shape[s:e + 1]), *shape[e + 1:])


def _conv_padding(name: str, padding, weight: np.ndarray, dilation) -> tuple[int, int]:
    if isinstance(padding, (str, bytes)) or (isinstance(padding, np.ndarray) and padding.dtype.kind in "SUO"):
        text = _text(padding)
        if text == "valid":
            return 0, 0
        if text == "same":
            span = [dilation[i] * (weight.shape[2 + i] - 1) for i in range(2)]
            if any(s % 2 for s in span):
                raise NIRImportError(f"node {name!r}: padding 'same' with an even kernel span {span} needs "
                                     f"asymmetric padding, which the IR Conv2d lacks")
            return span[0] // 2, span[1] // 2
        raise NIRImportError(f"node {name!r}: unknown padding {text!r}")
    return _pair(padding, f"node {name!r}: padding")


class _Builder:
    def __init__(self):
        self.nodes: dict[str, Node] = {}
        self.types: dict[str, TensorType] = {}
        self.taken: set[str] = set()

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.taken:
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        return name

    def add(self, name: str, op: Op, inputs: tuple[str, ...], nir_name: str) -> str:
        problems = op.problems()
        if problems:
            raise NIRImportError(f"node {nir_name!r}: " + "; ".join(problems))
        try:
            self.types[name] = op.infer([self.types[s] for s in inputs])
        except TypeMismatch as e:
            raise NIRImportError(f"node {nir_name!r} ({type(op).__name__}): {e}") from None
        self.nodes[name] = Node(op, inputs)
        return name


_REFUSED = {
    "Delay": "the IR has no delay node (a NIR Delay is a continuous-time delay; it would need a FIFO of "
             "delay/dt steps)",
    "Threshold": "the IR has no stateless threshold node (only neurons that integrate and reset)",
    "CubaLI": "the IR has no current-based leaky integrator without a threshold",
    "Conv1d": "the IR has no 1-D convolution",
}


def _membrane_input(b: _Builder, name: str, node, shape, ctx: _Ctx, hints, x: str, leaky: bool):
    """The LIF/LI fields for the membrane and the node feeding it (a ``Scale`` by ``r`` when needed)."""
    if leaky:
        fields, scale = _leaky(name, node, shape, ctx, hints)
    else:
        r = _per_neuron(name, "r", node.r, shape)
        fields, scale = dict(leak_encoding="none"), (None if np.all(r == 1) else r)
    if scale is not None:
        x = b.add(b.fresh(f"{name}.r"), Scale(scale=_compact(scale)), (x,), name)
    return fields, x


def _convert(b: _Builder, name: str, node, x: str, ctx: _Ctx) -> None:
    """Add the IR nodes for NIR node ``name`` fed by IR node ``x``; the last one is named ``name``."""
    kind = type(node).__name__
    shape = b.types[x].shape
    hints = _hints(node)
    final = name
    if kind in _REFUSED:
        raise NIRImportError(f"node {name!r} ({kind}) is not supported: {_REFUSED[kind]}")
    if kind in ("Affine", "Linear"):
        w = _f32(node.weight)
        if w.ndim != 2:
            raise NIRImportError(f"node {name!r} ({kind}): weight of shape {w.shape}; only 2-D weights map to the IR")
        if len(shape) != 1:
            raise NIRImportError(f"node {name!r} ({kind}): input has shape {shape}; NIR {kind} maps a 1-D vector "
                                 f"(is a Flatten missing?)")
        bias = _f32(node.bias).reshape(-1) if kind == "Affine" and node.bias is not None else None
        b.add(final, Linear(weight=w, bias=bias), (x,), name)
    elif kind == "Conv2d":
        w = _f32(node.weight)
        dilation = _pair(node.dilation, f"node {name!r}: dilation")
        bias = None if node.bias is None else _f32(node.bias).reshape(-1)
        b.add(final, Conv2d(weight=w, bias=bias, stride=_pair(node.stride, f"node {name!r}: stride"),
                            padding=_conv_padding(name, node.padding, w, dilation), dilation=dilation,
                            groups=int(_arr(node.groups).reshape(-1)[0])), (x,), name)
    elif kind in ("SumPool2d", "AvgPool2d"):
        kernel = _pair(node.kernel_size, f"node {name!r}: kernel_size")
        pool = SumPool2d(kernel=kernel, stride=_pair(node.stride, f"node {name!r}: stride"),
                         padding=_pair(node.padding, f"node {name!r}: padding"))
        if kind == "SumPool2d":
            b.add(final, pool, (x,), name)
        else:  # NIR: AvgPool2d = SumPool2d then Scale by 1 / window size
            s = b.add(b.fresh(f"{name}.sum"), pool, (x,), name)
            b.add(final, Scale(scale=1.0 / (kernel[0] * kernel[1])), (s,), name)
    elif kind == "Scale":
        b.add(final, Scale(scale=_compact(_per_neuron(name, "scale", node.scale, shape))), (x,), name)
    elif kind == "Flatten":
        start, end = int(_arr(node.start_dim)), int(_arr(node.end_dim))
        literal = _flatten_shape(shape, start, end)
        torch_style = _flatten_shape(shape, start - 1, end - 1 if end > 0 else end) if start >= 1 else None
        if not any(s is not None and len(s) == 1 for s in (literal, torch_style)):
            raise NIRImportError(f"node {name!r} (Flatten start_dim={start}, end_dim={end}) on input {shape} gives "
                                 f"{literal}: the IR Flatten flattens every per-sample axis, partial flattens are "
                                 f"not supported")
        b.add(final, Flatten(), (x,), name)
    elif kind in ("LIF", "IF", "CubaLIF"):
        if kind == "CubaLIF":
            if ctx.reset != "hard":
                raise NIRImportError(f"node {name!r} (CubaLIF): reset={ctx.reset!r} is not supported (the IR CubaLIF "
                                     f"resets to v_reset)")
            theta, cmp = _threshold(name, node, shape, ctx, hints)
            arrays = {f: _per_neuron(name, f, getattr(node, f), shape)
                      for f in ("r", "v_leak", "v_reset", "w_in")}
            taus = {f: _time_constant(name, f, getattr(node, f), shape, ctx).astype(np.float32)
                    for f in ("tau_syn", "tau_mem")}
            b.add(final, CubaLIF(**taus, **arrays, v_threshold=theta, dt=ctx.dt, threshold_cmp=cmp), (x,), name)
            return
        theta, cmp = _threshold(name, node, shape, ctx, hints)
        v_reset = _scalar(name, "v_reset", _per_neuron(name, "v_reset", node.v_reset, shape)) \
            if node.v_reset is not None else 0.0
        fields, x = _membrane_input(b, name, node, shape, ctx, hints, x, leaky=kind != "IF")
        b.add(final, LIF(v_threshold=_compact(theta), v_reset=v_reset, threshold_cmp=cmp, reset=ctx.reset,
                         **fields), (x,), name)
    elif kind in ("LI", "I"):
        fields, x = _membrane_input(b, name, node, shape, ctx, hints, x, leaky=kind != "I")
        b.add(final, LI(**fields), (x,), name)
    else:
        raise NIRImportError(f"node {name!r}: NIR node type {kind} is not supported")


# -- the importer ----------------------------------------------------------------------------------------
def from_nir(source, *, time_steps: int, dt: float | None = None,
             threshold_cmp: Literal[">", ">="] = ">", reset: Literal["hard", "subtract"] = "hard",
             leak_encoding: Literal["multiply_by_rate", "divide_by_tau"] | None = None,
             norse_tau_bug: bool = False, input_dtype: DType = FLOAT32,
             type_check: bool | None = None) -> Graph:
    """Import a NIR graph (a ``nir.NIRGraph``, a single ``nir.NIRNode``, or a ``.nir`` path) as an IR graph.

    ``time_steps``: T of the IR graph. ``dt``: Euler step (default: the file's ``snncompile.dt``
    metadata, else 1.0). ``threshold_cmp``/``reset``: the spike rule of the source framework (NIR's own:
    ``">"``, ``"hard"``). ``leak_encoding``: float order of the leak (default ``multiply_by_rate``, i.e.
    ``dt * (1/tau)`` as Norse; files written by snncompile carry their own). ``norse_tau_bug``: the file
    holds ``dt*tau`` (Norse 1.1.0). ``input_dtype``: the promised value type of every Input (NIR has none).
    ``type_check``: for paths, ``nir.read``'s type checking (default: on, retried off). Node names are the
    NIR names; inserted nodes are ``<name>.sum`` (fan-in Add, AvgPool's sum) and ``<name>.r`` (``Scale(r)``).
    Raises :class:`NIRImportError` naming the node or edge that cannot be imported.
    """
    import nir

    if threshold_cmp not in (">", ">="):
        raise ValueError(f"threshold_cmp must be '>' or '>=', got {threshold_cmp!r}")
    if reset not in ("hard", "subtract"):
        raise ValueError(f"reset must be 'hard' or 'subtract', got {reset!r}")
    origin = None
    if isinstance(source, (str, Path)):
        origin = str(source)
        source = read_nir(source, type_check)
    if not isinstance(source, nir.NIRGraph):
        if not isinstance(source, nir.NIRNode):
            raise TypeError(f"from_nir needs a nir.NIRGraph, a nir.NIRNode or a path, got {type(source).__name__}")
        shape = _declared_input(source)
        if shape is None:
            raise NIRImportError(f"a lone {type(source).__name__} node has no input type")
        source = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array(shape)), "node": source,
                                     "output": nir.Output(output_type=np.array(shape))},
                              edges=[("input", "node"), ("node", "output")], type_check=False)
    if dt is None:
        meta = source.metadata if isinstance(source.metadata, dict) else {}
        dt = float(_arr(meta[HINT + "dt"])) if HINT + "dt" in meta else 1.0
    if not dt > 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    ctx = _Ctx(dt=dt, threshold_cmp=threshold_cmp, reset=reset, leak_encoding=leak_encoding,
               norse_tau_bug=norse_tau_bug)

    nodes, edges, identities = _flatten_graph(source)
    nodes, edges = _remove_identities(nodes, edges, identities)
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

    # Kahn order, deterministic in node order
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

    b = _Builder()
    b.taken.update(nodes)
    out_of: dict[str, str] = {}
    outputs: list[str] = []
    for name in order:
        node = nodes[name]
        if isinstance(node, nir.Input):
            shape = _declared_input(node)
            if not shape:
                raise NIRImportError(f"Input node {name!r} has no shape")
            consumers = [_declared_input(nodes[d]) for d in succs[name]]
            if (len(shape) >= 2 and shape[0] == 1 and consumers and
                    all(c == shape[1:] for c in consumers)):
                shape = shape[1:]  # a batch dimension leaked into the Input (Norse 1.1.0, nirtorch tracing)
            b.add(name, Input(shape=shape, dtype=input_dtype, time="stream"), (), name)
            out_of[name] = name
            continue
        srcs = [out_of[p] for p in preds[name]]
        if len(srcs) > 1:
            x = b.add(b.fresh(f"{name}.sum"), Add(), tuple(srcs), name)
        else:
            x = srcs[0]
        if isinstance(node, nir.Output):
            out_of[name] = b.add(name, Output(), (x,), name)
            outputs.append(name)
            continue
        _convert(b, name, node, x, ctx)
        out_of[name] = name
    if not outputs:  # type_check=False graphs may lack Output nodes: their leaves are the outputs
        outputs = [n for n in order if not succs[n]]
    options = {"dt": dt, "threshold_cmp": threshold_cmp, "reset": reset, "leak_encoding": leak_encoding,
               "norse_tau_bug": norse_tau_bug, "input_dtype": str(input_dtype)}
    if origin is not None:
        options["path"] = origin
    graph = Graph(nodes=b.nodes, outputs=tuple(outputs), time_steps=time_steps,
                  history=(HistoryEntry("from_nir", options),))
    try:
        return graph.validate()
    except GraphError as e:
        raise NIRImportError(f"the imported graph is invalid: {e}") from None

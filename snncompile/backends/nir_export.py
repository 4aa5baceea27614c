"""snncompile graph IR -> NIR (``nir`` 1.0.8): the part of a graph NIR can express.

``to_nir(graph)`` returns a ``nir.NIRGraph`` that passes nir's type checks; ``write_nir(graph, path)``
writes it (gzip, as ``nir.write`` defaults to) so that ``nir.read(path)`` loads it with type checking on.
Every parameter is an array of at least one dimension (nir 1.0.8's gzip writer fails on 0-d arrays).

What maps (conventions in ``docs/nir.md``):

- ``Input`` -> ``Input`` (a static input becomes a stream fed the same value every step; ``Repeat``
  vanishes); ``Output`` -> ``Output``; a graph output that is not an Output node gets ``<name>.output``.
- ``Conv2d`` -> ``Conv2d`` with ``input_shape`` (grouped convolutions are written dense, with zero blocks:
  nir 1.0.8 cannot type-check ``groups > 1``); ``Linear`` on a vector -> ``Affine`` (``Linear`` without
  bias); ``SumPool2d`` -> ``SumPool2d``; ``Flatten`` -> ``Flatten(start_dim=0)`` over the per-sample shape;
  ``TokenMean`` -> ``AvgPool2d`` over the whole map + ``Flatten``; ``Scale`` -> ``Scale``; ``Add`` -> fan-in
  edges (NIR sums every edge into a node).
- ``LIF`` (the discrete SpikingJelly form) -> continuous ``LIF`` with the step ``dt`` (default 1): Euler
  with ``dt`` reproduces the IR update. ``divide_by_tau``: ``tau = leak*dt``; ``multiply_by_rate``:
  ``tau = dt/leak``; ``r = 1`` (``decay_input``) or ``tau/dt`` (not); ``v_leak = v_rest``. ``leak_encoding
  none`` -> ``IF`` (``r = 1``). A ``>=`` threshold is written as the float32 predecessor of ``v_threshold``
  with NIR's ``>``: for float32 membranes ``h > pred(θ)`` iff ``h >= θ``, so spikes are unchanged.
  Subtractive reset has no NIR form (refused).
- ``CubaLIF`` -> ``CubaLIF`` (time constants rescaled to ``dt``); ``LI`` -> ``LI`` (``I`` for ``none``).
- ``BatchNorm``: refused, or with ``fold_batchnorm=True`` folded into the Conv2d/Linear feeding it
  (``w' = w * g/sqrt(var+eps)``, ``b' = (b - mean) * g/sqrt(var+eps) + beta`` in float64, rounded to
  float32; equal to Conv+BN up to float rounding, not bit for bit).

Refused, each with the node and the reason: attention (SpikeColumnSum, SpikeMask, BlockLinearAttention,
LUTAttention) and ``Mul`` (NIR has no node multiplying two activations: fan-in is always a sum),
``MaxPool2d`` (no max pool in NIR), ``ReLU``, ``TimeMean``, ``TemporalWindow``, ``TernaryLIF``, subtractive
reset, ``Linear`` on token maps, and the integer Loihi nodes (``IntDense``, ``IntConv2d``, ``LoihiLIF``,
``LoihiTernaryLIF``: NIR has no integer arithmetic). ``to_nir(graph, nodes=[...])`` exports a part: the named nodes, with an
``Input`` for every value entering from outside and an ``Output`` for every value leaving;
``nodes="expressible"`` (:func:`expressible_nodes`) picks every node NIR can express whose producers all
can: the stem up to the first attention block, or a whole MLP.

Exactness hints: node metadata ``snncompile.leak_encoding`` / ``snncompile.threshold_cmp`` and graph
metadata ``snncompile.dt`` let :func:`snncompile.frontend.nir_import.from_nir` restore the IR's float
operation order exactly. Other NIR consumers may ignore them (NIR: "no backend should rely on metadata").
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from ..ir import Graph, TensorType
from ..ir.ops import Op, Refused

__all__ = ["NIRExportError", "expressible_nodes", "nir_problems", "to_nir", "write_nir"]

HINT = "snncompile."



class NIRExportError(ValueError):
    """A graph (part) cannot be written as NIR; the message names every offending node and why."""

    def __init__(self, problems: list[str], advice: str = ""):
        self.problems = problems
        head = problems[0] if len(problems) == 1 else (
            f"cannot export to NIR ({len(problems)} problems):\n  - " + "\n  - ".join(problems))
        super().__init__(head + (f"\n{advice}" if advice else ""))


# -- what NIR can express ---------------------------------------------------------------------------
def _foldable(graph: Graph, name: str) -> str | None:
    """The Conv2d/Linear a BatchNorm can fold into, or None."""
    (src,) = graph.nodes[name].inputs
    producer = graph.op(src).type_name()
    if producer in ("Conv2d", "Linear") and graph.consumers(src) == [name] and src not in graph.outputs:
        return src
    return None


def _reason(graph: Graph, name: str, types: dict[str, TensorType], fold_batchnorm: bool) -> str | None:
    """Why node ``name`` cannot be written as NIR, or None if it can."""
    op = graph.op(name)
    kind = op.type_name()
    if isinstance(op.BACKENDS.nir, Refused):  # the op type's own declaration
        return op.BACKENDS.nir.reason
    if op.delay or op.overflow != "none":
        return (f"delay={op.delay}, overflow={op.overflow!r}: NIR neurons are continuous-time and untyped, "
                "with no per-node step delay or integer overflow")
    if kind == "Linear":
        shape = types[graph.nodes[name].inputs[0]].shape
        return None if len(shape) == 1 else (
            f"NIR Affine maps a 1-D vector; this Linear acts on the last axis of a {list(shape)} map (tokens)")
    if kind == "Add":
        srcs = graph.nodes[name].inputs
        return None if len(set(srcs)) == len(srcs) else (
            f"adds the same value twice ({list(srcs)}); NIR edges cannot repeat")
    if kind == "BatchNorm":
        if not fold_batchnorm:
            return ("NIR has no BatchNorm: fold it into the preceding Conv2d/Linear first, e.g. "
                    "to_nir(graph, fold_batchnorm=True) (equal up to float32 rounding)")
        return None if _foldable(graph, name) else (
            "cannot fold: its input is not a Conv2d/Linear used only by this BatchNorm")
    if kind == "LIF":
        if op.reset != "hard":
            return ("NIR neurons reset to v_reset only; subtractive reset has no NIR form "
                    "(neuromorphs/NIR#129, #138)")
    return None


def nir_problems(graph: Graph, nodes: Iterable[str] | None = None, *, fold_batchnorm: bool = False) -> dict[str, str]:
    """``{node: reason}`` for every node (of ``nodes``, default all) that NIR cannot express."""
    types = graph.types()
    names = list(graph.nodes) if nodes is None else list(nodes)
    found = {}
    for n in names:
        reason = _reason(graph, n, types, fold_batchnorm)
        if reason:
            found[n] = reason
    return found


def expressible_nodes(graph: Graph, *, fold_batchnorm: bool = False) -> list[str]:
    """Every node NIR can express whose producers are all expressible too (dependency order): the
    largest upstream-closed part, e.g. the stem up to the first attention block."""
    types = graph.types()
    keep: list[str] = []
    kept: set[str] = set()
    for n in graph.topo_order():
        if all(s in kept for s in graph.nodes[n].inputs) and _reason(graph, n, types, fold_batchnorm) is None:
            keep.append(n)
            kept.add(n)
    return keep


# -- parameters -----------------------------------------------------------------------------------------
def _full(value, shape, dtype=np.float32) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    out = np.broadcast_to(a, shape) if a.shape != tuple(shape) else a
    out = np.array(out, dtype=dtype)
    return out.reshape(1) if out.ndim == 0 else out


def _threshold(op, shape) -> tuple[np.ndarray, dict]:
    theta = _full(op.v_threshold, shape)
    if op.threshold_cmp == ">=":
        return np.nextafter(theta, np.float32(-np.inf)).astype(np.float32), {HINT + "threshold_cmp": ">="}
    return theta, {}


def _lif_node(op, shape, dt: float):
    import nir

    theta, meta = _threshold(op, shape)
    v_reset = _full(op.v_reset, shape)
    if op.leak_encoding == "none":
        return nir.IF(r=np.ones(shape, np.float32), v_threshold=theta, v_reset=v_reset, metadata=meta)
    tau, r = _tau_r(op, shape, dt)
    meta[HINT + "leak_encoding"] = op.leak_encoding
    return nir.LIF(tau=tau, r=r, v_leak=_full(op.v_rest, shape), v_threshold=theta, v_reset=v_reset, metadata=meta)


def _tau_r(op, shape, dt: float) -> tuple[np.ndarray, np.ndarray]:
    leak = _full(op.leak, shape, np.float64)
    tau = leak * dt if op.leak_encoding == "divide_by_tau" else dt / leak
    r = np.ones(shape, np.float64) if op.decay_input else tau / dt
    return tau, r


def _li_node(op, shape, dt: float):
    import nir

    if op.leak_encoding == "none":
        return nir.I(r=np.ones(shape, np.float32))
    tau, r = _tau_r(op, shape, dt)
    return nir.LI(tau=tau, r=r, v_leak=_full(op.v_rest, shape),
                  metadata={HINT + "leak_encoding": op.leak_encoding})


def _dense_weight(w: np.ndarray, groups: int) -> np.ndarray:
    """A grouped convolution's kernel as a dense ``[C_out, C_in, kH, kW]`` one with zero blocks."""
    if groups == 1:
        return w
    c_out, c_in_g = w.shape[:2]
    dense = np.zeros((c_out, c_in_g * groups, *w.shape[2:]), w.dtype)
    per = c_out // groups
    for g in range(groups):
        dense[g * per:(g + 1) * per, g * c_in_g:(g + 1) * c_in_g] = w[g * per:(g + 1) * per]
    return dense


def _folded(conv: Op, bn: Op) -> tuple[np.ndarray, np.ndarray]:
    w = np.asarray(conv.weight, np.float64)
    b = np.zeros(w.shape[0]) if conv.bias is None else np.asarray(conv.bias, np.float64)
    k = np.asarray(bn.weight, np.float64) / np.sqrt(np.asarray(bn.running_var, np.float64) + bn.eps)
    w = w * k.reshape(-1, *([1] * (w.ndim - 1)))
    b = (b - np.asarray(bn.running_mean, np.float64)) * k + np.asarray(bn.bias, np.float64)
    dtype = np.asarray(conv.weight).dtype
    return w.astype(dtype), b.astype(dtype)


def _weight_node(op, in_shape, weight=None, bias=None):
    """NIR Affine/Linear/Conv2d for an IR Linear/Conv2d (``weight``/``bias``: folded replacements)."""
    import nir

    weight = np.asarray(op.weight) if weight is None else weight
    if bias is None and op.bias is not None:
        bias = np.asarray(op.bias)
    if op.type_name() == "Linear":
        return nir.Linear(weight=weight) if bias is None else nir.Affine(weight=weight, bias=bias)
    weight = _dense_weight(weight, op.groups)
    return nir.Conv2d(input_shape=tuple(int(s) for s in in_shape[1:]), weight=weight,
                      stride=tuple(op.stride), padding=tuple(op.padding), dilation=tuple(op.dilation), groups=1,
                      bias=np.zeros(weight.shape[0], weight.dtype) if bias is None else bias)


# -- export ---------------------------------------------------------------------------------------------
def to_nir(graph: Graph, *, nodes: Iterable[str] | str | None = None, dt: float = 1.0,
           fold_batchnorm: bool = False, type_check: bool = True):
    """The NIR graph of ``graph`` (or of the part ``nodes``; ``"expressible"``: :func:`expressible_nodes`).

    ``dt``: the step the continuous-time NIR neurons are written for (Euler with ``dt`` reproduces the IR
    neurons; default 1, i.e. time in steps). Raises :class:`NIRExportError` listing every node NIR cannot
    express and how to export a part instead.
    """
    import nir

    graph.validate()
    if not dt > 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    if isinstance(nodes, str):
        if nodes != "expressible":
            raise ValueError(f"nodes must be a list of node names or 'expressible', got {nodes!r}")
        nodes = expressible_nodes(graph, fold_batchnorm=fold_batchnorm)
    names = list(graph.nodes) if nodes is None else list(dict.fromkeys(nodes))
    unknown = [n for n in names if n not in graph.nodes]
    if unknown:
        raise ValueError(f"nodes {unknown} are not in the graph")
    if not names:
        raise NIRExportError(["nothing to export: the node selection is empty"])
    selected = set(names)
    types = graph.types()
    bad = nir_problems(graph, names, fold_batchnorm=fold_batchnorm)
    slash = [n for n in names if "/" in n]
    if bad or slash:
        grouped: dict[tuple[str, str], list[str]] = {}
        for n, r in bad.items():
            grouped.setdefault((graph.op(n).type_name(), r), []).append(n)
        problems = [f"node{'s' if len(ns) > 1 else ''} {', '.join(map(repr, ns))} ({kind}): {r}"
                    for (kind, r), ns in grouped.items()]
        problems += [f"node {n!r}: '/' cannot appear in a NIR (HDF5) node name" for n in slash]
        fold = fold_batchnorm or any(graph.op(n).type_name() == "BatchNorm" for n in bad)
        part = expressible_nodes(graph, fold_batchnorm=fold)
        frontier = [n for n in part if any(c not in part for c in graph.consumers(n))] or part[-1:]
        call = "nodes='expressible'" + (", fold_batchnorm=True" if fold else "")
        advice = (f"export an expressible part instead: to_nir(graph, {call}) ({len(part)} nodes given by "
                  f"expressible_nodes(graph{', fold_batchnorm=True' if fold else ''}), ending at {frontier}), or "
                  "list the nodes of a part (e.g. an MLP head) as nodes=[...]" if part and not slash else "")
        raise NIRExportError(problems, advice)

    order = [n for n in graph.topo_order() if n in selected]
    folded = {}  # producer -> BatchNorm
    if fold_batchnorm:
        folded = {_foldable(graph, n): n for n in order if graph.op(n).type_name() == "BatchNorm"}
        for p in folded:
            if p not in selected:
                raise NIRExportError([f"BatchNorm {folded[p]!r} folds into {p!r}, which is not in the selection"])
    dissolved = {n for n in order if graph.op(n).type_name() in ("Add", "Repeat")} | set(folded)
    nir_nodes: dict = {}
    edges: list[tuple[str, str]] = []
    taken = set(graph.nodes)

    def fresh(base: str) -> str:
        name, i = base, 1
        while name in taken:
            name, i = f"{base}_{i}", i + 1
        taken.add(name)
        return name

    boundary: dict[str, str] = {}

    def sources(src: str) -> list[str]:
        """The NIR nodes whose sum is IR value ``src``."""
        if src not in selected:
            if src not in boundary:
                boundary[src] = src  # an Input named after the outside producer
                nir_nodes[src] = nir.Input(input_type=np.array(types[src].shape))
            return [boundary[src]]
        if src in dissolved and src not in folded:
            return [s for i in graph.nodes[src].inputs for s in sources(i)]
        return [src]

    def connect(dst: str, src: str):
        for s in sources(src):
            if (s, dst) in edges:
                raise NIRExportError([f"node {dst!r} would receive {s!r} twice; NIR edges cannot repeat"])
            edges.append((s, dst))

    for n in order:
        op = graph.op(n)
        kind = op.type_name()
        node = graph.nodes[n]
        out_shape = types[n].shape
        if n in dissolved:
            continue
        if kind == "Input":
            nir_nodes[n] = nir.Input(input_type=np.array(out_shape))
            continue
        src = node.inputs[0]
        in_shape = types[src].shape
        if kind == "Output":
            nir_nodes[n] = nir.Output(output_type=np.array(out_shape))
        elif kind in ("Conv2d", "Linear"):
            nir_nodes[n] = _weight_node(op, in_shape)
        elif kind == "BatchNorm":
            producer = graph.op(src)
            weight, bias = _folded(producer, op)
            src = graph.nodes[src].inputs[0]
            nir_nodes[n] = _weight_node(producer, types[src].shape, weight, bias)
        elif kind == "SumPool2d":
            nir_nodes[n] = nir.SumPool2d(kernel_size=np.array(op.kernel), stride=np.array(op.stride),
                                         padding=np.array(op.padding))
        elif kind == "Flatten":
            nir_nodes[n] = nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1)
        elif kind == "TokenMean":
            pool = fresh(f"{n}.pool")
            nir_nodes[pool] = nir.AvgPool2d(kernel_size=np.array(in_shape[1:]), stride=np.array(in_shape[1:]),
                                            padding=np.array([0, 0]))
            connect(pool, src)
            nir_nodes[n] = nir.Flatten(input_type={"input": np.array([in_shape[0], 1, 1])}, start_dim=0, end_dim=-1)
            edges.append((pool, n))
            continue
        elif kind == "Scale":
            nir_nodes[n] = nir.Scale(scale=_full(op.scale, in_shape))
        elif kind == "LIF":
            nir_nodes[n] = _lif_node(op, out_shape, dt)
        elif kind == "LI":
            nir_nodes[n] = _li_node(op, out_shape, dt)
        elif kind == "CubaLIF":
            theta, meta = _threshold(op, out_shape)
            k = dt / op.dt
            nir_nodes[n] = nir.CubaLIF(tau_syn=_full(op.tau_syn, out_shape, np.float64) * k,
                                       tau_mem=_full(op.tau_mem, out_shape, np.float64) * k,
                                       r=_full(op.r, out_shape), v_leak=_full(op.v_leak, out_shape),
                                       v_threshold=theta, v_reset=_full(op.v_reset, out_shape),
                                       w_in=_full(op.w_in, out_shape), metadata=meta)
        else:  # pragma: no cover - nir_problems refused it
            raise NIRExportError([f"node {n!r} ({kind}): no NIR equivalent"])
        connect(n, src)

    # values leaving the selection, and graph outputs that are not Output nodes, get an Output node
    for n in order:
        if graph.op(n).type_name() == "Output" or n in folded:
            continue
        leaves = any(c not in selected for c in graph.consumers(n)) or n in graph.outputs
        if leaves:
            out = fresh(f"{n}.output")
            nir_nodes[out] = nir.Output(output_type=np.array(types[n].shape))
            connect(out, n)
    if not any(isinstance(v, nir.Output) for v in nir_nodes.values()):
        raise NIRExportError(["the selection has no output: no selected value leaves it or is a graph output"])
    g = nir.NIRGraph(nodes=nir_nodes, edges=edges, metadata={HINT + "dt": float(dt)}, type_check=type_check)
    zero_d = _zero_d(g)
    if zero_d:  # pragma: no cover - a bug here, never a user error
        raise AssertionError(f"0-d arrays in the NIR graph: {zero_d}")
    return g


def _zero_d(g) -> list[str]:
    found = []
    for name, node in g.nodes.items():
        for field, value in vars(node).items():
            if isinstance(value, np.ndarray) and value.ndim == 0:
                found.append(f"{name}.{field}")
    return found


def write_nir(graph: Graph, path: str | Path, *, nodes: Iterable[str] | str | None = None, dt: float = 1.0,
              fold_batchnorm: bool = False, compression: str | None = "gzip"):
    """Write :func:`to_nir`'s graph to ``path`` (readable by ``nir.read(path)`` with type checking on);
    returns the ``nir.NIRGraph`` written."""
    import nir

    g = to_nir(graph, nodes=nodes, dt=dt, fold_batchnorm=fold_batchnorm)
    nir.write(path, g, compression=compression)
    return g

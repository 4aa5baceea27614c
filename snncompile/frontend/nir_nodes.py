"""One NIR node at a time into IR nodes (for :func:`snncompile.frontend.nir_import.from_nir`).

:class:`Builder` collects the IR nodes and their types; :func:`convert_node` adds the IR nodes for one NIR node
(the node table of ``docs/nir.md``), refusing a node type or parameter the IR cannot express with a
:class:`~snncompile.frontend.nir_graph.NIRImportError` naming the node.
"""
from __future__ import annotations

import math

import numpy as np

from ..ir import Node, TensorType
from ..ir.ops import LI, LIF, Conv2d, CubaLIF, Flatten, Linear, Op, Scale, SumPool2d, TypeMismatch
from .nir_conventions import (Conventions, compact, cuba_gains, cuba_time_constant, exporter_hints, leaky_fields,
                              per_neuron, scalar, spike_threshold, time_constant)
from .nir_graph import NIRImportError, as_text, float32, numbers


def _f32(name: str, field: str, value) -> np.ndarray:
    """A weight as float32, the IR's number type (float64 / integer NIR weights are cast; integers below
    2**24 exactly)."""
    return float32(name, field, numbers(name, field, value))


def _pair(name: str, field: str, value) -> tuple[int, int]:
    a = numbers(name, field, value, integral=True).reshape(-1)
    if a.size == 1:
        return int(a[0]), int(a[0])
    if a.size == 2:
        return int(a[0]), int(a[1])
    raise NIRImportError(f"node {name!r}: {field} must be an int or a pair, got {a.size} values")


def _int(name: str, field: str, value) -> int:
    a = numbers(name, field, value, integral=True).reshape(-1)
    if a.size != 1:
        raise NIRImportError(f"node {name!r}: {field} must be one int, got {a.size} values")
    return int(a[0])



def _flatten_shape(shape: tuple[int, ...], start: int, end: int) -> tuple[int, ...] | None:
    n = len(shape)
    s = start + n if start < 0 else start
    e = end + n if end < 0 else end
    if not (0 <= s < n and s <= e < n):
        return None
    return (*shape[:s], math.prod(shape[s:e + 1]), *shape[e + 1:])


def _conv_padding(name: str, padding, weight: np.ndarray, dilation) -> tuple[int, int]:
    if isinstance(padding, (str, bytes)) or (isinstance(padding, np.ndarray) and padding.dtype.kind in "SUO"):
        text = as_text(padding)
        if text == "valid":
            return 0, 0
        if text == "same":
            span = [dilation[i] * (weight.shape[2 + i] - 1) for i in range(2)]
            if any(s % 2 for s in span):
                raise NIRImportError(f"node {name!r}: padding 'same' with an even kernel span {span} needs "
                                     f"asymmetric padding, which the IR Conv2d lacks")
            return span[0] // 2, span[1] // 2
        raise NIRImportError(f"node {name!r}: unknown padding {text!r}")
    return _pair(name, "padding", padding)


MAX_ELEMENTS = 2**24  # values per sample and step of one node's output (and of its per-neuron parameters)


class Builder:
    """The IR graph being built: its nodes, their output types, and every name taken (NIR names, inserted
    nodes), so that an inserted node never takes a name a NIR node has."""

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
            out = op.infer([self.types[s] for s in inputs])
        except TypeMismatch as e:
            raise NIRImportError(f"node {nir_name!r} ({type(op).__name__}): {e}") from None
        if math.prod(out.shape) > MAX_ELEMENTS:
            raise NIRImportError(f"node {nir_name!r} ({type(op).__name__}): its output of shape {out.shape} has more "
                                 f"than {MAX_ELEMENTS} values per sample (the limit)")
        self.types[name] = out
        self.nodes[name] = Node(op, inputs)
        return name


_REFUSED = {
    "Delay": "the IR has no delay node (a NIR Delay is a continuous-time delay; it would need a FIFO of "
             "delay/dt steps)",
    "Threshold": "the IR has no stateless threshold node (only neurons that integrate and reset)",
    "CubaLI": "the IR has no current-based leaky integrator without a threshold",
    "Conv1d": "the IR has no 1-D convolution",
}


def unknown_module(b: Builder, name: str, x: str, wanted: list[tuple[int, ...] | None]) -> str:
    """A node written as ``None`` (Norse 1.1.0 writes every module its exporter does not know so: Flatten,
    pooling): a ``Flatten`` where that is what its consumers need (each declares the 1-D input of the
    flattened size), refused otherwise."""
    shape = b.types[x].shape
    flat = (math.prod(shape),)
    if wanted and all(w == flat for w in wanted):
        return b.add(name, Flatten(), (x,), name) if len(shape) > 1 else x
    raise NIRImportError(f"node {name!r} is empty (None: Norse 1.1.0 writes a module its exporter does not know, "
                         f"such as a pooling, so): its input is {list(shape)} and its consumers declare "
                         f"{[list(w) if w else None for w in wanted]}, so it is no inferable Flatten")


def _membrane_input(b: Builder, name: str, node, shape, ctx: Conventions, hints, x: str, leaky: bool):
    """The LIF/LI fields for the membrane and the node feeding it (a ``Scale`` by ``r`` when needed)."""
    if leaky:
        fields, scale = leaky_fields(name, node, shape, ctx, hints)
    else:
        r = per_neuron(name, "r", node.r, shape)
        fields, scale = dict(leak_encoding="none"), (None if np.all(r == 1) else r)
    if scale is not None:
        x = b.add(b.fresh(f"{name}.r"), Scale(scale=compact(scale)), (x,), name)
    return fields, x


def convert_node(b: Builder, name: str, node, x: str, ctx: Conventions) -> None:
    """Add the IR nodes for NIR node ``name`` fed by IR node ``x``; the last one is named ``name``."""
    kind = type(node).__name__
    shape = b.types[x].shape
    hints = exporter_hints(node)
    final = name
    if kind in _REFUSED:
        raise NIRImportError(f"node {name!r} ({kind}) is not supported: {_REFUSED[kind]}")
    if kind in ("Affine", "Linear"):
        w = _f32(name, "weight", node.weight)
        if w.ndim != 2:
            raise NIRImportError(f"node {name!r} ({kind}): weight of shape {w.shape}; only 2-D weights map to the IR")
        if len(shape) != 1:
            raise NIRImportError(f"node {name!r} ({kind}): input has shape {shape}; NIR {kind} maps a 1-D vector "
                                 f"(is a Flatten missing?)")
        bias = _f32(name, "bias", node.bias).reshape(-1) if kind == "Affine" and node.bias is not None else None
        b.add(final, Linear(weight=w, bias=bias), (x,), name)
    elif kind == "Conv2d":
        w = _f32(name, "weight", node.weight)
        if w.ndim != 4:
            raise NIRImportError(f"node {name!r} (Conv2d): weight of shape {w.shape}; a 2-D convolution has 4-D "
                                 f"weights")
        dilation = _pair(name, "dilation", node.dilation)
        bias = None if node.bias is None else _f32(name, "bias", node.bias).reshape(-1)
        b.add(final, Conv2d(weight=w, bias=bias, stride=_pair(name, "stride", node.stride),
                            padding=_conv_padding(name, node.padding, w, dilation), dilation=dilation,
                            groups=_int(name, "groups", node.groups)), (x,), name)
    elif kind in ("SumPool2d", "AvgPool2d"):
        kernel = _pair(name, "kernel_size", node.kernel_size)
        pool = SumPool2d(kernel=kernel, stride=_pair(name, "stride", node.stride),
                         padding=_pair(name, "padding", node.padding))
        if kind == "SumPool2d":
            b.add(final, pool, (x,), name)
        else:  # NIR: AvgPool2d = SumPool2d then Scale by 1 / window size
            s = b.add(b.fresh(f"{name}.sum"), pool, (x,), name)
            b.add(final, Scale(scale=1.0 / (kernel[0] * kernel[1])), (s,), name)
    elif kind == "Scale":
        b.add(final, Scale(scale=compact(per_neuron(name, "scale", node.scale, shape))), (x,), name)
    elif kind == "Flatten":
        start, end = _int(name, "start_dim", node.start_dim), _int(name, "end_dim", node.end_dim)
        literal = _flatten_shape(shape, start, end)
        torch_style = _flatten_shape(shape, start - 1, end - 1 if end > 0 else end) if start >= 1 else None
        if not any(s is not None and len(s) == 1 for s in (literal, torch_style)):
            raise NIRImportError(f"node {name!r} (Flatten start_dim={start}, end_dim={end}) on input {shape} gives "
                                 f"{literal}: the IR Flatten flattens every per-sample axis, partial flattens are "
                                 f"not supported")
        b.add(final, Flatten(), (x,), name)
    elif kind in ("LIF", "IF", "CubaLIF"):
        if kind == "CubaLIF":
            if ctx.cuba_reset != "hard":
                raise NIRImportError(f"node {name!r} (CubaLIF): reset={ctx.cuba_reset!r} is not supported (the IR "
                                     f"CubaLIF resets to v_reset)")
            theta, cmp = spike_threshold(name, node, shape, ctx, hints)
            arrays = {f: per_neuron(name, f, getattr(node, f), shape) for f in ("v_leak", "v_reset")}
            taus = {f: time_constant(name, f, getattr(node, f), shape, ctx) for f in ("tau_syn", "tau_mem")}
            arrays.update(cuba_gains(name, node, shape, taus, ctx))
            taus = {f: cuba_time_constant(name, f, tau, ctx) for f, tau in taus.items()}
            b.add(final, CubaLIF(**taus, **arrays, v_threshold=theta, dt=ctx.dt, threshold_cmp=cmp), (x,), name)
            return
        theta, cmp = spike_threshold(name, node, shape, ctx, hints)
        v_reset = scalar(name, "v_reset", per_neuron(name, "v_reset", node.v_reset, shape)) \
            if node.v_reset is not None else 0.0
        fields, x = _membrane_input(b, name, node, shape, ctx, hints, x, leaky=kind != "IF")
        b.add(final, LIF(v_threshold=compact(theta), v_reset=v_reset, threshold_cmp=cmp, reset=ctx.reset,
                         **fields), (x,), name)
    elif kind in ("LI", "I"):
        fields, x = _membrane_input(b, name, node, shape, ctx, hints, x, leaky=kind != "I")
        b.add(final, LI(**fields), (x,), name)
    else:
        raise NIRImportError(f"node {name!r}: NIR node type {kind} is not supported")

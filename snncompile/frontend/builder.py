"""Graph building for the torch exporter: the node builder and one converter per supported torch layer.

Every converter has the signature ``convert(b, path, module, x) -> str``: it adds the nodes of
``module`` (at dotted ``path`` in the model) fed by node ``x`` and returns the name of its output node.
Types are inferred as nodes are added, so a shape error names the torch module that caused it.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..ir import Graph, HistoryEntry, Node
from ..ir.ops import (LIF, BatchNorm, Conv2d, Flatten, Linear, MaxPool2d, Op, ReLU, Scale, SumPool2d, TernaryLIF,
                      TypeMismatch)
from ..ir.types import SPIKE, TensorType
from ..nn.neurons import MultiStepLIF, MultiStepParametricLIF, MultiStepTernaryLIF


class ExportError(ValueError):
    """A model cannot be exported; the message lists every problem, each naming a module path and class."""

    def __init__(self, problems: list[str], supported: str | None = None):
        self.problems = problems
        text = problems[0] if len(problems) == 1 else (
            f"cannot export the model ({len(problems)} problems):\n  - " + "\n  - ".join(problems))
        super().__init__(text + (f"\nsupported: {supported}" if supported else ""))


def class_name(obj) -> str:
    """``torch.nn.Softmax`` for torch layers (their public name), ``module.Class`` otherwise."""
    cls = obj if isinstance(obj, type) else type(obj)
    if cls.__module__.startswith("torch.nn.") and getattr(nn, cls.__name__, None) is cls:
        return f"torch.nn.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def where(path: str, module: nn.Module) -> str:
    """``model.3 (torch.nn.Softmax)``: how error messages name a module."""
    return f"{'model' if not path else 'model.' + path} ({class_name(module)})"


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def array(t: torch.Tensor) -> np.ndarray:
    """A parameter as an owned float32 numpy array (bit-identical values)."""
    return t.detach().cpu().numpy().copy()


class Builder:
    """Collects nodes in dependency order, their types, and which modules the export consumed."""

    def __init__(self):
        self.nodes: dict[str, Node] = {}
        self.types: dict[str, TensorType] = {}
        self.used: set[int] = set()  # id() of every module whose parameters went into a node

    def add(self, name: str, op: Op, *inputs: str, source: tuple[str, nn.Module] | None = None) -> str:
        if name in self.nodes:
            raise ExportError([f"cannot export: two nodes would be named {name!r} (a module named like a "
                               "derived node, e.g. 'input' or 'output'?)"])
        blame = where(*source) if source else f"node {name!r}"
        problems = op.problems()
        if problems:
            raise ExportError([f"cannot export {blame}: {p}" for p in problems])
        try:
            self.types[name] = op.infer([self.types[i] for i in inputs])
        except TypeMismatch as e:
            raise ExportError([f"cannot export {blame}: {e}"]) from None
        self.nodes[name] = Node(op, tuple(inputs))
        if source:
            self.used.add(id(source[1]))
        return name

    def type(self, name: str) -> TensorType:
        return self.types[name]

    def graph(self, outputs: tuple[str, ...], time_steps: int, options: dict) -> Graph:
        return Graph(dict(self.nodes), outputs, time_steps, (HistoryEntry("export", options),)).validate()


# -- leaf converters --------------------------------------------------------------------------------

def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def conv2d(b: Builder, path: str, m: nn.Conv2d, x: str) -> str:
    padding = m.padding
    if isinstance(padding, str):  # "valid" or a symmetric "same" (checked by leaf_problems)
        padding = (0, 0) if padding == "valid" else tuple(d * (k - 1) // 2 for d, k in zip(m.dilation, m.kernel_size))
    op = Conv2d(weight=array(m.weight), bias=None if m.bias is None else array(m.bias), stride=_pair(m.stride),
                padding=_pair(padding), dilation=_pair(m.dilation), groups=m.groups)
    return b.add(path, op, x, source=(path, m))


def batchnorm(b: Builder, path: str, m: nn.modules.batchnorm._BatchNorm, x: str) -> str:
    rank = (3,) if isinstance(m, nn.BatchNorm2d) else (1, 2)  # [C, H, W]; BatchNorm1d: [C] or [C, L]
    shape = b.type(x).shape
    if len(shape) not in rank:
        raise ExportError([f"cannot export {where(path, m)}: expects per-sample rank {' or '.join(map(str, rank))}, "
                           f"input is {b.type(x)}"])
    op = BatchNorm(weight=array(m.weight if m.affine else torch.ones(m.num_features)),
                   bias=array(m.bias if m.affine else torch.zeros(m.num_features)),
                   running_mean=array(m.running_mean), running_var=array(m.running_var), eps=float(m.eps))
    return b.add(path, op, x, source=(path, m))


def linear(b: Builder, path: str, m: nn.Linear, x: str) -> str:
    op = Linear(weight=array(m.weight), bias=None if m.bias is None else array(m.bias))
    return b.add(path, op, x, source=(path, m))


def maxpool2d(b: Builder, path: str, m: nn.MaxPool2d, x: str) -> str:
    mode = "or" if b.type(x).dtype == SPIKE else "max"
    op = MaxPool2d(kernel=_pair(m.kernel_size), stride=_pair(m.stride if m.stride is not None else m.kernel_size),
                   padding=_pair(m.padding), mode=mode)
    return b.add(path, op, x, source=(path, m))


def avgpool2d(b: Builder, path: str, m: nn.AvgPool2d, x: str) -> str:
    """``SumPool2d`` then ``Scale(1/n)``: bit-identical to ``avg_pool2d`` because the window size ``n``
    is a power of two (``leaf_problems`` refuses the rest), so ``1/n`` is exact and ``s * (1/n) == s / n``."""
    kernel = _pair(m.kernel_size)
    total = b.add(f"{path}.sum", SumPool2d(kernel=kernel, stride=_pair(m.stride if m.stride is not None else kernel),
                                           padding=_pair(m.padding)), x, source=(path, m))
    return b.add(path, Scale(scale=1.0 / (kernel[0] * kernel[1])), total, source=(path, m))


def flatten(b: Builder, path: str, m: nn.Flatten, x: str) -> str:
    if len(b.type(x).shape) == 1:
        b.used.add(id(m))
        return x  # already flat: nothing to do
    return b.add(path, Flatten(), x, source=(path, m))


def relu(b: Builder, path: str, m: nn.ReLU, x: str) -> str:
    return b.add(path, ReLU(), x, source=(path, m))


def identity(b: Builder, path: str, m: nn.Module, x: str) -> str:
    b.used.add(id(m))
    return x


def neuron(b: Builder, path: str, m: MultiStepLIF, x: str) -> str:
    """MultiStepLIF: leak = tau, divide_by_tau; parametric: leak = sigmoid(w), multiply_by_rate.

    The rate is stored as the Python float of the float32 ``sigmoid(w)``, so the interpreter multiplies
    by exactly the value torch multiplies by.
    """
    if type(m) is MultiStepParametricLIF:
        leak, encoding = float(torch.sigmoid(m.w.detach().cpu())), "multiply_by_rate"
    elif type(m) in (MultiStepLIF, MultiStepTernaryLIF):
        leak, encoding = float(m.tau), "divide_by_tau"
    else:
        raise ExportError([f"cannot export {where(path, m)}: not a spiking neuron snncompile knows"])
    cls = TernaryLIF if type(m) is MultiStepTernaryLIF else LIF
    op = cls(v_threshold=float(m.v_threshold), leak=leak, leak_encoding=encoding, decay_input=True,
             v_rest=float(m.v_reset), v_reset=float(m.v_reset), threshold_cmp=">=", reset="hard")
    return b.add(path, op, x, source=(path, m))


def leaf_problems(path: str, m: nn.Module) -> list[str]:
    """Options of a supported layer that the IR cannot reproduce exactly (or that need eval mode)."""
    p = []
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            p.append(f"padding_mode {m.padding_mode!r} (only 'zeros')")
        if m.padding == "same" and any(d * (k - 1) % 2 for d, k in zip(m.dilation, m.kernel_size)):
            p.append("padding='same' with an even receptive field pads asymmetrically")
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        if m.running_mean is None or m.running_var is None:
            p.append("track_running_stats=False (uses batch statistics)")
        elif m.training:
            p.append("in training mode (uses batch statistics): call model.eval() first")
    if isinstance(m, nn.MaxPool2d):
        if _pair(m.dilation) != (1, 1) or m.ceil_mode or m.return_indices:
            p.append("dilation, ceil_mode and return_indices are not supported")
    if isinstance(m, nn.AvgPool2d):
        n = math.prod(_pair(m.kernel_size))
        if n & (n - 1):
            p.append(f"a window of {n} elements: the average is exact as sum * (1/n) only for a power-of-two "
                     "window (use MaxPool2d, or a window of 1, 2, 4, 8, ... elements)")
        if m.ceil_mode or m.divisor_override is not None or (not m.count_include_pad and _pair(m.padding) != (0, 0)):
            p.append("ceil_mode, divisor_override and count_include_pad=False with padding are not supported")
    if isinstance(m, nn.Dropout) and m.training and m.p > 0:
        p.append("in training mode (random): call model.eval() first")
    if isinstance(m, nn.Flatten) and (m.start_dim, m.end_dim) != (1, -1):
        p.append(f"Flatten(start_dim={m.start_dim}, end_dim={m.end_dim}): only the per-timestep "
                 "flatten of every sample axis, Flatten(1, -1)")
    for name, t in list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False)):
        if t is not None and t.is_floating_point() and t.dtype != torch.float32:
            p.append(f"{name} is {t.dtype} (only float32)")
    return [f"cannot export {where(path, m)}: {x}" for x in p]


# Supported stateless layers (applied per timestep) and neurons, most specific class first. A subclass is
# accepted only when it overrides none of the listed methods (a custom forward is a custom layer).
LEAVES: tuple[tuple[type, object, tuple[str, ...]], ...] = (
    (nn.Conv2d, conv2d, ("forward", "_conv_forward")),
    (nn.BatchNorm2d, batchnorm, ("forward",)),
    (nn.BatchNorm1d, batchnorm, ("forward",)),
    (nn.Linear, linear, ("forward",)),
    (nn.MaxPool2d, maxpool2d, ("forward",)),
    (nn.AvgPool2d, avgpool2d, ("forward",)),
    (nn.Flatten, flatten, ("forward",)),
    (nn.ReLU, relu, ("forward",)),
    (nn.Identity, identity, ("forward",)),
    (nn.Dropout, identity, ("forward",)),
)
NEURONS: tuple[type, ...] = (MultiStepTernaryLIF, MultiStepParametricLIF, MultiStepLIF)


def same_behaviour(m: nn.Module, cls: type, methods: tuple[str, ...]) -> bool:
    return isinstance(m, cls) and all(getattr(type(m), k) is getattr(cls, k) for k in methods)


def leaf_converter(m: nn.Module):
    """The converter of a supported stateless layer, or None."""
    for cls, convert, methods in LEAVES:
        if same_behaviour(m, cls, methods):
            return convert
    return None


def is_neuron(m: nn.Module) -> bool:
    return type(m) in NEURONS

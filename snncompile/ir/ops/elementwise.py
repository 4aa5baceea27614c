"""Elementwise nodes: residual sums, products of two streams, ReLU, constant scaling."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..interval import Interval
from ..types import FLOAT32, SPIKE, TensorType, int_type
from .base import Op, expect, param
from .support import LAVA_FLOAT, NETX_FLOAT, NETX_PRODUCT, NIR_NO_PRODUCT, Backends, Refused


def _same_shapes(inputs: Sequence[TensorType], what: str, static: bool = False) -> None:
    """Equal shapes, all streams (or, where ``static`` is allowed, all static values)."""
    shapes = {t.shape for t in inputs}
    expect(len(shapes) == 1, f"{what} inputs must have equal shapes, got {', '.join(map(str, inputs))}")
    times = {t.time for t in inputs}
    expect(times == {"stream"} or (static and times == {"static"}),
           f"{what} inputs must be streams{' or all static' if static else ''}")


@dataclass(frozen=True, eq=False, kw_only=True)
class Add(Op):
    """Sum of one or more streams (residual), or of static values (sdt-v2's two classifier heads after their time
    means). Semantics: ``y = ((x0 + x1) + x2) + ...`` in input order."""

    ARITY = None
    ROLE, STEPPING, WORK = "elementwise", "local", "none"
    BACKENDS = Backends(lava=Refused(LAVA_FLOAT), onnx="function", nir="dissolved", netx=Refused(NETX_FLOAT))

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        _same_shapes(inputs, "Add", static=True)
        return TensorType(inputs[0].shape, FLOAT32, inputs[0].time)

    def run(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


@dataclass(frozen=True, eq=False, kw_only=True)
class Mul(Op):
    """Elementwise product of two streams. Semantics: ``y = a * b`` (AND when both are spikes)."""

    ARITY = 2
    ROLE, STEPPING, WORK = "elementwise", "local", "none"
    BACKENDS = Backends(lava="local", onnx="function", nir=Refused(NIR_NO_PRODUCT), netx=Refused(NETX_PRODUCT))

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        _same_shapes(inputs, "Mul")
        both_spikes = all(t.dtype == SPIKE for t in inputs)
        return TensorType(inputs[0].shape, SPIKE if both_spikes else FLOAT32)

    def run(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * b

    def value_range(self, inputs, in_types, out: TensorType) -> Interval | None:
        a, b = inputs
        if out.dtype.kind == "float" or a is None or b is None:
            return None
        return a * b


@dataclass(frozen=True, eq=False, kw_only=True)
class ReLU(Op):
    """Semantics: ``y = max(x, 0)`` (A2OS2A's real-valued, non-negative K: a graded operand). Float in,
    float out; an integer input gives the unsigned integer of one bit less (exact)."""

    INTEGER_INPUTS = True  # torch.relu keeps int64 exact
    ROLE, STEPPING, WORK = "elementwise", "local", "none"
    BACKENDS = Backends(lava="local", onnx="function",
                        nir=Refused("NIR has no ReLU or other static non-linearity (only spiking neurons and "
                                    "Threshold)"), netx=Refused(NETX_FLOAT))

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        if x.dtype.kind == "int":
            return TensorType(x.shape, int_type(max(1, x.dtype.bits - x.dtype.signed), signed=False), x.time)
        return TensorType(x.shape, FLOAT32, x.time)

    def value_range(self, inputs, in_types, out):
        return None if inputs[0] is None else Interval(max(inputs[0].lo, 0), max(inputs[0].hi, 0))

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


@dataclass(frozen=True, eq=False, kw_only=True)
class Scale(Op):
    """Multiply by a constant (NIR ``Scale``; an imported neuron's input resistance ``r``; the
    ``1/(kH*kW)`` of an average pool).

    Semantics: ``y[t] = x[t] * scale`` elementwise, ``scale`` a float or an array of the input's
    per-sample shape. Output float32, same time layout as the input.
    """

    ROLE, STEPPING, WORK = "host", "local", "none"
    BACKENDS = Backends(lava="host", onnx="function", nir="Scale", netx=Refused(NETX_FLOAT))
    scale: float | np.ndarray = param("the factor: a float, or an array of the input's shape (one per element)")

    def problems(self) -> list[str]:
        if isinstance(self.scale, np.ndarray) and self.scale.ndim == 0:
            return ["scale is a 0-d array; use a float"]
        return []

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        if isinstance(self.scale, np.ndarray):
            expect(self.scale.shape == x.shape, f"per-element scale has shape {self.scale.shape}, input is {x}")
        return TensorType(x.shape, FLOAT32, x.time)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.tensor("scale").to(x) if isinstance(self.scale, np.ndarray) else self.scale  # x's dtype and device
        return x * scale

"""Shape nodes: flatten and the token mean of the classifier head."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ..interval import Interval
from ..types import FLOAT32, TensorType
from .base import Op, expect
from .receptive import token_reduction
from .support import NETX_FLOAT, Backends, Refused


@dataclass(frozen=True, eq=False, kw_only=True)
class Flatten(Op):
    """Per-sample flatten to one axis (row-major). Semantics: ``y[t] = x[t].reshape(-1)``; values unchanged."""

    INTEGER_INPUTS = True  # a reshape: int64 values pass unchanged
    ROLE, STEPPING, WORK = "shape", "local", "none"
    BACKENDS = Backends(lava="local", onnx="function", nir="Flatten", netx="fold")

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect(x.time == "stream", f"Flatten needs a stream, got {x}")
        return TensorType((math.prod(x.shape),), x.dtype)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2)

    def reads(self, out, in_shapes):
        return [out.reshape(in_shapes[0]).copy()]  # element i of the output is element i of the input

    def value_range(self, inputs, in_types, out: TensorType) -> Interval | None:
        return inputs[0]


@dataclass(frozen=True, eq=False, kw_only=True)
class TokenMean(Op):
    """Mean over the spatial (token) axes of ``[C, H, W]``. Semantics: ``y[t, c] = mean_{h,w} x[t, c, h, w]``."""

    ROLE, STEPPING, WORK = "pool", "local", "none"
    BACKENDS = Backends(lava=Refused("a float token mean: lowering turns it into an integer TokenSum"),
                        onnx="function", nir="AvgPool2d", netx=Refused(NETX_FLOAT))

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect(len(x.shape) == 3 and x.time == "stream", f"TokenMean needs a [C, H, W] stream, got {x}")
        return TensorType((x.shape[0],), FLOAT32)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(3).mean(3)

    def reads(self, out, in_shapes):
        return [token_reduction(out, in_shapes[0])]

"""Pooling nodes on ``[C, H, W]`` per timestep."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F

from ..interval import Interval
from ..types import FLOAT32, SPIKE, TensorType, int_type
from .base import Op, expect, expect_stream, param
from .receptive import window
from .support import Backends, Refused
from ...nn.seq import per_step


def _window_problems(kernel, stride, padding) -> list[str]:
    p = []
    if any(2 * pad > k for pad, k in zip(padding, kernel)):
        p.append(f"padding {padding} exceeds half the kernel {kernel}")
    if min(kernel) < 1 or min(stride) < 1 or min(padding) < 0:
        p.append(f"kernel {kernel} and stride {stride} must be >= 1, padding >= 0")
    return p


def _pooled(x: TensorType, kernel, stride, padding, what: str) -> tuple[int, ...]:
    expect_stream(x)
    expect(len(x.shape) == 3, f"{what} needs [C, H, W] input, got {x}")
    size = tuple((x.shape[1 + i] + 2 * padding[i] - kernel[i]) // stride[i] + 1 for i in range(2))
    expect(min(size) >= 1, f"{what} output would be empty for input {x}")
    return (x.shape[0], *size)


@dataclass(frozen=True, eq=False, kw_only=True)
class MaxPool2d(Op):
    """Max over windows (PyTorch ``max_pool2d``, -inf padding).

    Semantics: ``y[t, c, h, w] = max_{i,j} x[t, c, s*h + i - p, s*w + j - p]``. ``mode="or"`` on
    binary spikes (an OR of the window, exact and cheap); ``mode="max"`` on anything else: real
    currents (a comparator, as in the SDT stem's last stage), integers, ternary spikes. The output
    dtype is the input dtype.
    """

    ROLE, STEPPING, WORK = "pool", "local", "none"
    BIAS_PASSES = True  # every window holds an input; the -inf padding never wins
    BACKENDS = Backends(lava="local", onnx="function",
                        nir=Refused("NIR 1.0.8 has no max pool (only SumPool2d and AvgPool2d)"),
                        netx=Refused("max pooling: netx's 'pool' raises NotImplementedError in lava-dl 0.6.0, and a "
                                     "max is not linear, so it cannot be folded into the next synapse"))
    kernel: tuple[int, int] = param("window (rows, columns)", (3, 3))
    stride: tuple[int, int] = param("step ``s`` (rows, columns)", (2, 2))
    padding: tuple[int, int] = param("``-inf`` padding ``p`` on each side (at most half the kernel)", (1, 1))
    mode: Literal["or", "max"] = param("``or`` on binary spikes, ``max`` on other values", "max")

    def problems(self) -> list[str]:
        p = [] if self.mode in ("or", "max") else [f"mode must be 'or' or 'max', got {self.mode!r}"]
        return p + _window_problems(self.kernel, self.stride, self.padding)

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect(self.mode == "max" or x.dtype == SPIKE, f"MaxPool2d mode 'or' needs binary spikes, got {x}")
        return TensorType(_pooled(x, self.kernel, self.stride, self.padding, "MaxPool2d"), x.dtype, x.time)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return per_step(x, lambda f: F.max_pool2d(f, self.kernel, self.stride, self.padding))

    def reads(self, out, in_shapes):
        return [window(out, in_shapes[0], self.kernel, self.stride, self.padding)]

    def value_range(self, inputs, in_types, out: TensorType) -> Interval | None:
        # every window holds at least one input element (padding is at most half the kernel), and the
        # -inf padding never wins: the max is one of the inputs
        return inputs[0]


@dataclass(frozen=True, eq=False, kw_only=True)
class SumPool2d(Op):
    """Sum over windows (NIR ``SumPool2d``, zero padding).

    Semantics: ``y[t, c, h, w] = sum_{i,j} x[t, c, s*h + i - p, s*w + j - p]``. Float input: float32
    output; integer (spike) input: the exact integer sum, typed with the width ``kH*kW*max|x|`` needs.
    """

    ROLE, STEPPING, WORK = "pool", "local", "none"
    BACKENDS = Backends(lava="local", onnx="function", nir="SumPool2d", netx="fold")
    kernel: tuple[int, int] = param("window (rows, columns)")
    stride: tuple[int, int] = param("step ``s`` (rows, columns)")
    padding: tuple[int, int] = param("zero padding ``p`` on each side (at most half the kernel)", (0, 0))

    def problems(self) -> list[str]:
        return _window_problems(self.kernel, self.stride, self.padding)

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        shape = _pooled(x, self.kernel, self.stride, self.padding, "SumPool2d")
        if x.dtype.kind == "float":
            return TensorType(shape, FLOAT32, x.time)
        bound = self.kernel[0] * self.kernel[1] * max(abs(x.dtype.min), abs(x.dtype.max))
        return TensorType(shape, int_type(bound.bit_length() + x.dtype.signed, x.dtype.signed), x.time)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return per_step(x, lambda f: F.avg_pool2d(f, self.kernel, self.stride, self.padding,
                                                 count_include_pad=True, divisor_override=1))

    def reads(self, out, in_shapes):
        return [window(out, in_shapes[0], self.kernel, self.stride, self.padding)]

    def value_range(self, inputs, in_types, out: TensorType) -> Interval | None:
        if out.dtype.kind == "float" or inputs[0] is None:
            return None
        x = Interval.hull(inputs[0], Interval(0, 0)) if any(self.padding) else inputs[0]  # zero padding
        return x.times(self.kernel[0] * self.kernel[1])

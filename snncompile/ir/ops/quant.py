"""Integer plumbing the lowering produces around the Loihi nodes: quantisation of real values, integer
sums, shifts, pure delays and token sums. ``run`` computes exactly (int64, or float32 tensors holding
integers for the host-side ``Quantize``); ``value_range`` gives each node's proven output interval."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch

from ...config import is_int
from ..interval import Interval
from ..types import TensorType, int_type
from .base import Op, expect, param
from .loihi import (BIAS_STEPS_DOC, _int_array_problems, _range_problem, add_timed_bias, timed_bias_problems,
                    timed_bias_range)
from .receptive import token_reduction
from .support import NIR_INTEGER, ONNX_INTEGER, Backends, Refused

Overflow = Literal["none", "saturate", "wrap"]
_OUT_BITS_DOC = "signed width of the result; ``overflow`` says what a value beyond it does"
_OVERFLOW_DOC = "a result beyond ``out_bits``: ``wrap`` (two's complement) or ``saturate`` (clip)"


def fit(y: torch.Tensor, bits: int, overflow: str, signed: bool = True) -> torch.Tensor:
    """An exact int64 ``y`` wrapped (two's complement) or saturated to ``bits`` (signed or unsigned).
    (``y`` itself when it already lies in the range: one reduction instead of the element-wise fit.)"""
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if y.numel() and y.dtype == torch.int64:
        least, most = torch.aminmax(y)
        if lo <= least.item() and most.item() <= hi:
            return y
    if overflow == "saturate":
        return y.clamp(lo, hi)
    return ((y - lo) & ((1 << bits) - 1)) + lo


def _fit_problems(op) -> list[str]:
    p = [] if is_int(op.out_bits) and 2 <= op.out_bits <= 32 else [
        f"out_bits must be an int in 2..32 (Lava sends int32), got {op.out_bits!r}"]
    if op.overflow not in ("wrap", "saturate"):
        p.append(f"overflow must be 'wrap' or 'saturate' for an integer result, got {op.overflow!r}")
    return p


def _integer_stream(x: TensorType, what: str) -> None:
    expect(x.time == "stream", f"{what} needs a stream, got {x}")
    expect(x.dtype.kind != "float", f"{what} takes integers (int, spike or ternary), got {x}; quantise it first")


def _as_int64(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.int64 else x.round().to(torch.int64)


@dataclass(frozen=True, eq=False, kw_only=True)
class Quantize(Op):
    """Real values -> integers of a given step (the host side of the boundary: a static image's first
    convolution, computed once, or real-valued input frames).

    Semantics: ``y = clip(round(x / scale), lo, hi)``: ``x / scale`` in float32 (torch), rounded half to
    even, then clipped to the ``bits``-bit signed or unsigned range (saturation, never wrap). The real
    value an integer stands for is ``scale * y``. Same time layout as the input (static or stream).
    """

    ROLE, STEPPING, WORK = "host", "local", "none"
    BACKENDS = Backends(lava="host", onnx=Refused(ONNX_INTEGER), nir=Refused(NIR_INTEGER),
                        netx=Refused("quantisation of real values runs on the host: netx has no quantiser"))
    scale: float = param("real value of one integer step (> 0)")
    bits: int = param("width of the result")
    signed: bool = param("signed (two's complement range) or unsigned result", True)
    overflow: Overflow = param("always ``saturate``: values beyond the range are clipped", "saturate")

    def problems(self) -> list[str]:
        p = [] if isinstance(self.scale, float) and math.isfinite(self.scale) and self.scale > 0 else [
            f"scale must be a finite float > 0, got {self.scale!r}"]
        if not is_int(self.bits) or not 1 <= self.bits <= 32:
            p.append(f"bits must be an int in 1..32, got {self.bits!r}")
        if self.overflow != "saturate":
            p.append(f"overflow must be 'saturate' (Quantize clips), got {self.overflow!r}")
        return p

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect(x.dtype.kind == "float", f"Quantize takes real values, got {x}")
        return TensorType(x.shape, int_type(self.bits, self.signed), x.time)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.round(x.to(torch.float32) / torch.tensor(self.scale, dtype=torch.float32))
        return fit(y.to(torch.int64), self.bits, "saturate", self.signed)

    def value_range(self, inputs, in_types, out: TensorType) -> Interval:
        return Interval.of_dtype(out.dtype)


@dataclass(frozen=True, eq=False, kw_only=True)
class IntAdd(Op):
    """Sum of integer streams (the integer residual stream; several synapse groups into one neuron).

    Semantics: ``y = x0 + x1 + ... (+ bias for bias_start <= t < bias_start + bias_steps)`` exactly, then wrapped or saturated to
    ``out_bits`` signed bits. Output ``int<out_bits>``. The lowering gives it no bias; the Lava backend's
    ``per_op`` plan moves its producers' synapse biases into it (an adder computes it, on Loihi the
    receiving compartment's dendrite), so that the producers run on Lava's own bias-free ``Dense``/``Conv``.
    """

    ARITY = None
    INTEGER_INPUTS = True
    ROLE, STEPPING, WORK, DENDRITIC = "elementwise", "local", "none", True
    BACKENDS = Backends(lava="local", onnx=Refused(ONNX_INTEGER), nir=Refused(NIR_INTEGER),
                        netx=Refused("an integer sum of streams (a residual connection): a netx network is a single "
                                     "chain of layers; its 'concat' and 'average' layers raise NotImplementedError in "
                                     "lava-dl 0.6.0"))
    out_bits: int = param(_OUT_BITS_DOC, 24)
    overflow: Overflow = param(_OVERFLOW_DOC, "saturate")
    bias: np.ndarray | None = param("integer constant per output element (one sample's shape) added to the sum, in "
                                    "output units: its producers' synapse biases, moved here", None)
    bias_start: int = param("first timestep from which the bias is added (the data's arrival)", 0)
    bias_steps: int = param(BIAS_STEPS_DOC, 0)

    def problems(self) -> list[str]:
        p = _fit_problems(self) + timed_bias_problems(self)
        if self.bias is None:
            return p
        return p + (_int_array_problems("bias", self.bias)
                    or _range_problem("bias", self.bias, -(1 << 31), (1 << 31) - 1, "int32"))

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        for x in inputs:
            _integer_stream(x, "IntAdd")
        expect(len({x.shape for x in inputs}) == 1, f"IntAdd inputs differ: {', '.join(map(str, inputs))}")
        expect(self.bias is None or self.bias.shape == inputs[0].shape,
               f"IntAdd bias has shape {None if self.bias is None else self.bias.shape}, its inputs {inputs[0]}")
        return TensorType(inputs[0].shape, int_type(self.out_bits))

    def scheduled(self, arrival: int, data_steps: int, run_steps: int, synapse_delay: int) -> "IntAdd":
        """A bias acts in the data window (from ``bias_start``, their arrival, for ``bias_steps``)."""
        return self if self.bias is None else dataclasses.replace(self, bias_start=arrival, bias_steps=data_steps)

    def unscheduled(self, data_steps: int) -> "IntAdd":
        return dataclasses.replace(self, delay=0, bias_start=0, bias_steps=0)

    def run(self, *xs: torch.Tensor) -> torch.Tensor:
        total = _as_int64(xs[0])
        for x in xs[1:]:
            total = total + _as_int64(x)
        if self.bias is not None:
            total = add_timed_bias(total, self.tensor("bias").to(torch.int64), self)
        if total is xs[0]:  # a single int64 input: the result is a new tensor all the same
            total = total.clone()
        return fit(total, self.out_bits, self.overflow)

    def value_range(self, inputs, in_types, out: TensorType) -> Interval | None:
        if any(i is None for i in inputs):
            return None
        total = inputs[0]
        for i in inputs[1:]:
            total = total + i
        if self.bias is None:
            return total
        biased = total + Interval(int(self.bias.min()), int(self.bias.max()))
        return timed_bias_range(total, biased, self)


@dataclass(frozen=True, eq=False, kw_only=True)
class IntShift(Op):
    """Multiply an integer stream by a power of two (fraction bits for a neuron's input).

    Semantics: ``y = x << shift`` (``shift >= 0``) or the arithmetic (floor) ``x >> -shift``, then
    wrapped or saturated to ``out_bits`` signed bits. Output ``int<out_bits>``.
    """

    INTEGER_INPUTS = True
    ROLE, STEPPING, WORK, DENDRITIC = "elementwise", "local", "none", True
    BACKENDS = Backends(lava="local", onnx=Refused(ONNX_INTEGER), nir=Refused(NIR_INTEGER),
                        netx=Refused("a power-of-two scaling between layers: netx has no such layer (a netx block is "
                                     "synapse -> neuron)"))
    shift: int = param("left shift (negative: arithmetic right shift)")
    out_bits: int = param(_OUT_BITS_DOC, 24)
    overflow: Overflow = param(_OVERFLOW_DOC, "saturate")

    def problems(self) -> list[str]:
        p = [] if is_int(self.shift) and -31 <= self.shift <= 31 else [
            f"shift must be an int in -31..31, got {self.shift!r}"]
        return p + _fit_problems(self)

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        _integer_stream(x, "IntShift")
        return TensorType(x.shape, int_type(self.out_bits))

    def run(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_int64(x)
        return fit(x << self.shift if self.shift >= 0 else x >> -self.shift, self.out_bits, self.overflow)

    def value_range(self, inputs, in_types, out: TensorType) -> Interval | None:
        return None if inputs[0] is None else inputs[0].shift(self.shift)


@dataclass(frozen=True, eq=False, kw_only=True)
class Delay(Op):
    """A pure delay line (inserted by scheduling on the shorter of converging paths).

    Semantics: identity; the node's ``delay`` field is the number of steps: ``y[t] = x[t - delay]``,
    zero before. Output type = input type (streams only).
    """

    INTEGER_INPUTS = True
    ROLE, STEPPING, WORK, DENDRITIC = "elementwise", "local", "none", True
    BIAS_PASSES = True
    BACKENDS = Backends(lava="local", onnx=Refused(ONNX_INTEGER), nir=Refused(NIR_INTEGER),
                        netx=Refused("a delay line aligning converging paths: netx has no standalone delay layer "
                                     "(only per-synapse delays inside a Dense)"))

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect(x.time == "stream", f"Delay needs a stream, got {x}")
        return x

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def value_range(self, inputs, in_types, out: TensorType) -> Interval | None:
        if out.dtype.kind == "float" or inputs[0] is None:
            return None
        return Interval.hull(inputs[0], Interval(0, 0))  # the leading zeros


@dataclass(frozen=True, eq=False, kw_only=True)
class TokenSum(Op):
    """Integer sum over the spatial (token) axes of ``[C, H, W]`` (the head's token mean with ``1/N``
    folded into the next neuron's threshold). Semantics: ``y[t, c] = sum_{h,w} x[t, c, h, w]``, exact,
    then wrapped or saturated to ``out_bits``."""

    INTEGER_INPUTS = True
    ROLE, STEPPING, WORK = "pool", "local", "none"
    BACKENDS = Backends(lava="local", onnx=Refused(ONNX_INTEGER), nir=Refused(NIR_INTEGER),
                        netx=Refused("a sum over tokens: netx has no reduction layer ('average' raises "
                                     "NotImplementedError in lava-dl 0.6.0)"))
    out_bits: int = param(_OUT_BITS_DOC, 24)
    overflow: Overflow = param(_OVERFLOW_DOC, "saturate")

    def problems(self) -> list[str]:
        return _fit_problems(self)

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        _integer_stream(x, "TokenSum")
        expect(len(x.shape) == 3, f"TokenSum needs a [C, H, W] stream, got {x}")
        return TensorType((x.shape[0],), int_type(self.out_bits))

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return fit(_as_int64(x).flatten(3).sum(3), self.out_bits, self.overflow)

    def reads(self, out, in_shapes):
        return [token_reduction(out, in_shapes[0])]

    def value_range(self, inputs, in_types, out: TensorType) -> Interval | None:
        tokens = in_types[0].shape[1] * in_types[0].shape[2]
        return None if inputs[0] is None else inputs[0].times(tokens)


__all__ = ["Quantize", "IntAdd", "IntShift", "Delay", "TokenSum", "fit"]

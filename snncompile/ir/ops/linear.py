"""Synaptic (weighted) nodes: convolution, dense, batch norm. All act per timestep.

BatchNorm needs streams (its ``run`` treats axes 0 and 1 as ``[T, B]``). Conv2d and Linear take either
layout: a static image's first convolution is computed once, before its ``Repeat``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import math

import numpy as np
import torch
import torch.nn.functional as F

from ...nn.seq import per_step
from ..types import FLOAT32, TensorType
from .base import Op, expect, expect_stream, param
from .receptive import dense_rows, synapse_fan_outs, synapse_received, window
from .support import NETX_FLOAT, Backends, Refused


class WeightedSum:
    """What the synapse node types (float and integer, dense and convolution) share beyond their fields:
    receptive fields and fan-outs from ``weight`` and, for convolutions, the geometry."""

    ROLE, STEPPING, WORK = "synapse", "local", "synaptic"

    def _conv_geometry(self) -> tuple | None:
        """``(stride, padding, dilation, groups)`` of a convolution; ``None`` for a dense layer."""
        return None

    def reads(self, out: np.ndarray, in_shapes) -> list[np.ndarray]:
        conv = self._conv_geometry()
        if conv is None:
            return [dense_rows(out, in_shapes[0])]
        stride, padding, dilation, groups = conv
        return [window(out, in_shapes[0], self.weight.shape[2:], stride, padding, dilation, groups)]

    def fan_out(self, in_shape: tuple[int, ...], output_sets: list[np.ndarray] | None = None,
                all_weights: bool = False) -> torch.Tensor:
        """Per input element of one sample (shape ``in_shape``), the (output element, non-zero weight) pairs that
        read it, for each set of flat output indices (``None``: one set, every output), as float64 exact
        integers ``[len(output_sets), *in_shape]``: NeuroBench's synaptic operations per input event, geometry
        and padding included. ``all_weights`` counts zero weights too (the connections of dense storage)."""
        conv = self._conv_geometry()
        if output_sets is None:
            if conv is None:  # a dense layer: each input element reaches its column's non-zero weights
                weight = np.asarray(self.weight)
                mask = np.ones(weight.shape, bool) if all_weights else weight != 0
                return torch.from_numpy(mask.sum(0).astype(np.float64)).expand(in_shape).clone()[None]
            output_sets = [np.arange(math.prod(conv_output_shape(self, TensorType(in_shape))))]
        return synapse_fan_outs(self.weight, in_shape, output_sets, all_weights, conv)

    def received(self, events: torch.Tensor, in_ndim: int) -> torch.Tensor:
        """Per output element, the input events (``events``: 0/1 ``[..., *in_shape]``, ``in_ndim`` axes a sample)
        that reach it through a non-zero weight, float64 ``[..., *out_shape]``: the synaptic operations of
        :meth:`fan_out` counted at the output element they land on (per-core counts sum them per core)."""
        return synapse_received(self.weight, events, in_ndim, self._conv_geometry())


class ConvGeometry(WeightedSum):
    def _conv_geometry(self) -> tuple:
        return tuple(self.stride), tuple(self.padding), tuple(self.dilation), self.groups


def conv_problems(op) -> list[str]:
    """Checks of a convolution's kernel shape and geometry (``weight``, ``stride``, ``padding``,
    ``dilation``, ``groups``: :class:`Conv2d` and its integer counterpart)."""
    p = []
    if op.weight.ndim != 4:
        p.append(f"weight must be [C_out, C_in/groups, kH, kW], got shape {op.weight.shape}")
    if op.groups < 1 or (op.weight.ndim == 4 and op.weight.shape[0] % op.groups):
        p.append(f"groups={op.groups} does not divide C_out")
    if min(op.stride) < 1 or min(op.dilation) < 1 or min(op.padding) < 0:
        p.append(f"stride {op.stride} and dilation {op.dilation} must be >= 1, padding {op.padding} >= 0")
    return p


def conv_output_shape(op, x: TensorType) -> tuple[int, int, int]:
    """``[C_out, H', W']`` of a convolution node ``op`` on input ``x`` (raises :class:`TypeMismatch`)."""
    what = op.type_name()
    expect(len(x.shape) == 3, f"{what} needs [C, H, W] input, got {x}")
    c_in = op.weight.shape[1] * op.groups
    expect(x.shape[0] == c_in, f"{what} weight expects {c_in} input channels, input has {x.shape[0]}")
    size = [(x.shape[1 + i] + 2 * op.padding[i] - op.dilation[i] * (op.weight.shape[2 + i] - 1) - 1)
            // op.stride[i] + 1 for i in range(2)]
    expect(min(size) >= 1, f"{what} output would be empty for input {x}")
    return (op.weight.shape[0], *size)


@dataclass(frozen=True, eq=False, kw_only=True)
class Conv2d(ConvGeometry, Op):
    """2-D convolution on ``[C, H, W]`` per timestep.

    Semantics (PyTorch ``conv2d``): ``y[t, o] = bias[o] + sum_{c,i,j} weight[o, c, i, j] *
    x_pad[t, c, s*h + d*i, s*w + d*j]`` with zero padding; groups as PyTorch. Input of any dtype
    (spikes make it an accumulate, reals a multiply-accumulate); output float32.
    """

    BACKENDS = Backends(lava="host", onnx="function", nir="Conv2d", netx=Refused(NETX_FLOAT))

    weight: np.ndarray = param("kernel ``[C_out, C_in/groups, kH, kW]``")
    bias: np.ndarray | None = param("per-output-channel bias ``[C_out]``, or none", None)
    stride: tuple[int, int] = param("step ``s`` (rows, columns)", (1, 1))
    padding: tuple[int, int] = param("zero padding on each side (rows, columns)", (0, 0))
    dilation: tuple[int, int] = param("kernel dilation ``d`` (rows, columns)", (1, 1))
    groups: int = param("channel groups, as PyTorch (``C_in`` = depthwise)", 1)

    def problems(self) -> list[str]:
        p = conv_problems(self)
        if self.weight.ndim == 4 and self.bias is not None and self.bias.shape != (self.weight.shape[0],):
            p.append(f"bias shape {self.bias.shape} does not match C_out={self.weight.shape[0]}")
        return p

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        return TensorType(conv_output_shape(self, x), FLOAT32, x.time)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.tensor("weight").to(x.device)
        bias = self.tensor("bias").to(x.device) if self.bias is not None else None

        def conv(frames: torch.Tensor) -> torch.Tensor:
            return F.conv2d(frames, weight, bias, self.stride, self.padding, self.dilation, self.groups)
        return conv(x) if x.dim() == 4 else per_step(x, conv)  # [B, C, H, W]: a static value


@dataclass(frozen=True, eq=False, kw_only=True)
class Linear(WeightedSum, Op):
    """Dense layer on the last axis. Semantics: ``y[t] = weight @ x[t] + bias`` (PyTorch ``linear``)."""

    BACKENDS = Backends(lava="host", onnx="function", nir="Affine", netx=Refused(NETX_FLOAT))

    weight: np.ndarray = param("matrix ``[out, in]``")
    bias: np.ndarray | None = param("bias ``[out]``, or none", None)

    def problems(self) -> list[str]:
        if self.weight.ndim != 2:
            return [f"weight must be [out, in], got shape {self.weight.shape}"]
        if self.bias is not None and self.bias.shape != (self.weight.shape[0],):
            return [f"bias shape {self.bias.shape} does not match out={self.weight.shape[0]}"]
        return []

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect(len(x.shape) >= 1 and x.shape[-1] == self.weight.shape[1],
               f"Linear expects last axis {self.weight.shape[1]}, input is {x}")
        return TensorType((*x.shape[:-1], self.weight.shape[0]), FLOAT32, x.time)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.tensor("bias").to(x.device) if self.bias is not None else None
        return F.linear(x, self.tensor("weight").to(x.device), bias)


@dataclass(frozen=True, eq=False, kw_only=True)
class BatchNorm(Op):
    """Inference batch norm over channel axis 0 of each sample (removed by BN folding).

    Semantics (PyTorch ``batch_norm``, eval): ``y[c] = (x[c] - mean[c]) / sqrt(var[c] + eps) *
    weight[c] + bias[c]``.
    """

    ROLE, STEPPING, WORK = "elementwise", "local", "none"
    BACKENDS = Backends(lava="host", onnx="function", nir="folded", netx=Refused(NETX_FLOAT))
    weight: np.ndarray = param("scale gamma ``[C]``")
    bias: np.ndarray = param("shift beta ``[C]``")
    running_mean: np.ndarray = param("running mean ``[C]``")
    running_var: np.ndarray = param("running variance ``[C]`` (>= 0)")
    eps: float = param("added to the variance", 1e-5)

    def problems(self) -> list[str]:
        shapes = {k: v.shape for k, v in self.arrays().items()}
        if len(set(shapes.values())) != 1 or self.weight.ndim != 1:
            return [f"weight, bias, running_mean, running_var must be equal 1-D shapes, got {shapes}"]
        if (self.running_var < 0).any():
            return ["running_var has negative entries"]
        return []

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect_stream(x)
        expect(len(x.shape) >= 1 and x.shape[0] == self.weight.shape[0],
               f"BatchNorm has {self.weight.shape[0]} channels, input is {x}")
        return TensorType(x.shape, FLOAT32, x.time)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        mean, var, weight, bias = (self.tensor(k).to(x.device)
                                   for k in ("running_mean", "running_var", "weight", "bias"))
        return per_step(x, lambda f: F.batch_norm(f, mean, var, weight, bias, False, 0.0, self.eps))

"""Loihi's integer synapses: Lava's bit-accurate ``Dense`` and ``Conv``, and the weights Lava keeps.

Node types the lowering passes produce, with integer semantics equal to Lava 0.10.0's ``fixed_pt`` models
(``PyDenseModelBitAcc``, ``PyConvModelFixed``) bit for bit (``tests/test_loihi_ops.py`` runs Lava itself).
``run`` is the reference (see ``loihi.py`` for the conventions); the simulator's faster exact kernels are in
``snncompile.sim.kernels.synapses``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...config import is_int
from ...nn.seq import per_step
from ..interval import Interval, signed_sums, sums_range
from ..types import TensorType, int_type
from .base import Op, expect, param
from .linear import ConvGeometry, WeightedSum, conv_output_shape, conv_problems
from .loihi import (BIAS_START_DOC, BIAS_STEPS_DOC, STATE_BITS, _int_array_problems, _integer_input, _range_problem,
                    add_timed_bias, as_int64, saturate, timed_bias_problems, timed_bias_range, wrap)
from .support import NIR_INTEGER, ONNX_INTEGER, Backends, Refused

SignMode = Literal["mixed", "excitatory", "inhibitory"]

# -- synapses -------------------------------------------------------------------------------------------------------

_WEIGHT_DOC = "signed width of ``weight`` (Loihi's 8-bit weights with a sign: 9, i.e. -256..255)"
_EXP_DOC = ("shift of the accumulated sum: ``acc << weight_exp``, or an arithmetic (floor) ``acc >> -weight_exp`` "
            "when negative")
_OUT_DOC = "signed width of the output; ``overflow`` says what a sum beyond it does"
_BIAS_DOC = ("integer bias per output channel, added after the shift (in output units), delayed with the "
             "sums; ``None``: no bias")
_DELAY_DOC = ("timesteps before the result arrives: y[t] = f(x)[t - delay], zero before (1: Lava's Dense and Conv "
              "deliver on the next step)")
_OVERFLOW_DOC = "a sum beyond ``out_bits``: ``wrap`` (two's complement) or ``saturate`` (clip)"


class _IntSynapse(WeightedSum, Op):
    """Shared checks and output handling of the integer synapses (not a node type)."""

    INTEGER_INPUTS = True
    BACKENDS = Backends(lava="synapse", onnx=Refused(ONNX_INTEGER), nir=Refused(NIR_INTEGER), netx="synapse")
    _SPATIAL_AXES = 0  # output axes after the channel axis (a bias broadcasts over them)

    def scheduled(self, arrival: int, data_steps: int, run_steps: int, synapse_delay: int) -> "_IntSynapse":
        """The target's synapse delay; a bias acts in the data window (from ``bias_start``, their arrival, for
        ``bias_steps``, the data steps)."""
        timed = {"bias_start": arrival, "bias_steps": data_steps} if self.bias is not None else {}
        return dataclasses.replace(self, delay=synapse_delay, **timed)

    def unscheduled(self, data_steps: int) -> "_IntSynapse":
        return dataclasses.replace(self, delay=0, **({"bias_start": 0, "bias_steps": 0} if self.bias is not None
                                                      else {}))

    def _synapse_problems(self) -> list[str]:
        p = []
        bits_ok = is_int(self.weight_bits) and 1 <= self.weight_bits <= 32
        if not bits_ok:
            p.append(f"weight_bits must be an int in 1..32, got {self.weight_bits!r}")
        if self.weight.dtype.kind not in "iu":
            p.append(f"weight must be an integer array, got dtype {self.weight.dtype}")
        elif bits_ok:
            half = 1 << (self.weight_bits - 1)
            p += _range_problem("weight", self.weight, -half, half - 1, f"signed {self.weight_bits}-bit")
        p += _range_problem("weight_exp", self.weight_exp, -31, 31, "a shift of an int32 sum")
        if not is_int(self.out_bits) or not 2 <= self.out_bits <= 32:
            p.append(f"out_bits must be an int in 2..32 (Lava sends int32), got {self.out_bits!r}")
        if self.overflow not in ("wrap", "saturate"):
            p.append(f"overflow must be 'wrap' or 'saturate' for an integer result, got {self.overflow!r}")
        return p

    @cached_property
    def _weight64(self) -> torch.Tensor:
        return torch.from_numpy(self.weight.astype(np.int64))

    def _frames(self, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``op(a, w)`` of the node (the linear map before shift, bias and overflow) on a ``[n, B, ...]`` chunk."""
        raise NotImplementedError

    def _bias_problems(self) -> list[str]:
        p = timed_bias_problems(self)
        if self.bias is None:
            return p
        p += _int_array_problems("bias", self.bias)
        if not p and self.bias.shape != (self.weight.shape[0],):
            p.append(f"bias must have one entry per output ({self.weight.shape[0]}), got shape {self.bias.shape}")
        half = 1 << (self.out_bits - 1) if is_int(self.out_bits) else 1 << 31
        return p or _range_problem("bias", self.bias, -half, half - 1, f"signed {self.out_bits}-bit")

    def _accumulate(self, x: torch.Tensor, op) -> torch.Tensor:
        """``op(x, weight)`` exactly, as int64. The sums are computed in float32 (float64) when the largest
        possible partial sum, ``max_o sum_i |w[o, i]| * max |x|``, stays below 2^24 (2^53): every partial
        sum is then an exactly representable integer, whatever the summation order; else in int64."""
        x = as_int64(x, f"{self.type_name()} input")
        bound = self._row_abs_sum * int(x.abs().max()) if x.numel() else 0
        dtype = torch.float32 if bound < 2 ** 24 else torch.float64 if bound < 2 ** 53 else torch.int64
        if dtype == torch.int64 and x.device.type != "cpu":  # no int64 GEMM or convolution on GPUs
            return op(x.cpu(), self._weight64).to(x.device)
        return op(x.to(dtype), self._weight64.to(device=x.device, dtype=dtype)).to(torch.int64)

    @cached_property
    def _signed_sums(self) -> tuple[np.ndarray, np.ndarray]:
        """Per output, its positive and its negative weights summed (the range proof's, kept: a graph is proven
        again after every edit, on the same weights)."""
        return signed_sums(self.weight, tuple(range(1, self.weight.ndim)))

    @cached_property
    def _row_abs_sum(self) -> int:
        return int(np.abs(self.weight.astype(np.int64)).reshape(self.weight.shape[0], -1).sum(1).max(initial=0))

    def _finish(self, acc: torch.Tensor) -> torch.Tensor:
        e = self.weight_exp
        y = acc << e if e >= 0 else acc >> -e
        if self.bias is not None:
            bias = torch.from_numpy(self.bias.astype(np.int64)).to(y.device).reshape(-1, *[1] * self._SPATIAL_AXES)
            y = add_timed_bias(y, bias, self)
        return wrap(y, self.out_bits) if self.overflow == "wrap" else saturate(y, self.out_bits)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return self._finish(self._accumulate(x, self._frames))

    def value_range(self, inputs, in_types, out: TensorType) -> Interval | None:
        if inputs[0] is None:
            return None
        r = sums_range(self._signed_sums, inputs[0]).shift(self.weight_exp)
        if self.bias is None:
            return r
        biased = r + Interval(int(self.bias.min()), int(self.bias.max()))
        return timed_bias_range(r, biased, self)


@dataclass(frozen=True, eq=False, kw_only=True)
class IntDense(_IntSynapse):
    """Integer dense synapses on the last axis: Lava's ``Dense`` (``PyDenseModelBitAcc``).

    Semantics, per timestep, exact integers::

        acc[t, o] = sum_i weight[o, i] * x[t, i]           (x: spikes 0/1, ternary or graded integers)
        r[t, o]   = acc << weight_exp                      (weight_exp >= 0)
                    floor(acc / 2^-weight_exp)             (weight_exp < 0: arithmetic shift right)
                    (+ bias[o] when there is a bias, for bias_start <= t < bias_start + bias_steps)
        y[t, o]   = r wrapped (two's complement) or saturated to out_bits signed bits   (the overflow field)
        output    = y[t - delay], zero for t < delay       (delay 1: Lava's one-step buffer)

    A bias travels with the sums (zero while the delayed output is zero), unlike a Loihi neuron's bias
    that charges from step 0. ``weight`` holds the effective weights: Lava's Dense first clips and truncates what it is given
    (:func:`lava_effective_weights` gives the result). Lava sends the shifted sums as int32 without
    clipping them: ``out_bits=32, overflow='wrap'`` is that exactly while its (int32) dot product of graded
    inputs does not overflow; the default 24 bits is the width of the current they feed. Output
    ``int<out_bits>``.
    """

    weight: np.ndarray = param("effective integer weights ``[out, in]``")
    weight_bits: int = param(_WEIGHT_DOC, 9)
    weight_exp: int = param(_EXP_DOC, 0)
    bias: np.ndarray | None = param(_BIAS_DOC, None)
    bias_start: int = param(BIAS_START_DOC, 0)
    bias_steps: int = param(BIAS_STEPS_DOC, 0)
    out_bits: int = param(_OUT_DOC, STATE_BITS)
    delay: int = param(_DELAY_DOC, 1)
    overflow: Literal["none", "saturate", "wrap"] = param(_OVERFLOW_DOC, "wrap")

    def problems(self) -> list[str]:
        p = [] if self.weight.ndim == 2 else [f"weight must be [out, in], got shape {self.weight.shape}"]
        return p + self._synapse_problems() + self._bias_problems()

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        _integer_input(x, "IntDense")
        expect(len(x.shape) >= 1 and x.shape[-1] == self.weight.shape[1],
               f"IntDense expects last axis {self.weight.shape[1]}, input is {x}")
        return TensorType((*x.shape[:-1], self.weight.shape[0]), int_type(self.out_bits))

    def _frames(self, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, w.T)


@dataclass(frozen=True, eq=False, kw_only=True)
class IntConv2d(ConvGeometry, _IntSynapse):
    """Integer 2-D convolution on ``[C, H, W]`` per timestep: Lava's ``Conv`` (``PyConvModelFixed``).

    Semantics, per timestep, exact integers (PyTorch's cross-correlation, zero padding, groups as
    PyTorch), then the shift, bias, overflow and delay of :class:`IntDense`::

        acc[t, o, h, w] = sum_{c, i, j} weight[o, c, i, j] * x_pad[t, g*C_in/groups + c, s*h + d*i, s*w + d*j]
                          (g the group of output channel o)
        y = shift(acc, weight_exp) (+ bias[o]), wrapped or saturated to out_bits; output y[t - delay]

    Lava's Conv takes kernels ``[C_out, kW, kH, C_in]`` on ``(W, H, C)`` maps and convolves (kernel
    flipped): its kernel is ``weight[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)``, its stride, padding and
    dilation are given as (columns, rows). Its fixed model ignores
    ``weight_exp`` and ``num_weight_bits`` and wraps the sum to 24 bits: it equals this node with
    ``weight_exp=0``, ``out_bits=24``, ``overflow='wrap'``, ``delay=1`` (while ``|acc| < 2^31``); a
    ``weight_exp >= 0`` is the same Conv with the weights ``weight << weight_exp`` (it does not clip them).
    Output ``int<out_bits>``.
    """

    _SPATIAL_AXES = 2
    weight: np.ndarray = param("effective integer kernel ``[C_out, C_in/groups, kH, kW]``")
    weight_bits: int = param(_WEIGHT_DOC, 9)
    weight_exp: int = param(_EXP_DOC, 0)
    bias: np.ndarray | None = param(_BIAS_DOC, None)
    bias_start: int = param(BIAS_START_DOC, 0)
    bias_steps: int = param(BIAS_STEPS_DOC, 0)
    out_bits: int = param(_OUT_DOC, STATE_BITS)
    stride: tuple[int, int] = param("step ``s`` (rows, columns)", (1, 1))
    padding: tuple[int, int] = param("zero padding on each side (rows, columns)", (0, 0))
    dilation: tuple[int, int] = param("kernel dilation ``d`` (rows, columns)", (1, 1))
    groups: int = param("channel groups, as PyTorch (``C_in`` = depthwise)", 1)
    delay: int = param(_DELAY_DOC, 1)
    overflow: Literal["none", "saturate", "wrap"] = param(_OVERFLOW_DOC, "wrap")

    def problems(self) -> list[str]:
        return conv_problems(self) + self._synapse_problems() + self._bias_problems()

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        _integer_input(x, "IntConv2d")
        return TensorType(conv_output_shape(self, x), int_type(self.out_bits))

    def _frames(self, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return per_step(a, lambda f: self._conv(f, w))

    def _conv(self, f: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The convolution (without bias) of a batch of frames ``[N, C, H, W]``."""
        return F.conv2d(f, w, None, self.stride, self.padding, self.dilation, self.groups)

    def value_range(self, inputs, in_types, out: TensorType) -> Interval | None:
        x = inputs[0]
        if x is not None and any(self.padding):  # border windows also sum the zero padding
            x = Interval.hull(x, Interval(0, 0))
        return super().value_range([x], in_types, out)


# -- preparing weights Lava will not change ---------------------------------------------------------------------------

def lava_effective_weights(w: np.ndarray, num_weight_bits: int = 8,
                           sign_mode: SignMode | None = None) -> tuple[np.ndarray, SignMode]:
    """The weights Lava's ``Dense``/``Sparse`` actually use for integer weights ``w``, and their sign mode.

    Reproduces ``lava.utils.weightutils``: the sign mode (``determine_sign_mode`` unless given: all
    ``>= 0`` excitatory, all ``<= 0`` inhibitory, else mixed), ``clip_weights(num_bits=8)`` (mixed
    ``[-256, 255]``, excitatory ``[0, 255]``, inhibitory ``[-255, 0]``) and ``truncate_weights``: drop
    ``k = 8 - num_weight_bits + (mixed)`` low bits with floor semantics (of the magnitude when
    inhibitory). Mixed 8-bit weights thus become even, in ``[-256, 254]`` (3 -> 2, -3 -> -4).

    Pass the returned sign mode to Lava's ``Dense(sign_mode=...)`` with the returned weights: Lava then
    keeps them as they are (re-deriving the mode from them can differ, e.g. ``[1, -256]`` -> ``[0, -256]``).
    """
    w = np.asarray(w)
    if w.dtype.kind not in "iu":
        if w.dtype.kind != "f" or not np.array_equal(w, np.trunc(w)):
            raise ValueError(f"weights must be integers, got dtype {w.dtype}")
    if not is_int(num_weight_bits) or not 1 <= num_weight_bits <= 8:
        raise ValueError(f"num_weight_bits must be an int in 1..8, got {num_weight_bits!r}")
    w = w.astype(np.int64)
    if sign_mode is None:
        sign_mode = "excitatory" if w.min() >= 0 else "inhibitory" if w.max() <= 0 else "mixed"
    if sign_mode not in ("mixed", "excitatory", "inhibitory"):
        raise ValueError(f"sign_mode must be 'mixed', 'excitatory' or 'inhibitory', got {sign_mode!r}")
    mixed = sign_mode == "mixed"
    sign = -1 if sign_mode == "inhibitory" else 1
    magnitude = np.clip(sign * w, -256 if mixed else 0, 255)
    k = 8 - num_weight_bits + int(mixed)
    return (sign * ((magnitude >> k) << k)).astype(np.int32), sign_mode


def netx_lava_dense(w: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``(weights, num_weight_bits, weight_exp)`` Lava's Dense computes with when lava-dl's netx builds a dense
    layer from the integer HDF5 weights ``w``: an :class:`IntDense` with these ``weight`` and ``weight_exp``
    is that layer's synapse exactly.

    Mirrors ``netx.utils.optimize_weight_bits`` (mixed-sign weights clipped to ``[-256, 254]``; the weights
    scaled up by ``2^s``, ``s`` the largest power of two that keeps them in range, ``+1`` when mixed;
    ``num_weight_bits = 8 - s - n``, ``n`` their trailing zero bits less one when mixed; ``weight_exp = -s``),
    then Lava's ``PyDenseModelBitAcc`` on the result (netx does not pass a sign mode: Lava re-derives it, clips
    to 8 bits and truncates: :func:`lava_effective_weights`'s rules). Raises ``ValueError`` where netx or Lava
    would compute with an undefined numpy shift (a negative count) or divide by zero (all weights zero)."""
    w = np.asarray(w).astype(np.int64)
    mx, mn = int(w.max()), int(w.min())
    if mx == 0 and mn == 0:
        raise ValueError("all dense weights are zero: netx's optimize_weight_bits divides by the largest weight")
    if (mx > 254 and mn < 0) or (mn < -256 and mx > 0):
        w = np.clip(w, -256, 254)
        mx, mn = int(w.max()), int(w.min())
    if mx < 0:
        signed, scale = 0, -256 / mn
    elif mn >= 0:
        signed, scale = 0, 255 / mx
    else:
        signed, scale = 1, min(127 / mx if mx else math.inf, -128 / mn)
    scale_bits = int(np.floor(np.log2(scale))) + signed
    if scale_bits < 0:
        raise ValueError(f"dense weights {mn}..{mx}: beyond Loihi's 8-bit range, netx would shift them by a "
                         "negative count")
    n = 8
    while n > 0 and np.any(w % (1 << n)):
        n -= 1
    num_weight_bits = 8 - scale_bits - (n - signed)
    scaled = w << scale_bits
    inhibitory = scaled.min() < 0 and scaled.max() <= 0  # Lava's determine_sign_mode on what netx gives it
    mixed = scaled.min() < 0 < scaled.max()
    sign = -1 if inhibitory else 1
    magnitude = np.clip(sign * scaled, -256 if mixed else 0, 255)
    k = 8 - num_weight_bits + int(mixed)
    if not 0 <= k <= 31:
        raise ValueError(f"dense weights {mn}..{mx}: netx gives Lava num_weight_bits={num_weight_bits}, a truncation "
                         f"shift of {k} bits (numpy's shift by that count is undefined)")
    return (sign * ((magnitude >> k) << k)).astype(np.int32), num_weight_bits, -scale_bits

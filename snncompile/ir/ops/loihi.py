"""Loihi integer nodes: Lava's bit-accurate fixed-point neurons and integer synapses.

These are the node types the lowering passes produce. Their semantics are integer arithmetic, exact,
and equal to Lava 0.10.0's ``fixed_pt`` process models (``PyLifModelBitAcc``, ``PyTernLifModelFixed``,
``PyDenseModelBitAcc``, ``PyConvModelFixed``) bit for bit; ``tests/test_loihi_ops.py`` runs Lava itself
to check that. ``run`` computes in int64 torch tensors, never in floats: integer inputs may arrive as
int64 tensors or as float tensors holding exact integers (spikes are float 0/1); integer outputs are
int64 tensors, spike outputs float32 (see ``base.py``).

Fixed constants of Loihi's LIF (Lava ``AbstractPyLifModelFixed``): 12-bit decays (unity 4096), synaptic
input and threshold shifted left by 6 bits, 24-bit current and voltage.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...config import is_int
from ..types import SPIKE, TERNARY, TensorType, int_type
from .base import Op, expect, expect_stream, param
from ...nn.seq import per_step
from .linear import conv_output_shape, conv_problems

STATE_BITS = 24           # u and v (Lava uv_bitwidth)
DECAY_SHIFT = 12          # decays are fractions of 4096
DECAY_UNITY = 1 << DECAY_SHIFT
ACT_SHIFT = 6             # a_in << 6 into the current
VTH_SHIFT = 6             # threshold vth << 6
VTH_BITS = 17             # LIF vth: unsigned 17-bit mantissa
BIAS_MANT_RANGE = (-4096, 4095)   # signed 13-bit mantissa
BIAS_EXP_RANGE = (0, 7)           # unsigned 3-bit exponent
SignMode = Literal["mixed", "excitatory", "inhibitory"]


# -- exact integer helpers ----------------------------------------------------------------------------------------

def as_int64(x: torch.Tensor, what: str = "input") -> torch.Tensor:
    """``x`` as int64: integer tensors are widened, float tensors must hold exact integers."""
    if x.dtype == torch.int64:
        return x
    if x.is_floating_point():
        y = x.to(torch.int64)
        if not torch.equal(y.to(x.dtype), x):
            raise ValueError(f"{what} must hold integers (an integer node computes exactly), got non-integer "
                             f"or out-of-range floats")
        return y
    return x.to(torch.int64)


def wrap(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's complement wrap of an int64 tensor to ``bits`` signed bits."""
    half = 1 << (bits - 1)
    return ((x + half) & ((1 << bits) - 1)) - half


def saturate(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Clip an int64 tensor to the signed ``bits``-bit range."""
    return x.clamp(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def _i32(x: torch.Tensor) -> torch.Tensor:
    """What Lava's int32 numpy arithmetic keeps of an exact int64 result (wrap modulo 2^32)."""
    return wrap(x, 32)


def _decay(x: torch.Tensor, decay: int) -> torch.Tensor:
    """``trunc0(x * (4096 - decay) / 4096)``: Lava's ``sign(p) * (|p| >> 12)``, rounding toward zero."""
    p = x * (DECAY_UNITY - decay)
    return torch.sign(p) * (p.abs() >> DECAY_SHIFT)


def _int_array_problems(name: str, value: np.ndarray) -> list[str]:
    if value.dtype.kind not in "iu":
        return [f"{name} must be an integer array, got dtype {value.dtype}"]
    if value.ndim == 0:
        return [f"{name} is a 0-d array; use an int"]
    return []


def _range_problem(name: str, value, lo: int, hi: int, why: str) -> list[str]:
    """``[]`` if ``value`` (an int or an int array) lies in ``[lo, hi]``, else a message."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iu" or value.size == 0:
            return []
        low, high = int(value.min()), int(value.max())
        if lo <= low and high <= hi:
            return []
        return [f"{name} must lie in [{lo}, {hi}] ({why}), got values in [{low}, {high}]"]
    if not is_int(value):
        return [f"{name} must be an int, got {value!r}"]
    return [] if lo <= value <= hi else [f"{name} must lie in [{lo}, {hi}] ({why}), got {value}"]


def _integer_input(x: TensorType, what: str) -> None:
    expect_stream(x)
    expect(x.dtype.kind in ("int", "spike", "ternary"),
           f"{what} takes an integer stream (int, spike or ternary), got {x}; quantise it first")


# -- neurons --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False, kw_only=True)
class _LoihiNeuron(Op):
    """Fields, checks and sub-threshold dynamics shared by the Loihi neurons (not a node type)."""

    current_decay: int = param("Loihi ``iDecay`` in 0..4096: ``u`` keeps ``(4096 - current_decay) / 4096`` "
                               "of itself per step (Lava ``du + 1``; 4096: only this step's input)")
    voltage_decay: int = param("Loihi ``vDecay`` in 0..4096: ``v`` keeps ``(4096 - voltage_decay) / 4096`` "
                               "(Lava ``dv``; 0: no leak)")
    bias_mant: int | np.ndarray = param("bias mantissa, signed 13-bit: an int, or an int array of the "
                                        "input's shape (one per neuron)", 0)
    bias_exp: int = param("bias exponent 0..7: the bias added to ``v`` every step is ``bias_mant << bias_exp``", 0)
    state_bits: int = param("width of ``u`` (wraps) and ``v`` (saturates); Loihi and Lava: 24", STATE_BITS)

    OUT_DTYPE = SPIKE
    INTEGER_INPUTS = True

    def problems(self) -> list[str]:
        p = _range_problem("current_decay", self.current_decay, 0, DECAY_UNITY, "a 12-bit decay plus Lava's offset")
        p += _range_problem("voltage_decay", self.voltage_decay, 0, DECAY_UNITY, "a 12-bit decay, 4096 = forget")
        if isinstance(self.bias_mant, np.ndarray):
            p += _int_array_problems("bias_mant", self.bias_mant)
        p += _range_problem("bias_mant", self.bias_mant, *BIAS_MANT_RANGE, "signed 13-bit")
        p += _range_problem("bias_exp", self.bias_exp, *BIAS_EXP_RANGE, "unsigned 3-bit")
        if self.state_bits != STATE_BITS:
            p.append(f"state_bits must be {STATE_BITS} (Loihi's and Lava's u and v), got {self.state_bits!r}")
        if self.overflow != "none":
            p.append(f"overflow must be 'none' (spike output; u wraps and v saturates by definition), "
                     f"got {self.overflow!r}")
        return p + self._threshold_problems()

    def _threshold_problems(self) -> list[str]:
        raise NotImplementedError

    def _fire(self, h: torch.Tensor) -> torch.Tensor:
        """Spikes (int64) from the clipped membrane ``h``; ``v`` resets to 0 where they are non-zero."""
        raise NotImplementedError

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        _integer_input(x, self.type_name())
        if isinstance(self.bias_mant, np.ndarray):
            expect(self.bias_mant.shape == x.shape, f"per-neuron bias_mant has shape {self.bias_mant.shape}, "
                                                    f"input is {x}")
        return TensorType(x.shape, self.OUT_DTYPE)

    def _bias(self) -> torch.Tensor | int:
        if isinstance(self.bias_mant, np.ndarray):
            return torch.from_numpy(self.bias_mant.astype(np.int64)) << self.bias_exp
        return self.bias_mant << self.bias_exp

    def run(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.simulate(x_seq)[0].to(torch.float32)

    def simulate(self, x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Spikes, currents ``u`` and post-reset voltages ``v``, each int64 ``[T, B, ...]``."""
        a_seq = as_int64(x_seq, f"{self.type_name()} input")
        top, full = 1 << (STATE_BITS - 1), 1 << STATE_BITS
        limit = top - 1
        bias = self._bias()
        u = torch.zeros_like(a_seq[0])
        v = torch.zeros_like(a_seq[0])
        spikes, us, vs = [], [], []
        for a in a_seq:
            big = _i32(_decay(u, self.current_decay) + _i32(a << ACT_SHIFT))
            u = torch.where(big > top, big - full, torch.where(big <= -top, big + full, big))
            h = _i32(_decay(v, self.voltage_decay) + u + bias).clamp(-limit, limit)
            s = self._fire(h)
            v = torch.where(s != 0, torch.zeros_like(h), h)
            spikes.append(s)
            us.append(u)
            vs.append(v)
        return torch.stack(spikes), torch.stack(us), torch.stack(vs)


@dataclass(frozen=True, eq=False, kw_only=True)
class LoihiLIF(_LoihiNeuron):
    """Loihi's current-based LIF neuron in Lava's bit-accurate fixed-point form (``PyLifModelBitAcc``).

    Semantics, per neuron, integers throughout, ``u[-1] = v[-1] = 0``, ``a[t]`` the integer input::

        U[t] = trunc0(u[t-1] * (4096 - current_decay) / 4096) + (a[t] << 6)
        u[t] = U[t] - 2^24  if U[t] >  2^23
               U[t] + 2^24  if U[t] <= -2^23          (Lava's one-step wrap: -2^23 becomes +2^23)
               U[t]         otherwise
        h[t] = clip(trunc0(v[t-1] * (4096 - voltage_decay) / 4096) + u[t] + (bias_mant << bias_exp),
                    -(2^23 - 1), 2^23 - 1)            (v saturates)
        s[t] = h[t] > (vth << 6)                      (strict)
        v[t] = 0 if s[t] else h[t]                    (hard reset of v; u is not reset)

    ``trunc0(p / 4096)`` is ``sign(p) * (|p| >> 12)``: division rounding toward zero (-5 * 2048 / 4096
    gives -2, not -3). ``current_decay = 4096`` keeps only this step's input in ``u``; ``0`` never decays.
    Lava's ``du`` is ``current_decay - 1`` (its ``ds_offset`` adds 1), its ``dv`` is ``voltage_decay``.

    Lava computes ``a << 6``, ``U`` and the sum inside ``clip`` in int32, and so does this node: they wrap
    modulo 2^32 if they leave int32. That and a current outside 24 bits (the one-step wrap folds only
    ``|U| <= 3 * 2^23``) need inputs with ``|a| >= 2^18``; narrower inputs keep ``u`` in ``(-2^23, 2^23]``.
    Input: an integer stream (int, spike or ternary); output: binary spikes.
    """

    vth: int = param("threshold mantissa, unsigned 17-bit; a neuron fires when ``v > vth << 6``")

    def _threshold_problems(self) -> list[str]:
        return _range_problem("vth", self.vth, 0, (1 << VTH_BITS) - 1, "unsigned 17-bit")

    def _fire(self, h: torch.Tensor) -> torch.Tensor:
        return (h > (self.vth << VTH_SHIFT)).to(torch.int64)


@dataclass(frozen=True, eq=False, kw_only=True)
class LoihiTernaryLIF(_LoihiNeuron):
    """Ternary Loihi LIF: Lava's ``TernaryLIF`` fixed-point model (``PyTernLifModelFixed``).

    Semantics: ``u`` and the clipped membrane ``h`` exactly as :class:`LoihiLIF` (same decays, bias,
    wrap, saturation and int32 arithmetic), then::

        s[t] = +1 if h[t] > (vth_hi << 6);  -1 if h[t] < (vth_lo << 6);  else 0     (both strict)
        v[t] = 0 if s[t] != 0 else h[t]                                            (u is not reset)

    Input: an integer stream (int, spike or ternary); output: ternary spikes -1/0/+1.
    """

    vth_hi: int = param("upper threshold mantissa, signed 24-bit: +1 when ``v > vth_hi << 6``")
    vth_lo: int = param("lower threshold mantissa, signed 24-bit, at most ``vth_hi``: -1 when ``v < vth_lo << 6``")

    OUT_DTYPE = TERNARY

    def _threshold_problems(self) -> list[str]:
        lo, hi = -(1 << (STATE_BITS - 1)), (1 << (STATE_BITS - 1)) - 1
        p = _range_problem("vth_hi", self.vth_hi, lo, hi, "signed 24-bit")
        p += _range_problem("vth_lo", self.vth_lo, lo, hi, "signed 24-bit")
        if not p and self.vth_lo > self.vth_hi:
            p.append(f"vth_lo={self.vth_lo} exceeds vth_hi={self.vth_hi} (Lava refuses it)")
        return p

    def _fire(self, h: torch.Tensor) -> torch.Tensor:
        pos = (h > (self.vth_hi << VTH_SHIFT)).to(torch.int64)
        neg = (h < (self.vth_lo << VTH_SHIFT)).to(torch.int64)
        return pos - neg


# -- synapses -------------------------------------------------------------------------------------------------------

_WEIGHT_DOC = "signed width of ``weight`` (Loihi's 8-bit weights with a sign: 9, i.e. -256..255)"
_EXP_DOC = ("shift of the accumulated sum: ``acc << weight_exp``, or an arithmetic (floor) ``acc >> -weight_exp`` "
            "when negative")
_OUT_DOC = "signed width of the output; ``overflow`` says what a sum beyond it does"
_DELAY_DOC = ("timesteps before the result arrives: y[t] = f(x)[t - delay], zero before (1: Lava's Dense and Conv "
              "deliver on the next step)")
_OVERFLOW_DOC = "a sum beyond ``out_bits``: ``wrap`` (two's complement) or ``saturate`` (clip)"


class _IntSynapse(Op):
    """Shared checks and output handling of the integer synapses (not a node type)."""

    INTEGER_INPUTS = True

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

    def _finish(self, acc: torch.Tensor) -> torch.Tensor:
        e = self.weight_exp
        y = acc << e if e >= 0 else acc >> -e
        return wrap(y, self.out_bits) if self.overflow == "wrap" else saturate(y, self.out_bits)


@dataclass(frozen=True, eq=False, kw_only=True)
class IntDense(_IntSynapse):
    """Integer dense synapses on the last axis: Lava's ``Dense`` (``PyDenseModelBitAcc``).

    Semantics, per timestep, exact integers::

        acc[t, o] = sum_i weight[o, i] * x[t, i]           (x: spikes 0/1, ternary or graded integers)
        r[t, o]   = acc << weight_exp                      (weight_exp >= 0)
                    floor(acc / 2^-weight_exp)             (weight_exp < 0: arithmetic shift right)
        y[t, o]   = r wrapped (two's complement) or saturated to out_bits signed bits   (the overflow field)
        output    = y[t - delay], zero for t < delay       (delay 1: Lava's one-step buffer)

    ``weight`` holds the effective weights: Lava's Dense first clips and truncates what it is given
    (:func:`lava_effective_weights` gives the result). Lava sends the shifted sums as int32 without
    clipping them: ``out_bits=32, overflow='wrap'`` is that exactly while its (int32) dot product of graded
    inputs does not overflow; the default 24 bits is the width of the current they feed. Output
    ``int<out_bits>``.
    """

    weight: np.ndarray = param("effective integer weights ``[out, in]``")
    weight_bits: int = param(_WEIGHT_DOC, 9)
    weight_exp: int = param(_EXP_DOC, 0)
    out_bits: int = param(_OUT_DOC, STATE_BITS)
    delay: int = param(_DELAY_DOC, 1)
    overflow: Literal["none", "saturate", "wrap"] = param(_OVERFLOW_DOC, "wrap")

    def problems(self) -> list[str]:
        p = [] if self.weight.ndim == 2 else [f"weight must be [out, in], got shape {self.weight.shape}"]
        return p + self._synapse_problems()

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        _integer_input(x, "IntDense")
        expect(len(x.shape) >= 1 and x.shape[-1] == self.weight.shape[1],
               f"IntDense expects last axis {self.weight.shape[1]}, input is {x}")
        return TensorType((*x.shape[:-1], self.weight.shape[0]), int_type(self.out_bits))

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return self._finish(torch.matmul(as_int64(x, "IntDense input"), self._weight64.T))


@dataclass(frozen=True, eq=False, kw_only=True)
class IntConv2d(_IntSynapse):
    """Integer 2-D convolution on ``[C, H, W]`` per timestep: Lava's ``Conv`` (``PyConvModelFixed``).

    Semantics, per timestep, exact integers (PyTorch's cross-correlation, zero padding, groups as
    PyTorch), then the shift, overflow and delay of :class:`IntDense`::

        acc[t, o, h, w] = sum_{c, i, j} weight[o, c, i, j] * x_pad[t, g*C_in/groups + c, s*h + d*i, s*w + d*j]
                          (g the group of output channel o)
        y = shift(acc, weight_exp), wrapped or saturated to out_bits; output y[t - delay]

    Lava's Conv takes kernels ``[C_out, kW, kH, C_in]`` on ``(W, H, C)`` maps and convolves (kernel
    flipped): its kernel is ``weight[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)``, its stride, padding and
    dilation are given as (columns, rows). Its fixed model ignores
    ``weight_exp`` and ``num_weight_bits`` and wraps the sum to 24 bits: it equals this node with
    ``weight_exp=0``, ``out_bits=24``, ``overflow='wrap'``, ``delay=1`` (while ``|acc| < 2^31``).
    Output ``int<out_bits>``.
    """

    weight: np.ndarray = param("effective integer kernel ``[C_out, C_in/groups, kH, kW]``")
    weight_bits: int = param(_WEIGHT_DOC, 9)
    weight_exp: int = param(_EXP_DOC, 0)
    out_bits: int = param(_OUT_DOC, STATE_BITS)
    stride: tuple[int, int] = param("step ``s`` (rows, columns)", (1, 1))
    padding: tuple[int, int] = param("zero padding on each side (rows, columns)", (0, 0))
    dilation: tuple[int, int] = param("kernel dilation ``d`` (rows, columns)", (1, 1))
    groups: int = param("channel groups, as PyTorch (``C_in`` = depthwise)", 1)
    delay: int = param(_DELAY_DOC, 1)
    overflow: Literal["none", "saturate", "wrap"] = param(_OVERFLOW_DOC, "wrap")

    def problems(self) -> list[str]:
        return conv_problems(self) + self._synapse_problems()

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        _integer_input(x, "IntConv2d")
        return TensorType(conv_output_shape(self, x), int_type(self.out_bits))

    def run(self, x: torch.Tensor) -> torch.Tensor:
        acc = per_step(as_int64(x, "IntConv2d input"), lambda f: F.conv2d(  # int64 on CPU: exact
            f, self._weight64, None, self.stride, self.padding, self.dilation, self.groups))
        return self._finish(acc)


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

"""Loihi integer nodes: Lava's bit-accurate fixed-point neurons, and the exact integer helpers the Loihi nodes
share (the integer synapses are in ``int_synapse.py``).

These are the node types the lowering passes produce. Their semantics are integer arithmetic, exact,
and equal to Lava 0.10.0's ``fixed_pt`` process models (``PyLifModelBitAcc``, ``PyTernLifModelFixed``,
``PyDenseModelBitAcc``, ``PyConvModelFixed``) bit for bit; ``tests/test_loihi_ops.py`` runs Lava itself
to check that. ``run`` and ``simulate`` are the reference: the equations in int64 torch tensors (a
synapse's sums in float32 or float64 only where every partial sum provably is an exact integer there),
never rounded: integer inputs may arrive as int64 tensors or as float tensors holding exact integers
(spikes are float 0/1); integer outputs are int64 tensors, spike outputs float32 (see ``base.py``). The
simulator's faster exact kernels of these nodes live in ``snncompile.sim.kernels``.

Fixed constants of Loihi's LIF (Lava ``AbstractPyLifModelFixed``): 12-bit decays (unity 4096), synaptic
input and threshold shifted left by 6 bits, 24-bit current and voltage.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ...config import is_int
from ..interval import Interval
from ..types import SPIKE, TERNARY, TensorType
from .base import Op, expect, expect_stream, param
from .support import NIR_INTEGER, ONNX_INTEGER, Backends, Refused

STATE_BITS = 24           # u and v (Lava uv_bitwidth)
DECAY_SHIFT = 12          # decays are fractions of 4096
DECAY_UNITY = 1 << DECAY_SHIFT
ACT_SHIFT = 6             # a_in << 6 into the current
VTH_SHIFT = 6             # threshold vth << 6
VTH_BITS = 17             # LIF vth: unsigned 17-bit mantissa
BIAS_MANT_RANGE = (-4096, 4095)   # signed 13-bit mantissa
BIAS_EXP_RANGE = (0, 7)           # unsigned 3-bit exponent


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


def _decay_int(x: int, decay: int) -> int:
    """:func:`_decay` of one Python int."""
    p = x * (DECAY_UNITY - decay)
    return p >> DECAY_SHIFT if p >= 0 else -(-p >> DECAY_SHIFT)


_EXACT_STEPS = 1 << 12  # horizons up to this many steps are iterated exactly, longer ones bounded in closed form


def _leaky_extreme(step: int, decay: int, steps: int | None) -> int | None:
    """The farthest from 0 that ``x[t] = trunc0(x[t-1] * (4096 - decay) / 4096) + step``, ``x[-1] = 0``,
    gets within ``steps`` steps (``None``: any number; the result ``None``: without bound).

    The sequence moves monotonically away from 0 (``trunc0`` is monotone, ``x[0] = step`` lies on the
    far side of ``x[-1] = 0``), so its extreme is ``x[steps - 1]``, computed exactly for short horizons.
    Otherwise ``|x[t]| <= |step| * sum_i (keep/4096)^i``: at most ``(t + 1) |step|`` and, with a leak
    (``keep = 4096 - decay < 4096``), below the geometric series' limit ``|step| * 4096 / decay``
    (truncation toward zero only shrinks each term)."""
    if step == 0:
        return 0
    if steps is not None and steps <= _EXACT_STEPS:
        x = 0
        for _ in range(steps):
            nxt = _decay_int(x, decay) + step
            if nxt == x:  # the fixpoint: the sequence stays here
                break
            x = nxt
        return x
    bounds = [] if steps is None else [steps * abs(step)]
    if decay > 0:
        bounds.append(abs(step) * DECAY_UNITY // decay)
    if not bounds:
        return None
    return min(bounds) if step > 0 else -min(bounds)


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


# -- a bias timed to the data window (synapses, and the sums the Lava backend moves their biases into) --------------

BIAS_START_DOC = ("first timestep (of the input's time) from which the bias is added: a scheduled node adds it once "
                  "its input's data arrive, so the leading empty steps stay zero")
BIAS_STEPS_DOC = ("timesteps the bias acts from ``bias_start`` (0: to the end of the run): a scheduled node adds it "
                  "for its data steps only, so the steps the pipeline drains carry no bias")


def bias_window(op, steps: int) -> tuple[int, int]:
    """The steps ``start .. stop - 1`` of a run of ``steps`` in which ``op``'s timed bias acts: from
    ``op.bias_start``, for ``op.bias_steps`` steps (0: to the end)."""
    start = min(op.bias_start, steps)
    stop = min(op.bias_start + op.bias_steps, steps) if op.bias_steps else steps
    return start, max(start, stop)


def without_bias(op):
    """``op`` (a node with a timed bias) without it: no bias, its window reset."""
    return dataclasses.replace(op, bias=None, bias_start=0, bias_steps=0)


def bias_acts(op, t: int) -> bool:
    """Whether ``op``'s timed bias acts at step ``t``."""
    return op.bias_start <= t and (not op.bias_steps or t < op.bias_start + op.bias_steps)


def add_timed_bias(y: torch.Tensor, bias: torch.Tensor, op) -> torch.Tensor:
    """``y`` (``[T, ...]``) with ``bias`` added in ``op``'s bias window (a new tensor)."""
    start, stop = bias_window(op, y.shape[0])
    if (start, stop) == (0, y.shape[0]):
        return y + bias
    y = y.clone()
    y[start:stop] += bias
    return y


def timed_bias_problems(op) -> list[str]:
    """Checks of ``bias_start`` and ``bias_steps`` (both 0 without a bias)."""
    fields = {"bias_start": op.bias_start, "bias_steps": op.bias_steps}
    if op.bias is None:
        return [f"{k} is set but there is no bias" for k, v in fields.items() if v != 0]
    return [f"{k} must be an int >= 0, got {v!r}" for k, v in fields.items() if not (is_int(v) and v >= 0)]


def timed_bias_range(unbiased: Interval, biased: Interval, op) -> Interval:
    """The range of a node whose bias acts in a window: also its unbiased range where steps lie outside it."""
    return Interval.hull(unbiased, biased) if op.bias_start or op.bias_steps else biased


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
    ROLE, STEPPING, WORK = "neuron", "state", "neuron"

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

    def restart_step(self) -> int:
        """The step before whose update ``u`` and ``v`` restart from 0 (0: never; they start at 0)."""
        return 0

    def _bias(self, device: torch.device) -> torch.Tensor | int:
        if isinstance(self.bias_mant, np.ndarray):
            return torch.from_numpy(self.bias_mant.astype(np.int64)).to(device) << self.bias_exp
        return self.bias_mant << self.bias_exp

    def run(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.simulate(x_seq)[0].to(torch.float32)

    def _thresholds(self) -> tuple[int, int | None]:
        """``(hi, lo)``: fire +1 where ``h > hi``, -1 where ``h < lo`` (``None``: never)."""
        raise NotImplementedError

    def simulate(self, x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Spikes, currents ``u`` and post-reset voltages ``v``, each int64 ``[T, B, ...]``: the equations in
        int64 (any input, Lava's int32 wraps included)."""
        a_seq = as_int64(x_seq, f"{self.type_name()} input")
        top, full = 1 << (STATE_BITS - 1), 1 << STATE_BITS
        limit = top - 1
        bias = self._bias(a_seq.device)
        u = torch.zeros_like(a_seq[0])
        v = torch.zeros_like(a_seq[0])
        spikes, us, vs = [], [], []
        restart = self.restart_step()
        for t, a in enumerate(a_seq):
            if t == restart:
                u, v = torch.zeros_like(u), torch.zeros_like(v)
            big = _i32(_decay(u, self.current_decay) + _i32(a << ACT_SHIFT))
            u = torch.where(big > top, big - full, torch.where(big <= -top, big + full, big))
            h = _i32(_decay(v, self.voltage_decay) + u + bias).clamp(-limit, limit)
            s = self._fire(h)
            v = torch.where(s != 0, torch.zeros_like(h), h)
            spikes.append(s)
            us.append(u)
            vs.append(v)
        return torch.stack(spikes), torch.stack(us), torch.stack(vs)

    def state_range(self, input: Interval, steps: int | None = None) -> tuple[Interval, Interval]:
        """Proven intervals of the current ``u`` and the voltage ``v`` over the first ``steps`` timesteps
        (``None``: any number) for inputs ``a[t]`` in ``input``, before u's wrap and v's saturation.

        Valid for inputs within the documented limits (``|a| < 2^17``: no int32 wrap of ``a << 6``) and
        while the ``u`` interval stays inside ``(-2^23, 2^23]`` (then u never wraps, so the unwrapped
        recurrences below are the node's exact semantics); :func:`prove_ranges` checks both.

        Current. ``g_u(x) = trunc0(x * (4096 - current_decay) / 4096)`` is monotone, so by induction
        ``U_lo[t] <= u[t] <= U_hi[t]``, where ``U_hi`` is the recurrence ``u[t] = g_u(u[t-1]) + A`` fed the
        constant extreme ``A = a_max << 6`` from ``u[-1] = 0`` (``U_lo`` likewise with ``a_min``). That
        sequence moves monotonically away from 0, so its extreme over the horizon is its last value (exact
        iteration) or the geometric-series bound ``|A| * 4096 / current_decay`` (``(t + 1) |A|`` without a
        leak; then an unbounded horizon has no bound and raises ``ValueError``). With ``A`` of either sign,
        ``u`` lies in ``[min(A_min, U_lo), max(A_max, U_hi)]``; constant extreme inputs reach both ends when
        the horizon is iterated exactly.

        Voltage. Let ``d = u + bias`` range over ``[d_lo, d_hi]`` (u's interval plus the bias range) and
        ``g_v`` be the voltage decay, monotone too. Each step ``h = g_v(v[t-1]) + d`` (the value before
        saturation), then ``v[t]`` is ``clip(h)`` or the reset value 0. The stored ``v`` therefore stays in
        ``[V_lo, V_hi]``, with ``V_hi`` the smaller of:

        - ``max(0, R)``, ``R`` the extreme of the leaky recurrence fed ``d_hi`` (induction: clipping from
          above and resetting to 0 never exceed a non-negative bound);
        - the reset bound: a neuron that fires when ``h > theta_hi`` and resets to 0 keeps
          ``v <= max(0, theta_hi)``. This holds for the LIF's positive side (``theta = vth << 6 <
          2^23 - 1``, so the saturated ``h`` is still compared correctly) and for the ternary neuron's
          ``vth_hi << 6``; where the threshold lies beyond the saturation limit, the clip ``2^23 - 1`` bounds.

        ``V_lo`` mirrors this with ``d_lo`` and, for the ternary neuron, ``vth_lo << 6``; the LIF has no
        negative reset, so only the clip ``-(2^23 - 1)`` and the leaky bound apply there. Finally
        ``h`` lies in ``[g_v(V_lo) + d_lo, g_v(V_hi) + d_hi]``; the returned ``v`` interval is the hull of
        that pre-saturation interval and ``[V_lo, V_hi]`` (the stored values, 0 included).

        A restart (``LoihiLIF.reset_at``) sets ``u`` and ``v`` to 0, their value at ``t = -1``: the bounds,
        proven for sequences starting there, hold after it for the remaining (fewer) steps.
        """
        a = input.shift(ACT_SHIFT)
        u = Interval(min(a.lo, self._current_extreme(a.lo, steps)), max(a.hi, self._current_extreme(a.hi, steps)))
        drive = u + self._bias_range()
        limit = (1 << (STATE_BITS - 1)) - 1
        reset = self._reset_range(limit)
        low = _leaky_extreme(drive.lo, self.voltage_decay, steps)
        high = _leaky_extreme(drive.hi, self.voltage_decay, steps)
        stored = Interval(reset.lo if low is None else max(reset.lo, min(0, low)),
                          reset.hi if high is None else min(reset.hi, max(0, high)))
        h = Interval(_decay_int(stored.lo, self.voltage_decay) + drive.lo,
                     _decay_int(stored.hi, self.voltage_decay) + drive.hi)
        return u, Interval.hull(h, stored)

    def _current_extreme(self, step: int, steps: int | None) -> int:
        extreme = _leaky_extreme(step, self.current_decay, steps)
        if extreme is None:
            raise ValueError(f"{self.type_name()} with current_decay=0 integrates its input without leak: u has "
                             f"no bound over an unbounded number of steps (give steps)")
        return extreme

    def _bias_range(self) -> Interval:
        bias = np.asarray(self.bias_mant, dtype=np.int64) << self.bias_exp
        return Interval(int(bias.min()), int(bias.max()))

    def _reset_range(self, limit: int) -> Interval:
        """Bounds of the stored ``v`` that saturation (``+-limit``) and the reset on firing imply."""
        raise NotImplementedError


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

    with ``u[t-1] = v[t-1] = 0`` taken instead at ``t = reset_at`` when ``reset_at > 0``: Lava's ``LIFReset``
    (``PyLifResetModelBitAcc``, ``reset_offset = reset_at + 1``, its steps counting from 1, and a
    ``reset_interval`` longer than the run). A scheduled neuron with a bias restarts when its data arrive
    (``scheduled``), as its unscheduled twin starts charging at step 0: from its latency on the values equal
    the unscheduled ones; before, its bias charges it alone (a neuron the lowering gives a bias never fires
    then: ``passes/bias_to_neurons.py`` proves it).

    ``trunc0(p / 4096)`` is ``sign(p) * (|p| >> 12)``: division rounding toward zero (-5 * 2048 / 4096
    gives -2, not -3). ``current_decay = 4096`` keeps only this step's input in ``u``; ``0`` never decays.
    Lava's ``du`` is ``current_decay - 1`` (its ``ds_offset`` adds 1), its ``dv`` is ``voltage_decay``.

    Lava computes ``a << 6``, ``U`` and the sum inside ``clip`` in int32, and so does this node: they wrap
    modulo 2^32 if they leave int32. That and a current outside 24 bits (the one-step wrap folds only
    ``|U| <= 3 * 2^23``) need inputs with ``|a| >= 2^18``; narrower inputs keep ``u`` in ``(-2^23, 2^23]``.
    Input: an integer stream (int, spike or ternary); output: binary spikes.
    """

    BACKENDS = Backends(lava="neuron", onnx=Refused(ONNX_INTEGER), nir=Refused(NIR_INTEGER), netx="neuron")
    vth: int = param("threshold mantissa, unsigned 17-bit; a neuron fires when ``v > vth << 6``")
    reset_at: int = param("step at which ``u`` and ``v`` restart from 0 before the update (Lava's ``LIFReset``); "
                          "0: never (they start at 0). A scheduled neuron with a bias restarts when its data "
                          "arrive", 0)

    def _threshold_problems(self) -> list[str]:
        p = _range_problem("vth", self.vth, 0, (1 << VTH_BITS) - 1, "unsigned 17-bit")
        return p + _range_problem("reset_at", self.reset_at, 0, (1 << 31) - 1, "a step")

    def restart_step(self) -> int:
        return self.reset_at

    def fires_before_restart(self, shape: tuple[int, ...]) -> bool:
        """Whether its bias alone (its input zero until then) fires a neuron of ``shape`` before ``reset_at``."""
        return bool(self.simulate(torch.zeros((self.reset_at, 1, *shape), dtype=torch.int64))[0].any())

    def scheduled(self, arrival: int, data_steps: int, run_steps: int, synapse_delay: int) -> "LoihiLIF":
        """A bias charges the neuron from step 0: it restarts when its data arrive (``reset_at``)."""
        return dataclasses.replace(self, reset_at=arrival) if np.any(np.asarray(self.bias_mant) != 0) else self

    def unscheduled(self, data_steps: int) -> "LoihiLIF":
        return dataclasses.replace(self, delay=0, reset_at=0)

    def restarted(self, arrival: int) -> "LoihiLIF | None":
        """Restarting when its data arrive (``reset_at = arrival``) forgets every earlier input; a neuron that
        restarts at another step, or delays its output, cannot."""
        if self.delay or self.reset_at not in (0, arrival):
            return None
        return dataclasses.replace(self, reset_at=arrival) if arrival else self

    def _fire(self, h: torch.Tensor) -> torch.Tensor:
        return (h > (self.vth << VTH_SHIFT)).to(torch.int64)

    def _thresholds(self) -> tuple[int, int | None]:
        return self.vth << VTH_SHIFT, None

    def _reset_range(self, limit: int) -> Interval:
        # above vth << 6 (< limit) it fires and resets; below, nothing resets: only saturation bounds
        return Interval(-limit, min(self.vth << VTH_SHIFT, limit))


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
    BACKENDS = Backends(lava="neuron", onnx=Refused(ONNX_INTEGER), nir=Refused(NIR_INTEGER),
                        netx=Refused("a ternary neuron: netx CUBA neurons are Lava LIFs, with binary spikes"))

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

    def _thresholds(self) -> tuple[int, int | None]:
        return self.vth_hi << VTH_SHIFT, self.vth_lo << VTH_SHIFT

    def _reset_range(self, limit: int) -> Interval:
        # beyond either threshold it fires and resets to 0; a threshold past the saturation limit never fires
        return Interval(min(0, max(self.vth_lo << VTH_SHIFT, -limit)), max(0, min(self.vth_hi << VTH_SHIFT, limit)))

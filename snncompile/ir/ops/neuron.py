"""Spiking neuron nodes. State lives inside the node; every one starts from rest at t = 0."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch

from ...nn.neurons import charge, fire_and_reset, ternary_fire_and_reset
from ..types import FLOAT32, SPIKE, TERNARY, TensorType
from .base import Op, expect, expect_stream, param
from .support import NETX_FLOAT, Backends, Refused

Scalar = float  # a per-layer constant; NIR imports may carry per-neuron arrays instead
LeakEncoding = Literal["divide_by_tau", "multiply_by_rate", "none"]
_LAVA_FLOAT_NEURON = ("a float neuron: the lowering (normalize_neurons, quantize) turns it into a Loihi LIF, "
                      "which runs on Lava")


def _param(op: Op, name: str, like: torch.Tensor):
    value = getattr(op, name)
    return op.tensor(name).to(like) if isinstance(value, np.ndarray) else value  # like's dtype and device


def _neuron_problems(op, shape_fields: Sequence[str]) -> list[str]:
    p = []
    if op.leak_encoding not in ("divide_by_tau", "multiply_by_rate", "none"):
        p.append(f"leak_encoding {op.leak_encoding!r} unknown")
    if op.leak_encoding == "divide_by_tau" and np.any(np.asarray(op.leak) <= 0):
        p.append(f"leak (tau) must be > 0, got {op.leak}")
    if op.leak_encoding == "multiply_by_rate" and np.any((np.asarray(op.leak) < 0) | (np.asarray(op.leak) > 1)):
        p.append(f"leak (a rate) must be in [0, 1], got {op.leak}")
    if op.threshold_cmp not in (">=", ">"):
        p.append(f"threshold_cmp must be '>=' or '>', got {op.threshold_cmp!r}")
    for name in shape_fields:
        value = getattr(op, name)
        if isinstance(value, np.ndarray) and value.ndim == 0:
            p.append(f"{name} is a 0-d array; use a float")
    return p


@dataclass(frozen=True, eq=False, kw_only=True)
class LIF(Op):
    """Leaky integrate-and-fire neuron, one per input element, discrete time (SpikingJelly form).

    Semantics, per element, ``v[-1] = v_reset``::

        decay_input:      h[t] = v[t-1] + (x[t] - (v[t-1] - v_rest)) / leak     (leak_encoding divide_by_tau)
                          h[t] = v[t-1] + (x[t] - (v[t-1] - v_rest)) * leak     (multiply_by_rate)
        not decay_input:  h[t] = v[t-1] - (v[t-1] - v_rest) / leak + x[t]       (likewise for * leak)
        leak_encoding none (IF):  h[t] = v[t-1] + x[t]
        s[t] = h[t] - v_threshold >= 0      (threshold_cmp ">="; "> 0" for ">")
        v[t] = h[t] (1 - s[t]) + v_reset s[t]      (reset "hard")
        v[t] = h[t] - v_threshold s[t]             (reset "subtract")

    Float operation order is SpikingJelly's, so spikes equal the torch model's bit for bit.
    Parametric LIF exports as ``multiply_by_rate`` with ``leak = sigmoid(w)``.
    """

    v_threshold: Scalar | np.ndarray = param("firing threshold (per layer, or an array of the input's "
                                             "shape: one per neuron)", 1.0)
    leak: Scalar | np.ndarray = param("tau for ``divide_by_tau``, the rate ``1/tau`` for "
                                      "``multiply_by_rate``; unused for ``none``", 2.0)
    leak_encoding: LeakEncoding = param("how ``leak`` enters the charge equation", "divide_by_tau")
    decay_input: bool = param("the input is divided by tau too (SpikingJelly ``decay_input``)", True)
    v_rest: Scalar = param("resting potential the membrane decays to", 0.0)
    v_reset: Scalar = param("initial membrane and hard-reset value", 0.0)
    threshold_cmp: Literal[">=", ">"] = param("fire on ``h - v_threshold >= 0`` (SpikingJelly) or ``> 0`` "
                                              "(Lava, NIR)", ">=")
    reset: Literal["hard", "subtract"] = param("after a spike: set to ``v_reset`` or subtract the threshold",
                                               "hard")

    OUT_DTYPE = SPIKE
    ROLE, STEPPING, WORK = "neuron", "state", "neuron"
    BACKENDS = Backends(lava=Refused(_LAVA_FLOAT_NEURON), onnx="function", nir="LIF", netx=Refused(NETX_FLOAT))

    def problems(self) -> list[str]:
        p = _neuron_problems(self, ("v_threshold", "leak"))
        if self.reset not in ("hard", "subtract"):
            p.append(f"reset must be 'hard' or 'subtract', got {self.reset!r}")
        return p

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect_stream(x)
        for name in ("v_threshold", "leak"):
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                expect(value.shape == x.shape, f"per-neuron {name} has shape {value.shape}, input is {x}")
        return TensorType(x.shape, self.OUT_DTYPE)

    def _charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.leak_encoding == "none":
            return v + x
        return charge(v, x, _param(self, "leak", x), divide=self.leak_encoding == "divide_by_tau",
                      decay_input=self.decay_input, v_rest=self.v_rest)

    def run(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.simulate(x_seq)[0]

    def simulate(self, x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Spikes and post-reset membranes ``[T, B, ...]``."""
        theta = _param(self, "v_threshold", x_seq)
        v = torch.full_like(x_seq[0], self.v_reset)
        spikes, vs = [], []
        for x in x_seq:
            s, v = self._fire(self._charge(v, x), theta)
            spikes.append(s)
            vs.append(v)
        return torch.stack(spikes), torch.stack(vs)

    def _fire(self, h: torch.Tensor, theta) -> tuple[torch.Tensor, torch.Tensor]:
        return fire_and_reset(h, theta, self.v_reset, 4.0, True, strict=self.threshold_cmp == ">",
                              subtract=self.reset == "subtract")


@dataclass(frozen=True, eq=False, kw_only=True)
class TernaryLIF(LIF):
    """Ternary LIF (A2OS2A's V): outputs -1, 0, +1.

    Semantics: charge as :class:`LIF`; ``s[t] = +1`` if ``h - v_threshold >= 0``, ``-1`` if
    ``-h - v_threshold >= 0``, else 0 (``>`` when ``threshold_cmp`` is ``">"``); hard reset to
    ``v_reset`` on either spike.
    """

    OUT_DTYPE = TERNARY
    BACKENDS = Backends(lava=Refused(_LAVA_FLOAT_NEURON), onnx="function",
                        nir=Refused("NIR spikes are binary: a ternary (-1/0/+1) neuron has no NIR equivalent"),
                        netx=Refused(NETX_FLOAT))

    def problems(self) -> list[str]:
        p = super().problems()
        return p + ([] if self.reset == "hard" else ["TernaryLIF supports reset 'hard' only"])

    def _fire(self, h: torch.Tensor, theta) -> tuple[torch.Tensor, torch.Tensor]:
        return ternary_fire_and_reset(h, theta, self.v_reset, 4.0, True, strict=self.threshold_cmp == ">")


@dataclass(frozen=True, eq=False, kw_only=True)
class CubaLIF(Op):
    """Current-based LIF (NIR ``CubaLIF``), forward-Euler discretised with step ``dt``.

    Semantics, per element, ``i[-1] = 0``, ``v[-1] = v_reset``::

        i[t] = i[t-1] + (dt / tau_syn) * (w_in * x[t] - i[t-1])
        h[t] = v[t-1] + (dt / tau_mem) * (v_leak - v[t-1] + r * i[t])
        s[t] = h[t] - v_threshold > 0      (threshold_cmp ">", NIR's Heaviside; ">=" optional)
        v[t] = h[t] (1 - s[t]) + v_reset s[t]

    The current is updated first and feeds the voltage in the same step (Norse's and snnTorch's order).
    """

    ROLE, STEPPING, WORK = "neuron", "state", "neuron"
    BACKENDS = Backends(lava=Refused(_LAVA_FLOAT_NEURON), onnx="function", nir="CubaLIF", netx=Refused(NETX_FLOAT))
    tau_syn: np.ndarray = param("synaptic time constant, one per neuron (input shape)")
    tau_mem: np.ndarray = param("membrane time constant, one per neuron")
    r: np.ndarray = param("membrane resistance, one per neuron")
    v_leak: np.ndarray = param("leak (resting) potential, one per neuron")
    v_threshold: np.ndarray = param("firing threshold, one per neuron")
    v_reset: np.ndarray = param("initial membrane and reset value, one per neuron")
    w_in: np.ndarray = param("input weight, one per neuron")
    dt: float = param("Euler step", 1.0)
    threshold_cmp: Literal[">=", ">"] = param("fire on ``h - v_threshold > 0`` (NIR) or ``>= 0``", ">")

    def problems(self) -> list[str]:
        shapes = {k: v.shape for k, v in self.arrays().items()}
        p = [] if len(set(shapes.values())) == 1 else [f"parameter shapes differ: {shapes}"]
        if np.any(self.tau_syn <= 0) or np.any(self.tau_mem <= 0) or self.dt <= 0:
            p.append("tau_syn, tau_mem and dt must be > 0")
        return p

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect_stream(x)
        expect(self.tau_mem.shape == x.shape, f"CubaLIF has {self.tau_mem.shape} neurons, input is {x}")
        return TensorType(x.shape, SPIKE)

    def run(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.simulate(x_seq)[0]

    def simulate(self, x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Spikes, currents ``i`` and post-reset membranes ``v`` ``[T, B, ...]``."""
        p = {k: self.tensor(k).to(x_seq) for k in self.arrays()}  # x_seq's dtype and device
        i = torch.zeros_like(x_seq[0])
        v = torch.zeros_like(x_seq[0]) + p["v_reset"]
        spikes, currents, membranes = [], [], []
        for x in x_seq:
            i = i + (self.dt / p["tau_syn"]) * (p["w_in"] * x - i)
            h = v + (self.dt / p["tau_mem"]) * (p["v_leak"] - v + p["r"] * i)
            s = ((h - p["v_threshold"] > 0) if self.threshold_cmp == ">" else (h - p["v_threshold"] >= 0)).to(h.dtype)
            v = h * (1 - s) + p["v_reset"] * s
            spikes.append(s)
            currents.append(i)
            membranes.append(v)
        return torch.stack(spikes), torch.stack(currents), torch.stack(membranes)


@dataclass(frozen=True, eq=False, kw_only=True)
class LI(Op):
    """Leaky integrator (NIR ``LI``; NIR ``I`` with ``leak_encoding="none"``): a non-spiking readout.

    Semantics, per element, ``v[-1] = v_rest``: ``v[t] = h[t]``, the charge of :class:`LIF` with the
    same ``leak`` / ``leak_encoding`` / ``decay_input`` / ``v_rest`` (``v[t] = v[t-1] + x[t]`` for
    ``none``); no threshold, no reset. Output: the membrane ``v[t]``, float32.
    """

    ROLE, STEPPING, WORK = "neuron", "state", "neuron"
    BACKENDS = Backends(lava=Refused("a float leaky integrator: quantize makes it a readout the host computes after the "
                                     "chip (its integer input times its scale), never a chip node"),
                        onnx="function", nir="LI", netx=Refused(NETX_FLOAT))
    leak: Scalar | np.ndarray = param("tau for ``divide_by_tau``, the rate ``1/tau`` for "
                                      "``multiply_by_rate``; unused for ``none``", 2.0)
    leak_encoding: LeakEncoding = param("how ``leak`` enters the charge equation", "divide_by_tau")
    decay_input: bool = param("the input is divided by tau too (SpikingJelly ``decay_input``)", True)
    v_rest: Scalar = param("resting potential the membrane decays to, and its initial value", 0.0)

    def problems(self) -> list[str]:
        p = []
        leak = np.asarray(self.leak)
        if self.leak_encoding not in ("divide_by_tau", "multiply_by_rate", "none"):
            p.append(f"leak_encoding {self.leak_encoding!r} unknown")
        if self.leak_encoding == "divide_by_tau" and np.any(leak <= 0):
            p.append(f"leak (tau) must be > 0, got {self.leak}")
        if self.leak_encoding == "multiply_by_rate" and np.any((leak < 0) | (leak > 1)):
            p.append(f"leak (a rate) must be in [0, 1], got {self.leak}")
        if isinstance(self.leak, np.ndarray) and self.leak.ndim == 0:
            p.append("leak is a 0-d array; use a float")
        return p

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect_stream(x)
        if isinstance(self.leak, np.ndarray):
            expect(self.leak.shape == x.shape, f"per-neuron leak has shape {self.leak.shape}, input is {x}")
        return TensorType(x.shape, FLOAT32)

    def run(self, x_seq: torch.Tensor) -> torch.Tensor:
        v = torch.full_like(x_seq[0], self.v_rest)
        leak = _param(self, "leak", x_seq)
        out = []
        for x in x_seq:
            if self.leak_encoding == "none":
                v = v + x
            else:
                v = charge(v, x, leak, divide=self.leak_encoding == "divide_by_tau",
                           decay_input=self.decay_input, v_rest=self.v_rest)
            out.append(v)
        return torch.stack(out)

    def simulate(self, x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Output and membrane ``[T, B, ...]``: the same trace (the membrane is the output)."""
        v = self.run(x_seq)
        return v, v

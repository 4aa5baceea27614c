"""The conventions of a NIR import: how NIR's continuous-time neuron parameters become the fields of IR neurons.

NIR leaves the step ``dt``, the spike comparison, the reset and the float order of the leak open; the options
of :func:`snncompile.frontend.nir_import.from_nir` (a :class:`Conventions`) and the ``snncompile.*`` metadata
that snncompile's exporter writes settle them (the full discussion: ``docs/nir.md``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .nir_graph import NIRImportError, as_text, float32, numbers

HINT = "snncompile."  # prefix of the metadata keys written by snncompile's exporter (exactness hints only)


@dataclass(frozen=True)
class Conventions:
    """The source framework's conventions that a NIR file does not carry (the options of ``from_nir``).
    ``decay``: ``"euler"`` (NIR's forward Euler, ``dt/tau`` per step) or ``"exp"`` (the exact
    ``1 - exp(-dt/tau)``, Sinabs' and Rockpool's); ``cuba_gain``: how a ``CubaLIF``'s ``w_in`` and ``r``
    are read: ``"file"`` (as written), ``"norse"`` (``w_in = tau_syn/dt``) or ``"rockpool"``
    (``w_in = beta/(1 - beta)``, ``r = 1/(1 - alpha)``); ``cuba_reset``: a ``CubaLIF``'s reset (the IR
    ``CubaLIF`` resets to ``v_reset``: a convention's subtraction is approximated by it, an explicit one refused)."""

    dt: float
    threshold_cmp: str
    reset: str
    leak_encoding: str | None
    norse_tau_bug: bool
    decay: str = "euler"
    cuba_gain: str = "file"
    cuba_reset: str = "hard"


@dataclass(frozen=True)
class Convention:
    """A framework's rules that its NIR files do not carry: the defaults of ``from_nir(convention=...)``
    (an option passed explicitly wins). ``docs/nir.md`` gives each one's agreement with the framework."""

    threshold_cmp: str = ">"
    reset: str = "hard"
    norse_tau_bug: bool = False
    decay: str = "euler"
    cuba_gain: str = "file"


CONVENTIONS = {
    # NIR's own rule: Heaviside v > v_threshold, reset to v_reset, forward Euler
    "spec": Convention(),
    # snnTorch Leaky/Synaptic: ">" and subtract (its reset_delay=True default subtracts one step later: not
    # expressible in the acyclic IR, approximated by the immediate subtraction)
    "snntorch": Convention(reset="subtract"),
    # Norse 1.1.0: tau written as dt*tau (norse#411); LIFCell adds the input to the current undecayed, i.e.
    # w_in = tau_syn/dt, which the file omits; v_reset is not written (Norse's default 0 is assumed)
    "norse": Convention(norse_tau_bug=True, cuba_gain="norse"),
    # Sinabs IAF/LIF: SingleSpike's ">=", MembraneSubtract, alpha = exp(-dt/tau) (its LIF, norm_input=True)
    "sinabs": Convention(threshold_cmp=">=", reset="subtract", decay="exp"),
    # Rockpool LIFTorch: ">=" and subtract, exact decays, and CubaLIF gains w_in = beta/(1-beta), r = 1/(1-alpha)
    "rockpool": Convention(threshold_cmp=">=", reset="subtract", decay="exp", cuba_gain="rockpool"),
}


def per_neuron(name: str, field: str, value, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    a = numbers(name, field, value).astype(np.float64)
    if a.shape == shape:
        out = a
    elif a.size == 1:
        out = np.full(shape, a.reshape(-1)[0])
    elif a.size == math.prod(shape):
        out = a.reshape(shape)
    else:
        raise NIRImportError(f"node {name!r}: {field} has shape {a.shape}, its input is {shape}")
    return float32(name, field, out) if dtype == np.float32 else out.astype(dtype)


def compact(a: np.ndarray):
    """A float when every entry is equal (the IR's per-layer constant), else the per-neuron array."""
    flat = a.reshape(-1)
    return float(flat[0]) if flat.size and np.all(flat == flat[0]) else a


def scalar(name: str, field: str, a: np.ndarray) -> float:
    value = compact(a)
    if isinstance(value, np.ndarray):
        raise NIRImportError(f"node {name!r}: per-neuron {field} (values {np.unique(a)[:4]} ...) is not supported: "
                             f"the IR neurons take one {field} per layer")
    return value


def exporter_hints(node) -> dict[str, str]:
    meta = getattr(node, "metadata", None) or {}
    return {k[len(HINT):]: as_text(v) for k, v in meta.items() if isinstance(k, str) and k.startswith(HINT)}


def spike_threshold(name: str, node, shape, ctx: Conventions, hints) -> tuple[np.ndarray, str]:
    theta = per_neuron(name, "v_threshold", node.v_threshold, shape)
    cmp = ctx.threshold_cmp
    if hints.get("threshold_cmp") == ">=":
        # the exporter wrote the float32 predecessor of θ with ">": h > pred(θ) <=> h >= θ
        theta, cmp = np.nextafter(theta, np.float32(np.inf)).astype(np.float32), ">="
        if not np.isfinite(theta).all():
            raise NIRImportError(f"node {name!r}: v_threshold is the largest float32, which has no successor")
    return theta, cmp


def time_constant(name: str, field: str, value, shape, ctx: Conventions) -> np.ndarray:
    tau = per_neuron(name, field, value, shape, np.float64)
    if ctx.norse_tau_bug:
        tau = tau / ctx.dt
    if np.any(tau <= 0):
        raise NIRImportError(f"node {name!r}: {field} must be > 0, got {np.unique(tau)[:4]}")
    float32(name, field, tau)  # the IR neuron holds it in float32
    factor = ctx.dt / tau
    if ctx.decay == "euler" and np.any(factor > 1 + 1e-6):
        hint = (" Norse 1.1.0 files store dt*tau (norse#411): pass norse_tau_bug=True." if not ctx.norse_tau_bug
                else "")
        raise NIRImportError(
            f"node {name!r}: the Euler factor dt/{field} = {float(np.max(factor)):.4g} exceeds 1 (dt={ctx.dt:g}, "
            f"{field}={float(np.min(tau)):.4g}): NIR files carry no dt; pass the step the graph was made for, "
            f"e.g. from_nir(..., dt=1e-4).{hint}")
    return tau


def euler_rate(tau: np.ndarray, ctx: Conventions) -> np.ndarray:
    """The fraction of the membrane lost per step (float64): ``dt/tau`` (Euler) or ``1 - exp(-dt/tau)``."""
    return -np.expm1(-ctx.dt / tau) if ctx.decay == "exp" else ctx.dt / tau


def cuba_gains(name: str, node, shape, taus: dict[str, np.ndarray], ctx: Conventions) -> dict[str, np.ndarray]:
    """A ``CubaLIF``'s ``w_in`` and ``r`` under the convention (``taus``: the time constants)."""
    if ctx.cuba_gain == "norse":
        return {"w_in": float32(name, "w_in", taus["tau_syn"] / ctx.dt), "r": per_neuron(name, "r", node.r, shape)}
    if ctx.cuba_gain == "rockpool":
        keep_syn, keep_mem = (np.exp(-ctx.dt / taus[f]) for f in ("tau_syn", "tau_mem"))
        return {"w_in": float32(name, "w_in", keep_syn / (1 - keep_syn)), "r": float32(name, "r", 1 / (1 - keep_mem))}
    return {f: per_neuron(name, f, getattr(node, f), shape) for f in ("w_in", "r")}


def cuba_time_constant(name: str, field: str, tau: np.ndarray, ctx: Conventions) -> np.ndarray:
    """The ``tau`` (float32) whose Euler step ``dt/tau`` is the convention's decay."""
    return float32(name, field, ctx.dt / euler_rate(tau, ctx) if ctx.decay == "exp" else tau)


def _leak(name: str, field: str, tau: np.ndarray, ctx: Conventions, encoding: str) -> np.ndarray:
    if ctx.decay == "exp":  # the exact decay: the rate 1 - exp(-dt/tau), rounded once to float32
        return float32(name, f"1-exp(-dt/{field})", euler_rate(tau, ctx))
    if encoding == "divide_by_tau":
        return float32(name, f"{field}/dt", tau / ctx.dt)
    # Norse's order: the factor is dt * (1/tau), both float32, multiplied in float32 (dt/tau <= 1: no overflow)
    return (np.float32(ctx.dt) * float32(name, f"1/{field}", 1.0 / tau)).astype(np.float32)


def leaky_fields(name: str, node, shape, ctx: Conventions, hints, field: str = "tau") -> tuple[dict, np.ndarray | None]:
    """Fields of an IR LIF/LI for a NIR LIF/LI, and the input scale ``r`` to apply first (None: none)."""
    tau = time_constant(name, field, getattr(node, field), shape, ctx)
    r = per_neuron(name, "r", node.r, shape, np.float64)
    # an exact decay is a rate (1 - exp(-dt/tau)) whatever the encoding asked for
    encoding = "multiply_by_rate" if ctx.decay == "exp" else (
        hints.get("leak_encoding") or ctx.leak_encoding or "multiply_by_rate")
    if encoding not in ("multiply_by_rate", "divide_by_tau"):
        raise NIRImportError(f"node {name!r}: leak_encoding must be 'multiply_by_rate' or 'divide_by_tau', got "
                             f"{encoding!r}")
    scale = None
    if np.all(r == 1):
        decay_input = True
    elif np.allclose(r, tau / ctx.dt, rtol=1e-6, atol=0):
        decay_input = False  # r = tau/dt: the input enters undecayed (snnTorch's beta form)
    else:
        decay_input, scale = True, per_neuron(name, "r", node.r, shape)  # r in float32
    fields = dict(leak=compact(_leak(name, field, tau, ctx, encoding)), leak_encoding=encoding,
                  decay_input=decay_input, v_rest=scalar(name, "v_leak", per_neuron(name, "v_leak", node.v_leak, shape)))
    return fields, scale

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
    """The source framework's conventions that a NIR file does not carry (the options of ``from_nir``)."""

    dt: float
    threshold_cmp: str
    reset: str
    leak_encoding: str | None
    norse_tau_bug: bool


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
    if np.any(factor > 1 + 1e-6):
        hint = (" Norse 1.1.0 files store dt*tau (norse#411): pass norse_tau_bug=True." if not ctx.norse_tau_bug
                else "")
        raise NIRImportError(
            f"node {name!r}: the Euler factor dt/{field} = {float(np.max(factor)):.4g} exceeds 1 (dt={ctx.dt:g}, "
            f"{field}={float(np.min(tau)):.4g}): NIR files carry no dt; pass the step the graph was made for, "
            f"e.g. from_nir(..., dt=1e-4).{hint}")
    return tau


def _leak(name: str, field: str, tau: np.ndarray, ctx: Conventions, encoding: str) -> np.ndarray:
    if encoding == "divide_by_tau":
        return float32(name, f"{field}/dt", tau / ctx.dt)
    # Norse's order: the factor is dt * (1/tau), both float32, multiplied in float32 (dt/tau <= 1: no overflow)
    return (np.float32(ctx.dt) * float32(name, f"1/{field}", 1.0 / tau)).astype(np.float32)


def leaky_fields(name: str, node, shape, ctx: Conventions, hints, field: str = "tau") -> tuple[dict, np.ndarray | None]:
    """Fields of an IR LIF/LI for a NIR LIF/LI, and the input scale ``r`` to apply first (None: none)."""
    tau = time_constant(name, field, getattr(node, field), shape, ctx)
    r = per_neuron(name, "r", node.r, shape, np.float64)
    encoding = hints.get("leak_encoding") or ctx.leak_encoding or "multiply_by_rate"
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

"""quantize's number formats: a float neuron's threshold and Loihi decays, whether it has Loihi's CUBA form, and
Lava's 8-bit weights and 13-bit bias mantissa (see ``quantize``'s module docstring for the scheme).

A NIR ``CubaLIF`` (``i += a_s (w_in x - i)``, ``v += a_m (v_leak - v + r i)``, ``a = dt/tau``) with
``v_leak = v_reset = 0`` is Loihi's CUBA compartment up to units: with the gain ``g = a_s w_in a_m r``,
``u = i / (a_s w_in)`` and ``V = v / g`` follow ``u[t] = (1 - a_s) u[t-1] + x[t]`` and
``V[t] = (1 - a_m) V[t-1] + u[t]``, firing on ``V > theta / g``: Loihi's ``u``/``v`` with ``current_decay =
a_s 4096`` and ``voltage_decay = a_m 4096`` on inputs in ``x``'s units. The lowering treats it as a LIF of
threshold ``theta / g`` whose current decays."""
from __future__ import annotations

import math

import numpy as np

from ..ir.ops import CubaLIF
from ..ir.ops.int_synapse import lava_effective_weights
from ..ir.ops.loihi import BIAS_MANT_RANGE, DECAY_UNITY
from .normalize_neurons import NEURON_TYPES, normalize_blocker

WEIGHT_LIMIT = 254          # Lava mixed-sign 8-bit weights: even values in [-256, 254]


def is_float_neuron(op) -> bool:
    """A float neuron the lowering turns into a Loihi neuron (the LIF family and ``CubaLIF``)."""
    return type(op) in NEURON_TYPES or type(op) is CubaLIF


def _uniform(op: CubaLIF, field: str) -> float | None:
    values = np.asarray(getattr(op, field), np.float32)
    return float(values.flat[0]) if values.size and np.all(values == values.flat[0]) else None


def _cuba_rates(op: CubaLIF) -> tuple[float, float]:
    """``dt / tau_syn`` and ``dt / tau_mem`` as the node computes them (float32)."""
    return tuple(float(np.float32(op.dt) / np.float32(_uniform(op, f))) for f in ("tau_syn", "tau_mem"))


def membrane_gain(op) -> float:
    """The float membrane per unit of the Loihi membrane in input units: ``g = a_s w_in a_m r`` for a
    ``CubaLIF`` (module docstring), 1 for the LIF family."""
    if type(op) is not CubaLIF:
        return 1.0
    a_s, a_m = _cuba_rates(op)
    return a_s * _uniform(op, "w_in") * a_m * _uniform(op, "r")


def float_threshold(op) -> float:
    """The threshold on the membrane in input units (``theta / g`` for a ``CubaLIF``)."""
    return float(np.max(np.asarray(op.v_threshold, np.float64))) / membrane_gain(op)


def current_decay(op) -> int:
    """Loihi ``iDecay``: 4096 (only this step's input) for the LIF family, ``round(4096 dt / tau_syn)``."""
    return int(round(_cuba_rates(op)[0] * DECAY_UNITY)) if type(op) is CubaLIF else DECAY_UNITY


def _cuba_problem(name: str, op: CubaLIF) -> str | None:
    why = f"neuron {name!r} (CubaLIF) cannot take Loihi's CUBA form:"
    uneven = [f for f in ("tau_syn", "tau_mem", "r", "w_in", "v_threshold") if _uniform(op, f) is None]
    if uneven:
        return f"{why} per-neuron {', '.join(uneven)} (Lava's LIF takes one value per layer)"
    for field in ("v_leak", "v_reset"):
        if np.any(np.asarray(getattr(op, field)) != 0):
            return f"{why} {field} must be 0 (the CUBA neuron decays and resets to 0)"
    if membrane_gain(op) <= 0 or _uniform(op, "v_threshold") <= 0:
        return f"{why} w_in, r and v_threshold must be > 0 (the CUBA neuron fires on a positive threshold)"
    for field, rate in zip(("tau_syn", "tau_mem"), _cuba_rates(op)):
        if round(rate * DECAY_UNITY) < 1:
            return (f"{why} {field}/dt = {1 / rate:.6g} exceeds 8192: its 12-bit decay rounds to 0, a neuron that "
                    f"never leaks")
    return None


def neuron_problem(name: str, op) -> str | None:
    if type(op) is CubaLIF:
        return _cuba_problem(name, op)
    decays_input = op.decay_input and op.leak_encoding != "none"  # an IF neuron never reads decay_input
    if op.threshold_cmp != ">" or decays_input or op.reset != "hard" or op.v_rest != 0 or op.v_reset != 0:
        blocker = normalize_blocker(op)
        if blocker:  # normalize_neurons kept it (its contract): running it again would not help
            return f"neuron {name!r} ({type(op).__name__}) cannot take Loihi's CUBA form: {blocker}"
        return (f"neuron {name!r} is not in normalised CUBA form (run normalize_neurons first; it needs "
                f"decay_input=False, threshold_cmp '>', hard reset to 0)")
    for field_name in ("v_threshold", "leak"):
        if isinstance(getattr(op, field_name), np.ndarray) and np.ptp(getattr(op, field_name)) != 0:
            return f"neuron {name!r} has per-neuron {field_name}: Lava's LIF takes one value per layer"
    return None


def voltage_decay(name: str, op) -> int:
    """Loihi ``vDecay`` (fraction of 4096 lost per step) of a normalised neuron or a ``CubaLIF``."""
    if type(op) is CubaLIF:
        return int(round(_cuba_rates(op)[1] * DECAY_UNITY))
    leak = float(np.max(np.asarray(op.leak, np.float64)))
    if op.leak_encoding == "none":
        return 0
    rate = 1.0 / leak if op.leak_encoding == "divide_by_tau" else leak
    return int(round(rate * DECAY_UNITY))


# -- weights and biases ---------------------------------------------------------------------------------------------

def weight_exponent(weights: np.ndarray, scale: float) -> int:
    """Smallest ``e`` such that ``|weights| / (scale * 2^e)`` fits the 8-bit mixed-sign range."""
    peak = float(np.max(np.abs(weights), initial=0.0))
    if peak == 0.0:
        return 0
    return math.ceil(math.log2(peak / (scale * WEIGHT_LIMIT)) - 1e-12)


def integer_weights(weights: np.ndarray, step: float) -> np.ndarray:
    """``weights / step`` on Lava's even 8-bit grid: rounded to the nearest even integer, clipped."""
    w = 2 * np.round(np.asarray(weights, np.float64) / (2 * step))
    w = np.clip(w, -256, WEIGHT_LIMIT).astype(np.int32)
    effective, _ = lava_effective_weights(w, sign_mode="mixed")
    assert np.array_equal(effective, w)  # even values in range: Lava keeps them as they are
    return w


def integer_bias(bias: np.ndarray | None, scale: float) -> np.ndarray | None:
    """``bias / scale`` in Loihi's bias format. On the chip it is the neuron's ``bias_mant << bias_exp``,
    added to ``v`` (1/64 input steps), i.e. ``b << 6``: a 13-bit signed mantissa with ``bias_exp = 6``
    holds ``|b| <= 4095`` exactly; ``bias_exp = 7`` doubles the range for even ``b``; beyond, it saturates."""
    if bias is None:
        return None
    b = np.round(np.asarray(bias, np.float64) / scale)
    mant_max = BIAS_MANT_RANGE[1]
    b = np.where(np.abs(b) <= mant_max, b, 2 * np.round(b / 2))
    return np.clip(b, -2 * mant_max, 2 * mant_max).astype(np.int64)


__all__ = ["WEIGHT_LIMIT", "is_float_neuron", "membrane_gain", "float_threshold", "current_decay", "neuron_problem",
           "voltage_decay", "weight_exponent", "integer_weights", "integer_bias"]

"""quantize's number formats: a float LIF's threshold and Loihi voltage decay, whether it has Loihi's CUBA
form, and Lava's 8-bit weights and 13-bit bias mantissa (see ``quantize``'s module docstring for the scheme)."""
from __future__ import annotations

import math

import numpy as np

from ..ir.ops.int_synapse import lava_effective_weights
from ..ir.ops.loihi import BIAS_MANT_RANGE, DECAY_UNITY
from .normalize_neurons import NEURON_TYPES, normalize_blocker

WEIGHT_LIMIT = 254          # Lava mixed-sign 8-bit weights: even values in [-256, 254]


def is_float_neuron(op) -> bool:
    return type(op) in NEURON_TYPES


def float_threshold(op) -> float:
    return float(np.max(np.asarray(op.v_threshold, np.float64)))


def neuron_problem(name: str, op) -> str | None:
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
    """Loihi ``vDecay`` (fraction of 4096 lost per step) of a normalised neuron."""
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


__all__ = ["WEIGHT_LIMIT", "is_float_neuron", "float_threshold", "neuron_problem", "voltage_decay",
           "weight_exponent", "integer_weights", "integer_bias"]

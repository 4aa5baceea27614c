"""normalize_neurons: rewrite every SpikingJelly-form LIF / TernaryLIF into the current-free form that
Loihi's CUBA neuron implements (Lava's LIF with ``du = 4095``: the current is this step's input)."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..ir import Graph, Node
from ..ir.ops import LIF, family
from .pipeline import Alignment, PassContext, as_pass
from .rewrite import Edit, rewrite_graph

# The registered neurons of LIF's form (its fields and equations; TernaryLIF fires both ways by them), by
# exact type: a node of an unregistered subclass may fire or reset by a rule the rescaling knows nothing of.
NEURON_TYPES = tuple(op for op in family("neuron") if issubclass(op, LIF))


def normalize_blocker(op: LIF) -> str | None:
    """Why the neuron ``op`` cannot take the current-free form, or ``None`` when it can (or has it)."""
    if op.reset != "hard":
        return f"reset {op.reset!r} must be 'hard': the CUBA neuron resets to 0, it does not subtract the threshold"
    if np.any(np.asarray(op.v_rest) != 0):
        return (f"v_rest={_f32(op.v_rest)!s} (NIR's v_leak) must be 0: the CUBA neuron has no resting potential, "
                f"it decays to 0")
    if np.any(np.asarray(op.v_reset) != 0):
        return f"v_reset={_f32(op.v_reset)!s} must be 0: the CUBA neuron resets to 0"
    if op.leak_encoding == "multiply_by_rate" and op.decay_input and np.any(_leak32(op) == 0):
        return "rate 0 with decay_input: the input never reaches the membrane, so no rescaling exists"
    if not (np.all(np.isfinite(_scaled_threshold(op))) and np.all(np.isfinite(_strict_threshold(op)))):
        return "the rescaled threshold is not finite in float32"
    return None


def is_normalized(op: LIF) -> bool:
    """``op`` already has the current-free form: rest and reset at 0, hard reset, strict comparison, and
    an undecayed input (``decay_input=False``, or no leak at all: the IF charge ``v + x``)."""
    return (op.threshold_cmp == ">" and op.reset == "hard"
            and not np.any(np.asarray(op.v_rest) != 0) and not np.any(np.asarray(op.v_reset) != 0)
            and (op.leak_encoding == "none" or not op.decay_input))


def membrane_scale(op: LIF) -> np.ndarray:
    """The factor ``c`` with ``v := c V`` (float64): ``tau`` for ``divide_by_tau`` and ``1/rate`` for
    ``multiply_by_rate`` when the input is decayed, else 1 (the charge already adds ``x`` undecayed)."""
    if not op.decay_input or op.leak_encoding == "none":
        return np.float64(1.0)
    leak = _leak32(op)
    if op.leak_encoding == "divide_by_tau":
        return leak
    with np.errstate(divide="ignore"):  # rate 0 is refused by normalize_blocker
        return 1.0 / leak


def normalized_neuron(op: LIF) -> LIF:
    """``op`` in current-free form (``op`` must have no :func:`normalize_blocker`); leak and delay kept."""
    threshold = _strict_threshold(op)
    scalar = not isinstance(op.v_threshold, np.ndarray) and not isinstance(op.leak, np.ndarray)
    # an IF charge (v + x) never reads decay_input: leave the flag as the importer set it
    decay_input = op.decay_input if op.leak_encoding == "none" else False
    return dataclasses.replace(op, v_threshold=float(threshold) if scalar else threshold, decay_input=decay_input,
                               threshold_cmp=">")


def _f32(value):
    # for a message: the float32 value the node computes with, as the user wrote it (1.2, not 1.2000000476837158)
    return np.asarray(value, np.float32)[()]


def _leak32(op: LIF) -> np.ndarray:
    # the node computes in float32: it rounds a Python-float leak (and threshold) to float32 first
    return np.asarray(op.leak, np.float32).astype(np.float64)


def _scaled_threshold(op: LIF) -> np.ndarray:
    """``c * theta`` in float64, rounded once to float32 (inf where it overflows)."""
    theta = np.asarray(op.v_threshold, np.float32).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return (membrane_scale(op) * theta).astype(np.float32)


def _strict_threshold(op: LIF) -> np.ndarray:
    """The float32 threshold of the ``>`` comparison: for ``>=``, the predecessor of the scaled threshold
    (for float32 ``h``, ``h >= T`` holds exactly when ``h > pred(T)``)."""
    scaled = _scaled_threshold(op)
    return np.nextafter(scaled, np.float32(-np.inf)) if op.threshold_cmp == ">=" else scaled


def _normalizable(graph: Graph, name: str) -> bool:
    op = graph.op(name)
    return type(op) in NEURON_TYPES and not is_normalized(op) and normalize_blocker(op) is None


def _normalize(graph: Graph, name: str) -> Edit:
    node = graph.nodes[name]
    return Edit(replace={name: Node(normalized_neuron(node.op), node.inputs)})


def _summary(value) -> float | dict:
    """A scalar as a float; a per-neuron array as its range (the history stays small)."""
    array = np.asarray(value, np.float64)
    if array.ndim == 0:
        return float(array)
    return {"min": float(array.min()), "max": float(array.max()), "neurons": int(array.size)}


def _report(before: Graph, after: Graph) -> dict:
    """``normalized``: node -> ``{"from": old form, "membrane_scale", "threshold_before", "threshold"}``
    (floats, or ``{"min", "max", "neurons"}`` for per-neuron values); ``kept``: node -> reason."""
    normalized, kept = {}, {}
    for name, node in after.nodes.items():
        op, old = node.op, before.op(name)
        if type(op) not in NEURON_TYPES:
            continue
        if op is not old:
            normalized[name] = {
                "from": f"{old.leak_encoding}, decay_input={old.decay_input}, threshold_cmp '{old.threshold_cmp}'",
                "membrane_scale": _summary(membrane_scale(old)), "threshold_before": _summary(old.v_threshold),
                "threshold": _summary(op.v_threshold)}
        elif not is_normalized(op):
            kept[name] = normalize_blocker(op)
    return {"normalized": normalized, "kept": kept}


def _align(before: Graph, after: Graph) -> Alignment:
    """A normalised membrane is ``c`` times the original: ``v / c`` is in the original's units."""
    scales = {}
    for name, node in after.nodes.items():
        if name in before.nodes and node.op is not before.op(name) and type(node.op) in NEURON_TYPES:
            c = np.asarray(membrane_scale(before.op(name)), np.float64)
            if c.size == 1 or np.ptp(c) == 0:
                scales[name] = 1.0 / float(c.flat[0])
    return Alignment(membrane_scale=scales)


@as_pass(report=_report, align=_align)
def normalize_neurons(graph: Graph, ctx: PassContext) -> Graph:
    """Rewrite every ``LIF`` / ``TernaryLIF`` into the form of Loihi's CUBA neuron with ``du = 4095``.

    Requires: a valid graph. Takes no options.

    Guarantees: every ``LIF`` / ``TernaryLIF`` (exactly those types) without a :func:`normalize_blocker`
    leaves with ``decay_input=False``, ``v_rest = v_reset = 0``, hard reset and ``threshold_cmp=">"``;
    its leak, leak encoding, delay and name stay. With ``V`` the SpikingJelly membrane and ``c`` its
    :func:`membrane_scale`, the new membrane is ``v := c V``:

    - ``divide_by_tau``, ``decay_input``: ``H = V + (X - V)/tau``, fire ``H >= theta``  ->
      ``h = v - v/tau + X``, fire ``h >= tau theta``  (``c = tau``);
    - ``multiply_by_rate`` (PLIF), ``decay_input``: ``H = V + (X - V) r``  ->  ``h = v - v r + X``,
      fire ``h >= theta / r``  (``c = 1/r``);
    - ``decay_input=False`` already, or IF (``leak_encoding "none"``, ``h = v + X``, which is current-free
      with no leak): ``c = 1``, only the comparison changes. IF nodes keep their encoding
      (``decay_input`` is unused there and stays as it was); their ``>=`` becomes ``>`` like every other.

    ``>=`` becomes ``>`` exactly: the threshold is ``c theta`` in float64 (with ``theta`` and the leak as
    the float32 values the node computes with), rounded once to float32, then replaced by its float32
    predecessor, since for float32 ``h``, ``h >= T`` holds exactly when ``h > pred(T)``; a ``>`` node keeps
    ``c theta``. TernaryLIF fires ``+1`` on ``h > T'`` and ``-1`` on ``-h > T'`` with the same ``T'``, which
    is both of its ``>=`` sides. Per-neuron (array) thresholds and leaks are handled element-wise; a scalar
    threshold with a per-neuron leak becomes a per-neuron threshold. Nodes with reset ``"subtract"``,
    ``v_rest``/``v_reset`` != 0, a rate of 0 with ``decay_input``, or a non-finite rescaled threshold stay
    as they are (``quantize`` then refuses them with the reason); ``CubaLIF`` and ``LI`` are not touched.
    The pipeline records ``{"normalized": {node: {"from", "membrane_scale", "threshold_before",
    "threshold"}}, "kept": {node: reason}}``. Idempotent; returns ``graph`` itself when nothing changes.

    Not bit-identical. In float32, ``v - v/tau + X`` rounds once where SpikingJelly's ``V + (X - V)/tau``
    rounds twice, and the stored membrane ``h`` is not exactly ``c H``, so a neuron whose membrane lies
    within an ulp or so of its threshold can fire differently: for tau 2, theta 1 the inputs
    ``(2^-23, 2 - 2^-23)`` give ``H[1] = 1 - 2^-24`` (no spike; exactly it is ``1 - 2^-25``) but
    ``h[1] = fl(2 - 2^-24) = 2`` (a spike, ties to even). Such membranes are rare. Measured
    (tests/test_normalize_neurons.py, 1,000,000 random float32 neuron-steps with T = 8 for each of tau 2 /
    theta 1, tau 2 / theta 0.5, tau 1.7 / theta 1, PLIF rate 0.3 and a ternary neuron, firing rates 9-28%):
    0 spike mismatches in every case (also 0 in 8,000,000 per case with uniform and with normal inputs,
    measured once outside the tests); where the spike trains agree, the post-reset membrane stays within
    6.34 * 2^-23 of ``c V`` (1 * 2^-23 for tau 2 / theta 1). The six shipped zoo models after
    ``fold_batchnorm``, on 96 test samples each: 0 of 94,986,240 neuron outputs differ from the folded
    graph's (agreement 1.0), identical predictions. The tests require a mismatch fraction <= 1e-5 on
    random inputs, and spike agreement >= 0.999 and equal predictions on the zoo models.
    """
    if ctx.options_for(normalize_neurons):
        raise ValueError(f"normalize_neurons takes no options, got {dict(ctx.options_for(normalize_neurons))}")
    return rewrite_graph(graph, [(_normalizable, _normalize)])


__all__ = ["normalize_neurons", "normalize_blocker", "is_normalized", "membrane_scale", "normalized_neuron"]

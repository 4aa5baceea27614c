"""The quantised-float graph: the integer graph's parameters in real units, computed in float.

``float_view(integer)`` rebuilds a quantised graph (the output of ``quantize``) with float nodes: integer
weights times their scales, the Loihi neurons as float LIFs (``CubaLIF`` where the current decays) whose
threshold is where Lava's strict ``v > vth << 6`` fires (``s * (vth + 1/64)``), token sums as sums of reals,
SDT-V3's level thresholds on a real input as the rounding they reproduce, and every node keeping its name with its
value in real units. It keeps the rounding of weights, biases, thresholds and inputs (the
quantisation) and drops the integer arithmetic: floored shifts, truncating decays and their 6 fraction
bits, wraps, saturations and clamps. Comparing float -> quantised-float -> integer separates the two
sources of error; ``snncompile verify`` shows both stages.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node
from ..ir.ops import (LIF, Add, Conv2d, CubaLIF, Delay, IntAdd, IntDense, IntShift, LevelThreshold, Linear, LoihiLIF,
                      MultiLevelSpike, Quantize, Scale, TemporalWindow, TernaryLIF, TokenMean, TokenSum, ops_where)
from ..ir.ops.loihi import ACT_SHIFT, DECAY_UNITY

SYNAPSES = ops_where(ROLE="synapse", INTEGER_INPUTS=True)
NEURONS = ops_where(ROLE="neuron", INTEGER_INPUTS=True)
# products of integer activations: they compute on the integer grid whatever the float view feeds them
INTEGER_OPERANDS = ops_where(ROLE="accumulate", INTEGER_INPUTS=True)


def _neuron(op, scale: float, shape: tuple[int, ...]):
    """The float LIF that fires where the Loihi neuron does, on real inputs ``scale * a``; a ``CubaLIF`` for
    a neuron whose current decays (the current and the membrane in the input's real units)."""
    threshold = float(scale * ((op.vth if isinstance(op, LoihiLIF) else op.vth_hi) + 2.0 ** -ACT_SHIFT))
    if isinstance(op, LoihiLIF) and op.current_decay != DECAY_UNITY:
        return _cuba_view(op, threshold, shape)
    leak = {"leak_encoding": "none"} if op.voltage_decay == 0 else {
        "leak": op.voltage_decay / DECAY_UNITY, "leak_encoding": "multiply_by_rate"}
    cls = LIF if isinstance(op, LoihiLIF) else TernaryLIF
    return cls(v_threshold=threshold, decay_input=False, threshold_cmp=">=", **leak)


def _cuba_view(op: LoihiLIF, threshold: float, shape: tuple[int, ...]) -> CubaLIF:
    """``i += a_s (x / a_s - i)``, ``v += a_m (i / a_m - v)`` with ``a = decay / 4096``: Loihi's ``u`` and
    ``v`` (``u[t] = (1 - a_s) u[t-1] + x``, ``v[t] = (1 - a_m) v[t-1] + u``) without truncation."""
    if op.voltage_decay == 0:
        raise ValueError("float_view: a Loihi neuron whose current decays but whose voltage does not has no CubaLIF "
                         "form (its r would be infinite)")
    a_s, a_m = op.current_decay / DECAY_UNITY, op.voltage_decay / DECAY_UNITY
    full = lambda value: np.full(shape, value, np.float32)  # noqa: E731
    return CubaLIF(tau_syn=full(1 / a_s), tau_mem=full(1 / a_m), r=full(1 / a_m), w_in=full(1 / a_s),
                   v_leak=full(0.0), v_reset=full(0.0), v_threshold=full(threshold), dt=1.0, threshold_cmp=">=")


def _synapse(op, s_in: float, s_out: float):
    weight = (op.weight.astype(np.float64) * 2.0 ** op.weight_exp * s_out / s_in).astype(np.float32)
    bias = None if op.bias is None else (op.bias.astype(np.float64) * s_out).astype(np.float32)
    if isinstance(op, IntDense):
        return Linear(weight=weight, bias=bias)
    return Conv2d(weight=weight, bias=bias, stride=op.stride, padding=op.padding, dilation=op.dilation,
                  groups=op.groups)


def float_view(integer: Graph) -> Graph:
    """The quantised-float counterpart of ``integer`` (see the module docstring), a graph ``quantize``
    returned: its ``scales`` give the real value of one integer step of each node (absent: 1)."""
    if integer.scales is None:
        raise ValueError("float_view takes a quantised graph (one with scales, as quantize returns it)")
    scales, types = integer.scales, integer.types()
    s = lambda n: float(scales.get(n, 1.0))  # noqa: E731
    nodes: dict[str, Node] = {}
    for name in integer.topo_order():
        node = integer.nodes[name]
        op, inputs = node.op, node.inputs
        s_in = s(inputs[0]) if inputs else 1.0
        if isinstance(op, SYNAPSES):
            nodes[name] = Node(_synapse(op, s_in, s(name)), inputs)
        elif isinstance(op, NEURONS):
            nodes[name] = Node(_neuron(op, s_in, types[name].shape), inputs)
        elif isinstance(op, IntAdd):
            if op.bias is not None:  # (only a Lava per_op plan moves synapse biases into sums)
                raise ValueError(f"float_view takes quantize's graph; sum {name!r} carries moved synapse biases")
            nodes[name] = Node(Add(), inputs)
        elif isinstance(op, TokenSum):
            tokens = int(np.prod(integer.types()[inputs[0]].shape[1:]))
            nodes[f"{name}.mean"] = Node(TokenMean(), inputs)
            nodes[name] = Node(Scale(scale=tokens * s(name) / s_in), (f"{name}.mean",))
        elif isinstance(op, IntShift) or (isinstance(op, Delay) and op.delay == 0):
            factor = 2.0 ** getattr(op, "shift", 0) * s(name) / s_in
            nodes[name] = Node(Scale(scale=factor), inputs)
        elif isinstance(op, Scale) and not isinstance(op.scale, np.ndarray):  # dequantising: real in already
            nodes[name] = Node(Scale(scale=op.scale * s(name) / s_in), inputs)
        elif isinstance(op, Quantize):
            nodes[f"{name}.int"] = Node(op, inputs)
            nodes[name] = Node(Scale(scale=op.scale), (f"{name}.int",))
        elif isinstance(op, TemporalWindow) and op.weights.dtype.kind in "iu":
            nodes[name] = Node(TemporalWindow(weights=(op.weights * s(name) / s_in).astype(np.float32)), inputs)
        elif isinstance(op, LevelThreshold) and not isinstance(integer.op(inputs[0]), INTEGER_OPERANDS):
            # on a real input: the rounding its half-level thresholds reproduce (quantize's _level_quantiser)
            nodes[name] = Node(MultiLevelSpike(levels=op.levels, norm=1.0, encoding=op.encoding), inputs)
        elif isinstance(op, INTEGER_OPERANDS):
            nodes[name] = Node(op, tuple(_requantised(nodes, integer, i, s(i)) for i in inputs))
        else:
            nodes[name] = Node(op, inputs)
    # real values: no scales; the integer graph's timing, were it scheduled, does not name the new nodes
    return Graph(nodes=nodes, outputs=integer.outputs, time_steps=integer.time_steps,
                 history=integer.history).validate()


def _requantised(nodes: dict[str, Node], integer: Graph, name: str, scale: float) -> str:
    """An integer-only operand (A2OS2A's K) rounded back onto its integer grid."""
    if scale == 1.0:
        return name
    dtype = integer.types()[name].dtype
    nodes[f"{name}.grid"] = Node(Quantize(scale=scale, bits=dtype.bits, signed=dtype.signed), (name,))
    return f"{name}.grid"


__all__ = ["float_view"]

"""Neuron functions: ``Scan`` over time of a step body that repeats the interpreter's float operations.

Each body flattens ``[T', B, *shape]`` to ``[T', B, n]`` so the Scan body has a fixed rank
(onnxruntime needs the rank of every subgraph output) for any per-sample shape; scalar and
per-neuron parameters are flattened to broadcast against ``[B, n]``.
"""
from __future__ import annotations

from typing import Callable

from onnx import TensorProto, helper

from .builder import Body, subgraph


def _lif_charge(b: Body, outer: dict, v: str, x: str) -> str:
    """``h`` of every leak encoding / decay_input combination, selected exactly."""
    vr = b.op("Sub", v, outer["v_rest"])
    d = b.where(outer["decay"], b.op("Sub", x, vr), vr)
    lk = b.where(outer["divide"], b.op("Div", d, outer["leak"]), b.op("Mul", d, outer["leak"]))
    leaky = b.where(outer["decay"], b.op("Add", v, lk), b.op("Add", b.op("Sub", v, lk), x))
    return b.where(outer["no_leak"], b.op("Add", v, x), leaky)


def _leak_outer(b: Body, leak: str) -> dict:
    return {"leak": _flat(b, leak), "v_rest": b.attr("v_rest", "float"), "decay": b.attr_flag("decay_input"),
            "divide": b.attr_is("leak_encoding", "divide_by_tau"), "no_leak": b.attr_is("leak_encoding", "none")}


def _lif_outer(b: Body, theta: str, leak: str) -> dict:
    return {**_leak_outer(b, leak), "theta": _flat(b, theta), "v_reset": b.attr("v_reset", "float"),
            "strict": b.attr_is("threshold_cmp", ">")}


def _neurons(b: Body, x: str) -> str:
    """``[T, B, *shape]`` -> ``[T, B, prod(shape)]``: Scan bodies then have a fixed rank for any input."""
    return b.reshape(x, b.cat(b.shape(x, 0, 2), b.ints(-1)))


def _flat(b: Body, param: str) -> str:
    """A scalar or per-neuron parameter as a vector that broadcasts against ``[B, prod(shape)]``."""
    return b.reshape(param, b.ints(-1))


def _scan(b: Body, x: str, init: list[str], step: Callable[[Body, list[str], str], tuple[list[str], str]]) -> str:
    """Scan over time: ``step(body, states, x_t) -> (new states, y_t)`` on ``[B, n]`` slices of
    ``_neurons(x)``; ``init``: per-neuron initial values (broadcast to ``[B, n]``). Returns ys shaped as ``x``."""
    flat = _neurons(b, x)
    init = [b.op("Expand", v, b.shape(flat, 1)) for v in init]
    s = Body(prefix=b.fresh("scan") + "_")
    states = [s.fresh("state") for _ in init]
    x_t = s.fresh("x")
    new_states, y_t = step(s, states, x_t)
    out_states = [s.op("Identity", n) for n in new_states]
    y_out = s.op("Identity", y_t)
    graph = subgraph(s, s.prefix + "body", states + [x_t], out_states + [y_out], rank=2)
    outs = b.op("Scan", *init, flat, outputs=len(init) + 1, num_scan_inputs=1, body=graph)
    return b.reshape(outs[-1], b.shape(x))


def lif(b, x):
    x, theta, leak = x
    o = _lif_outer(b, theta, leak)
    one, subtract = b.const(1.0), b.attr_is("reset", "subtract")

    def step(s, states, x_t):
        (v,) = states
        h = _lif_charge(s, o, v, x_t)
        spike = s.op("Cast", s.fire(s.op("Sub", h, o["theta"]), o["strict"]), to=TensorProto.FLOAT)
        hard = s.op("Add", s.op("Mul", s.op("Sub", one, spike), h), s.op("Mul", spike, o["v_reset"]))
        sub = s.op("Sub", h, s.op("Mul", spike, o["theta"]))
        return [s.where(subtract, sub, hard)], spike
    return _scan(b, x, [o["v_reset"]], step)


def ternary_lif(b, x):
    x, theta, leak = x
    o = _lif_outer(b, theta, leak)
    one = b.const(1.0)

    def step(s, states, x_t):
        (v,) = states
        h = _lif_charge(s, o, v, x_t)
        pos = s.fire(s.op("Sub", h, o["theta"]), o["strict"])
        neg = s.fire(s.op("Sub", s.op("Neg", h), o["theta"]), o["strict"])
        fired = s.op("Cast", s.op("Or", pos, neg), to=TensorProto.FLOAT)
        v_new = s.op("Add", s.op("Mul", s.op("Sub", one, fired), h), s.op("Mul", fired, o["v_reset"]))
        spike = s.op("Sub", s.op("Cast", pos, to=TensorProto.FLOAT), s.op("Cast", neg, to=TensorProto.FLOAT))
        return [v_new], spike
    return _scan(b, x, [o["v_reset"]], step)


def li(b, x):
    """Leaky integrator: the LIF charge from ``v = v_rest``, no threshold; output the membrane."""
    x, leak = x
    o = _leak_outer(b, leak)

    def step(s, states, x_t):
        v = _lif_charge(s, o, states[0], x_t)
        return [v], v
    return _scan(b, x, [o["v_rest"]], step)


def cuba_lif(b, x):
    x, *params = x
    tau_syn, tau_mem, r, v_leak, theta, v_reset, w_in = (_flat(b, p) for p in params)
    dt = b.attr("dt", "float")
    a_syn, a_mem = b.op("Div", dt, tau_syn), b.op("Div", dt, tau_mem)
    strict = b.attr_is("threshold_cmp", ">")
    one = b.const(1.0)

    def step(s, states, x_t):
        i, v = states
        i_new = s.op("Add", i, s.op("Mul", a_syn, s.op("Sub", s.op("Mul", w_in, x_t), i)))
        h = s.op("Add", v, s.op("Mul", a_mem, s.op("Add", s.op("Sub", v_leak, v), s.op("Mul", r, i_new))))
        spike = s.op("Cast", s.fire(s.op("Sub", h, theta), strict), to=TensorProto.FLOAT)
        v_new = s.op("Add", s.op("Mul", h, s.op("Sub", one, spike)), s.op("Mul", v_reset, spike))
        return [i_new, v_new], spike
    zeros = b.op("ConstantOfShape", b.shape(v_reset), value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]))
    return _scan(b, x, [zeros, b.op("Add", zeros, v_reset)], step)

"""One ONNX ``FunctionProto`` per IR node type, built from standard ops only.

Every function is generic: per-node values reach it as attributes (read inside the body through
``ref_attr_name``) and as inputs (parameter arrays, passed as initializers). Choices between
formulas (threshold ``>=``/``>``, hard/subtract reset, leak encoding, ``decay_input``, erode,
``scale_position``) compute every candidate and pick one with ``Where`` on a flag derived from an
attribute, so the selected value is computed exactly as in the float interpreter.

Layout inside the ONNX graph: every value is time-major ``[T', B, *shape]``; a static IR value is
carried as a stream of length one (``T' = 1``). ``Input`` adds that axis and ``Output`` removes it.
Neurons and ``TemporalWindow`` iterate over time with ``Scan``/``Loop``, so no body depends on T.
Neuron bodies live in ``neurons.py``, attention bodies in ``attention.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper

from . import attention, neurons
from .builder import OPSET, Body
from ...ir.ops import OPS, Refused

DOMAIN = "snncompile"
DOMAIN_VERSION = 1


@dataclass(frozen=True)
class OpSpec:
    """How one IR op type maps to its function.

    ``data``: formal names of the IR input edges; ``params``: IR array fields passed as further inputs
    (``None`` in the IR -> an omitted optional input); ``attrs``: IR field -> attribute kind
    (float, int, string, ints); ``extra``: attributes that the exporter derives from the inferred types.
    """

    data: tuple[str, ...]
    params: tuple[str, ...]
    attrs: dict[str, str]
    build: Callable[[Body, list[str]], str]
    extra: dict[str, str] = field(default_factory=dict)

    def attributes(self) -> dict[str, str]:
        return {**self.attrs, **self.extra}


# ---------------------------------------------------------------------------------------------------
# shared pieces
# ---------------------------------------------------------------------------------------------------

def _frames(b: Body, x: str, fn: Callable[[str], str]) -> str:
    """Apply a 4-D op ``fn`` to the last three axes ``[C, H, W]`` of ``x`` (leading axes as a batch)."""
    lead = b.shape(x, 0, -3)
    y = fn(b.reshape(x, b.cat(b.ints(-1), b.shape(x, -3))))
    return b.reshape(y, b.cat(lead, b.shape(y, 1)))


def _pads_2d(b: Body, ref: str) -> str:
    """ONNX ``pads`` of a 4-D tensor from a ``(pH, pW)`` attribute: ``[0, 0, pH, pW, 0, 0, pH, pW]``."""
    p = b.attr(ref, "ints")
    return b.cat(b.ints(0, 0), p, b.ints(0, 0), p)

def _stream_flag_prefix(b: Body) -> str:
    """``[1]`` for a static value (``time == "static"``), an empty vector for a stream."""
    n = b.reshape(b.op("Cast", b.attr_is("time", "static"), to=TensorProto.INT64), b.ints(1))
    return b.op("Slice", b.ints(1), b.ints(0), n)

# ---------------------------------------------------------------------------------------------------
# bodies; each returns the name of its output (neurons and attention in their own modules)
# ---------------------------------------------------------------------------------------------------

def _input(b, x):
    (x,) = x
    return b.reshape(x, b.cat(_stream_flag_prefix(b), b.shape(x)))


def _output(b, x):
    (x,) = x
    n = b.reshape(b.op("Cast", b.attr_is("time", "static"), to=TensorProto.INT64), b.ints(1))
    return b.reshape(x, b.op("Slice", b.shape(x), n, b.ints(np.iinfo(np.int64).max)))


def _repeat(b, x):
    (x,) = x
    return b.op("Expand", x, b.cat(b.attr_1d("time_steps"), b.shape(x, 1)))


def _time_mean(b, x):
    (x,) = x
    return b.op("ReduceMean", x, b.ints(0), keepdims=1)


def _conv2d(b, x):
    x, w, bias = x

    def conv(x4):
        padded = b.op("Pad", x4, _pads_2d(b, "padding"))
        return b.op("Conv", padded, w, bias, refs=[("strides", "stride", "ints"), ("dilations", "dilation", "ints"),
                                                  ("group", "groups", "int")])
    return _frames(b, x, conv)


def _linear(b, x):
    x, w, bias = x
    rows = b.reshape(x, b.cat(b.ints(-1), b.shape(w, 1, 2)))
    y = b.op("Gemm", rows, w, bias, transB=1)
    return b.reshape(y, b.cat(b.shape(x, 0, -1), b.shape(w, 0, 1)))


def _batch_norm(b, x):
    """ONNX ``BatchNormalization`` (inference) on ``[T'*B, C, ...]`` frames, as the interpreter's ``_frames``."""
    x, w, bias, mean, var = x
    frames = b.reshape(x, b.cat(b.ints(-1), b.shape(x, 2)))
    y = b.op("BatchNormalization", frames, w, bias, mean, var, refs=[("epsilon", "eps", "float")])
    return b.reshape(y, b.shape(x))


def _make_add(arity: int):
    def _add(b, xs):
        out = xs[0]
        for x in xs[1:]:
            out = b.op("Add", out, x)
        return out if len(xs) > 1 else b.op("Identity", out)
    return _add


def _mul(b, x):
    return b.op("Mul", *x)


def _relu(b, x):
    return b.op("Relu", *x)


def _scale(b, x):
    x, scale = x
    return b.op("Mul", x, scale)  # a per-element scale has the per-sample shape: it broadcasts


def _max_pool(b, x):
    (x,) = x

    def pool(x4):
        padded = b.op("Pad", x4, _pads_2d(b, "padding"), b.const(-np.inf))
        return b.op("MaxPool", padded, refs=[("kernel_shape", "kernel", "ints"), ("strides", "stride", "ints")])
    return _frames(b, x, pool)


def _sum_pool(b, x):
    """Sum over windows: every channel as its own image, convolved with a ones kernel."""
    (x,) = x

    def pool(x4):
        n_c, hw = b.shape(x4, 0, 2), b.shape(x4, 2)
        single = b.reshape(x4, b.cat(b.ints(-1, 1), hw))
        padded = b.op("Pad", single, _pads_2d(b, "padding"))
        ones = b.op("ConstantOfShape", b.cat(b.ints(1, 1), b.attr("kernel", "ints")),
                    value=helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0]))
        y = b.op("Conv", padded, ones, refs=[("strides", "stride", "ints")])
        return b.reshape(y, b.cat(n_c, b.shape(y, 2)))
    return _frames(b, x, pool)


def _flatten(b, x):
    (x,) = x
    return b.reshape(x, b.cat(b.shape(x, 0, 2), b.ints(-1)))


def _token_mean(b, x):
    (x,) = x
    tokens = b.reshape(x, b.cat(b.shape(x, 0, 3), b.ints(-1)))
    return b.op("ReduceMean", tokens, b.ints(-1), keepdims=0)


def _border_pad(b, x):
    """Zero padding plus a border mask times the per-channel value (``0 + v`` and ``x + 0`` are exact)."""
    x, value = x

    def pad(x4):
        p = b.attr_1d("pad")
        pads = b.cat(b.ints(0, 0), p, p, b.ints(0, 0), p, p)
        border = b.op("Pad", b.op("ConstantOfShape", b.shape(x4)), pads, b.const(1.0))
        return b.op("Add", b.op("Pad", x4, pads), b.op("Mul", border, b.reshape(value, b.ints(-1, 1, 1))))
    return _frames(b, x, pad)


SPECS: dict[str, OpSpec] = {
    "Input": OpSpec(("x",), (), {"shape": "ints", "dtype": "string", "time": "string"}, _input),
    "Output": OpSpec(("x",), (), {}, _output, extra={"time": "string"}),
    "Repeat": OpSpec(("x",), (), {"time_steps": "int"}, _repeat),
    "TimeMean": OpSpec(("x",), (), {}, _time_mean),
    "Conv2d": OpSpec(("x",), ("weight", "bias"),
                     {"stride": "ints", "padding": "ints", "dilation": "ints", "groups": "int"}, _conv2d),
    "Linear": OpSpec(("x",), ("weight", "bias"), {}, _linear),
    "BatchNorm": OpSpec(("x",), ("weight", "bias", "running_mean", "running_var"), {"eps": "float"}, _batch_norm),
    "Add": OpSpec(("x0", "x1"), (), {}, _make_add(2)),  # arity adjusted per graph, see add_spec()
    "Mul": OpSpec(("a", "b"), (), {}, _mul),
    "ReLU": OpSpec(("x",), (), {}, _relu),
    "Scale": OpSpec(("x",), ("scale",), {}, _scale),
    "MaxPool2d": OpSpec(("x",), (), {"kernel": "ints", "stride": "ints", "padding": "ints", "mode": "string"},
                        _max_pool),
    "SumPool2d": OpSpec(("x",), (), {"kernel": "ints", "stride": "ints", "padding": "ints"}, _sum_pool),
    "Flatten": OpSpec(("x",), (), {}, _flatten),
    "TokenMean": OpSpec(("x",), (), {}, _token_mean),
    "BorderPad": OpSpec(("x",), ("value",), {"pad": "int"}, _border_pad),
    "LIF": OpSpec(("x",), ("v_threshold", "leak"),
                  {"leak_encoding": "string", "decay_input": "int", "v_rest": "float", "v_reset": "float",
                   "threshold_cmp": "string", "reset": "string"}, neurons.lif),
    "TernaryLIF": OpSpec(("x",), ("v_threshold", "leak"),
                         {"leak_encoding": "string", "decay_input": "int", "v_rest": "float", "v_reset": "float",
                          "threshold_cmp": "string", "reset": "string"}, neurons.ternary_lif),
    "CubaLIF": OpSpec(("x",), ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"),
                      {"dt": "float", "threshold_cmp": "string"}, neurons.cuba_lif),
    "LI": OpSpec(("x",), ("leak",), {"leak_encoding": "string", "decay_input": "int", "v_rest": "float"}, neurons.li),
    "SpikeColumnSum": OpSpec(("k", "v"), (), {"heads": "int", "erode": "int"}, attention.spike_column_sum),
    "SpikeMask": OpSpec(("q", "m"), (), {"heads": "int", "erode": "int"}, attention.spike_mask),
    "BlockLinearAttention": OpSpec(("q", "k", "v"), (),
                                   {"heads": "int", "block": "int", "scale": "float", "scale_position": "string"},
                                   attention.block_linear_attention),
    "LUTAttention": OpSpec(("q", "k", "v"), ("table",), {"heads": "int", "scale": "float"}, attention.lut_attention),
    "TemporalWindow": OpSpec(("x",), ("weights",), {}, attention.temporal_window),
}

# IR op types the export refuses on purpose, with the reason each op type declares (BACKENDS.onnx); every
# other type has a function in SPECS (tests/test_op_registry.py holds the two together)
REFUSED: dict[str, str] = {op.type_name(): op.BACKENDS.onnx.reason for op in OPS
                           if isinstance(op.BACKENDS.onnx, Refused)}


def add_spec(arity: int) -> OpSpec:
    """``Add`` with ``arity`` formal inputs (ONNX functions are not variadic)."""
    return OpSpec(tuple(f"x{i}" for i in range(arity)), (), {}, _make_add(arity))


def make_function(type_name: str, spec: OpSpec) -> onnx.FunctionProto:
    b = Body()
    formals = list(spec.data) + list(spec.params)
    out = b.op("Identity", spec.build(b, formals), outputs=["y"])
    assert out == "y"
    return helper.make_function(DOMAIN, type_name, formals, ["y"], b.nodes, [helper.make_opsetid("", OPSET)],
                                attributes=list(spec.attributes()))

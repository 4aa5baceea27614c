"""A small builder for ONNX node lists: function bodies and Scan/Loop subgraphs.

Every helper appends standard-domain nodes and returns the name(s) of their outputs. Names are local
to one :class:`Body` and carry its prefix, so nested subgraphs never shadow an outer name.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper

OPSET = 21          # the standard opset of every function and of the model (ONNX 1.16 / IR 10 pair)
IR_VERSION = 10     # onnxruntime 1.23 loads IR <= 11 and opset <= 23; onnx 1.23 would write IR 14

_REF_KIND = {  # attribute kind -> (Constant attribute, AttributeProto type)
    "float": ("value_float", AttributeProto.FLOAT),
    "int": ("value_int", AttributeProto.INT),
    "string": ("value_string", AttributeProto.STRING),
    "ints": ("value_ints", AttributeProto.INTS),
}


def ref_attr(name: str, ref: str, kind: str) -> AttributeProto:
    """An attribute of a node inside a function that takes the value of the function's attribute ``ref``."""
    a = AttributeProto()
    a.name, a.ref_attr_name, a.type = name, ref, _REF_KIND[kind][1]
    return a


class Body:
    """Nodes of one function body or subgraph under construction."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self._count = 0

    def fresh(self, hint: str = "t") -> str:
        self._count += 1
        return f"{self.prefix}{hint}{self._count}"

    def op(self, op_type: str, *inputs: str, outputs: int | list[str] = 1, refs=(), **attrs):
        """Append ``op_type(inputs)``; ``refs``: (attribute, function attribute, kind) references."""
        names = outputs if isinstance(outputs, list) else [self.fresh(op_type[:3].lower()) for _ in range(outputs)]
        node = helper.make_node(op_type, list(inputs), names, **attrs)
        node.attribute.extend(ref_attr(*r) for r in refs)
        self.nodes.append(node)
        return names[0] if len(names) == 1 else names

    # -- constants -------------------------------------------------------------------------------
    def const(self, value, dtype=np.float32) -> str:
        name = self.fresh("c")
        arr = np.asarray(value, dtype=dtype)
        self.nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(arr, name)))
        return name

    def ints(self, *values: int) -> str:
        """A 1-D int64 constant (shape pieces, axes, permutations)."""
        return self.const(np.array(values, np.int64), np.int64)

    def string(self, text: str) -> str:
        name = self.fresh("s")
        self.nodes.append(helper.make_node("Constant", [], [name],
                                           value=helper.make_tensor(name, TensorProto.STRING, [], [text.encode()])))
        return name

    def attr(self, ref: str, kind: str) -> str:
        """The function attribute ``ref`` as a tensor (0-d for float/int/string, 1-D for ints)."""
        field, _ = _REF_KIND[kind]
        return self.op("Constant", refs=[(field, ref, kind)])

    def attr_is(self, ref: str, text: str) -> str:
        """A bool scalar: does the string attribute ``ref`` equal ``text``?"""
        return self.op("Equal", self.attr(ref, "string"), self.string(text))

    def attr_flag(self, ref: str) -> str:
        """A bool scalar from an int (0/1) attribute."""
        return self.op("Cast", self.attr(ref, "int"), to=TensorProto.BOOL)

    def attr_1d(self, ref: str) -> str:
        """An int attribute as a 1-element int64 vector (a shape piece)."""
        return self.op("Reshape", self.attr(ref, "int"), self.ints(1))

    # -- shapes ----------------------------------------------------------------------------------
    def shape(self, x: str, start: int | None = None, end: int | None = None) -> str:
        kw = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
        return self.op("Shape", x, **kw)

    def cat(self, *pieces: str) -> str:
        return pieces[0] if len(pieces) == 1 else self.op("Concat", *pieces, axis=0)

    def reshape(self, x: str, shape: str) -> str:
        return self.op("Reshape", x, shape)

    def transpose(self, x: str, *perm: int) -> str:
        return self.op("Transpose", x, perm=list(perm))

    def where(self, cond: str, a: str, b: str) -> str:
        return self.op("Where", cond, a, b)

    def fire(self, z: str, strict: str) -> str:
        """Bool spikes ``z > 0`` when ``strict`` else ``z >= 0`` (both computed; ORT has no bool ``Where``)."""
        zero = self.const(0.0)
        gt, ge = self.op("Greater", z, zero), self.op("GreaterOrEqual", z, zero)
        return self.op("Or", self.op("And", strict, gt), self.op("And", self.op("Not", strict), ge))


def subgraph(body: Body, name: str, inputs: list[str], outputs: list[str], rank: int,
             scalars: dict[str, int] | None = None) -> onnx.GraphProto:
    """A Scan/Loop body: float tensors of ``rank`` symbolic dims (onnxruntime needs the rank of every
    subgraph output), except ``scalars`` (name -> element type, 0-d)."""
    scalars = scalars or {}

    def info(n):
        if n in scalars:
            return helper.make_tensor_value_info(n, scalars[n], [])
        return helper.make_tensor_value_info(n, TensorProto.FLOAT, [f"{name}_d{i}" for i in range(rank)])
    return helper.make_graph(body.nodes, name, [info(n) for n in inputs], [info(n) for n in outputs])

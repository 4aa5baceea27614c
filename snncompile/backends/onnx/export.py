"""IR graph -> ONNX model: one ``snncompile:<IR type>`` node per IR node, each op a model-local function.

See ``docs/onnx.md`` for the conventions (layout, attributes, time handling, numerics).
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Mapping

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from ...ir.graph import Graph
from ...ir.types import TensorType
from .builder import IR_VERSION, OPSET
from .functions import DOMAIN, DOMAIN_VERSION, REFUSED, SPECS, OpSpec, add_spec, make_function

BATCH = "batch"          # the symbolic batch dimension of every graph input and output
ZERO = "snncompile.zero"  # 0-d zero that fills the unused formal inputs of a narrower Add
AXIS0 = "snncompile.axis0"  # [0]: Squeeze axes of a static graph output that is not an Output node


class OnnxExportError(ValueError):
    """The graph cannot be written as ONNX; the message lists every reason, each naming its node."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("cannot export to ONNX:\n  - " + "\n  - ".join(problems))


def _attribute(value, kind: str):
    if kind == "float":
        return float(value)
    if kind == "int":
        return int(value)
    if kind == "string":
        return str(value)
    return [int(v) for v in value]


def _value_info(name: str, t: TensorType, time_steps: int, boundary: bool = False) -> onnx.ValueInfoProto:
    """``[T, B, *shape]`` for a stream; a static value is ``[B, *shape]`` at the boundary, ``[1, B, *shape]`` inside."""
    lead = [time_steps] if t.time == "stream" else ([] if boundary else [1])
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [*lead, BATCH, *t.shape], doc_string=str(t))


def _problems(graph: Graph) -> list[str]:
    problems = []
    for name, node in graph.nodes.items():
        op, type_name = node.op, node.op.type_name()
        if type_name in REFUSED:
            problems.append(f"node {name!r} ({type_name}): {REFUSED[type_name]}")
        elif type_name not in SPECS:
            problems.append(f"node {name!r} ({type_name}): no ONNX function is defined for this op type")
        elif op.delay or op.overflow != "none":
            problems.append(f"node {name!r} ({type_name}): delay={op.delay}, overflow={op.overflow!r}: the ONNX "
                            f"export carries float graphs without scheduling delays or integer overflow")
        elif type_name == "BlockLinearAttention" and graph.time_steps % op.block:
            problems.append(f"node {name!r} (BlockLinearAttention): time_steps={graph.time_steps} is not a "
                            f"multiple of block={op.block}")
    for out in graph.outputs:
        if graph.op(out).type_name() == "Input":
            problems.append(f"graph output {out!r} is an Input node; ONNX cannot name one value as both "
                            f"a graph input and output (add an Output node)")
    return problems


def to_onnx(graph: Graph, *, check: bool = True, name: str = "snncompile") -> onnx.ModelProto:
    """Export the whole ``graph`` (every node, attention included) as an ONNX model.

    Graph inputs are named after the IR ``Input`` nodes and graph outputs after ``graph.outputs``,
    so :func:`run_onnx` takes and returns the dictionaries of :func:`snncompile.ir.run_graph`.
    ``check`` runs ``onnx.checker.check_model(full_check=True)`` on the result.
    """
    graph.validate()
    problems = _problems(graph)
    if problems:
        raise OnnxExportError(problems)
    types, T = graph.types(), graph.time_steps
    outputs = set(graph.outputs)

    def internal(n: str) -> bool:  # the value of n needs a different name from its boundary tensor
        op = graph.op(n).type_name()
        return op == "Input" or (n in outputs and op != "Output" and types[n].time == "static")
    value = {n: f"{n}:internal" if internal(n) else n for n in graph.nodes}

    add_arity = max([len(node.inputs) for node in graph.nodes.values() if node.op.type_name() == "Add"],
                    default=0)
    specs: dict[str, OpSpec] = {}
    nodes, initializers, value_infos = [], [], []
    for n in graph.topo_order():
        node, op = graph.nodes[n], graph.op(n)
        type_name = op.type_name()
        spec = specs.setdefault(type_name, add_spec(add_arity) if type_name == "Add" else SPECS[type_name])
        inputs = [n] if type_name == "Input" else [value[s] for s in node.inputs]
        if type_name == "Add" and len(inputs) < add_arity:
            inputs += [ZERO] * (add_arity - len(inputs))
        for field in spec.params:
            array = getattr(op, field)
            if array is None:
                inputs.append("")
                continue
            initializers.append(numpy_helper.from_array(np.asarray(array, np.float32), f"{n}.{field}"))
            inputs.append(f"{n}.{field}")
        attrs = {f: _attribute(getattr(op, f), kind) for f, kind in spec.attrs.items()}
        if type_name == "Output":
            attrs["time"] = types[n].time
        nodes.append(helper.make_node(type_name, inputs, [value[n]], name=n, domain=DOMAIN, **attrs))
        value_infos.append(_value_info(value[n], types[n], T))
    if add_arity and any(ZERO in nd.input for nd in nodes):
        initializers.append(numpy_helper.from_array(np.zeros((), np.float32), ZERO))
    squeezed = [out for out in graph.outputs if value[out] != out]
    for out in squeezed:  # a static non-Output graph output: drop the internal length-one time axis
        nodes.append(helper.make_node("Squeeze", [value[out], AXIS0], [out], name=f"{out}:squeeze"))
    if squeezed:
        initializers.append(numpy_helper.from_array(np.zeros(1, np.int64), AXIS0))

    names = [*graph.inputs(), *(o for nd in nodes for o in nd.output), *(i.name for i in initializers)]
    clashes = sorted(n for n, k in Counter(names).items() if k > 1)
    if clashes:
        raise OnnxExportError([f"ONNX value name {n!r} is used twice (an IR node name collides with a "
                               f"generated name: '<node>:internal' or '<node>.<parameter>'); rename the node"
                               for n in clashes])
    g = helper.make_graph(
        nodes, name,
        [_value_info(n, types[n], T, boundary=True) for n in graph.inputs()],
        [_value_info(n, types[n], T, boundary=True) for n in graph.outputs],
        initializer=initializers,
        value_info=[v for v in value_infos if v.name not in outputs])
    model = helper.make_model(
        g, ir_version=IR_VERSION, producer_name="snncompile",
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(DOMAIN, DOMAIN_VERSION)],
        functions=[make_function(t, spec) for t, spec in specs.items()])
    helper.set_model_props(model, {"snncompile.time_steps": str(T),
                                   "snncompile.history": ",".join(h.name for h in graph.history)})
    if check:
        onnx.checker.check_model(model, full_check=True)
    return model


def write_onnx(graph: Graph, path: str | os.PathLike, **kwargs) -> Path:
    """Export ``graph`` with :func:`to_onnx` and save it to ``path`` (returned)."""
    path = Path(path)
    onnx.save_model(to_onnx(graph, **kwargs), path)
    return path


def run_onnx(model: onnx.ModelProto | str | os.PathLike, feeds: Mapping[str, torch.Tensor | np.ndarray], *,
             optimize: bool = False, threads: int = 1) -> dict[str, torch.Tensor]:
    """Run an exported model in onnxruntime (CPU) on ``run_graph``-style feeds; returns output name -> tensor.

    ``optimize=False`` (default) disables onnxruntime's graph rewrites: they fold constant
    multiplications into convolution weights, which changes float rounding versus the interpreter.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    arrays = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)).astype(np.float32)
              for k, v in feeds.items()}
    names = [o.name for o in session.get_outputs()]
    return {n: torch.from_numpy(v) for n, v in zip(names, session.run(names, arrays))}

"""Fields every node type has: ``delay`` (time-stepped latency) and ``overflow``; their checks and their
meaning in the float interpreter, and the exporters that refuse what they cannot carry."""
import dataclasses

import numpy as np
import pytest
import torch

from snncompile.backends.nir_export import NIRExportError, to_nir
from snncompile.backends.onnx import OnnxExportError, to_onnx
from snncompile.ir import Graph, GraphError, Node, run_graph
from snncompile.ir.graph import Schedule
from snncompile.ir.ops import LIF, OPS, Input, Linear, Output


def chain(**linear_fields) -> Graph:
    w = np.array([[1.0, 2.0], [0.5, -1.0]], dtype=np.float32)
    return Graph({"x": Node(Input(shape=(2,))), "fc": Node(Linear(weight=w, **linear_fields), ("x",)),
                  "lif": Node(LIF(), ("fc",)), "y": Node(Output(), ("lif",))}, ("y",), time_steps=5)


def test_every_op_type_has_delay_and_overflow():
    for op in OPS:
        names = {f.name for f in dataclasses.fields(op)}
        assert {"delay", "overflow"} <= names, op.__name__


def test_delay_shifts_the_stream_later_with_zeros_first():
    x = torch.arange(20, dtype=torch.float32).reshape(5, 2, 2)
    plain = run_graph(chain(), {"x": x}, keep="all")["fc"]
    late = run_graph(chain(delay=2), {"x": x}, keep="all")["fc"]
    assert torch.equal(late[:2], torch.zeros_like(late[:2]))
    assert torch.equal(late[2:], plain[:3])


def test_bad_delay_and_overflow_are_reported_together():
    with pytest.raises(GraphError) as e:
        chain(delay=-1, overflow="clip").validate()
    text = str(e.value)
    assert "node 'fc' (Linear): delay must be an int >= 0, got -1" in text
    assert "overflow must be 'none', 'saturate' or 'wrap', got 'clip'" in text


def test_a_schedule_or_scales_not_describing_the_graph_are_reported():
    g = chain()
    stale = dataclasses.replace(g, schedule=Schedule(5, {"x": 0, "fc": 0, "gone": 1}, ("fc",)),
                                scales={"gone": 2.0, "fc": 0.0})
    problems = "\n".join(stale.problems())
    assert "schedule: latencies must name every node once; missing ['lif', 'y'], not nodes ['gone']" in problems
    assert "schedule: delay lines ['fc'] are not Delay nodes of the graph" in problems
    assert "scales: ['gone'] are not nodes of the graph" in problems
    assert "scales: must be finite numbers > 0, got {'fc': 0.0}" in problems
    short = dataclasses.replace(g, schedule=Schedule(3, {n: 0 for n in g.nodes}))
    assert short.problems() == ["schedule: data_steps 3 + largest latency 0 = 3 steps, but the graph runs 5"]
    assert dataclasses.replace(g, schedule=Schedule(5, {n: 0 for n in g.nodes}), scales={"fc": 0.5}).problems() == []


def test_exporters_refuse_delays_they_cannot_carry():
    with pytest.raises(OnnxExportError, match=r"node 'fc' \(Linear\): delay=1"):
        to_onnx(chain(delay=1))
    with pytest.raises(NIRExportError, match=r"delay=1"):
        to_nir(chain(delay=1))


def test_unscaled_spike_attention_is_an_integer_accumulate_with_proven_width():
    from snncompile.ir import SPIKE, TERNARY, TensorType
    from snncompile.ir.ops import BlockLinearAttention
    spikes = TensorType((8, 4, 4), SPIKE)
    # d = 8 / 2 heads = 4, block 2, N = 16 tokens: Q (K^T V) <= 4 * 2 * 16 = 128 -> 8 unsigned bits
    out = BlockLinearAttention(heads=2, block=2).infer([spikes, spikes, spikes])
    assert str(out.dtype) == "uint8"
    signed = BlockLinearAttention(heads=2, block=2).infer([spikes, spikes, TensorType((8, 4, 4), TERNARY)])
    assert str(signed.dtype) == "int9"
    assert BlockLinearAttention(heads=2, block=2, scale=0.25).infer([spikes] * 3).dtype.kind == "float"


def test_integer_attention_values_fit_the_inferred_width():
    from snncompile.ir.ops import BlockLinearAttention
    ones = torch.ones(4, 1, 8, 4, 4)
    out = BlockLinearAttention(heads=2, block=2).run(ones, ones, ones)
    assert out.max().item() == 128 and torch.equal(out, out.round())


def test_a_deep_chain_listed_consumer_first_orders_without_recursion():
    """A 20,000-node chain listed from its output back to its input (a valid graph a file may hold) orders,
    types and validates: the depth-first walk is iterative."""
    from snncompile.ir.ops import ReLU

    n = 20_000
    nodes = {"out": Node(Output(), (f"r{n - 1}",))}
    for i in reversed(range(n)):
        nodes[f"r{i}"] = Node(ReLU(), (f"r{i - 1}" if i else "x",))
    nodes["x"] = Node(Input(shape=(3,)))
    graph = Graph(nodes=nodes, outputs=("out",), time_steps=2)
    assert graph.topo_order() == ["x", *(f"r{i}" for i in range(n)), "out"]
    assert len(graph.validate().types()) == n + 2

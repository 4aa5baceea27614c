"""Synapses on Lava's own ``Sparse`` where its ``Conv`` or a batched ``Dense`` cannot run them
(``backends/lava/stock.py``): the matrix is the node's linear map on Lava's layout, the plan picks Conv, Dense or
Sparse from the node's exponent, range and size, and Lava runs them bit-exactly; a temporal window restarts."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from snncompile.ir import SPIKE, int_type
from snncompile.ir.ops import Input, IntConv2d, IntDense, LoihiLIF, Output, TemporalWindow
from snncompile.sim import run_graph

pytest.importorskip("lava.magma")

from snncompile.backends.lava.mapping import plan_lava  # noqa: E402
from snncompile.backends.lava.models import to_lava  # noqa: E402
from snncompile.backends.lava.runner import run_lava_session  # noqa: E402
from snncompile.backends.lava.stock import MAX_KRON_ELEMENTS, lava_matrix  # noqa: E402
from test_lava_backend import B, _feeds, _graph, assert_equal  # noqa: E402


def sparse_graph():
    """Synapses Lava's Conv cannot run (a floor shift of the sums) and a dense layer on a ``[C, H, W]`` value."""
    rng = np.random.default_rng(7)
    even = lambda *shape: 2 * rng.integers(-128, 128, shape)  # noqa: E731 -- weights Lava keeps
    unity = dict(current_decay=4096, voltage_decay=1024)
    nodes = {
        "x": (Input(shape=(2, 5, 5), dtype=SPIKE),),
        "sconv": (IntConv2d(weight=even(4, 2, 3, 3), padding=(1, 1), stride=(2, 2), weight_exp=-3, out_bits=16), "x"),
        # graded input (sconv's sums), grouped, dilated
        "gconv": (IntConv2d(weight=2 * rng.integers(-8, 9, (4, 2, 2, 2)), padding=(1, 1), groups=2, dilation=(2, 2),
                            weight_exp=-2, out_bits=16), "sconv"),
        "pconv": (IntConv2d(weight=even(2, 2, 3, 3), padding=(1, 1), weight_exp=1, out_bits=16), "x"),
        "lif": (LoihiLIF(vth=20, **unity), "sconv"),
        "lif2": (LoihiLIF(vth=30, **unity), "gconv"),
        "tdense": (IntDense(weight=even(2, 3), weight_exp=-1, out_bits=12), "lif2"),  # on the last axis of [C, H, W]
        "lif3": (LoihiLIF(vth=1, **unity), "tdense"),
        "lif4": (LoihiLIF(vth=40, **unity), "pconv"),
        "o1": (Output(), "lif"), "o3": (Output(), "lif3"), "o4": (Output(), "lif4"),
    }
    return _graph(nodes, ("o1", "o3", "o4"))


@pytest.mark.parametrize("name", ["sconv", "gconv", "pconv", "tdense"])
def test_the_sparse_matrix_is_the_synapse_on_lavas_layout(name):
    graph = sparse_graph()
    types, op = graph.types(), graph.op(name)
    src = graph.nodes[name].inputs[0]
    in_shape, out_shape = tuple(types[src].shape), tuple(types[name].shape)
    x = torch.randint(-60, 60, (1, B, *in_shape))
    acc = dataclasses.replace(op, weight_exp=0, out_bits=32, delay=0).run(x)[0]  # the sums before the shift
    matrix = lava_matrix(op, in_shape, out_shape, B)
    assert matrix.dtype == np.int32 and matrix.shape == (B * acc[0].numel(), B * x[0, 0].numel())
    got = matrix @ to_lava(x[0].numpy(), in_shape).reshape(-1).astype(np.int64)
    assert np.array_equal(got, to_lava(acc.numpy(), out_shape).reshape(-1))


def test_the_plan_takes_conv_dense_or_sparse_by_exponent_range_and_size():
    plan = plan_lava(sparse_graph(), granularity="per_op", batch=B)
    assert {n: plan.stock.get(n) for n in ("sconv", "gconv", "pconv", "tdense")} == {
        "sconv": "Sparse", "gconv": "Sparse", "pconv": "Conv", "tdense": "Sparse"}
    # a dense layer on tokens is Lava's Dense while its batched block-diagonal matrix stays small, else Sparse
    tokens = _graph({"x": (Input(shape=(16, 8), dtype=SPIKE),), "d": (IntDense(weight=np.full((8, 8), 2)), "x"),
                     "n": (LoihiLIF(vth=3, current_decay=4096, voltage_decay=0), "d"), "y": (Output(), "n")}, ("y",))
    big = int(np.sqrt(MAX_KRON_ELEMENTS / 64) / 16) + 1  # the smallest batch past the limit
    assert [plan_lava(tokens, granularity="per_op", batch=b).stock["d"] for b in (1, big)] == ["Dense", "Sparse"]
    # a range the node's out_bits would wrap stays custom where its value is read; else its sums split from the
    # wrap (synapse_finish)
    wraps = dataclasses.replace(sparse_graph().op("sconv"), out_bits=8)
    graph = dataclasses.replace(sparse_graph(), nodes={**sparse_graph().nodes, "sconv": dataclasses.replace(
        sparse_graph().nodes["sconv"], op=wraps)})
    plan = plan_lava(graph, granularity="per_op", expose=["sconv"])
    assert "sconv" not in plan.stock and plan.stock["gconv"] == "Sparse"
    plan = plan_lava(graph, granularity="per_op")
    assert plan.stock["sconv"] == "Sparse" and plan.graph.op("sconv").out_bits == 9  # its proven range: -166..206
    assert (plan.graph.op("sconv.finish").out_bits, plan.graph.op("sconv.finish").overflow) == (8, "wrap")


def test_a_restarted_temporal_window_forgets_what_came_before():
    x = torch.tensor([3, 1, 2, 5]).reshape(4, 1).float()
    window = TemporalWindow(weights=np.array([4, 2, 1]))
    assert window.run(x).flatten().tolist() == [12, 10, 13, 25]
    assert window.restarted(2).run(x).flatten().tolist() == [0, 0, 8, 24]  # x[0], x[1] count as zero
    assert window.restarted(2).problems() == [] and TemporalWindow(weights=np.array([1]), start=-1).problems()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sparse_synapses_run_bit_exactly_on_lava():
    graph = sparse_graph()
    feeds = _feeds(graph, 4)
    run = run_lava_session(graph, feeds, granularity="per_op", expose="all", timeout=500)
    assert [n for n in run.plan.chip if run.plan.stock.get(n) == "Sparse"] == ["sconv", "gconv", "tdense"]
    ref = run_graph(graph, feeds, keep="all")
    assert_equal(run.values, ref)
    assert all(ref[n].sum() > 0 for n in ("lif", "lif2", "lif3", "lif4"))  # not only silence

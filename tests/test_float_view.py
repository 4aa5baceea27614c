"""float_view: the quantised-float counterpart of an integer graph (same names, real units, float nodes)."""
import dataclasses

import numpy as np
import pytest
import torch

from snncompile.ir import SPIKE, Node
from snncompile.ir.io import graph_digest
from snncompile.ir.ops import LIF, Conv2d, Input, Linear, Output, Scale, TokenMean
from snncompile.passes.quantize import quantize
from snncompile.sim import run_graph
from test_quantize import dense_lif, graph_of, lowered, plan, spikes


def test_float_view_keeps_names_and_fires_with_the_integer_neuron():
    rng = np.random.default_rng(7)
    g = dense_lif(rng.normal(0, 1.0, (16, 12)).astype(np.float32), rng.normal(0.3, 0.3, 16).astype(np.float32))
    q = lowered(g)
    view = quantize.float_view(q)
    assert set(q.nodes) <= set(view.nodes)
    assert isinstance(view.op("fc"), Linear) and isinstance(view.op("lif"), LIF)
    step = plan(q)["synapses"]["fc"]["scale"] * 2.0 ** q.op("fc").weight_exp
    assert np.allclose(view.op("fc").weight, q.op("fc").weight * step, rtol=1e-6)
    threshold = plan(q)["neurons"]["lif"]["input_scale"] * (q.op("lif").vth + 1 / 64)
    assert abs(view.op("lif").v_threshold - threshold) <= 1e-6 * threshold
    x = spikes(n=12, b=512)
    a, b = run_graph(view, {"x": x})["out"], run_graph(q, {"x": x})["out"]
    assert (a == b).double().mean() > 0.999  # only float rounding separates them here (4 steps, no shifts)


def test_the_scales_are_a_field_of_the_quantised_graph():
    rng = np.random.default_rng(7)
    g = dense_lif(rng.normal(0, 1.0, (16, 12)).astype(np.float32), rng.normal(0.3, 0.3, 16).astype(np.float32))
    q = lowered(g)
    assert q.scales == plan(q)["scales"] and q.scales["fc"] == plan(q)["synapses"]["fc"]["scale"]
    bare = dataclasses.replace(q, history=())  # provenance gone: the scales stay
    assert graph_digest(quantize.float_view(bare)) == graph_digest(quantize.float_view(q))
    assert quantize.float_view(q).scales is None  # its values are real
    align = quantize.align(g, q)  # the membrane in 1/64 steps of the neuron's input
    assert align.scale == q.scales
    assert align.membrane_scale == {"lif": plan(q)["neurons"]["lif"]["input_scale"] / 64}
    with pytest.raises(ValueError, match="float_view takes a quantised graph"):
        quantize.float_view(dataclasses.replace(q, scales=None))


def test_integer_effects_show_between_float_view_and_integer():
    """A token sum's floored mean and a fraction-limited membrane are integer effects: the float view
    computes the exact mean (TokenMean * N then / N), the integer graph floors it."""
    rng = np.random.default_rng(8)
    g = graph_of({"x": Node(Input(shape=(4, 2, 2), dtype=SPIKE)),
                  "conv": Node(Conv2d(weight=rng.normal(0, 1, (4, 4, 1, 1)).astype(np.float32)), ("x",)),
                  "tok": Node(TokenMean(), ("conv",)), "lif": Node(LIF(), ("tok",)),
                  "out": Node(Output(), ("lif",))})
    q = lowered(g)
    view = quantize.float_view(q)
    assert isinstance(view.op("tok.sum.mean"), TokenMean) and isinstance(view.op("tok"), Scale)
    assert view.op("tok").scale == 0.25 and view.op("tok.sum").scale == 4.0  # mean * 4 / 4
    x = (torch.rand(4, 64, 4, 2, 2) < 0.5).float()
    exact = run_graph(g, {"x": x}, keep="all")["tok"].double()
    in_float = run_graph(view, {"x": x}, keep="all")["tok"].double()
    floored = run_graph(q, {"x": x}, keep="all")["tok"].double() * plan(q)["scales"]["tok"]
    assert not torch.equal(in_float, floored)  # the integer graph floors the mean
    assert (in_float - exact).abs().mean() < (floored - exact).abs().mean()

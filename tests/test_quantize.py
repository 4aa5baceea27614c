"""quantize: the float graph on integers. Exactness of the threshold mapping on hand-built graphs, the
scale rules, explicit saturation, errors; the shipped models end to end (integer accuracy within one
point of float) and the imported Sinabs CNN."""
import math

import numpy as np
import pytest
import torch

from conftest import shared_path
from zoo_lowering import lowered_zoo_model
from snncompile.frontend.nir_import import from_nir
from snncompile.ir import SPIKE, Graph, Node
from snncompile.ir.ops import (LIF, Add, Conv2d, Input, IntAdd, IntDense, IntShift, Linear, LoihiLIF, Output, Repeat,
                               SpikeColumnSum, TimeMean)
from snncompile.passes import (PassContext, PassError, lower_to_loihi, normalize_neurons, prove_ranges, quantize,
                               run_pipeline)
from snncompile.sim import run_graph
from snncompile.sim.dataset import evaluate_graph


def graph_of(nodes: dict, outputs=("out",), time_steps=4) -> Graph:
    return Graph(nodes=nodes, outputs=outputs, time_steps=time_steps).validate()


def lowered(graph: Graph, calibration=None) -> Graph:
    return run_pipeline(graph, [normalize_neurons, quantize], PassContext(calibration=calibration))


def plan(graph: Graph) -> dict:
    return graph.history[-1].options


def spikes(b=256, t=4, n=12, rate=0.4, seed=0) -> torch.Tensor:
    return (torch.rand(t, b, n, generator=torch.Generator().manual_seed(seed)) < rate).float()


def dense_lif(weight: np.ndarray, bias: np.ndarray, threshold=1.0, time_steps=4) -> Graph:
    return graph_of({"x": Node(Input(shape=(weight.shape[1],), dtype=SPIKE)),
                     "fc": Node(Linear(weight=weight, bias=bias), ("x",)),
                     "lif": Node(LIF(v_threshold=threshold), ("fc",)),
                     "out": Node(Output(), ("lif",))}, time_steps=time_steps)


def quantised_float_reference(q: Graph, x: torch.Tensor) -> torch.Tensor:
    """The quantised model in exact real arithmetic: the integer weights times their scale into the
    normalised neuron, h = v/2 + X, fire h >= Θ/s (float64 holds every value exactly here)."""
    dense, neuron = q.op("fc"), q.op("lif")
    scale = plan(q)["synapses"]["fc"]["scale"] * 2.0 ** dense.weight_exp
    current = (x.double() @ torch.from_numpy(dense.weight.astype(np.float64)).T * scale
               + torch.from_numpy(dense.bias.astype(np.float64)) * plan(q)["synapses"]["fc"]["scale"])
    ratio = plan(q)["neurons"]["lif"]["threshold_ratio"]
    theta = ratio * plan(q)["neurons"]["lif"]["input_scale"]
    assert neuron.vth == math.floor(ratio)
    v, out = torch.zeros_like(current[0]), []
    for xt in current:
        h = v / 2 + xt
        s = h >= theta
        v = torch.where(s, torch.zeros_like(h), h)
        out.append(s.float())
    return torch.stack(out)


@pytest.mark.parametrize("threshold", [1.0, 0.5, 0.37])
def test_integer_neuron_equals_the_quantised_model_exactly(threshold):
    """Θ'/s sits 1/128 above the integer vth: Lava's strict `v > vth << 6` is then exactly the float
    neuron's `>=` on the quantised inputs (4 steps: every halving fits the 6 fraction bits)."""
    rng = np.random.default_rng(1)
    g = dense_lif(rng.normal(0, 1.0, (16, 12)).astype(np.float32), rng.normal(0.3, 0.3, 16).astype(np.float32),
                  threshold)
    q = lowered(g)
    assert isinstance(q.op("fc"), IntDense) and isinstance(q.op("lif"), LoihiLIF)
    assert q.op("lif").voltage_decay == 2048 and q.op("lif").current_decay == 4096
    assert plan(q)["neurons"]["lif"]["threshold_exact"]
    x = spikes(n=12)
    fired = run_graph(q, {"x": x})["out"]
    assert torch.equal(fired, quantised_float_reference(q, x))
    assert 0.05 < fired.mean() < 0.95  # the comparison is exercised


def test_weights_are_lava_even_8_bit_and_keep_their_precision():
    rng = np.random.default_rng(2)
    w = rng.normal(0, 1, (16, 12)).astype(np.float32)
    q = lowered(dense_lif(w, np.zeros(16, np.float32)))
    iw = q.op("fc").weight
    assert iw.dtype == np.int32 and (iw % 2 == 0).all() and iw.min() >= -256 and iw.max() <= 254
    assert np.abs(iw).max() >= 200  # the full 8-bit range is used
    step = plan(q)["synapses"]["fc"]["scale"] * 2.0 ** q.op("fc").weight_exp
    assert np.abs(w - iw * step).max() <= step + 1e-9  # within one (even) step


@pytest.mark.parametrize("time_steps", [4, 8])
def test_integer_counts_get_fraction_bits_and_fire_exactly(time_steps):
    """A fixed-scale input (SDSA popcounts, θ=0.5): shifted by T-1 bits, the integer neuron equals the
    float one on every step."""
    g = graph_of({"k": Node(Input(shape=(8, 2, 2), dtype=SPIKE)), "v": Node(Input(shape=(8, 2, 2), dtype=SPIKE)),
                  "sum": Node(SpikeColumnSum(heads=2), ("k", "v")),
                  "lif": Node(LIF(v_threshold=0.5), ("sum",)), "out": Node(Output(), ("lif",))},
                 time_steps=time_steps)
    q = lowered(g)
    assert isinstance(q.op("lif.shift"), IntShift) and q.op("lif.shift").shift == time_steps - 1
    assert q.op("lif").vth == 2 ** (time_steps - 1) - 1
    gen = torch.Generator().manual_seed(3)
    feeds = {n: (torch.rand(time_steps, 64, 8, 2, 2, generator=gen) < 0.15).float() for n in ("k", "v")}
    reference = run_graph(run_pipeline(g, [normalize_neurons]), feeds)["out"]
    assert torch.equal(run_graph(q, feeds)["out"], reference)
    assert 0.05 < reference.mean() < 0.95


def test_static_image_is_convolved_once_then_repeated():
    rng = np.random.default_rng(4)
    g = graph_of({"img": Node(Input(shape=(1, 6, 6), time="static")),
                  "rep": Node(Repeat(time_steps=4), ("img",)),
                  "conv": Node(Conv2d(weight=rng.normal(0, 1, (4, 1, 3, 3)).astype(np.float32), padding=(1, 1)),
                               ("rep",)),
                  "lif": Node(LIF(), ("conv",)), "out": Node(Output(), ("lif",))})
    q = lowered(g)
    types = q.types()
    assert types["conv.host"].time == "static" and types["conv.quant"].time == "static"
    assert isinstance(q.op("conv"), Repeat) and isinstance(q.op("lif"), LoihiLIF) and "rep" not in q.nodes
    x = torch.rand(32, 1, 6, 6)
    a = run_graph(run_pipeline(g, [normalize_neurons]), {"img": x})["out"]
    b = run_graph(q, {"img": x})["out"]
    assert (a == b).double().mean() > 0.995


def test_a_residual_sum_shares_one_scale():
    rng = np.random.default_rng(5)
    w = lambda: rng.normal(0, 1, (6, 6)).astype(np.float32)  # noqa: E731
    g = graph_of({"x": Node(Input(shape=(6,), dtype=SPIKE)),
                  "a": Node(Linear(weight=w()), ("x",)), "b": Node(Linear(weight=w() * 5), ("x",)),
                  "sum": Node(Add(), ("a", "b")), "lif": Node(LIF(), ("sum",)), "out": Node(Output(), ("lif",))})
    q = lowered(g)
    synapses = plan(q)["synapses"]
    assert isinstance(q.op("sum"), IntAdd)
    assert synapses["a"]["scale"] == synapses["b"]["scale"] == plan(q)["scales"]["sum"]
    assert q.op("b").weight_exp > q.op("a").weight_exp  # larger weights share the scale through an exponent


def test_real_valued_stream_input_needs_calibration():
    g = graph_of({"x": Node(Input(shape=(3,))), "fc": Node(Linear(weight=np.ones((2, 3), np.float32)), ("x",)),
                  "lif": Node(LIF(), ("fc",)), "out": Node(Output(), ("lif",))})
    with pytest.raises(PassError, match=r"input 'x' carries real values: quantising it needs calibration data"):
        lowered(g)
    counts = torch.randint(0, 5, (4, 8, 3)).float()
    q = lowered(g, {"x": counts})
    assert plan(q)["inputs"]["x"]["scale"] == 1.0 and plan(q)["inputs"]["x"]["integral"]
    real = torch.rand(4, 8, 3)
    assert plan(lowered(g, {"x": real}))["inputs"]["x"]["scale"] == pytest.approx(float(real.max()) / 32767)


def test_unnormalised_neuron_is_named():
    g = dense_lif(np.ones((2, 3), np.float32), np.zeros(2, np.float32))
    with pytest.raises(PassError, match=r"neuron 'lif' is not in normalised CUBA form"):
        run_pipeline(g, [quantize])


def test_a_neuron_normalize_neurons_kept_is_refused_with_its_reason():
    # snnTorch-style file: lif1 has v_leak 1.2 (the IR's v_rest), which Loihi's neuron cannot express
    graph = from_nir(shared_path("data", "nir", "two_lif_neurons.nir"), time_steps=4, dt=1e-4)
    with pytest.raises(PassError, match=r"neuron 'lif1' \(LIF\) cannot take Loihi's CUBA form: v_rest=1\.2 "
                                        r"\(NIR's v_leak\) must be 0: the CUBA neuron has no resting potential"):
        lower_to_loihi(graph, {"in": spikes(n=1)})


def test_a_scale_on_a_real_value_names_the_node_and_its_input():
    # Rockpool's LIF has r = 24.02: the importer puts a Scale between the Linear and the neuron
    graph = from_nir(shared_path("data", "nir", "lif_rockpool.nir"), time_steps=4, dt=1e-4)
    with pytest.raises(PassError, match=r"node '1_LIFNeuronTorch\.r' \(Scale by 24\.0197\) on the float output of "
                                        r"'0_LinearTorch' \(Linear\): only one constant factor behind an integer "
                                        r"result can be folded"):
        lower_to_loihi(graph, {"input": spikes(n=1)})


def test_unprovable_neuron_input_gets_an_explicit_clamp():
    """Worst-case sums of 1200 inputs leave 2^17: the neuron input is saturated, reported, and proven."""
    w = np.full((4, 1200), 1.0, np.float32)
    w[:, ::2] = -1.0
    g = graph_of({"x": Node(Input(shape=(1200,), dtype=SPIKE)), "fc": Node(Linear(weight=w), ("x",)),
                  "lif": Node(LIF(), ("fc",)), "out": Node(Output(), ("lif",))})
    q = lowered(g)
    assert isinstance(q.op("lif.clamp"), IntShift) and q.op("lif.clamp").overflow == "saturate"
    assert "lif" in plan(q)["saturating"]
    run_pipeline(q, [prove_ranges])  # the proof now holds


# ------------------------------------------------------------------------------------------------
# end to end: the shipped models and an imported NIR graph
# ------------------------------------------------------------------------------------------------

ZOO = ["statten-digits", "sdsa-digits", "ssa-digits", "a2os2a-digits", "ds2ta-digits", "statten-event-digits",
       "spikformer-a2os2a-digits", "spikformer-ds2ta-digits"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_shipped_model_integer_accuracy_within_one_point(name):
    model = lowered_zoo_model(name, calibration=64)
    graph, integer = model.graph, model.integer
    float_acc = evaluate_graph(graph, model.test, progress=False).accuracy
    int_acc = evaluate_graph(integer, model.test, progress=False).accuracy
    print(f"\n{name}: float {float_acc:.4f} integer {int_acc:.4f} ({integer.time_steps} steps)")
    assert float_acc - int_acc <= 0.01
    assert not any(n.op.type_name() in ("Conv2d", "Linear", "LIF", "Add") for name_, n in integer.nodes.items()
                   if not name_.endswith(".host"))


def test_the_imported_sinabs_cnn_compiles_end_to_end():
    graph = from_nir(shared_path("data", "nir", "cnn_sinabs.nir"), time_steps=4)
    gen = torch.Generator().manual_seed(6)
    frames = lambda n: torch.poisson(torch.full((4, n, 2, 34, 34), 0.3), generator=gen)  # noqa: E731
    integer = lower_to_loihi(graph, {"input": frames(16)})
    assert {"IntConv2d", "IntDense", "LoihiLIF", "SumPool2d"} <= {n.op.type_name() for n in integer.nodes.values()}
    x = frames(16)
    a, b = run_graph(graph, {"input": x}, keep="all"), run_graph(integer, {"input": x}, keep="all")
    latency = integer.history[-1].options["latency"]
    agreement = {n: float((a[n] == b[n][latency[n]:latency[n] + 4]).double().mean()) for n in ("1", "output")}
    # IF neurons integrate every weight-rounding error without leak: the disagreement grows with depth
    assert agreement["1"] > 0.98 and agreement["output"] > 0.9, agreement
    assert plan(run_pipeline(graph, [normalize_neurons, quantize], PassContext(calibration={"input": x})))[
        "inputs"]["input"]["integral"]


def test_biases_take_loihis_mantissa_and_exponent_format():
    """b << 6 = bias_mant << bias_exp: exact below 4096, even up to 8190, saturated beyond."""
    from snncompile.passes.quantize_formats import integer_bias
    b = integer_bias(np.array([3.0, -4095.0, 5001.0, -6000.0, 9000.0, -1e6]), 1.0)
    assert b.tolist() == [3, -4095, 5000, -6000, 8190, -8190]  # 5001 / 2 rounds half to even
    assert all(abs(v) <= 4095 or v % 2 == 0 for v in b)

"""normalize_neurons: SpikingJelly LIF / PLIF / ternary neurons rewritten into the current-free CUBA form,
on hand-built single-neuron graphs with hand-computed spike trains, on random inputs (spike mismatches
counted), and on the six shipped zoo models with real test samples.

The measuring tests print their figures; run with ``-s`` (or ``-rP``) to see them.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import snncompile
from snncompile.data import load_dataset
from snncompile.frontend import export
from snncompile.ir import Graph, Node, run_graph
from snncompile.ir import io as ir_io
from snncompile.ir.ops import LI, LIF, CubaLIF, Input, Output, TernaryLIF
from snncompile.passes import PassContext, PassError, fold_batchnorm, run_pipeline
from snncompile.passes.normalize_neurons import normalize_blocker, normalize_neurons
from snncompile.zoo.registry import list_entries

CTX = PassContext()
ULP_1_2 = 2.0 ** -23  # float32 spacing in [1, 2)


def below(x: float) -> float:
    """The float32 just below ``x``: the strict threshold that fires exactly where ``>= x`` does."""
    return float(np.nextafter(np.float32(x), np.float32(-np.inf)))


def neuron_graph(op, shape=(1,), time_steps=4) -> Graph:
    return Graph({"x": Node(Input(shape=shape)), "n": Node(op, ("x",)), "y": Node(Output(), ("n",))}, ("y",),
                 time_steps=time_steps)


def spikes_and_membranes(graph: Graph, inputs) -> tuple[list[float], list[float]]:
    """Spike train and post-reset membranes of the single neuron ``n`` fed the sequence ``inputs``."""
    x = torch.tensor(inputs, dtype=torch.float32).reshape(len(inputs), 1, 1)
    assert torch.equal(run_graph(graph, {"x": x})["y"], graph.op("n").run(x))  # the graph runs the node
    s, v = graph.op("n").simulate(x)
    return s.flatten().tolist(), v.flatten().tolist()


def normalized_pair(op, inputs) -> tuple[tuple[list, list], tuple[list, list], Graph]:
    graph = neuron_graph(op, time_steps=len(inputs))
    out = normalize_neurons(graph, CTX)
    assert out is not graph
    return spikes_and_membranes(graph, inputs), spikes_and_membranes(out, inputs), out


# ------------------------------------------------------------------------------------------------
# hand-computed single neurons
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("inputs, spikes", [
    ([2.0], [1.0]),                         # H = 1 >= 1; h = 2 >= 2: fires on equality in both forms
    ([1.9], [0.0]),
    ([1.0, 1.5, 0.5, 3.0], [0, 1, 0, 1]),   # H = 0.5, 1.0 (equality), 0.25, 1.625
])
def test_lif_tau2_theta1_hand_computed(inputs, spikes):
    (s, v), (s2, v2), out = normalized_pair(LIF(leak=2.0, v_threshold=1.0), inputs)
    op = out.op("n")
    assert (op.decay_input, op.threshold_cmp, op.reset, op.v_rest, op.v_reset) == (False, ">", "hard", 0.0, 0.0)
    assert op.v_threshold == below(2.0) == 2.0 - ULP_1_2 and op.leak == 2.0
    assert s == s2 == [float(b) for b in spikes]
    assert v2 == [2 * m for m in v]  # dyadic inputs: v = tau V exactly


def test_lif_tau2_theta_half_hand_computed():
    # H = 0.25, 0.625 (fires), 0.125, 0.5 (equality); h = 0.5, 1.25, 0.25, 1.0 against 1.0
    (s, v), (s2, v2), out = normalized_pair(LIF(leak=2.0, v_threshold=0.5), [0.5, 1.0, 0.25, 0.875])
    assert out.op("n").v_threshold == below(1.0)
    assert s == s2 == [0.0, 1.0, 0.0, 1.0]
    assert v2 == [2 * m for m in v] == [0.5, 0.0, 0.25, 0.0]


def test_plif_rate_0_3_hand_computed():
    # H = 0.6, 0.6 + 1.4 * 0.3 = 1.02 (fires), 0.6; h = 2, 3.4 (>= 1 / 0.3), 2; single steps 4.0 / 3.0
    (s, v), (s2, v2), out = normalized_pair(LIF(leak=0.3, leak_encoding="multiply_by_rate"), [2.0, 2.0, 2.0, 4.0])
    assert s == s2 == [0.0, 1.0, 0.0, 1.0]
    rate = np.float64(np.float32(0.3))
    assert out.op("n").v_threshold == below(np.float32(1.0 / rate))  # 3.3333333, one step below
    assert out.op("n").leak == 0.3 and out.op("n").leak_encoding == "multiply_by_rate"
    np.testing.assert_allclose(v2, np.array(v) / rate, rtol=1e-6)
    (s, _), (s2, _), _ = normalized_pair(LIF(leak=0.3, leak_encoding="multiply_by_rate"), [3.0])
    assert s == s2 == [0.0]  # H = 0.9, h = 3


def test_plif_rate_quarter_fires_on_equality():
    # H = 4 * 0.25 = 1 >= 1 and h = 4 >= 4, both exact
    (s, _), (s2, _), out = normalized_pair(LIF(leak=0.25, leak_encoding="multiply_by_rate"), [4.0, 3.0])
    assert out.op("n").v_threshold == below(4.0)
    assert s == s2 == [1.0, 0.0]


def test_ternary_hand_computed():
    # H = -1 (-1 on equality), 0.5, -0.5, -1 (-1 on equality), 0.95, 0.975; h = 2 H before each reset
    inputs = [-2.0, 1.0, -1.5, -1.5, 1.9, 1.0]
    (s, v), (s2, v2), out = normalized_pair(TernaryLIF(leak=2.0, v_threshold=1.0), inputs)
    assert type(out.op("n")) is TernaryLIF and out.op("n").v_threshold == below(2.0)
    assert s == s2 == [-1.0, 0.0, 0.0, -1.0, 0.0, 0.0]
    assert v2[:4] == [2 * m for m in v[:4]] == [0.0, 1.0, -1.0, 0.0]
    (s, _), (s2, _), _ = normalized_pair(TernaryLIF(leak=2.0, v_threshold=1.0), [2.0, -1.9])
    assert s == s2 == [1.0, 0.0]


def test_a_membrane_within_an_ulp_of_the_threshold_can_fire_differently():
    """The documented inexactness: one rounding (``fl(v/2 + X)``) against SpikingJelly's two."""
    inputs = [2.0 ** -23, 2.0 - 2.0 ** -23]
    (s, v), (s2, v2), _ = normalized_pair(LIF(leak=2.0, v_threshold=1.0), inputs)
    # SpikingJelly: V = 2^-24, then X - V rounds (tie, to even) to 2 - 2^-22 and H = 1 - 2^-24 < 1
    assert s == [0.0, 0.0] and v[1] == 1.0 - 2.0 ** -24
    # current-free: h = fl(2^-24 + 2 - 2^-23) = 2 (tie, to even) >= 2; the exact value 2 - 2^-24 is not
    assert s2 == [0.0, 1.0]


def test_decay_input_false_and_if_change_only_the_comparison():
    # h = v - v/2 + x = 1 (equality, reset), 0.5, 0.5 - 0.25 + 0.75 = 1 (equality): the same in both forms
    (s, v), (s2, v2), out = normalized_pair(LIF(leak=2.0, decay_input=False), [1.0, 0.5, 0.75])
    assert out.op("n").v_threshold == below(1.0) and out.op("n").leak == 2.0
    assert s == s2 == [1.0, 0.0, 1.0] and v == v2
    (s, v), (s2, v2), out = normalized_pair(LIF(leak_encoding="none", v_threshold=1.0), [0.5, 0.5, 0.75])
    op = out.op("n")
    assert (op.leak_encoding, op.decay_input, op.threshold_cmp, op.v_threshold) == ("none", True, ">", below(1.0))
    assert s == s2 == [0.0, 1.0, 0.0] and v == v2 == [0.5, 0.0, 0.75]


def test_a_strict_node_keeps_its_scaled_threshold():
    (s, _), (s2, _), out = normalized_pair(LIF(leak=2.0, threshold_cmp=">"), [2.0, 2.5])
    assert out.op("n").v_threshold == 2.0  # tau * theta, no predecessor: the comparison was strict already
    assert s == s2 == [0.0, 1.0]  # H = 1 is not > 1; then H = 0.5 + 1 = 1.5


def test_per_neuron_thresholds_and_leaks_are_rescaled_element_wise():
    theta = np.array([1.0, 0.5, 2.0, 0.3], np.float32)
    tau = np.array([2.0, 4.0, 1.5, 1.7], np.float32)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(8, 2000, 4, generator=g) * 2
    for op, scale in [(LIF(v_threshold=theta, leak=tau), tau.astype(np.float64)),
                      (LIF(v_threshold=theta, leak=1 / tau, leak_encoding="multiply_by_rate"),
                       1 / (1 / tau).astype(np.float32).astype(np.float64)),
                      (LIF(v_threshold=1.0, leak=tau), tau.astype(np.float64))]:
        out = normalize_neurons(neuron_graph(op, shape=(4,)), CTX).op("n")
        expected = np.nextafter((scale * np.asarray(op.v_threshold, np.float64)).astype(np.float32),
                                np.float32(-np.inf))
        assert isinstance(out.v_threshold, np.ndarray) and out.v_threshold.dtype == np.float32
        np.testing.assert_array_equal(out.v_threshold, expected)
        assert torch.equal(op.run(x), out.run(x))


# ------------------------------------------------------------------------------------------------
# random inputs: how often the two forms disagree
# ------------------------------------------------------------------------------------------------

RANDOM_CASES = {
    "lif tau 2 theta 1": LIF(leak=2.0, v_threshold=1.0),
    "lif tau 2 theta 0.5": LIF(leak=2.0, v_threshold=0.5),
    "lif tau 1.7 theta 1": LIF(leak=1.7, v_threshold=1.0),
    "plif rate 0.3": LIF(leak=0.3, leak_encoding="multiply_by_rate", v_threshold=1.0),
    "ternary tau 2 theta 1": TernaryLIF(leak=2.0, v_threshold=1.0),
}


@pytest.mark.parametrize("case", RANDOM_CASES)
def test_random_inputs_rarely_change_a_spike(case):
    op = RANDOM_CASES[case]
    new = normalize_neurons(neuron_graph(op), CTX).op("n")
    g = torch.Generator().manual_seed(0)
    theta = op.v_threshold
    # 1,000,000 neuron-steps, T = 8: inputs spread around the threshold (both signs for the ternary neuron)
    x = torch.rand(8, 125_000, generator=g) * 2 * theta
    if isinstance(op, TernaryLIF):
        x = 2 * x - 2 * theta
    (s, v), (s2, v2) = op.simulate(x), new.simulate(x)
    mismatches = int((s != s2).sum())
    agree = (s == s2).all(0)
    leak = np.float64(np.float32(op.leak))  # the float32 value the node computes with
    scale = 1 / leak if op.leak_encoding == "multiply_by_rate" else leak
    drift = (v2.double() - scale * v.double())[:, agree].abs().max().item()
    print(f"\n{case}: {mismatches} mismatches in {s.numel()} neuron-steps, rate {s.abs().mean().item():.3f}, "
          f"membrane drift {drift / ULP_1_2:.2f} x 2^-23")
    assert s.abs().mean() > 0.05  # the inputs do reach the threshold
    assert mismatches / s.numel() <= 1e-5  # measured: 0
    assert drift <= 8 * ULP_1_2  # measured: at most 6.34 x 2^-23 (PLIF 0.3)


# ------------------------------------------------------------------------------------------------
# report, nodes left alone, idempotence, pipeline
# ------------------------------------------------------------------------------------------------

def mixed_graph() -> Graph:
    nodes = {"x": Node(Input(shape=(3,))),
             "lif": Node(LIF(leak=2.0, v_threshold=0.5), ("x",)),
             "plif": Node(LIF(leak=0.25, leak_encoding="multiply_by_rate", v_threshold=np.array([1.0, 2.0, 0.5],
                                                                                                np.float32)), ("x",)),
             "sub": Node(LIF(reset="subtract"), ("x",)),
             "rest": Node(LIF(v_rest=0.5, v_reset=0.5), ("x",)),
             "dead": Node(LIF(leak=0.0, leak_encoding="multiply_by_rate"), ("x",)),
             "huge": Node(LIF(leak=4.0, v_threshold=1e38), ("x",)),
             "li": Node(LI(), ("x",)),
             "cuba": Node(CubaLIF(**{k: np.full(3, v, np.float32) for k, v in dict(
                 tau_syn=2.0, tau_mem=2.0, r=1.0, v_leak=0.0, v_threshold=1.0, v_reset=0.0, w_in=1.0).items()}),
                 ("x",))}
    outputs = [n for n in nodes if n != "x"]
    nodes.update({f"y_{n}": Node(Output(), (n,)) for n in outputs})
    return Graph(nodes, tuple(f"y_{n}" for n in outputs), time_steps=4)


def test_report_lists_what_was_normalized_and_what_was_kept(tmp_path):
    graph = mixed_graph()
    out = run_pipeline(graph, [normalize_neurons], CTX)
    report = out.history[0].options
    assert report == {
        "normalized": {
            "lif": {"from": "divide_by_tau, decay_input=True, threshold_cmp '>='", "membrane_scale": 2.0,
                    "threshold_before": 0.5, "threshold": below(1.0)},
            "plif": {"from": "multiply_by_rate, decay_input=True, threshold_cmp '>='", "membrane_scale": 4.0,
                     "threshold_before": {"min": 0.5, "max": 2.0, "neurons": 3},
                     "threshold": {"min": below(2.0), "max": below(8.0), "neurons": 3}}},
        "kept": {
            "sub": "reset 'subtract' must be 'hard': the CUBA neuron resets to 0, it does not subtract the threshold",
            "rest": "v_rest=0.5 (NIR's v_leak) must be 0: the CUBA neuron has no resting potential, it decays to 0",
            "dead": "rate 0 with decay_input: the input never reaches the membrane, so no rescaling exists",
            "huge": "the rescaled threshold is not finite in float32"}}
    json.dumps(report)
    for name in ("sub", "rest", "dead", "huge", "li", "cuba"):
        assert out.op(name) is graph.op(name)
    assert normalize_blocker(graph.op("lif")) is None
    assert normalize_blocker(LIF(v_reset=0.5)) == "v_reset=0.5 must be 0: the CUBA neuron resets to 0"
    loaded = ir_io.load(ir_io.save(out, tmp_path / "normalized.snnir"))
    assert loaded.history == out.history  # the report round-trips through .snnir


def test_idempotent_and_returns_its_input_when_nothing_changes():
    graph = mixed_graph()
    once = normalize_neurons(graph, CTX)
    assert once is not graph and normalize_neurons(once, CTX) is once
    assert all(once.op(n) is graph.op(n) for n in graph.nodes if n not in ("lif", "plif"))
    twice = run_pipeline(graph, [normalize_neurons, normalize_neurons], PassContext())
    assert twice.history[1].options["normalized"] == {}
    assert twice.history[1].options["kept"] == twice.history[0].options["kept"]
    left_alone = neuron_graph(LIF(reset="subtract"))
    assert normalize_neurons(left_alone, CTX) is left_alone


def test_takes_no_options():
    with pytest.raises(PassError, match="normalize_neurons takes no options"):
        run_pipeline(mixed_graph(), [normalize_neurons], PassContext(options={"normalize_neurons": {"x": 1}}))


# ------------------------------------------------------------------------------------------------
# the six shipped zoo models, with real test samples
# ------------------------------------------------------------------------------------------------

SHIPPED = [e for e in list_entries() if e.checkpoint is not None and e.model.backbone == "sdt"]  # LIF backbones
SAMPLES = 96


def feeds(graph: Graph, x: torch.Tensor) -> dict:
    (name,) = graph.inputs()
    return {name: x if graph.op(name).time == "static" else x.transpose(0, 1).contiguous()}


def test_six_models_are_shipped():
    assert len([e for e in SHIPPED if e.model.backbone == "sdt"]) == 6  # other backbones ship their own


@pytest.mark.parametrize("entry", SHIPPED, ids=lambda e: e.name)
def test_shipped_zoo_model_spikes_survive_normalization(entry):
    graph = export(snncompile.load_checkpoint(entry.checkpoint).model)
    test = load_dataset(entry.data, entry.model, "test")
    x = torch.stack([test[i][0] for i in range(SAMPLES)])
    folded = run_pipeline(graph, [fold_batchnorm], CTX)
    out = run_pipeline(graph, [fold_batchnorm, normalize_neurons], CTX)
    neurons = [n for n, node in folded.nodes.items() if type(node.op) in (LIF, TernaryLIF)]
    report = out.history[-1].options
    assert report["kept"] == {} and sorted(report["normalized"]) == sorted(neurons)
    assert all(out.op(n).threshold_cmp == ">" and not out.op(n).decay_input for n in neurons)
    a, b = run_graph(folded, feeds(folded, x), keep="all"), run_graph(out, feeds(out, x), keep="all")
    same = sum(int((a[n] == b[n]).sum()) for n in neurons)
    total = sum(a[n].numel() for n in neurons)
    la, lb = a[folded.outputs[0]], b[out.outputs[0]]
    predictions = (la.argmax(-1) == lb.argmax(-1)).double().mean().item()
    print(f"\n{entry.name}: {len(neurons)} neuron nodes, {SAMPLES} samples, spike agreement {same / total:.6f} "
          f"({total - same} of {total} differ), prediction agreement {predictions:.4f}")
    assert same / total >= 0.999
    assert predictions == 1.0

"""NIR graphs written by the frameworks' own exporters (snnTorch, Norse, Sinabs, Rockpool), imported under their
convention (``from_nir(convention=...)``) and compared with the framework's own simulation; then lowered to
integers (agreement measured, as ``snncompile verify`` reports it) and run on Lava (equal to the reference
simulator). The agreement figures asserted here are the ones docs/nir.md reports per framework. A framework
that is not installed skips its tests (Sinabs and Rockpool are test-only dependencies)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from snncompile.frontend.nir_import import NIRImportError, from_nir
from snncompile.ir import run_graph
from snncompile.ir.timing import unschedule
from snncompile.passes import PassError, lower_to_loihi

T, B = 16, 32


def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a == b).double().mean())


def _events(shape, rate=0.3, seed=0, scale=1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((T, B, *shape), generator=g) < rate).float() * scale


def _integer(graph, x, name: str):
    """The graph lowered to integers (calibrated on the first half of ``x``) and its unscheduled outputs."""
    lowered = lower_to_loihi(graph, {name: x[:, :B // 2]}, target="loihi2")
    return lowered, run_graph(unschedule(lowered), {name: x}, keep="all")


def _within_what_verify_explains(graph, x, name: str, found: dict[str, float]) -> None:
    """Each layer's float -> integer disagreement is at most what ``verify`` attributes to the two stages of
    ``quantize`` (quantised float view, then integer arithmetic): disagreements add at most."""
    from snncompile.passes import PIPELINES, PassContext, verify_pipeline
    ctx = PassContext(calibration={name: x[:, :B // 2]}, target="loihi2")
    report = verify_pipeline(graph, PIPELINES["loihi"], ctx, {name: x}, torch.zeros(B, dtype=torch.long))
    stages = {stage.pass_name: {n.name: n.cumulative for n in stage.nodes} for stage in report.stages}
    for layer, agreement in found.items():
        explained = sum(1 - stages[s][layer].agreement for s in ("quantize (float view)", "quantize"))
        assert 1 - agreement <= explained + 1e-12


def _lava_equals_reference(lowered, x, name: str) -> None:
    from snncompile.backends.protocol import get_backend
    got = get_backend("lava", granularity="fused", timeout=300).run(lowered, {name: x[:, :2]})
    ref = run_graph(lowered, {name: x[:, :2]})
    for out in lowered.outputs:
        assert torch.equal(got[out].double(), ref[out].double()), out


# -- snnTorch 1.0.0 -------------------------------------------------------------------------------------------------

def _snntorch_export(net, shape):
    from snntorch.export_nir import export_to_nir
    return export_to_nir(net, torch.zeros(1, *((shape,) if isinstance(shape, int) else shape)), ignore_dims=[0])


def _snntorch_mlp(neuron, **kw):
    import snntorch as snn
    torch.manual_seed(0)
    sizes = [(12, 32), (32, 6)]
    layers = []
    for i, (n_in, n_out) in enumerate(sizes):
        layers += [torch.nn.Linear(n_in, n_out), neuron(snn, n_out, output=i == len(sizes) - 1, **kw)]
    return torch.nn.Sequential(*layers)


def _leaky(snn, n, output, **kw):
    return snn.Leaky(beta=torch.full((n,), 0.875), threshold=torch.ones(n), init_hidden=True, output=output, **kw)


def _synaptic(snn, n, output, **kw):
    return snn.Synaptic(alpha=torch.full((n,), 0.75), beta=torch.full((n,), 0.875), threshold=torch.ones(n),
                        init_hidden=True, output=output, **kw)


def _last(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("neuron,kw,convention,least", [
    (_leaky, {"reset_mechanism": "zero"}, "spec", 1.0),           # hard reset: the IR's rule
    # snnTorch subtracts again on the next step while the membrane stays above the threshold (both its forms), the
    # delayed default one step late: the IR subtracts once, at once
    (_leaky, {"reset_delay": False}, "snntorch", 0.95),
    (_leaky, {}, "snntorch", 0.95),
    (_synaptic, {"reset_mechanism": "zero", "reset_delay": False}, "spec", 1.0),  # CubaLIF, hard reset
    (_synaptic, {}, "snntorch", 0.95),                             # delayed subtraction: approximated by a reset
])
def test_snntorch_float_agrees(neuron, kw, convention, least):
    pytest.importorskip("snntorch")
    net = _snntorch_mlp(neuron, **kw)
    graph = from_nir(_snntorch_export(net, 12), time_steps=T, dt=1e-4, convention=convention)
    x = _events((12,), scale=3.0)
    ref = _snntorch_spikes(net, x)
    got = run_graph(graph, {"input": x})["output"]
    assert 0.02 < float(got.mean()) < 0.6
    assert _agreement(got, ref) >= least


def _snntorch_spikes(net, x):
    import snntorch.utils as su
    su.reset(net)
    outs = []
    with torch.no_grad():
        for xt in x:
            outs.append(_last(net(xt)))
    return torch.stack(outs)


def test_snntorch_synaptic_lowers_to_loihi_cuba_and_runs_on_lava():
    """snnTorch Synaptic is NIR CubaLIF is Loihi's CUBA neuron: current and voltage decay in the integer graph."""
    pytest.importorskip("snntorch")
    net = _snntorch_mlp(_synaptic, reset_mechanism="zero", reset_delay=False)
    graph = from_nir(_snntorch_export(net, 12), time_steps=T, dt=1e-4)
    x = _events((12,), scale=3.0)
    lowered, got = _integer(graph, x, "input")
    cuba = lowered.op("1")
    assert (cuba.type_name(), cuba.current_decay, cuba.voltage_decay) == ("LoihiLIF", 1024, 512)  # 1-0.75, 1-0.875
    ref = run_graph(graph, {"input": x}, keep="all")
    found = {layer: _agreement(got[layer], ref[layer]) for layer in ("1", "3")}
    assert found["1"] >= 0.995 and found["3"] >= 0.99
    _within_what_verify_explains(graph, x, "input", found)
    _lava_equals_reference(lowered, x, "input")


def test_snntorch_avgpool_flatten_linear_lowers():
    """Conv2d -> Leaky -> AvgPool2d -> Flatten -> Linear as snnTorch exports it: equal to snnTorch in float, and the
    pool's 1/4 (a Scale on the integer sum) fixes the scale the Flatten passes on to the Linear's weights."""
    snn = pytest.importorskip("snntorch")
    torch.manual_seed(0)

    def leaky(shape, **kw):
        return snn.Leaky(beta=torch.full(shape, 0.875), threshold=torch.ones(shape), init_hidden=True,
                         reset_mechanism="zero", **kw)

    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), leaky((4, 8, 8)), torch.nn.AvgPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(64, 10), leaky((10,), output=True))
    with torch.no_grad():
        net[4].weight *= 8  # the default initialisation leaves the output layer nearly silent
    graph = from_nir(_snntorch_export(net, (2, 8, 8)), time_steps=T, dt=1e-4)
    assert [graph.op(n).type_name() for n in ("2.sum", "2", "3", "4")] == ["SumPool2d", "Scale", "Flatten", "Linear"]
    x = _events((2, 8, 8), scale=3.0)
    ref = _snntorch_spikes(net, x)
    got = run_graph(graph, {"input": x}, keep="all")
    assert float(ref.mean()) > 0.02 and torch.equal(got["output"], ref)
    lowered, integer = _integer(graph, x, "input")
    assert lowered.op("4").type_name() == "IntDense" and lowered.scales["2"] == pytest.approx(0.25)
    found = {layer: _agreement(integer[layer], got[layer]) for layer in ("1", "5")}
    assert found["1"] >= 0.995 and found["5"] >= 0.97
    _within_what_verify_explains(graph, x, "input", found)
    _lava_equals_reference(lowered, x, "input")


# -- Norse 1.1.0 ----------------------------------------------------------------------------------------------------

def _norse_export(model, sample):
    import norse.torch as nt
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nt.to_nir(model, sample, dt=1e-3)


def _norse_spikes(model, x):
    state, outs = None, []
    with torch.no_grad():
        for xt in x:
            out, state = model(xt, state)
            outs.append(out)
    return torch.stack(outs)


def test_norse_conv_net_imports_and_lowers():
    """Norse declares no Conv2d input shape and writes Flatten as None: the shapes are inferred (no batch axis)."""
    nt = pytest.importorskip("norse.torch")
    torch.manual_seed(0)
    model = nt.SequentialState(torch.nn.Conv2d(2, 4, 3, padding=1), nt.LIFBoxCell(), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 8 * 8, 10), nt.LIFBoxCell())
    with torch.no_grad():
        model[3].weight *= 40  # the default initialisation leaves the output layer silent
    graph = from_nir(_norse_export(model, torch.zeros(1, 2, 8, 8)), time_steps=T, dt=1e-3, convention="norse")
    assert graph.types()["input"].shape == (2, 8, 8) and graph.op("2").type_name() == "Flatten"
    x = _events((2, 8, 8), scale=30.0)
    ref = _norse_spikes(model, x)
    got = run_graph(graph, {"input": x}, keep="all")
    assert 0.02 < float(ref.mean()) and _agreement(got["output"], ref) == 1.0
    lowered, integer = _integer(graph, x, "input")
    found = {layer: _agreement(integer[layer], got[layer]) for layer in ("1", "4")}
    assert found["1"] >= 0.995 and found["4"] >= 0.96
    _within_what_verify_explains(graph, x, "input", found)
    _lava_equals_reference(lowered, x, "input")


def test_norse_none_module_that_is_no_flatten_is_refused():
    nt = pytest.importorskip("norse.torch")
    model = nt.SequentialState(torch.nn.Conv2d(2, 4, 3, padding=1), nt.LIFBoxCell(), torch.nn.AvgPool2d(2),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 10), nt.LIFBoxCell())
    with pytest.raises(NIRImportError, match="node '2' is empty .* no inferable Flatten"):
        from_nir(_norse_export(model, torch.zeros(1, 2, 8, 8)), time_steps=T, dt=1e-3, convention="norse")


def test_norse_lifcell_with_its_implicit_w_in():
    """Norse's LIFCell adds the input to the current undecayed (w_in = tau_syn/dt, not written to the file)."""
    nt = pytest.importorskip("norse.torch")
    torch.manual_seed(0)
    model = nt.SequentialState(torch.nn.Linear(12, 32), nt.LIFCell(), torch.nn.Linear(32, 6), nt.LIFCell())
    with torch.no_grad():
        model[2].weight *= 4  # the default initialisation leaves the output layer nearly silent
    x = _events((12,), scale=30.0)
    ref = _norse_spikes(model, x)
    found = {}
    for convention in ("norse", "spec"):
        graph = from_nir(_norse_export(model, torch.zeros(1, 12)), time_steps=T, dt=1e-3, convention=convention,
                         norse_tau_bug=True)
        found[convention] = _agreement(run_graph(graph, {"input": x})["output"], ref)
    assert float(ref.mean()) > 0.02 and found["norse"] == 1.0 > found["spec"]


# -- Sinabs 2.0.3 (test-only) ---------------------------------------------------------------------------------------

def _sinabs_spikes(model, x):
    """``x`` ``[T, B, ...]`` through the squeezed layers (batch and time folded into one axis, batch-major)."""
    import sinabs
    sinabs.reset_states(model)
    with torch.no_grad():
        out = model(x.transpose(0, 1).reshape(B * T, *x.shape[2:]))
    return out.reshape(B, T, *out.shape[1:]).transpose(0, 1)


def _sinabs_cnn(reset_fn, neuron="IAF"):
    sl = pytest.importorskip("sinabs.layers")
    from sinabs.activation import SingleSpike
    torch.manual_seed(0)
    kw = dict(spike_fn=SingleSpike, reset_fn=reset_fn, min_v_mem=None, batch_size=B)
    make = (lambda: sl.IAFSqueeze(**kw)) if neuron == "IAF" else (lambda: sl.LIFSqueeze(tau_mem=4.0, **kw))
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1, bias=False), make(), sl.SumPool2d(2),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 10, bias=False), make())
    with torch.no_grad():
        model[4].weight *= 4  # the default initialisation leaves the output layer nearly silent
    return model


def _sinabs_export(model):
    import sinabs
    _sinabs_spikes(model, torch.zeros(T, B, 2, 8, 8))  # the layers take their state's shape from a first input
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sinabs.to_nir(model, torch.zeros(B, 2, 8, 8))


def test_sinabs_iaf_cnn_is_exact_and_lowers():
    """Sinabs IAF (SingleSpike '>=', MembraneSubtract): spike for spike equal in float; with MembraneReset the
    integer graph agrees to the level verify reports, and Lava equals the reference simulator."""
    pytest.importorskip("sinabs")
    from sinabs.activation import MembraneReset, MembraneSubtract
    x = _events((2, 8, 8), scale=2.0)
    model = _sinabs_cnn(MembraneSubtract())
    ref = _sinabs_spikes(model, x)
    graph = from_nir(_sinabs_export(model), time_steps=T, convention="sinabs")
    got = run_graph(graph, {"input": x})["output"]
    assert float(ref.mean()) > 0.02 and torch.equal(got, ref)
    with pytest.raises(PassError, match="reset 'subtract'"):
        _integer(graph, x, "input")

    model = _sinabs_cnn(MembraneReset())
    graph = from_nir(_sinabs_export(model), time_steps=T, convention="sinabs", reset="hard")
    ref = _sinabs_spikes(model, x)
    got = run_graph(graph, {"input": x}, keep="all")
    assert torch.equal(got["output"], ref)
    lowered, integer = _integer(graph, x, "input")
    found = {layer: _agreement(integer[layer], got[layer]) for layer in ("1", "5")}
    assert found["1"] >= 0.995 and found["5"] >= 0.97
    _within_what_verify_explains(graph, x, "input", found)
    _lava_equals_reference(lowered, x, "input")


def test_sinabs_lif_decays_by_exp():
    """Sinabs LIF decays by alpha = exp(-1/tau): the sinabs convention's rate 1 - exp(-dt/tau) with dt = 1."""
    pytest.importorskip("sinabs")
    from sinabs.activation import MembraneSubtract
    x = _events((2, 8, 8), scale=12.0)
    model = _sinabs_cnn(MembraneSubtract(), neuron="LIF")
    ref = _sinabs_spikes(model, x)
    found = {}
    for convention in ("sinabs", "spec"):
        graph = from_nir(_sinabs_export(model), time_steps=T, dt=1.0, convention=convention)
        found[convention] = _agreement(run_graph(graph, {"input": x})["output"], ref)
    assert float(ref.mean()) > 0.02 and found["sinabs"] == 1.0 > found["spec"]


# -- Rockpool 3.1.0 (test-only) -------------------------------------------------------------------------------------

def test_rockpool_cubalif_input_gain():
    """Rockpool LIFTorch: i = beta (i + x), v = alpha v + i, '>=' and subtract (multi-spike off): the rockpool
    convention reads its CubaLIF gains and exact decays."""
    pytest.importorskip("rockpool")
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import LIFTorch, LinearTorch
    from rockpool.nn.modules.torch.nir import to_nir
    torch.manual_seed(0)
    dt = 1e-3
    net = Sequential(LinearTorch((12, 32)), LIFTorch(32, tau_mem=0.008, tau_syn=0.004, dt=dt, max_spikes_per_dt=1),
                     LinearTorch((32, 6)), LIFTorch(6, tau_mem=0.008, tau_syn=0.004, dt=dt, max_spikes_per_dt=1))
    x = _events((12,), scale=2.0)
    with torch.no_grad():
        ref, _, _ = net(x.transpose(0, 1))
    ref = ref.transpose(0, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nir_graph = to_nir(net, torch.zeros(1, 12))
    found = {}
    for convention in ("rockpool", "spec"):
        graph = from_nir(nir_graph, time_steps=T, dt=dt, convention=convention)
        found[convention] = _agreement(run_graph(graph, {graph.inputs()[0]: x})[graph.outputs[0]], ref)
    # Rockpool's CubaLIF subtracts; the IR CubaLIF resets to 0 (the convention's approximation)
    assert float(ref.mean()) > 0.02 and found["rockpool"] >= 0.97 > found["spec"]


# -- refusals -------------------------------------------------------------------------------------------------------

def test_quantize_refuses_what_has_no_exact_lowering():
    """Never a float neuron inside the integer graph: each refusal names node, type and reason."""
    import dataclasses

    pytest.importorskip("snntorch")
    net = _snntorch_mlp(_synaptic, reset_mechanism="zero", reset_delay=False)
    graph = from_nir(_snntorch_export(net, 12), time_steps=T, dt=1e-4)
    op = graph.op("1")
    leaky = dataclasses.replace(op, v_leak=np.full_like(op.v_leak, 0.1))
    bad = dataclasses.replace(graph, nodes={**graph.nodes, "1": dataclasses.replace(graph.nodes["1"], op=leaky)})
    x = _events((12,), scale=3.0)
    with pytest.raises(PassError, match=r"neuron '1' \(CubaLIF\) cannot take Loihi's CUBA form: v_leak must be 0"):
        _integer(bad, x, "input")


def test_a_leaky_readout_feeding_the_chip_is_refused():
    """An LI is lowered as a host readout: a synapse reading it would put a float value on the chip."""
    import nir
    full = lambda n, v: np.full(n, v, np.float32)  # noqa: E731
    rng = np.random.default_rng(0)
    nodes = {"input": nir.Input(input_type=np.array([12])),
             "fc1": nir.Linear(weight=rng.normal(0, 1, (8, 12)).astype(np.float32)),
             "li": nir.LI(tau=full(8, 2e-3), r=full(8, 1), v_leak=full(8, 0)),
             "fc2": nir.Linear(weight=rng.normal(0, 1, (4, 8)).astype(np.float32)),
             "lif": nir.LIF(tau=full(4, 2e-3), r=full(4, 1), v_leak=full(4, 0), v_threshold=full(4, 1)),
             "output": nir.Output(output_type=np.array([4]))}
    edges = [("input", "fc1"), ("fc1", "li"), ("li", "fc2"), ("fc2", "lif"), ("lif", "output")]
    graph = from_nir(nir.NIRGraph(nodes=nodes, edges=edges), time_steps=T, dt=1e-3)
    with pytest.raises(PassError, match=r"neuron 'li' \(LI\) feeds \['fc2'\]: a leaky integrator is lowered as a "
                                        r"real-valued readout on the host"):
        _integer(graph, _events((12,), scale=3.0), "input")

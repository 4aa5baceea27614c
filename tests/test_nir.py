"""NIR export and import (docs/nir.md): round trips, refusals, the six real NIR files, Norse 1.1.0."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
from conftest import SHARED
import torch

from snncompile.backends.nir_export import (NIRExportError, expressible_nodes, nir_problems, to_nir,
                                            write_nir)
from snncompile.frontend.nir_import import NIRImportError, from_nir
from snncompile.ir import SPIKE, Graph, Node, run_graph
from snncompile.ir.ops import (LI, LIF, Add, BatchNorm, Conv2d, CubaLIF, Flatten, Input, IntDense, Linear, LoihiLIF,
                               LoihiTernaryLIF, MaxPool2d, Mul, Output, Repeat, SpikeColumnSum, SumPool2d, TokenMean)

DATA = SHARED / "data" / "nir"
T = 6


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _w(rng, *shape, scale=1.0) -> np.ndarray:
    fan_in = math.prod(shape[1:])
    return (rng.standard_normal(shape) * scale / math.sqrt(fan_in)).astype(np.float32)


def _graph(nodes: dict, outputs=("out",)) -> Graph:
    return Graph(nodes={k: Node(op, tuple(ins)) for k, (op, ins) in nodes.items()}, outputs=tuple(outputs),
                 time_steps=T).validate()


def _spikes(shape, p=0.4, seed=0, batch=3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, batch, *shape, generator=g) < p).float()


def _cnn() -> Graph:
    """Conv/LIF/SumPool/fan-in/Flatten/Linear with every LIF variant NIR can carry."""
    rng = _rng(1)
    return _graph({
        "x": (Input(shape=(2, 8, 8), dtype=SPIKE), ()),
        "conv1": (Conv2d(weight=_w(rng, 4, 2, 3, 3, scale=3), bias=_w(rng, 4, 1)[:, 0], padding=(1, 1)), ("x",)),
        "lif1": (LIF(), ("conv1",)),  # SpikingJelly: tau 2, >=, hard reset to 0
        "pool": (SumPool2d(kernel=(2, 2), stride=(2, 2)), ("lif1",)),
        "conv_a": (Conv2d(weight=_w(rng, 4, 4, 3, 3, scale=2), padding=(1, 1)), ("pool",)),
        "plif": (LIF(leak=float(torch.sigmoid(torch.tensor(-0.3))), leak_encoding="multiply_by_rate",
                     v_threshold=0.5), ("conv_a",)),
        "conv_b": (Conv2d(weight=_w(rng, 4, 4, 1, 1, scale=2)), ("plif",)),
        "conv_c": (Conv2d(weight=_w(rng, 4, 4, 1, 1, scale=2)), ("pool",)),
        "sum": (Add(), ("conv_b", "conv_c")),
        "lif2": (LIF(leak=3.0, decay_input=False, threshold_cmp=">", v_threshold=0.75, v_reset=-0.25),
                 ("sum",)),
        "flat": (Flatten(), ("lif2",)),
        "fc": (Linear(weight=_w(rng, 10, 64, scale=4), bias=_w(rng, 10, 1)[:, 0]), ("flat",)),
        "if3": (LIF(leak_encoding="none", v_threshold=1.5), ("fc",)),
        "out": (Output(), ("if3",)),
    })


NEURONS = ("lif1", "plif", "lif2", "if3")


def _strip_metadata(g: nir.NIRGraph) -> nir.NIRGraph:
    for node in g.nodes.values():
        node.metadata = {}
    g.metadata = {}
    return g


def _arrays_ndim(g: nir.NIRGraph) -> list[int]:
    return [v.ndim for node in g.nodes.values() for v in vars(node).values() if isinstance(v, np.ndarray)]


# -- export -> nir.read -> import -----------------------------------------------------------------------
def test_round_trip_gives_identical_spikes(tmp_path):
    graph = _cnn()
    x = _spikes((2, 8, 8))
    ref = run_graph(graph, {"x": x}, keep="all")
    for n in NEURONS:  # the test means something: every neuron fires, none saturates
        assert 0 < ref[n].mean() < 0.9, n

    path = tmp_path / "cnn.nir"
    written = write_nir(graph, path)  # gzip: would raise on any 0-d array
    assert min(_arrays_ndim(written)) >= 1
    loaded = nir.read(path)  # type checking on
    assert min(_arrays_ndim(loaded)) >= 1
    assert {type(n).__name__ for n in loaded.nodes.values()} == {
        "Input", "Conv2d", "LIF", "SumPool2d", "IF", "Flatten", "Affine", "Output"}
    assert ("conv_b", "lif2") in loaded.edges and ("conv_c", "lif2") in loaded.edges  # Add -> fan-in
    # the >= threshold travels as the float32 predecessor with NIR's >
    assert loaded.nodes["lif1"].v_threshold.dtype == np.float32
    assert np.all(loaded.nodes["lif1"].v_threshold == np.nextafter(np.float32(1), np.float32(0)))

    back = from_nir(path, time_steps=T, input_dtype=SPIKE)
    got = run_graph(back, {"x": x}, keep="all")
    for n in NEURONS + ("out",):
        assert torch.equal(got[n], ref[n]), n
    for n in NEURONS:  # the exactness hints restore the IR parameters themselves
        a, b = graph.op(n), back.op(n)
        assert (a.leak_encoding, a.threshold_cmp, a.decay_input, a.v_reset, a.reset) == \
               (b.leak_encoding, b.threshold_cmp, b.decay_input, b.v_reset, b.reset), n
        assert a.v_threshold == b.v_threshold and (a.leak_encoding == "none" or a.leak == b.leak), n
    assert back.op("lif2.sum").type_name() == "Add" and back.nodes["lif2.sum"].inputs == ("conv_b", "conv_c")

    # Without snncompile's metadata another tool sees plain NIR: same spikes (multiply form, >, pred(θ))
    plain = from_nir(_strip_metadata(nir.read(path)), time_steps=T, input_dtype=SPIKE)
    assert plain.op("lif1").threshold_cmp == ">" and plain.op("lif1").leak_encoding == "multiply_by_rate"
    got = run_graph(plain, {"x": x}, keep="all")
    for n in NEURONS:
        assert torch.equal(got[n], ref[n]), n


def test_threshold_equality_survives_nir():
    """h == θ fires with >= (SpikingJelly) and still fires after NIR's > with pred(θ)."""
    graph = _graph({"x": (Input(shape=(3,)), ()), "n": (LIF(leak_encoding="none"), ("x",)),
                    "out": (Output(), ("n",))})
    x = torch.tensor([[[1.0, 0.99999994, 1.0000001]]]).repeat(T, 1, 1)
    ref = run_graph(graph, {"x": x})["out"]
    assert ref[0, 0].tolist() == [1.0, 0.0, 1.0]
    back = from_nir(_strip_metadata(to_nir(graph)), time_steps=T)
    assert torch.equal(run_graph(back, {"x": x})["out"], ref)


def test_dt_scales_time_constants(tmp_path):
    graph = _cnn()
    g = write_nir(graph, tmp_path / "ms.nir", dt=1e-3)
    assert np.allclose(g.nodes["lif1"].tau, 2e-3) and np.allclose(g.nodes["lif2"].r, 3.0)
    x = _spikes((2, 8, 8), seed=3)
    back = from_nir(tmp_path / "ms.nir", time_steps=T, input_dtype=SPIKE)  # dt from the file's metadata
    assert back.history[0].options["dt"] == 1e-3
    ref, got = run_graph(graph, {"x": x}, keep="all"), run_graph(back, {"x": x}, keep="all")
    for n in NEURONS:
        assert torch.equal(got[n], ref[n]), n


def test_static_input_repeat_and_grouped_conv(tmp_path):
    rng = _rng(2)
    graph = _graph({
        "img": (Input(shape=(4, 6, 6), time="static"), ()),
        "rep": (Repeat(time_steps=T), ("img",)),
        "dw": (Conv2d(weight=_w(rng, 4, 1, 3, 3, scale=3), groups=4, padding=(1, 1)), ("rep",)),
        "n": (LIF(), ("dw",)),
        "out": (Output(), ("n",)),
    })
    img = torch.rand(2, 4, 6, 6)
    ref = run_graph(graph, {"img": img})["out"]
    write_nir(graph, tmp_path / "dw.nir")
    loaded = nir.read(tmp_path / "dw.nir")
    assert loaded.nodes["dw"].groups == 1 and loaded.nodes["dw"].weight.shape == (4, 4, 3, 3)
    back = from_nir(loaded, time_steps=T)
    got = run_graph(back, {"img": img.unsqueeze(0).repeat(T, 1, 1, 1, 1)})["out"]
    # a dense kernel with zero blocks sums the same products (plus exact zeros) in another order
    assert (got != ref).float().mean() < 0.01 and ref.mean() > 0.05


def test_mlp_with_cubalif_li_and_token_mean(tmp_path):
    rng = _rng(8)
    n = 6
    graph = _graph({
        "x": (Input(shape=(3, 4, 4)), ()),
        "mean": (TokenMean(), ("x",)),
        "fc1": (Linear(weight=_w(rng, n, 3, scale=6), bias=np.full(n, 0.5, np.float32)), ("mean",)),
        "cuba": (CubaLIF(tau_syn=np.full(n, 2.0, np.float32), tau_mem=np.linspace(2, 5, n).astype(np.float32),
                         r=np.full(n, 1.5, np.float32), v_leak=np.zeros(n, np.float32),
                         v_threshold=np.full(n, 0.5, np.float32), v_reset=np.zeros(n, np.float32),
                         w_in=np.ones(n, np.float32)), ("fc1",)),
        "fc2": (Linear(weight=_w(rng, 2, n, scale=3)), ("cuba",)),
        "li": (LI(leak=4.0), ("fc2",)),
        "out": (Output(), ("li",)),
    })
    x = torch.rand(T, 5, 3, 4, 4) * 2
    ref = run_graph(graph, {"x": x}, keep="all")
    assert 0 < ref["cuba"].mean() < 0.9
    write_nir(graph, tmp_path / "mlp.nir")
    loaded = nir.read(tmp_path / "mlp.nir")
    assert {type(v).__name__ for v in loaded.nodes.values()} >= {"AvgPool2d", "Flatten", "CubaLIF", "LI"}
    back = from_nir(loaded, time_steps=T)
    assert [back.op(k).type_name() for k in ("mean.pool.sum", "mean.pool", "mean")] == ["SumPool2d", "Scale", "Flatten"]
    got = run_graph(back, {"x": x}, keep="all")
    # torch's mean and a sum times 1/16 may add in another order: equal up to rounding, spikes equal
    assert torch.allclose(got["mean"], ref["mean"], rtol=1e-6, atol=1e-7)
    assert torch.equal(got["cuba"], ref["cuba"])
    assert torch.allclose(got["out"], ref["out"], rtol=1e-6, atol=1e-6)


# -- refusals and partial export --------------------------------------------------------------------------
def _attention_graph() -> Graph:
    rng = _rng(4)
    return _graph({
        "x": (Input(shape=(2, 8, 8), dtype=SPIKE), ()),
        "stem": (Conv2d(weight=_w(rng, 4, 2, 3, 3, scale=3), padding=(1, 1)), ("x",)),
        "bn": (BatchNorm(weight=np.ones(4, np.float32) * 1.5, bias=np.full(4, 0.1, np.float32),
                         running_mean=np.full(4, 0.2, np.float32), running_var=np.full(4, 0.5, np.float32)),
               ("stem",)),
        "s0": (LIF(), ("bn",)),
        "k": (Conv2d(weight=_w(rng, 4, 4, 1, 1, scale=3)), ("s0",)),
        "ks": (LIF(), ("k",)),
        "v": (Conv2d(weight=_w(rng, 4, 4, 1, 1, scale=3)), ("s0",)),
        "vs": (LIF(), ("v",)),
        "kv": (SpikeColumnSum(heads=2), ("ks", "vs")),
        "fc": (Linear(weight=_w(rng, 3, 4)), ("kv",)),
        "n": (LIF(), ("fc",)),
        "gate": (Mul(), ("n", "n")),
        "out": (Output(), ("gate",)),
    })


def test_export_refuses_attention_and_unfolded_batchnorm():
    graph = _attention_graph()
    with pytest.raises(NIRExportError) as err:
        to_nir(graph)
    text = str(err.value)
    assert "'kv' (SpikeColumnSum)" in text and "'gate' (Mul)" in text
    assert "multiplies two activations" in text and "summed" in text
    assert "'bn' (BatchNorm)" in text and "fold" in text
    assert "to_nir(graph, nodes='expressible', fold_batchnorm=True) (8 nodes" in text and "ending at ['ks', 'vs']" in text
    assert set(nir_problems(graph)) == {"bn", "kv", "gate"}
    assert set(nir_problems(graph, fold_batchnorm=True)) == {"kv", "gate"}
    pool = _graph({"x": (Input(shape=(2, 4, 4)), ()), "mp": (MaxPool2d(), ("x",)), "out": (Output(), ("mp",))})
    with pytest.raises(NIRExportError, match="'mp' \\(MaxPool2d\\): NIR 1.0.8 has no max pool"):
        to_nir(pool)


def test_export_refuses_integer_loihi_nodes():
    """Lowered (integer) graphs have no NIR form; the reason names the node and says why."""
    graph = _graph({"x": (Input(shape=(3,), dtype=SPIKE), ()), "d": (IntDense(weight=np.ones((2, 3), np.int8)), ("x",)),
                    "n": (LoihiLIF(current_decay=4096, voltage_decay=0, vth=1), ("d",)),
                    "t": (LoihiTernaryLIF(current_decay=4096, voltage_decay=0, vth_hi=1, vth_lo=-1), ("d",)),
                    "out": (Output(), ("n",)), "out2": (Output(), ("t",))}, outputs=("out", "out2"))
    problems = nir_problems(graph)
    assert set(problems) == {"d", "n", "t"}
    assert all("integer Loihi node" in r and "no integer arithmetic" in r for r in problems.values())
    with pytest.raises(NIRExportError) as err:
        to_nir(graph)
    text = str(err.value)
    assert "integer Loihi node" in text
    assert all(f"'{n}' ({k})" in text for n, k in (("d", "IntDense"), ("n", "LoihiLIF"), ("t", "LoihiTernaryLIF")))


def test_export_expressible_stem_and_a_head(tmp_path):
    graph = _attention_graph()
    part = expressible_nodes(graph, fold_batchnorm=True)
    assert part == [n for n in graph.topo_order() if n in {"x", "stem", "bn", "s0", "k", "ks", "v", "vs"}]
    write_nir(graph, tmp_path / "stem.nir", nodes="expressible", fold_batchnorm=True)
    loaded = nir.read(tmp_path / "stem.nir")
    assert "stem" not in loaded.nodes and type(loaded.nodes["bn"]).__name__ == "Conv2d"  # BN folded
    assert sorted(n for n, v in loaded.nodes.items() if isinstance(v, nir.Output)) == ["ks.output", "vs.output"]
    x = _spikes((2, 8, 8), seed=5)
    ref = run_graph(graph, {"x": x}, keep="all")
    got = run_graph(from_nir(loaded, time_steps=T, input_dtype=SPIKE), {"x": x}, keep="all")
    for n in ("s0", "ks", "vs"):  # folding rounds differently: spikes may flip only where v hits θ
        assert (got[n] != ref[n]).float().mean() < 0.01 and ref[n].mean() > 0.01, n

    # a head fed from outside the selection: its producer becomes a NIR Input
    head = to_nir(graph, nodes=["fc", "n"])
    assert isinstance(head.nodes["kv"], nir.Input) and list(head.nodes["kv"].input_type["input"]) == [4]
    assert isinstance(head.nodes["n.output"], nir.Output)
    counts = ref["kv"]
    back = from_nir(head, time_steps=T)
    assert torch.equal(run_graph(back, {"kv": counts})["n.output"], ref["n"])


# -- the six real NIR files ----------------------------------------------------------------------------
FILES = {  # file: (dt it was made with, expected IR node types)
    "cnn_sinabs.nir": (1.0, ["Input", "Conv2d", "LIF", "Conv2d", "LIF", "SumPool2d", "Conv2d", "LIF", "SumPool2d",
                             "Flatten", "Linear", "LIF", "Linear", "LIF", "Output"]),
    "lif_norse.nir": (1e-4, ["Input", "Linear", "LIF", "Output"]),
    "lif_rockpool.nir": (1e-4, ["Input", "Linear", "Scale", "LIF", "Output"]),
    "two_lif_neurons.nir": (1e-4, ["Input", "Linear", "LIF", "Linear", "LIF", "Output"]),
}
RECURRENT = ["braille_noDelay_bias_zero.nir", "braille_noDelay_noBias_subtract.nir"]


@pytest.mark.parametrize("name", sorted(FILES))
def test_real_files_import(name):
    dt, kinds = FILES[name]
    g = from_nir(DATA / name, time_steps=T, dt=dt)
    assert sorted(op.op.type_name() for op in g.nodes.values()) == sorted(kinds)
    x = torch.rand(T, 2, *g.types()[g.inputs()[0]].shape)
    (out,) = run_graph(g, {g.inputs()[0]: x}).values()
    assert out.shape[:2] == (T, 2)


def test_rockpool_needs_type_check_off_and_gets_it():
    with pytest.raises(ValueError, match="type mismatch"):
        nir.read(DATA / "lif_rockpool.nir")
    g = from_nir(DATA / "lif_rockpool.nir", time_steps=T, dt=1e-4)
    assert g.types()["output"].shape == (1,)  # Rockpool's Output claims [1, 1, 1]; the IR infers [1]
    assert g.op("1_LIFNeuronTorch.r").scale == pytest.approx(24.019737)


@pytest.mark.parametrize("name", RECURRENT)
def test_recurrent_files_give_a_clear_error(name):
    with pytest.raises(NIRImportError, match=r"recurrent edge lif1\.w_rec -> lif1\.lif \(cycle lif1\.lif -> "
                                             r"lif1\.w_rec -> lif1\.lif\)"):
        from_nir(DATA / name, time_steps=T, dt=1e-4)


def test_wrong_dt_is_refused():
    with pytest.raises(NIRImportError, match="Euler factor dt/tau = 400 exceeds 1"):
        from_nir(DATA / "lif_norse.nir", time_steps=T)  # dt=1 for tau=2.5 ms


def test_sinabs_cnn_runs_on_events():
    g = from_nir(DATA / "cnn_sinabs.nir", time_steps=10, dt=1.0)
    assert g.types()["input"].shape == (2, 34, 34)
    gen = torch.Generator().manual_seed(0)
    strong = (torch.rand(10, 4, 2, 34, 34, generator=gen) < 0.3).float() * 2
    values = run_graph(g, {"input": strong}, keep="all")
    assert values["output"].shape == (10, 4, 10)
    for layer in ("1", "3", "6", "10", "12"):  # every IF layer fires
        assert values[layer].sum() > 0, layer
    silent = run_graph(g, {"input": torch.zeros(10, 4, 2, 34, 34)})["output"]
    assert silent.sum() == 0


# -- NIR structure: subgraphs, fan-in, flatten conventions ------------------------------------------------
def _lif_nir(n, tau=2.0, thr=1.0):
    return nir.LIF(tau=np.full(n, tau), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.full(n, thr),
                   v_reset=np.zeros(n))


def test_nested_subgraph_and_fan_in():
    rng = _rng(6)
    w1, w2, w3 = _w(rng, 5, 3, scale=3), _w(rng, 5, 3, scale=3), _w(rng, 2, 5, scale=3)
    sub = nir.NIRGraph(nodes={"in": nir.Input(input_type=np.array([5])), "lif": _lif_nir(5),
                              "out": nir.Output(output_type=np.array([5]))},
                       edges=[("in", "lif"), ("lif", "out")], type_check=False)
    g = nir.NIRGraph(nodes={"x": nir.Input(input_type=np.array([3])), "a": nir.Linear(weight=w1),
                            "b": nir.Linear(weight=w2), "block": sub, "fc": nir.Linear(weight=w3),
                            "y": nir.Output(output_type=np.array([2]))},
                     edges=[("x", "a"), ("x", "b"), ("a", "block"), ("b", "block.in"), ("block", "fc"),
                            ("fc", "y")], type_check=False)
    ir = from_nir(g, time_steps=T, dt=1.0, leak_encoding="divide_by_tau")
    assert ir.nodes["block.lif.sum"].inputs == ("a", "b") and ir.nodes["block.lif"].inputs == ("block.lif.sum",)
    assert ir.nodes["fc"].inputs == ("block.lif",)
    ref = _graph({"x": (Input(shape=(3,)), ()), "a": (Linear(weight=w1), ("x",)), "b": (Linear(weight=w2), ("x",)),
                  "s": (Add(), ("a", "b")), "lif": (LIF(threshold_cmp=">"), ("s",)),
                  "fc": (Linear(weight=w3), ("lif",)), "out": (Output(), ("fc",))})
    x = torch.rand(T, 4, 3) * 2
    assert torch.equal(run_graph(ir, {"x": x})["y"], run_graph(ref, {"x": x})["out"])


@pytest.mark.parametrize("start_dim", [0, 1])
def test_flatten_start_dim_conventions(start_dim):
    """start_dim=0 on per-sample shapes (NIR, Sinabs) and 1 counting a batch axis (PyTorch) both flatten all."""
    rng = _rng(7)
    g = nir.NIRGraph(nodes={"x": nir.Input(input_type=np.array([2, 3, 3])),
                            "f": nir.Flatten(input_type={"input": None}, start_dim=start_dim),
                            "fc": nir.Affine(weight=_w(rng, 4, 18), bias=np.zeros(4, np.float32)),
                            "y": nir.Output(output_type=np.array([4]))},
                     edges=[("x", "f"), ("f", "fc"), ("fc", "y")], type_check=False)
    ir = from_nir(g, time_steps=T)
    assert ir.types()["f"].shape == (18,)


def test_unsupported_nodes_are_named():
    g = nir.NIRGraph(nodes={"x": nir.Input(input_type=np.array([3])), "d": nir.Delay(delay=np.ones(3)),
                            "y": nir.Output(output_type=np.array([3]))},
                     edges=[("x", "d"), ("d", "y")], type_check=False)
    with pytest.raises(NIRImportError, match="node 'd' \\(Delay\\) is not supported"):
        from_nir(g, time_steps=T)


# -- a graph Norse 1.1.0 exports itself --------------------------------------------------------------------
def _norse_fixed(model, n_in: int, **kw) -> nir.NIRGraph:
    """``norse.torch.to_nir`` plus the workarounds of toolchains.md §2: its parameters are torch tensors,
    0-d for neurons (nir.write's gzip fails on them): make numpy arrays of the neuron shape."""
    import norse.torch as nt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = nt.to_nir(model, torch.zeros(1, n_in), **kw)
    shapes = {}
    for name in sorted(g.nodes, key=lambda n: int(n) if n.isdigit() else -1):
        node = g.nodes[name]
        if isinstance(node, nir.Affine):
            shapes[str(int(name) + 1)] = node.weight.shape[0]
    for name, node in g.nodes.items():
        for field, value in list(vars(node).items()):
            if isinstance(value, torch.Tensor) or (isinstance(value, np.ndarray) and value.ndim == 0):
                a = np.asarray(value.detach() if isinstance(value, torch.Tensor) else value, np.float32)
                if a.ndim == 0:
                    a = np.full(shapes[name], a, np.float32)
                setattr(node, field, a)
    return g


def _norse_run(model, x: torch.Tensor) -> tuple[torch.Tensor, list]:
    """Norse's own forward, one step at a time with the state threaded through."""
    state, outs = None, []
    with torch.no_grad():
        for xt in x:
            out, state = model(xt, state)
            outs.append(out)
    return torch.stack(outs), state


def test_norse_lifbox_export_matches_norse(tmp_path):
    """Norse 1.1.0 defaults (dt 1e-3, tau_mem_inv 100): spike trains equal Norse's on random inputs."""
    import norse.torch as nt

    torch.manual_seed(0)
    model = nt.SequentialState(torch.nn.Linear(4, 3), nt.LIFBoxCell(), torch.nn.Linear(3, 2), nt.IAFCell())
    g = _norse_fixed(model, 4)
    path = tmp_path / "norse.nir"
    nir.write(path, g, compression=None)
    with pytest.raises(ValueError):  # the batch dimension leaks into Input: [1, 4]
        nir.read(path)
    loaded = nir.read(path, type_check=False)
    assert loaded.nodes["1"].tau[0] == pytest.approx(1e-5)  # dt / tau_mem_inv (norse#411), true tau 1e-2
    with pytest.raises(NIRImportError, match="norse_tau_bug=True"):
        from_nir(loaded, time_steps=50, dt=1e-3)
    ir = from_nir(loaded, time_steps=50, dt=1e-3, norse_tau_bug=True)
    assert ir.types()["input"].shape == (4,)
    assert ir.op("1").leak == pytest.approx(0.1) and ir.op("1").threshold_cmp == ">"

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 64, 4, generator=gen) * 10 + torch.randn(50, 64, 4, generator=gen)  # drive + noise
    ref, _ = _norse_run(model, x)
    got = run_graph(ir, {"input": x}, keep="all")
    assert ref.shape == got["output"].shape == (50, 64, 2)
    assert 0.05 < got["1"].mean() < 0.5 and 0.05 < ref.mean() < 0.9  # both layers fire, neither saturates
    assert torch.equal(got["output"], ref)
    # the LIF layer itself: Norse's factor is fl32(fl32(1e-3) * 100) = 0.1f, ours (from tau = 1e-5 as
    # float32) is 1 ulp below, so membranes differ by ~1e-7 relative; no spike is that close to threshold
    lif_ref = torch.stack([s for s in _norse_lif_spikes(model, x)])
    assert torch.equal(got["1"], lif_ref)


def _norse_lif_spikes(model, x):
    state = None
    with torch.no_grad():
        for xt in x:
            z, state = model[1](model[0](xt), state)
            yield z


def test_norse_power_of_two_constants_match_bit_for_bit():
    """With dt and 1/tau powers of two no rounding happens in Norse's tau export: membranes equal exactly."""
    import norse.torch as nt

    torch.manual_seed(1)
    dt = 2.0 ** -10
    lif = nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.tensor(128.0), v_th=torch.tensor(0.5)), dt=dt)
    li = nt.LIBoxCell(nt.LIBoxParameters(tau_mem_inv=torch.tensor(64.0)), dt=dt)
    model = nt.SequentialState(torch.nn.Linear(4, 6), lif, torch.nn.Linear(6, 3), li)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = nt.to_nir(model, torch.zeros(1, 4), dt=dt)  # as Norse returns it: torch tensors, 0-d, [1, 4] Input
    ir = from_nir(g, time_steps=40, dt=dt, norse_tau_bug=True)
    assert ir.op("3").type_name() == "LI"
    x = torch.randn(40, 8, 4) * 3 + 1
    ref, _ = _norse_run(model, x)
    got = run_graph(ir, {"input": x}, keep="all")
    assert got["1"].sum() > 10
    assert torch.equal(got["output"], ref)  # LI membranes, bit for bit

"""The reference simulator: traces and counts from run_graph's own node semantics, dataset evaluation
reproducing the float model's accuracy, and sharding (in process and with 2 torchrun workers) exact."""
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import snncompile
from snncompile.data import load_dataset
from snncompile.frontend import export
from snncompile.ir import SPIKE, Graph, Node, int_type, interpret
from snncompile.ir import io as ir_io
from snncompile.ir.ops import LIF, Input, IntDense, LoihiLIF, Output
from snncompile.nn.record import record_spikes
from snncompile.sim import EvalResult, evaluate_graph, graph_feeds, run_graph, simulate
from snncompile.zoo.registry import find_entry

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 64  # samples of the 2-worker run


@pytest.fixture(scope="module")
def digits():
    entry = find_entry("statten-digits")
    ckpt = snncompile.load_checkpoint(entry.checkpoint)
    return ckpt, export(ckpt.model), load_dataset(entry.data, entry.model, "test")


@pytest.fixture(scope="module")
def full_eval(digits):
    _, graph, test_set = digits
    return evaluate_graph(graph, test_set, batch_size=64, progress=False)


def test_simulate_equals_run_graph_and_the_torch_model(digits):
    ckpt, graph, test_set = digits
    x = torch.stack([test_set[i][0] for i in range(16)])
    res = simulate(graph, graph_feeds(graph, x), record=("spikes", "membranes"))
    ref = run_graph(graph, graph_feeds(graph, x), keep="all")
    assert res.outputs.keys() == set(graph.outputs)
    for name, value in res.outputs.items():
        assert torch.equal(value, ref[name])
    with torch.no_grad(), record_spikes(ckpt.model) as spikes:
        logits = ckpt.model(x)
    assert torch.equal(res.outputs[graph.outputs[0]], logits)
    assert set(spikes) <= set(res.spikes)
    for name, s in spikes.items():
        assert torch.equal(res.spikes[name].reshape(s.shape), s), name
    for name, trace in res.spikes.items():  # every spiking node, and the interpreter's own value
        assert torch.equal(trace, ref[name]) and set(trace.unique().tolist()) <= {-1.0, 0.0, 1.0}


def test_membranes_match_lif_simulate_and_counts_match_traces(digits):
    _, graph, test_set = digits
    x = torch.stack([test_set[i][0] for i in range(8)])
    res = simulate(graph, graph_feeds(graph, x), record=("spikes", "membranes"))
    ref = run_graph(graph, graph_feeds(graph, x), keep="all")
    lifs = [n for n, node in graph.nodes.items() if isinstance(node.op, LIF)]
    assert lifs and set(res.membranes) == set(lifs) and not res.currents
    types = graph.types()
    for name in lifs:
        (src,) = graph.nodes[name].inputs
        spikes, v = graph.op(name).simulate(ref[src])
        assert res.membranes[name].shape == (graph.time_steps, 8, *types[name].shape)
        assert torch.equal(res.membranes[name], v) and torch.equal(res.spikes[name], spikes), name
    assert set(res.counts) == set(res.spikes)
    for name, trace in res.spikes.items():
        c = res.counts[name]
        assert c.neurons == int(np.prod(types[name].shape)) and c.samples == 8 and c.timesteps == graph.time_steps
        assert list(c.spikes) == [int((trace[t] != 0).sum()) for t in range(graph.time_steps)]
        assert c.total == int((trace != 0).sum())
    # Not recording spikes or membranes keeps only the counts, the same ones.
    bare = simulate(graph, graph_feeds(graph, x), record=())
    assert not bare.spikes and not bare.membranes and bare.counts == res.counts


def test_loihi_neuron_records_currents_and_voltages():
    lif = LoihiLIF(current_decay=1024, voltage_decay=512, vth=10)
    graph = Graph(nodes={"in": Node(Input(shape=(5,), dtype=int_type(8))), "lif": Node(lif, ("in",)),
                         "out": Node(Output(), ("lif",))}, outputs=("out",), time_steps=6)
    x = torch.randint(-20, 60, (6, 3, 5), generator=torch.Generator().manual_seed(0))
    res = simulate(graph, {"in": x}, record=("spikes", "membranes"))
    spikes, u, v = lif.simulate(x)
    assert torch.equal(res.currents["lif"], u) and torch.equal(res.membranes["lif"], v)
    assert torch.equal(res.spikes["lif"], spikes.float()) and res.counts["lif"].total == int(spikes.sum())
    assert torch.equal(res.outputs["out"], run_graph(graph, {"in": x})["out"])
    with pytest.raises(ValueError, match="record"):
        simulate(graph, {"in": x}, record=("voltages",))
    assert "simulate" not in vars(lif) and "run" not in vars(lif)  # recorded through the observer, not patched


def test_observer_sees_every_node_once_with_its_inputs_value_and_the_asked_traces():
    rng = np.random.default_rng(3)
    lif = LoihiLIF(current_decay=1024, voltage_decay=512, vth=10)
    graph = Graph(nodes={"in": Node(Input(shape=(4,), dtype=SPIKE)),
                         "d": Node(IntDense(weight=rng.integers(-60, 60, size=(5, 4)), delay=1), ("in",)),
                         "lif": Node(lif, ("d",)), "lif2": Node(lif, ("d",)),
                         "out": Node(Output(), ("lif",))}, outputs=("out",), time_steps=7)
    x = torch.from_numpy((rng.random((5, 3, 4)) < 0.5).astype(np.float32))
    seen = []
    values = run_graph(graph, {"in": x}, keep="all", observer=lambda *call: seen.append(call), states=["lif"])
    assert [call[0] for call in seen] == graph.topo_order()
    for name, op, inputs, value, traces in seen:
        assert op is graph.op(name) and value is values[name]
        assert len(inputs) == len(graph.nodes[name].inputs)
        assert all(a is values[s] for a, s in zip(inputs, graph.nodes[name].inputs))
        assert traces == () or name == "lif"  # only the asked node's traces
    _, u, v = lif.simulate(values["d"])
    traces = next(call[4] for call in seen if call[0] == "lif")
    assert len(traces) == 2 and torch.equal(traces[0], u) and torch.equal(traces[1], v)
    # the interpreter evaluates an op type by the kernel its table names, and the reference without one
    calls = []

    def spy(op, args, delay, states):
        calls.append((op, delay, states))
        return interpret.reference(op, args, delay, states)

    plain = interpret.run_graph(graph, {"in": x}, keep="all", kernels={IntDense: spy}, states=["lif"])
    assert calls == [(graph.op("d"), 1, interpret.Traces.NONE)]
    assert all(torch.equal(plain[n], values[n]) for n in graph.nodes)


def test_evaluation_reproduces_the_float_models_accuracy(digits, full_eval):
    ckpt, _, test_set = digits
    assert full_eval.total == len(test_set) == 360
    assert full_eval.accuracy == ckpt.metrics["test_accuracy"]
    assert full_eval.indices == list(range(360))
    with torch.no_grad():
        x = torch.stack([test_set[i][0] for i in range(360)])
        assert full_eval.predictions == ckpt.model.predict_logits(x).argmax(1).tolist()
    assert all(c.samples == 360 for c in full_eval.counts.values())


def test_event_input_is_fed_time_major():
    entry = find_entry("statten-event-digits")
    model = snncompile.load_checkpoint(entry.checkpoint).model
    graph = export(model)
    test_set = load_dataset(entry.data, entry.model, "test")
    assert graph.op(graph.inputs()[0]).time == "stream"
    res = evaluate_graph(graph, test_set, batch_size=16, progress=False, indices=range(32))
    with torch.no_grad():
        expected = model.predict_logits(torch.stack([test_set[i][0] for i in range(32)])).argmax(1)
    assert res.predictions == expected.tolist() and res.total == 32


def test_two_shards_merge_to_the_unsharded_result(digits, full_eval):
    _, graph, test_set = digits
    shards = [evaluate_graph(graph, test_set, batch_size=50, progress=False, shard=(r, 2)) for r in range(2)]
    assert shards[0].indices == list(range(0, 360, 2)) and shards[1].indices == list(range(1, 360, 2))
    merged = EvalResult.merge(shards)
    assert merged.to_dict() == full_eval.to_dict()
    with pytest.raises(ValueError, match="overlap"):
        EvalResult.merge([shards[0], shards[0]])


def _expected_json(digits) -> dict:
    _, graph, test_set = digits
    return evaluate_graph(graph, test_set, progress=False, indices=range(LIMIT)).to_dict()


def _launch_env() -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def test_simulate_command_without_torchrun(digits, tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "snncompile", "simulate", "statten-digits", "--limit", str(LIMIT),
                           "--json", str(out)], cwd=ROOT, env=_launch_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "simulated accuracy" in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["world_size"] == 1
    assert {k: doc[k] for k in _expected_json(digits)} == _expected_json(digits)


@pytest.mark.slow
def test_two_torchrun_workers_equal_the_single_process_result(digits, tmp_path):
    out = tmp_path / "r.json"
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "snncompile", "simulate",
                           "statten-digits", "--limit", str(LIMIT), "--json", str(out)],
                          cwd=ROOT, env=_launch_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["world_size"] == 2
    assert {k: doc[k] for k in _expected_json(digits)} == _expected_json(digits)


@pytest.mark.slow
def test_two_torchrun_workers_on_the_compiled_integer_graph(digits, tmp_path):
    """The integer (scheduled) graph shards exactly like the float one: same predictions and counts."""
    compiled, out = tmp_path / "m.loihi.snnir", tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "snncompile", "compile", "statten-digits", "-o", str(compiled),
                           "--calibration", "16"], cwd=ROOT, env=_launch_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "snncompile", "simulate",
                           "statten-digits", "--graph", str(compiled), "--limit", str(LIMIT), "--json", str(out)],
                          cwd=ROOT, env=_launch_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    single = evaluate_graph(ir_io.load(compiled), digits[2], progress=False, indices=range(LIMIT)).to_dict()
    assert doc["world_size"] == 2 and {k: doc[k] for k in single} == single
    assert any(c["op"] == "LoihiLIF" for c in doc["spike_counts"].values())


def test_graph_runs_use_full_float32_products_and_restore_the_flags(monkeypatch):
    """TF32 keeps 11 significant bits of each operand: a 12-bit integer would be rounded in a GPU convolution
    (2049 -> 2048), so run_graph turns it off for its run and puts the user's setting back."""
    from snncompile.ir import interpret

    flags = torch.backends.cuda.matmul, torch.backends.cudnn
    seen = []

    @contextlib.contextmanager
    def spy():
        with real():
            seen.append([f.allow_tf32 for f in flags])
            yield

    real = interpret.ieee_float32
    monkeypatch.setattr(interpret, "ieee_float32", spy)
    for f in flags:
        monkeypatch.setattr(f, "allow_tf32", True)
    graph = Graph(nodes={"x": Node(Input(shape=(2,), dtype=SPIKE)), "y": Node(Output(), ("x",))}, outputs=("y",),
                  time_steps=1)
    interpret.run_graph(graph, {"x": torch.ones(1, 1, 2)})
    assert seen == [[False, False]] and [f.allow_tf32 for f in flags] == [True, True]

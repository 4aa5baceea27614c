"""Graph files (NIR) wherever the command line takes a model: export, inspect, compile, simulate, run, with
--time-steps, --dt and --nir-convention; a graph file names no data set, so the data commands need --dataset."""
import json

import nir
import numpy as np
from conftest import shared_path
from test_cli import cli

from snncompile.frontend.netx_import import read_netx
from snncompile.ir import io as ir_io


def _mlp_file(path):
    """Affine(128 -> 16) -> CubaLIF -> Affine(16 -> 10) -> LI: 2x8x8 event frames in, a leaky readout out."""
    rng = np.random.default_rng(0)
    full = lambda n, v: np.full(n, v, np.float32)  # noqa: E731
    nodes = {"input": nir.Input(input_type=np.array([128])),
             "fc1": nir.Affine(weight=rng.normal(0, 0.3, (16, 128)).astype(np.float32), bias=full(16, 0.1)),
             "lif1": nir.CubaLIF(tau_syn=full(16, 2e-3), tau_mem=full(16, 4e-3), r=full(16, 1.0), v_leak=full(16, 0),
                                 v_threshold=full(16, 1.0), v_reset=full(16, 0), w_in=full(16, 2.0)),
             "fc2": nir.Affine(weight=rng.normal(0, 0.5, (10, 16)).astype(np.float32), bias=full(10, 0.0)),
             "li": nir.LI(tau=full(10, 4e-3), r=full(10, 1.0), v_leak=full(10, 0)),
             "output": nir.Output(output_type=np.array([10]))}
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "li"), ("li", "output")]
    nir.write(path, nir.NIRGraph(nodes=nodes, edges=edges))
    return path


def test_export_and_inspect_a_nir_file(tmp_path):
    out = cli("export", shared_path("data", "nir", "cnn_sinabs.nir"), "-o", tmp_path / "x.snnir", "--time-steps", 5)
    assert out.returncode == 0, out.stdout + out.stderr
    graph = ir_io.load(tmp_path / "x.snnir")
    assert len(graph.nodes) == 15 and graph.time_steps == 5
    shown = cli("inspect", shared_path("data", "nir", "lif_norse.nir"), "--dt", "1e-4")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "'dt': 0.0001" in shown.stdout and "'convention': 'spec'" in shown.stdout
    wrong = cli("inspect", shared_path("data", "nir", "lif_norse.nir"), "--nir-convention", "keras")
    assert wrong.returncode == 2 and "--nir-convention" in wrong.stderr


def test_compile_simulate_and_run_a_nir_file(tmp_path):
    model = _mlp_file(tmp_path / "mlp.nir")
    missing = cli("compile", model, "-o", tmp_path / "m.snnir")
    assert missing.returncode == 2 and "names no data set: pass --dataset" in missing.stderr
    options = ("--time-steps", 6, "--dt", "1e-3")
    out = cli("compile", model, "--dataset", "event-digits", "--calibration", 16, "-o", tmp_path / "m.snnir", *options)
    assert out.returncode == 0, out.stdout + out.stderr
    record = json.loads((tmp_path / "m.compile.json").read_text())
    assert record["graph_options"] == {"time_steps": 6, "dt": 1e-3, "convention": "spec"}
    lowered = ir_io.load(tmp_path / "m.snnir")
    types = {n: node.op.type_name() for n, node in lowered.nodes.items()}
    assert types["lif1"] == "LoihiLIF" and lowered.op("lif1").current_decay == 2048  # dt/tau_syn = 1/2
    assert types["li.real"] == "Scale" and types["li"] == "LI"  # the readout, on the host
    sim = cli("simulate", tmp_path / "m.snnir", "--limit", 16, "--json", tmp_path / "sim.json")
    assert sim.returncode == 0, sim.stdout + sim.stderr
    assert json.loads((tmp_path / "sim.json").read_text())["total"] == 16
    run = cli("run", model, "--dataset", "event-digits", "--samples", 8, "--lava-samples", 2,
              "--out-dir", tmp_path / "runs", *options)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((tmp_path / "runs" / "mlp.report.json").read_text())
    assert report["checkpoint"]["format"] == "nir" and report["lava"]["identical_to_reference"] == 2


def test_export_and_inspect_a_netx_network(tmp_path):
    """A lava-dl netx network is already integer: exported as it is read, with the file's own time steps."""
    out = cli("export", shared_path("data", "netx", "mnist.net"), "-o", tmp_path / "mnist.snnir")
    assert out.returncode == 0, out.stdout + out.stderr
    graph = ir_io.load(tmp_path / "mnist.snnir")
    types = [node.op.type_name() for node in graph.nodes.values()]
    assert types.count("IntDense") == types.count("LoihiLIF") == 3 and "Linear" not in types
    from snncompile.job.steps import is_integer
    assert graph.time_steps == read_netx(shared_path("data", "netx", "mnist.net")).time_steps and is_integer(graph)
    shown = cli("inspect", shared_path("data", "netx", "mnist.net"), "--time-steps", 5)
    assert shown.returncode == 0 and "spike[784]" in shown.stdout


def test_a_netx_network_compiles_as_it_is_and_refuses_data_its_input_cannot_hold(tmp_path):
    """An integer graph is placed without lowering; samples its spike input cannot hold are one clear error."""
    out = cli("compile", shared_path("data", "netx", "mnist.net"), "--dataset", "digits", "-o", tmp_path / "m.snnir")
    assert out.returncode == 0, out.stdout + out.stderr
    placed = json.loads((tmp_path / "m.placement.json").read_text())
    assert placed["cores_used"] == 3 and placed["chips_used"] == 1  # one core per layer: 128, 64, 10 neurons
    steps = read_netx(shared_path("data", "netx", "mnist.net")).time_steps  # not split into data and latency
    assert f"{steps} steps per sample (unscheduled: the graph's own steps)" in " ".join(out.stdout.split())
    sim = cli("simulate", tmp_path / "m.snnir", "--limit", 2)
    assert sim.returncode != 0 and "Traceback" not in sim.stderr
    assert "the graph's input takes spike values" in sim.stderr

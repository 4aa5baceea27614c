"""The command line, run as a user runs it (a subprocess), including its error paths."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path
import yaml

import snncompile
from snncompile.zoo.registry import DEFAULT_MODEL, find_entry
from snncompile.ir import io as ir_io

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "snncompile", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
                                                      "COLUMNS": "200"})


def test_help_lists_commands():
    out = cli("--help")
    assert out.returncode == 0
    for command in ("models", "train", "evaluate", "run"):
        assert command in out.stdout


def test_models_lists_the_zoo_with_recorded_accuracy():
    out = cli("models")
    assert out.returncode == 0, out.stderr
    assert DEFAULT_MODEL in out.stdout and "statten-cifar10-2-256" in out.stdout
    recorded = json.loads((ROOT / "models" / "statten_digits.json").read_text())["test_accuracy"]
    assert f"{recorded:.2%}" in out.stdout


@pytest.mark.slow
def test_run_default_model_does_the_whole_job(tmp_path):
    out = cli("run", "--samples", "16", "--lava-samples", "4", "--lava-granularity", "fused_model",
              "--out-dir", tmp_path)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    recorded = snncompile.load_checkpoint(find_entry(DEFAULT_MODEL).checkpoint).metrics["test_accuracy"]
    assert re.search(rf"accuracy float {recorded:.2%}", text)  # the headline
    report = json.loads((tmp_path / f"{DEFAULT_MODEL}.report.json").read_text())
    assert report["schema"] == "snncompile-run-report/2" and report["lava"]["identical_to_reference"] == 4
    assert report["lava"]["granularity"] == "fused_model"
    assert abs(report["float_accuracy"] - report["integer_accuracy"]) <= 0.01 and report["violations"] == []
    assert all(0.9 <= row["agreement"] <= 1.0 for row in report["layers"])
    assert report["activity"]["totals"]["attention_accumulates"] > 0
    assert set(report["energy"]) == {"loihi2", "cmos45", "ann"} and report["energy"]["cmos45"]["total_pj"] > 0
    assert report["latency"]["per_sample_ns"] > 0 and len(report["placement"]["per_core"]) == report["placement"]["cores"]
    assert 0 < report["placement"]["lower_bound"] <= report["placement"]["cores"]
    assert re.search(rf"lower bound {report['placement']['lower_bound']} cores? \(", text)
    html = tmp_path / f"{DEFAULT_MODEL}.report.html"
    assert f"report: {tmp_path}" in text and str(html) in text and 'id="plot-firing-rate"' in html.read_text()
    compiled = tmp_path / f"{DEFAULT_MODEL}.loihi.snnir"  # what run says it wrote is what run reads
    assert f"compiled graph: {compiled} " in text and f"`snncompile run {compiled}` runs it again" in text
    again = cli("run", compiled, "--samples", "16", "--lava-samples", "4", "--lava-granularity", "fused_model",
                "--out-dir", tmp_path / "again")
    assert again.returncode == 0, again.stdout + again.stderr
    rerun = json.loads((tmp_path / "again" / f"{DEFAULT_MODEL}.report.json").read_text())
    assert ir_io.graph_digest(ir_io.load(rerun["files"]["graph"])) == ir_io.graph_digest(ir_io.load(compiled))
    assert {k: v for k, v in rerun.items() if k not in ("files", "seconds")} == \
        {k: v for k, v in report.items() if k not in ("files", "seconds")}


def test_an_unknown_lava_granularity_is_refused_before_the_job():
    out = cli("run", "--lava-granularity", "per_block")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "'per_block' is not one of per_op, fused, fused_model" in " ".join(out.stderr.split())


def test_unknown_model_is_a_clear_error_not_a_traceback():
    out = cli("run", "no-such-model")
    assert out.returncode == 2
    assert "no model named 'no-such-model'" in out.stderr and "Traceback" not in out.stdout + out.stderr


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"definitely not a checkpoint")
    out = cli("evaluate", bad)
    assert out.returncode == 2
    assert "broken.pt" in out.stderr and "Traceback" not in out.stdout + out.stderr


def test_zoo_model_without_weights_says_how_to_get_them():
    out = cli("run", "statten-cifar10-2-256")
    assert out.returncode == 2
    assert "ships no trained weights" in out.stderr


def test_train_writes_a_loadable_checkpoint_with_metrics(tmp_path):
    config = yaml.safe_load((ROOT / "models" / "statten-digits.yaml").read_text())
    config.pop("checkpoint")
    config["name"] = "tiny-statten"
    config["model"].update(dim=16, num_heads=2, layers=1, img_size=8, pooling_stat="0001")
    config["train"] = {"epochs": 1, "batch_size": 128, "lr": 0.01}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    out = cli("train", path, "-o", tmp_path / "tiny.pt")
    assert out.returncode == 0, out.stdout + out.stderr
    loaded = snncompile.load_checkpoint(tmp_path / "tiny.pt")
    assert loaded.name == "tiny-statten" and loaded.config.dim == 16
    metrics = json.loads((tmp_path / "tiny.json").read_text())
    assert metrics["epochs"] == 1 and 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["test_accuracy"] == loaded.metrics["test_accuracy"]


@pytest.fixture(scope="module")
def upstream_checkpoint(tmp_path_factory):
    from upstream_files import small_cfg, trained_like, upstream_args, write_upstream
    path = tmp_path_factory.mktemp("upstream") / "checkpoint-199.pth.tar"
    return write_upstream(path, trained_like(small_cfg(img_size=32)), upstream_args())


@pytest.mark.parametrize("source", ["zoo", "upstream"])
def test_export_snnir_then_inspect(tmp_path, source, upstream_checkpoint):
    model = DEFAULT_MODEL if source == "zoo" else upstream_checkpoint
    out = cli("export", model, "-o", tmp_path / "g.snnir")
    assert out.returncode == 0, out.stdout + out.stderr
    from snncompile.ir import io as ir_io
    graph = ir_io.load(tmp_path / "g.snnir")
    assert any(n.op.type_name() == "BlockLinearAttention" for n in graph.nodes.values())
    shown = cli("inspect", tmp_path / "g.snnir")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "block.1.attn.attn_lif" in shown.stdout and "BlockLinearAttention" in shown.stdout
    assert "threshold_cmp=>=" in shown.stdout and "history: export" in shown.stdout


@pytest.mark.parametrize("source", ["zoo", "upstream"])
def test_export_onnx_runs_in_onnxruntime(tmp_path, source, upstream_checkpoint):
    import onnx
    model = DEFAULT_MODEL if source == "zoo" else upstream_checkpoint
    out = cli("export", model, "-o", tmp_path / "g.onnx")
    assert out.returncode == 0, out.stdout + out.stderr
    onnx.checker.check_model(str(tmp_path / "g.onnx"), full_check=True)


def test_export_nir_refuses_attention_unless_a_part_is_asked_for(tmp_path):
    import nir
    out = cli("export", DEFAULT_MODEL, "-o", tmp_path / "g.nir")
    assert out.returncode == 2
    assert "multiplies two activations" in " ".join(out.stderr.split()) and "--nir-part" in out.stderr
    out = cli("export", DEFAULT_MODEL, "-o", tmp_path / "g.nir", "--nir-part")
    assert out.returncode == 0, out.stdout + out.stderr
    graph = nir.read(tmp_path / "g.nir")  # type checking on
    assert any(type(n).__name__ == "LIF" for n in graph.nodes.values())


def test_inspect_a_nir_file_from_another_framework():
    out = cli("inspect", shared_path("data", "nir", "cnn_sinabs.nir"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Conv2d" in out.stdout and "SumPool2d" in out.stdout


def test_export_to_unknown_format_is_a_clear_error(tmp_path):
    out = cli("export", DEFAULT_MODEL, "-o", tmp_path / "g.bin")
    assert out.returncode == 2 and "--format snnir|nir|onnx" in out.stderr


@pytest.mark.parametrize("source", ["zoo", "upstream"])
def test_verify_reports_every_stage_and_node(tmp_path, source, upstream_checkpoint):
    model = DEFAULT_MODEL if source == "zoo" else upstream_checkpoint
    extra = [] if source == "zoo" else ["--dataset", "digits"]  # an RGB 32x32 model: digits are replicated
    out = cli("verify", model, "--samples", "16", "--calibration", "16", "--json", tmp_path / "report.json", *extra)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    stages = {s["pass"]: s for s in report["stages"]}
    assert list(stages) == ["input", "fold_batchnorm", "fold_linear_chains", "normalize_neurons", "lower_attention",
                            "lower_levels", "quantize (float view)", "quantize", "split_fan_in", "prove_ranges",
                            "schedule"]
    assert stages["schedule"]["exact"] and stages["prove_ranges"]["exact"]
    float_view = {n["name"]: n for n in stages["quantize (float view)"]["nodes"]}
    assert float_view["head_lif"]["op"] == "LIF" and float_view["head"]["op"] == "Linear"
    quantized = {n["name"]: n for n in stages["quantize"]["nodes"]}
    assert quantized["head_lif"]["op"] == "LoihiLIF" and quantized["head_lif"]["cumulative"]["agreement"] > 0.5
    assert quantized["block.1.attn.attn_lif"]["cumulative"]["membrane_max_abs_error"] is not None
    assert all(0.0 <= s["accuracy"] <= 1.0 for s in report["stages"])
    assert "schedule" in out.stdout and "quantize" in out.stdout


def test_float_pipeline_verify(tmp_path):
    out = cli("verify", DEFAULT_MODEL, "--pipeline", "float", "--samples", "8", "--json", tmp_path / "r.json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert [s["pass"] for s in json.loads((tmp_path / "r.json").read_text())["stages"]] == ["input", "fold_batchnorm"]


def test_compile_calibrates_from_synthetic_inputs_or_a_tensor_file_and_records_which(tmp_path):
    out = cli("compile", DEFAULT_MODEL, "-o", tmp_path / "s.snnir", "--calibration", "8", "--calibrate-from",
              "synthetic")
    assert out.returncode == 0, out.stdout + out.stderr
    record = json.loads((tmp_path / "s.compile.json").read_text())
    assert record["calibration"] == 8 and record["calibration_source"].startswith("synthetic: 8 uniform images")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((5, 1, 16, 16), dtype=np.float32))
    out = cli("compile", DEFAULT_MODEL, "-o", tmp_path / "f.snnir", "--calibrate-from", tmp_path / "x.npy")
    assert out.returncode == 0, out.stdout + out.stderr
    record = json.loads((tmp_path / "f.compile.json").read_text())
    assert record["calibration"] == 5 and record["calibration_source"] == f"file {tmp_path / 'x.npy'} (5 samples)"


def test_compile_refuses_a_calibration_file_of_the_wrong_shape_in_one_line(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((5, 1, 8, 8), dtype=np.float32))
    out = cli("compile", DEFAULT_MODEL, "-o", tmp_path / "f.snnir", "--calibrate-from", tmp_path / "x.npy")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "x.npy: calibration samples must be a tensor [N, 1, 16, 16] for this model, got shape [5, 1, 8, 8]" \
        in " ".join((out.stdout + out.stderr).split())
    assert not (tmp_path / "f.snnir").exists()


def test_compile_writes_the_integer_graph(tmp_path):
    out = cli("compile", DEFAULT_MODEL, "-o", tmp_path / "m.snnir", "--calibration", "16", "--target", "loihi2")
    assert out.returncode == 0, out.stdout + out.stderr
    graph = ir_io.load(tmp_path / "m.snnir")
    assert [h.name for h in graph.history][-4:] == ["quantize", "split_fan_in", "prove_ranges", "schedule"]
    assert {"LoihiLIF", "IntConv2d", "KVOuterAccumulate"} <= {n.op.type_name() for n in graph.nodes.values()}
    timing = graph.schedule
    assert f"{graph.time_steps} steps per sample ({timing.data_steps} data steps + " \
           f"{graph.time_steps - timing.data_steps} of latency)" in " ".join(out.stdout.split())
    text = " ".join(out.stdout.split())  # each number of the pass table says what it counts
    assert f"latency ({len(graph.nodes)} nodes), end_to_end = " in text and "latency: " not in text
    assert re.search(r"fold_batchnorm │ folded \(\d+ nodes\), kept \(0 nodes\)", text)
    assert json.loads((tmp_path / "m.compile.json").read_text())["calibration"] == 16
    assert json.loads((tmp_path / "m.compile.json").read_text())["max_chips"] == 1  # as many as it needs
    placement = json.loads((tmp_path / "m.placement.json").read_text())
    assert placement["target"] == "loihi2" and placement["cores_used"] > 0 and "design rules: no violation" in out.stdout
    assert re.search(r"\d+ cores on 1 chip\(s\) of loihi2 \(lower bound from the graph: \d+ cores\)",
                     " ".join(out.stdout.split()))


def test_max_chips_is_a_count_or_a_named_system_of_the_target_chips():
    from snncompile.cli.options import chip_count
    assert (chip_count("3", "loihi2"), chip_count("kapoho-point", "loihi2"), chip_count("hala-point", "loihi2")) \
        == (3, 8, 1152)


def test_compile_that_breaks_a_design_rule_lists_every_violation_and_writes_nothing(tmp_path):
    out = cli("compile", DEFAULT_MODEL, "-o", tmp_path / "m.snnir", "--calibration", "16", "--max-chips", "0")
    assert out.returncode == 2 and "Traceback" not in out.stdout + out.stderr
    assert list(tmp_path.iterdir()) == [] and "wrote" not in out.stdout and "no violation" not in out.stdout
    text = " ".join(out.stderr.split())
    found = int(re.search(r"(\d+) design rule violation\(s\) on target 'loihi2'", text).group(1))
    assert found > 1 and text.count("[cores_fit_on_max_chips]") == found and "beyond the 0 cores" in text


def test_compile_for_a_target_without_graded_spikes_lists_every_problem(tmp_path):
    out = cli("compile", DEFAULT_MODEL, "-o", tmp_path / "m.snnir", "--calibration", "16", "--target", "loihi1")
    assert out.returncode == 2 and not (tmp_path / "m.snnir").exists()
    text = " ".join(out.stderr.split())
    assert "binary spikes only" in text and text.count("graded spike;") >= 10  # every graded edge, by node


@pytest.mark.slow
def test_run_on_a_compiled_graph_uses_its_graph_and_placement(tmp_path):
    assert cli("compile", DEFAULT_MODEL, "-o", tmp_path / "m.snnir", "--calibration", "16").returncode == 0
    out = cli("run", tmp_path / "m.snnir", "--samples", "8", "--lava-samples", "2", "--out-dir", tmp_path / "run")
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads((tmp_path / "run" / f"{DEFAULT_MODEL}.report.json").read_text())
    compiled = ir_io.load(tmp_path / "m.snnir")
    # calibrated on 16 samples here, not run's 64: the same graph only if run took the compiled one
    assert ir_io.graph_digest(ir_io.load(report["files"]["graph"])) == ir_io.graph_digest(compiled)
    assert report["placement"]["cores"] == json.loads((tmp_path / "m.placement.json").read_text())["cores_used"]
    assert cli("simulate", tmp_path / "m.snnir", "--json", tmp_path / "r.json").returncode == 0
    assert report["integer_accuracy"] == json.loads((tmp_path / "r.json").read_text())["accuracy"]


def test_run_on_a_compiled_graph_needs_its_record_and_target(tmp_path):
    assert cli("compile", DEFAULT_MODEL, "-o", tmp_path / "m.snnir", "--calibration", "16").returncode == 0
    out = cli("run", tmp_path / "m.snnir", "--target", "loihi1")
    assert out.returncode == 2 and "was placed for 'loihi2', not 'loihi1'" in " ".join(out.stderr.split())
    (tmp_path / "m.compile.json").write_text('{"model": "statten-digits"}')
    out = cli("run", tmp_path / "m.snnir")
    assert out.returncode == 2 and "Traceback" not in out.stdout + out.stderr
    assert "m.compile.json: not a compile record (KeyError: 'attention')" in " ".join(out.stderr.split())
    (tmp_path / "m.compile.json").unlink()
    out = cli("run", tmp_path / "m.snnir")
    assert out.returncode == 2 and "m.compile.json: missing" in " ".join(out.stderr.split())


@pytest.mark.slow
def test_simulate_a_compiled_graph_on_lava(tmp_path):
    assert cli("compile", DEFAULT_MODEL, "-o", tmp_path / "m.snnir", "--calibration", "16").returncode == 0
    out = cli("simulate", tmp_path / "m.snnir", "--backend", "lava", "--limit", "8", "--json", tmp_path / "lava.json")
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads((tmp_path / "lava.json").read_text())
    assert doc["total"] == 8 and doc["identical_to_reference"] == 8 and doc["granularity"] == "fused"
    ref = cli("simulate", DEFAULT_MODEL, "--graph", tmp_path / "m.snnir", "--limit", "8", "--json", tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["predictions"] == doc["predictions"]

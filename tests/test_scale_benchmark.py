"""benchmarks/scale.py on a small configuration: every step in its own process with its own peak RSS, the
lower bound beside the cores used, and a step that runs out of its memory limit reported as failed (the
steps that need its output skipped) instead of stopping the benchmark. The paper sizes run in the benchmark."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def scale(tmp_path, *args):
    out = tmp_path / "results.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--configs", "statten-event-digits",
                           "--calibration", "4", "--samples", "2", "--workdir", str(tmp_path), "--json", str(out),
                           *args], capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(out.read_text())["statten-event-digits"], done.stdout


def test_each_step_measured_in_its_own_process(tmp_path):
    steps, table = scale(tmp_path, "--phases", "checkpoint", "compile", "window", "ratios", "--repeats", "1")
    assert set(steps) == {"checkpoint", "compile", "window", "ratios"}
    assert all(0 < s["peak_rss_gb"] < 4 and s["wall_s"] > 0 for s in steps.values())
    compiled = steps["compile"]
    assert compiled["violations"] == 0 and 0 < compiled["lower_bound"] <= compiled["cores"]
    assert set(compiled["seconds"]) >= {"quantize", "schedule", "place", "lower_bound", "save"}
    assert set(compiled["cpu_seconds"]) == set(compiled["seconds"]) and 0 < compiled["cpu_s"]
    assert steps["window"]["samples"] == 2 and steps["window"]["seconds_per_sample"] > 0
    assert (tmp_path / "statten-event-digits.pth.tar").is_file()
    ratios = steps["ratios"]  # the three simulations timed in one process
    assert set(ratios["seconds_per_sample"]) == {"float", "window", "stepped"} and ratios["repeats"] == 1
    assert all(v > 0 for v in ratios["seconds_per_sample"].values())
    row = next(line for line in table.splitlines() if line.startswith("| statten-event-digits"))
    assert f"| {compiled['cores']} |" in row and f"| {compiled['lower_bound']} |" in row
    assert row.endswith(f"| {ratios['window_per_float']} / {ratios['stepped_per_float']} |")


def test_a_step_out_of_memory_is_reported_and_the_rest_skipped(tmp_path):
    steps, table = scale(tmp_path, "--phases", "checkpoint", "compile", "window", "--memory-gb", "0.05")
    assert set(steps) == {"checkpoint"} and "failed" in steps["checkpoint"]
    assert "| statten-event-digits | failed |" in table


def test_the_run_phases_test_data_reads_back_through_the_data_sets_loaders(tmp_path):
    import dataclasses
    import importlib.util

    from snncompile.data import load_dataset
    from snncompile.zoo.registry import find_entry
    spec = importlib.util.spec_from_file_location("scale_benchmark", ROOT / "benchmarks" / "scale.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for name in ("statten-cifar10-2-512", "statten-cifar10dvs-2-256-t16", "statten-imagenet-8-512"):
        entry = find_entry(name)
        root = bench.write_test_data(entry, tmp_path / name, 3)
        data = dataclasses.replace(entry.data, root=str(root))
        for split in ("train", "test"):
            found = load_dataset(data, entry.model, split)
            x, label = found[0]
            batches = 5 if split == "train" and entry.data.dataset == "cifar10" else 1  # CIFAR-10's five batches
            assert len(found) == 3 * batches and 0 <= int(label) < 10
            frame = (entry.model.in_channels, entry.model.img_size, entry.model.img_size)
            assert tuple(x.shape) == ((entry.model.time_steps, *frame) if entry.model.dvs_mode else frame)


def test_a_scaled_down_paper_config_shards_over_two_torchrun_workers_exactly(tmp_path):
    """statten-cifar10-2-512's architecture (STAtten, chunks of 2, pooling 0011, CIFAR-10's local format) at
    width 32 and one block, written as an upstream checkpoint, lowered: its integer graph evaluated over two
    torchrun workers (snncompile simulate --graph) gives the single process's predictions, accuracy and spike
    counts exactly."""
    import dataclasses
    import importlib.util
    import os

    import snncompile
    from snncompile.data import load_dataset
    from snncompile.data.calibration import synthetic_samples
    from snncompile.frontend import export
    from snncompile.ir import io as ir_io
    from snncompile.passes import lower_to_loihi
    from snncompile.sim import evaluate_graph, graph_feeds
    from snncompile.zoo.registry import find_entry
    spec = importlib.util.spec_from_file_location("scale_benchmark", ROOT / "benchmarks" / "scale.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    paper = find_entry("statten-cifar10-2-512")
    entry = dataclasses.replace(paper, model=dataclasses.replace(paper.model, dim=32, num_heads=2, layers=1))
    checkpoint, graph_file = tmp_path / "small.pth.tar", tmp_path / "small.loihi.snnir"
    bench.write_checkpoint(entry, checkpoint)
    root = bench.write_test_data(entry, tmp_path / "data", 6)
    graph = export(snncompile.load_checkpoint(checkpoint).model)
    calibration = synthetic_samples(entry.model, "cifar10", 4, seed=1).inputs
    ir_io.save(lower_to_loihi(graph, graph_feeds(graph, calibration)), graph_file)
    out = tmp_path / "r.json"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                                "MASTER_PORT")}
    proc = subprocess.run([str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node=2",
                           "-m", "snncompile", "simulate", str(checkpoint), "--graph", str(graph_file), "--dataset",
                           "cifar10", "--data-root", str(root), "--json", str(out)],
                          cwd=ROOT, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    test_set = load_dataset(dataclasses.replace(entry.data, root=str(root)), entry.model, "test")
    single = evaluate_graph(ir_io.load(graph_file), test_set, progress=False).to_dict()
    assert doc["world_size"] == 2 and doc["total"] == 6 and {k: doc[k] for k in single} == single
    assert any(c["op"] == "LoihiLIF" and c["total"] > 0 for c in doc["spike_counts"].values())


def test_the_run_table_shows_the_run_reports_figures_and_the_steps_own_measures():
    """The README's run table row from the ``run`` step's result: per-sample energy (uJ -> mJ) and latency
    (us -> ms), cores beside their bound, the Lava check's outcome, the step's wall / CPU / peak RSS and the
    job's Lava and counting times; a failed step says why."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("scale_benchmark", ROOT / "benchmarks" / "scale.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    run = {"lava": {"total": 1, "identical_to_reference": 1, "granularity": "fused"}, "cores": 23674, "chips": 185,
           "cores_lower_bound": 13176, "energy_uj_per_sample": 36712.5, "latency_us_per_sample": 5012.0,
           "test_samples": 1, "seconds": {"Lava check": 516.3, "activity counts": 113.0},
           "wall_s": 900.5, "cpu_s": 410.2, "peak_rss_gb": 9.1}
    assert bench._run_row("statten-imagenet-8-512", {"run": run}) == (
        "| statten-imagenet-8-512 | 1 | 23,674 (13,176) | 185 | 1/1 identical (fused) | 36.7 mJ | 5.01 ms "
        "| 900.5 (410.2) | 9.1 | 516.3 | 113.0 |")
    failed = bench._run_row("x", {"run": {"failed": "timed out after 900 s"}})
    assert failed.startswith("| x | timed out after 900 s |") and failed.count("|") == bench.RUN_HEADER.count("|") // 2

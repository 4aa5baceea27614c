"""Paper-size configurations end to end: checkpoint, compile, placement and reference simulation, each step
timed and its peak memory measured in a fresh process.

Usage::

    .venv/bin/python benchmarks/scale.py                                    # the four paper configurations
    .venv/bin/python benchmarks/scale.py --configs statten-cifar10-2-512 --samples 16 --json /tmp/scale.json

For each configuration (``models/<name>.yaml``) the steps below run one after the other, each in its own
subprocess (``--phase``), so a step's peak RSS (``os.wait4``'s ``ru_maxrss`` of that child) is its own and a
step that runs out of memory or time is reported as failed without stopping the others:

- ``checkpoint``: a model built from the config with random trained-looking weights (every parameter
  ``N(0, 0.3)``, BN variances in ``[0.75, 1.25)``), written in the upstream timm format (``state_dict``,
  ``args`` Namespace) to ``--workdir`` (default ``/tmp/snncompile-scale``; never inside the repository);
- ``compile``: that checkpoint loaded and exported, the ``loihi`` pipeline pass by pass (each part timed in wall
  and CPU seconds, the lower bound and the writing included; the table shows the whole step's, imports included),
  calibrated on ``--calibration`` synthetic samples (``snncompile.data.calibration``: images uniform pixels
  normalised with the data set's mean and std, event frames Poisson counts), then placed on
  ``--target`` and checked against its design rules with as many chips as the placement uses (so the
  violations counted are the per-core ones); the compiled model is written beside the checkpoint;
- ``place``: the compiled graph read back and placed again, alone (its time and peak RSS are placement's:
  ``--phases checkpoint compile place`` with a small ``--calibration`` measures placement quickly), with
  the design-rule check and the lower bound;
- ``float``, ``window``, ``stepped``: ``--samples`` synthetic samples through the float graph (BatchNorm
  folded), the compiled integer graph in its data window (``unschedule``) and as scheduled (time-stepped);
- ``run``: ``snncompile run`` (the main job) on the compiled model of the ``compile`` step (else on the
  checkpoint, calibrated on synthetic inputs) with a tiny test set written in the data set's local format to
  ``--workdir`` (``--samples`` random CIFAR-10 records, event-frame ``.npz`` files or ImageNet PNG images),
  ``--lava-samples`` samples checked on Lava (``fused``) within ``--lava-timeout`` seconds; its report's
  per-sample energy and latency, cores beside their lower bound, and each step's time (a second table: the
  README's run table);
- ``sharded``: ``snncompile simulate --graph`` of the compiled model over that test set, in one process and
  over two ``torchrun`` workers (gloo): both times and whether their predictions are the same;
- ``ratios``: the three simulations again in one process, in turn, ``--repeats`` times each (the fastest run
  of each counts), so that their time ratios are measured under the same load.

A child runs torch with ``--threads`` intra-op threads (default 1: on this shared 2-core machine a second
OpenMP thread waits for a core at every element-wise operation, which made the float graph's neurons about
9x slower in calibration than one thread). A child is limited to ``--memory-gb`` of address space (so a step that would exhaust the machine fails with
a MemoryError instead of waking the OOM killer) and ``--timeout`` seconds. Prints a Markdown table (the one
in the README) and writes every figure to ``--json``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

PAPER_CONFIGS = ("statten-cifar10-2-512", "statten-cifar10dvs-2-256-t16", "statten-imagenet-8-512",
                 "statten-imagenet-8-768")
PHASES = ("checkpoint", "compile", "place", "float", "window", "stepped", "ratios", "run", "sharded")


# ---- the steps, each run in a child process ------------------------------------------------------------

def _config(name: str):
    from snncompile.zoo.registry import find_entry
    return find_entry(name)


def synthetic_inputs(entry, count: int, seed: int):
    """``count`` inputs shaped as the data loader gives them (``snncompile.data.calibration``'s assumption)."""
    from snncompile.data.calibration import synthetic_samples
    return synthetic_samples(entry.model, entry.data.dataset, count, seed=seed).inputs


def _upstream_args(entry) -> argparse.Namespace:
    cfg = entry.model
    return argparse.Namespace(model="sdt", spike_mode="lif", dvs_mode=cfg.dvs_mode, TET=cfg.tet,
                              attention_mode=cfg.attention, num_heads=cfg.num_heads, num_classes=cfg.num_classes,
                              img_size=cfg.img_size, pooling_stat=cfg.pooling_stat, time_steps=cfg.time_steps,
                              chunk_size=cfg.chunk_size, layer=cfg.layers, dim=cfg.dim, mlp_ratio=4,
                              in_channels=cfg.in_channels, patch_size=None, eval_metric="top1")


def write_checkpoint(entry, path: Path) -> dict:
    """A random trained-looking model of ``entry``'s config, saved as upstream timm's CheckpointSaver does."""
    import torch
    from snncompile.nn.backbones import build_model
    torch.manual_seed(0)
    model = build_model(entry.model)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) * 0.5 + 0.75 if name.endswith("running_var") else torch.randn_like(t) * 0.3)
    torch.save({"epoch": 199, "arch": "sdt", "state_dict": model.state_dict(), "version": 2,
                "args": _upstream_args(entry), "metric": 0.0}, path)
    return {"parameters": sum(p.numel() for p in model.parameters())}


def _measured(fn):
    """``fn()``, the wall seconds it took and the CPU seconds this process spent in it (on this shared machine
    the wall time grows with the load, the CPU time hardly: with one thread it is the wall time of an idle
    machine)."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, round(time.perf_counter() - start, 2), round(time.process_time() - cpu, 2)


def _timed(fn):
    result, seconds, _ = _measured(fn)
    return result, seconds


def compile_checkpoint(entry, work: Path, args) -> dict:
    import torch
    from snncompile import load_checkpoint
    from snncompile.backends import design_rules
    from snncompile.backends.placement import core_lower_bound, place
    from snncompile.job.artifact import CompileRecord, Compiled, ModelSource, save_compiled
    from snncompile.frontend import export
    from snncompile.passes import PIPELINES, PassContext, run_pipeline
    from snncompile.sim.dataset import graph_feeds
    from snncompile.targets import load_target

    wall, cpu = {}, {}  # seconds of each step

    def step(name: str, fn):
        result, wall[name], cpu[name] = _measured(fn)
        return result

    loaded = step("load", lambda: load_checkpoint(work / f"{entry.name}.pth.tar"))
    graph = step("export", lambda: export(loaded.model))
    del loaded
    ctx = PassContext(calibration=graph_feeds(graph, synthetic_inputs(entry, args.calibration, seed=1)),
                      target=args.target)
    lowered = graph
    for p in PIPELINES["loihi"]:
        lowered = step(p.name, lambda: run_pipeline(lowered, PIPELINES["loihi"], ctx, start=p.name, stop=p.name))
    target = load_target(args.target)
    placement = step("place", lambda: place(lowered, target))
    found = step("check", lambda: design_rules.check(lowered, placement, target, max_chips=placement.chips_used))
    bound = step("lower_bound", lambda: core_lower_bound(lowered, target))
    record = CompileRecord(ModelSource(str(work / f"{entry.name}.pth.tar"), None, entry.data.dataset), args.target,
                           args.calibration, placement.chips_used)
    step("save", lambda: save_compiled(Compiled(lowered, placement, record), work / f"{entry.name}.loihi.snnir"))
    rules = sorted({v.rule for v in found})
    return {"float_nodes": len(graph.nodes), "nodes": len(lowered.nodes), "cores": placement.cores_used,
            "chips": placement.chips_used, "lower_bound": bound.cores,
            "lower_bound_by_resource": dict(bound.by_resource), "violations": len(found), "rules_broken": rules,
            "first_violation": str(found[0]) if found else None,
            "seconds": wall, "cpu_seconds": cpu, "torch_threads": torch.get_num_threads()}


def place_compiled(entry, work: Path, args) -> dict:
    from snncompile.backends import design_rules
    from snncompile.backends.placement import core_lower_bound, place
    from snncompile.ir import io as ir_io
    from snncompile.targets import load_target

    graph, target = ir_io.load(work / f"{entry.name}.loihi.snnir"), load_target(args.target)
    placement, seconds = _timed(lambda: place(graph, target))
    found, seconds_check = _timed(lambda: design_rules.check(graph, placement, target,
                                                             max_chips=placement.chips_used))
    bound = core_lower_bound(graph, target)
    return {"cores": placement.cores_used, "chips": placement.chips_used, "lower_bound": bound.cores,
            "cores_per_bound": round(placement.cores_used / bound.cores, 2), "violations": len(found),
            "violations_by_node": {n: sum(v.node == n for v in found) for n in sorted({v.node for v in found})},
            "seconds": seconds, "seconds_check": seconds_check}


def simulated_graph(entry, work: Path, phase: str):
    """The graph a simulation phase runs: the float graph (BatchNorm folded), the compiled graph in its data
    window or as scheduled."""
    from snncompile.ir.timing import unschedule
    if phase == "float":
        from snncompile import load_checkpoint
        from snncompile.frontend import export
        from snncompile.passes import PIPELINES, run_pipeline
        return run_pipeline(export(load_checkpoint(work / f"{entry.name}.pth.tar").model), PIPELINES["float"])
    from snncompile.job.artifact import load_compiled
    graph = load_compiled(work / f"{entry.name}.loihi.snnir").graph
    return unschedule(graph) if phase == "window" else graph


def simulate(entry, work: Path, args, phase: str) -> dict:
    import torch
    from snncompile.sim import run_graph
    from snncompile.sim.dataset import graph_feeds

    graph = simulated_graph(entry, work, phase)
    x = synthetic_inputs(entry, args.samples, seed=2)
    feeds = graph_feeds(graph, x)
    _, seconds = _timed(lambda: run_graph(graph, feeds))
    return {"samples": args.samples, "seconds": seconds, "seconds_per_sample": round(seconds / args.samples, 3),
            "steps": graph.time_steps, "torch_threads": torch.get_num_threads()}


def time_ratios(entry, work: Path, args) -> dict:
    """Seconds per sample of the float, data-window and time-stepped simulations, run in turn in this one
    process ``--repeats`` times (the fastest of each), and the integer ones' ratios to the float one."""
    from snncompile.sim import run_graph
    from snncompile.sim.dataset import graph_feeds
    modes = ("float", "window", "stepped")
    graphs = {m: simulated_graph(entry, work, m) for m in modes}
    x = synthetic_inputs(entry, args.samples, seed=2)
    feeds = {m: graph_feeds(g, x) for m, g in graphs.items()}
    best = {m: float("inf") for m in modes}
    for _ in range(args.repeats):
        for m in modes:
            _, seconds = _timed(lambda: run_graph(graphs[m], feeds[m]))
            best[m] = min(best[m], seconds)
    per_sample = {m: round(best[m] / args.samples, 3) for m in modes}
    return {"samples": args.samples, "repeats": args.repeats, "seconds_per_sample": per_sample,
            "window_per_float": round(best["window"] / best["float"], 2),
            "stepped_per_float": round(best["stepped"] / best["float"], 2)}


def write_test_data(entry, root: Path, count: int) -> Path:
    """``count`` random test samples (and as many training ones) in the local format ``entry``'s data set is
    read from: CIFAR-10's binary batches, ``train/`` and ``test/`` folders of event-frame ``.npz`` files, or
    ImageNet's ``train/`` and ``val/`` ImageFolder trees of PNG images (256 x 256: the evaluation transform
    resizes and crops them)."""
    import numpy as np
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    cfg = entry.model
    if entry.data.dataset == "imagenet":
        from PIL import Image
        for split in ("train", "val"):
            for i in range(count):
                folder = root / split / f"class{i:04d}"
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        return root
    if not cfg.dvs_mode:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            records = np.concatenate([rng.integers(0, 10, (count, 1)), rng.integers(0, 256, (count, 3 * 32 * 32))], 1)
            (root / f"{name}.bin").write_bytes(records.astype(np.uint8).tobytes())
        return root
    for split in ("train", "test"):
        for i in range(count):
            folder = root / split / f"class{i % cfg.num_classes}"
            folder.mkdir(parents=True, exist_ok=True)
            frames = rng.poisson(0.3, (cfg.time_steps, 2, cfg.img_size, cfg.img_size)).astype(np.uint8)
            np.savez(folder / f"{i}.npz", frames=frames)
    return root


def run_main_job(entry, work: Path, args) -> dict:
    """``snncompile run`` (in a child: its peak RSS, Lava's processes' own aside) on the compiled model the
    ``compile`` step wrote (its graph and placement as they are), or on the checkpoint (lowered and placed
    anew, calibrated on synthetic inputs) where there is none; its report's headline figures (per sample:
    energy, latency; cores beside their lower bound) and each step's time."""
    data = write_test_data(entry, work / f"{entry.name}.data", args.samples)
    out = work / f"{entry.name}.run"
    compiled = work / f"{entry.name}.loihi.snnir"
    model = [str(compiled)] if compiled.exists() else [
        str(work / f"{entry.name}.pth.tar"), "--calibrate-from", "synthetic", "--calibration", str(args.calibration)]
    command = [sys.executable, "-m", "snncompile", "run", *model, "--data-root", str(data),
               "--dataset", entry.data.dataset, "--samples", str(args.samples),
               "--lava-samples", str(args.lava_samples), "--lava-timeout", str(args.lava_timeout),
               "--out-dir", str(out)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"snncompile run failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    report = json.loads(next(out.glob("*.report.json")).read_text())
    energy, placement = report["energy"][report["target"]], report["placement"]
    return {"lava": {k: report["lava"][k] for k in ("total", "identical_to_reference", "granularity")},
            "cores": placement["cores"], "chips": placement["chips"], "cores_lower_bound": placement["lower_bound"],
            "energy_uj_per_sample": round(energy["total_pj"] / 1e6, 3),
            "latency_us_per_sample": round(report["latency"]["per_sample_ns"] / 1e3, 3),
            "calibration": report["calibration"], "test_samples": report["test_samples"],
            "compiled_before": compiled.exists(), "seconds": report["seconds"],
            "job_peak_rss_gb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2 ** 20, 2)}


def sharded_evaluation(entry, work: Path, args) -> dict:
    """The compiled graph over ``--samples`` test samples by ``snncompile simulate``, in one process and over two
    torchrun workers: seconds and predictions of each."""
    data = write_test_data(entry, work / f"{entry.name}.data", args.samples)
    found = {}
    for name, launcher in (("one_process", [sys.executable]),
                           ("two_workers", [str(Path(sys.executable).with_name("torchrun")), "--standalone",
                                            "--nproc_per_node=2"])):
        out = work / f"{entry.name}.{name}.json"
        command = [*launcher, "-m", "snncompile", "simulate", str(work / f"{entry.name}.pth.tar"), "--graph",
                   str(work / f"{entry.name}.loihi.snnir"), "--data-root", str(data), "--dataset", entry.data.dataset,
                   "--json", str(out)]
        done, seconds = _timed(lambda: subprocess.run(command, capture_output=True, text=True))
        if done.returncode:
            raise RuntimeError(f"{name} failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
        found[name] = {"seconds": seconds, "predictions": json.loads(out.read_text())["predictions"]}
    return {"samples": args.samples, "seconds_one_process": found["one_process"]["seconds"],
            "seconds_two_workers": found["two_workers"]["seconds"],
            "same_predictions": found["one_process"]["predictions"] == found["two_workers"]["predictions"]}


def run_phase(args) -> None:
    entry, work = _config(args.config), Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    if args.phase == "checkpoint":
        found = write_checkpoint(entry, work / f"{entry.name}.pth.tar")
    elif args.phase == "compile":
        found = compile_checkpoint(entry, work, args)
    elif args.phase == "place":
        found = place_compiled(entry, work, args)
    elif args.phase == "ratios":
        found = time_ratios(entry, work, args)
    elif args.phase == "run":
        found = run_main_job(entry, work, args)
    elif args.phase == "sharded":
        found = sharded_evaluation(entry, work, args)
    else:
        found = simulate(entry, work, args, args.phase)
    (work / f"{entry.name}.{args.phase}.json").write_text(json.dumps(found, indent=2) + "\n")


# ---- the parent: one child per step, its own peak RSS ---------------------------------------------------

def _child(args, config: str, phase: str) -> dict:
    """Run one step in a fresh interpreter; its result, wall time and peak RSS (or why it failed)."""
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    out = work / f"{config}.{phase}.json"
    out.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--phase", phase, "--config", config, "--workdir", str(work),
               "--calibration", str(args.calibration), "--samples", str(args.samples), "--target", args.target,
               "--repeats", str(args.repeats), "--lava-samples", str(args.lava_samples),
               "--lava-timeout", str(args.lava_timeout), "--threads", str(args.threads)]
    limit = int(args.memory_gb * 2 ** 30)

    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        os.setsid()

    log = work / f"{config}.{phase}.log"
    start = time.perf_counter()
    with open(log, "w") as err:
        child = subprocess.Popen(command, preexec_fn=limited, stderr=err,  # (the run step's children inherit it)
                                 env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    status, usage = _wait(child.pid, start + args.timeout)
    wall = round(time.perf_counter() - start, 1)
    result = {"wall_s": wall, "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
              "peak_rss_gb": round(usage.ru_maxrss / 2 ** 20, 2)}
    child.returncode = -9 if status is None else status  # reaped here (os.wait4 gives this child's own peak RSS)
    if status == 0 and out.exists():
        return {**result, **json.loads(out.read_text())}
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    why = f"timed out after {args.timeout} s" if status is None else (lines[-1] if lines else f"exit status {status}")
    return {**result, "failed": why}


def _wait(pid: int, deadline: float):
    """Reap ``pid`` with ``os.wait4``, killing its process group at ``deadline``: (exit status or None if it
    was killed for time, its resource usage)."""
    timed_out = False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return (None if timed_out else os.waitstatus_to_exitcode(status)), usage
        if time.perf_counter() > deadline and not timed_out:
            os.killpg(pid, signal.SIGKILL)
            timed_out = True
        time.sleep(0.2)


def _row(config: str, steps: dict) -> str:
    def cell(phase: str, key: str) -> str:
        step = steps.get(phase, {})
        if "failed" in step:
            return "failed"
        return "-" if step.get(key) is None else str(step[key])

    compiled = steps.get("compile", {})
    compile_s = "failed" if "failed" in compiled else (f"{compiled['wall_s']} ({compiled['cpu_s']})"
                                                       if "seconds" in compiled else "-")
    per_sample = {p: cell(p, "seconds_per_sample") for p in ("float", "window", "stepped")}
    return (f"| {config} | {cell('checkpoint', 'parameters')} | {cell('compile', 'nodes')} "
            f"| {cell('compile', 'cores')} "
            f"| {cell('compile', 'chips')} | {cell('compile', 'lower_bound')} | {cell('compile', 'violations')} "
            f"| {compile_s} | {steps.get('compile', {}).get('peak_rss_gb', '-')} "
            f"| {cell('place', 'seconds')} / {steps.get('place', {}).get('peak_rss_gb', '-')} "
            f"| {per_sample['float']} / {per_sample['window']} / {per_sample['stepped']} "
            f"| {steps.get('float', {}).get('peak_rss_gb', '-')} / {steps.get('window', {}).get('peak_rss_gb', '-')}"
            f" / {steps.get('stepped', {}).get('peak_rss_gb', '-')} "
            f"| {cell('ratios', 'window_per_float')} / {cell('ratios', 'stepped_per_float')} |")


def _run_row(config: str, steps: dict) -> str:
    """The ``run`` step's row: the report's per-sample figures and cores, the step's own wall, CPU and peak RSS,
    and the job's slowest parts."""
    run = steps.get("run", {})
    if "failed" in run or not run:
        return f"| {config} | {run.get('failed', 'not run')} |" + " - |" * 9
    lava, seconds = run["lava"], run["seconds"]
    return (f"| {config} | {run['test_samples']} | {run['cores']:,} ({run['cores_lower_bound']:,}) | {run['chips']} "
            f"| {lava['identical_to_reference']}/{lava['total']} identical ({lava['granularity']}) "
            f"| {run['energy_uj_per_sample'] / 1e3:.1f} mJ | {run['latency_us_per_sample'] / 1e3:.2f} ms "
            f"| {run['wall_s']} ({run['cpu_s']}) | {run['peak_rss_gb']} "
            f"| {seconds.get('Lava check', '-')} | {seconds.get('activity counts', '-')} |")


RUN_HEADER = ("| configuration | test samples | cores (lower bound) | chips | Lava | energy / sample (Loihi 2) "
              "| latency / sample | run wall s (CPU s) | peak RSS GB | Lava check s | activity counts s |\n"
              + "|---" * 11 + "|")


HEADER = ("| configuration | parameters | nodes | cores | chips | lower bound | violations | compile s (CPU s) | compile GB "
          "| place s / GB | s/sample float / window / stepped | GB float / window / stepped | window / stepped per "
          "float (one process) |\n" + "|---" * 13 + "|")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(PAPER_CONFIGS))
    parser.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES)
    parser.add_argument("--workdir", default="/tmp/snncompile-scale")
    parser.add_argument("--calibration", type=int, default=None,
                        help="synthetic samples that calibrate (default: compile's, config.CALIBRATION_SAMPLES)")
    parser.add_argument("--samples", type=int, default=16, help="samples each simulation runs (one batch)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads of each step")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each simulation in the ratios phase")
    parser.add_argument("--lava-samples", type=int, default=1, help="samples the run phase checks on Lava")
    parser.add_argument("--lava-timeout", type=float, default=1800.0,
                        help="seconds the run phase's Lava check may take")
    parser.add_argument("--target", default="loihi2")
    parser.add_argument("--memory-gb", type=float, default=16.0, help="address-space limit of each step")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds each step may run")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.calibration is None:
        from snncompile.config import CALIBRATION_SAMPLES
        args.calibration = CALIBRATION_SAMPLES
    if args.phase:
        return run_phase(args)
    results: dict[str, dict] = {}
    for config in args.configs:
        results[config] = {}
        for phase in args.phases:
            results[config][phase] = _child(args, config, phase)
            print(f"{config} {phase}: {json.dumps(results[config][phase])}", file=sys.stderr, flush=True)
            if "failed" in results[config][phase] and phase in ("checkpoint", "compile"):
                break  # the later steps need what this one writes
    print(HEADER)
    for config, steps in results.items():
        print(_row(config, steps))
    if "run" in args.phases:
        print("\n" + RUN_HEADER)
        for config, steps in results.items():
            print(_run_row(config, steps))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

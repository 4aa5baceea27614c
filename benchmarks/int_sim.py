"""Throughput and peak memory of the integer reference simulator against the float torch model.

Usage::

    .venv/bin/python benchmarks/int_sim.py                       # default zoo model, batch 64
    .venv/bin/python benchmarks/int_sim.py --model sdsa-digits --batch 64 --repeats 10 --threads 1

What it measures, for one batch of the model's test set:

- ``float``: the trained torch model (``load_checkpoint(...).model``) called on the batch under
  ``torch.no_grad()``; it returns logits.
- ``int``: the scheduled integer graph (``lower_to_loihi``, calibrated on the first ``--calibration``
  training samples as ``snncompile compile`` does) run by ``snncompile.sim.run_graph`` (the interpreter with
  the simulator's fast exact kernels) on the same batch. It runs ``T + L`` steps (``T`` data steps plus the
  pipeline latency ``L`` the schedule adds); both are printed.
  This is the time-stepped run whose traces line up with Lava's step for step.
- ``window``: the same integer graph unscheduled (``snncompile.ir.timing.unschedule``): the ``T``
  data steps only, every node's values equal to the scheduled run's from its latency on (the schedule's
  tested guarantee), so its outputs are identical; what a data-set evaluation needs.

Time: both variants are built and warmed up (``--warmup`` runs each) in this process, then run
``--repeats`` times each, interleaved; the table gives the median wall time (``time.perf_counter``),
samples/s and the ratio int/float (how many times slower the integer simulator is).

Peak memory: each variant runs once in a fresh child process (this script with ``--child``), spawned
before the parent builds anything (Linux carries the parent's ``ru_maxrss`` into a child). A first child
lowers the model and saves the integer graph (``.snnir``) and the batch; each measuring child loads only
what it runs (the checkpoint, or the saved graph, and the batch), collects garbage, reads its current
resident set size (``/proc/self/statm``), runs the variant once (cold: no warm-up) and reports
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` minus that RSS: the memory the run added at its peak. A run
that did not raise the process's peak (loading peaked higher) is flagged: its figure is then a lower
bound. The timing runs in the parent use the same saved graph and batch.

The integer predictions (argmax of the time-averaged output) are compared with the float model's.

Notes on reading the figures. The integer graph's values are int64 tensors (spikes float32) over ``T + L``
steps, so its largest intermediates exceed glibc's 32 MiB mmap threshold: each run maps them afresh, and
page faults on that fresh memory are a sizeable part of its time on machines where faults are slow (VMs).
PyTorch's allocator can ask for transparent huge pages instead: run with ``THP_MEM_ALLOC_ENABLE=1`` in the
environment (the child processes inherit it) to see that effect on both variants.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


VARIANTS = ("float", "int", "window")


def _rss_kib() -> int:
    """Current resident set size in KiB (Linux ``/proc``; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        return _maxrss_kib()


def _maxrss_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS reports bytes, Linux KiB


def _load_model(name: str):
    from snncompile.zoo.checkpoint import load_checkpoint
    from snncompile.zoo.registry import find_entry

    entry = find_entry(name)
    loaded = load_checkpoint(entry.checkpoint)
    loaded.model.eval()
    return entry, loaded


def _batch(entry, loaded, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from snncompile.data import load_dataset

    data = load_dataset(entry.data, loaded.config, split)
    n = min(n, len(data))
    return (torch.stack([data[i][0] for i in range(n)]), torch.tensor([int(data[i][1]) for i in range(n)]))


def _float_run(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def _int_run(graph, feeds) -> torch.Tensor:
    from snncompile.sim import run_graph
    from snncompile.sim.dataset import logits_of

    return logits_of(run_graph(graph, feeds)[graph.outputs[0]], graph)


def _prepare(args, workdir: Path) -> None:
    """Lower the model and save what the runs need: the integer graph (``.snnir``) and the test batch."""
    from snncompile.frontend import export
    from snncompile.ir import io as ir_io
    from snncompile.passes import lower_to_loihi
    from snncompile.sim.dataset import graph_feeds

    entry, loaded = _load_model(args.model)
    graph = export(loaded.model)
    calib, _ = _batch(entry, loaded, "train", args.calibration)
    ir_io.save(lower_to_loihi(graph, graph_feeds(graph, calib)), workdir / "int.snnir")
    x, labels = _batch(entry, loaded, "test", args.batch)
    torch.save({"x": x, "labels": labels, "time_steps": graph.time_steps}, workdir / "batch.pt")


def _runner(args, variant: str, workdir: Path):
    """A no-argument function running ``variant`` on the saved batch, and the batch."""
    saved = torch.load(workdir / "batch.pt")
    if variant == "float":
        _, loaded = _load_model(args.model)
        return (lambda: _float_run(loaded.model, saved["x"])), saved
    from snncompile.ir import io as ir_io
    from snncompile.sim.dataset import graph_feeds

    graph = ir_io.load(workdir / "int.snnir")
    if variant == "window":
        from snncompile.ir.timing import unschedule
        graph = unschedule(graph)
    feeds = graph_feeds(graph, saved["x"])
    saved["graph"] = graph
    return (lambda: _int_run(graph, feeds)), saved


def _child(args) -> None:
    """In a fresh process: prepare the files, or run one variant once and print its memory figures (JSON)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    if args.child == "prepare":
        return _prepare(args, workdir)
    run, _ = _runner(args, args.child, workdir)
    gc.collect()
    before, peak_before = _rss_kib(), _maxrss_kib()
    run()
    print(json.dumps({"rss_before_kib": before, "maxrss_before_kib": peak_before,
                      "maxrss_after_kib": _maxrss_kib()}))


def _spawn(args, what: str, workdir: Path) -> str:
    cmd = [sys.executable, __file__, "--child", what, "--workdir", str(workdir), "--model", args.model,
           "--batch", str(args.batch), "--calibration", str(args.calibration), "--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"the {what!r} child process failed (exit status {done.returncode})")
    return done.stdout


def main(argv: list[str] | None = None) -> None:
    from snncompile.zoo.registry import DEFAULT_MODEL

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL, help="zoo model (see `snncompile models`)")
    p.add_argument("--batch", type=int, default=64, help="test samples per run")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each variant")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of each variant first")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--calibration", type=int, default=64, help="training samples that calibrate the lowering")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--child", choices=("prepare",) + VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child(args)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        # Children first, while this process is still small: Linux carries a parent's ru_maxrss over
        # fork and exec, so a child spawned by a big parent would report the parent's peak.
        _spawn(args, "prepare", workdir)
        memory = {} if args.no_memory else {k: json.loads(_spawn(args, k, workdir).strip().splitlines()[-1])
                                            for k in VARIANTS}
        runs, saved = {}, {}
        for k in VARIANTS:
            runs[k], batch = _runner(args, k, workdir)
            saved = {**batch, **saved}  # keep the scheduled graph ("int" comes before "window")
    x, labels, integer = saved["x"], saved["labels"], saved["graph"]

    for _ in range(args.warmup):
        for run in runs.values():
            run()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            out = run()
            times[name].append(time.perf_counter() - start)
            saved[name + "_pred"] = out.argmax(-1)
    differ = int((saved["float_pred"] != saved["int_pred"]).sum())
    if not torch.equal(saved["int_pred"], saved["window_pred"]):
        raise SystemExit("the unscheduled integer graph predicts differently from the scheduled one")

    n, steps = x.shape[0], saved["time_steps"]
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"model {args.model}, batch {n}, threads {torch.get_num_threads()}, median of {args.repeats} runs; "
          f"T = {steps} data steps, the integer graph runs T + L = {integer.time_steps} steps "
          f"(L = {integer.time_steps - steps})")
    peaks = {k: (m["maxrss_after_kib"] - m["rss_before_kib"]) / 1024 for k, m in memory.items()}
    print(f"{'variant':8s} {'time/batch':>11s} {'min':>9s} {'samples/s':>10s} {'peak MiB':>9s}")
    for name in runs:
        peak = f"{peaks[name]:9.1f}" if name in peaks else f"{'-':>9s}"
        print(f"{name:8s} {med[name] * 1e3:9.1f}ms {min(times[name]) * 1e3:7.1f}ms {n / med[name]:10.1f} {peak}")
    for variant in ("int", "window"):
        line = f"{variant}/float: time {med[variant] / med['float']:.2f}x"
        if memory and peaks["float"] > 0:
            line += f", peak memory {peaks[variant] / peaks['float']:.2f}x"
        print(line)
    for k, m in memory.items():
        if m["maxrss_after_kib"] <= m["maxrss_before_kib"]:
            print(f"note: the {k} run did not raise its process's peak RSS; its figure is a lower bound")
    print(f"predictions: the integer graph differs from the float model on {differ} of {n} samples "
          f"(accuracy float {float((saved['float_pred'] == labels).float().mean()):.2%}, "
          f"int {float((saved['int_pred'] == labels).float().mean()):.2%})")


if __name__ == "__main__":
    main()

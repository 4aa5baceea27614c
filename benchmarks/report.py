"""What the report stage costs next to the simulation it reports on.

Usage::

    .venv/bin/python benchmarks/report.py                                   # statten-digits, 16 samples
    .venv/bin/python benchmarks/report.py --model statten-cifar10-2-256 --samples 4   # random weights, 1556 cores

Lowers a zoo model (its shipped weights, or random ones for a configuration without; calibrated on random
inputs then) and places it on ``--target``, then times, on one batch, each step ``snncompile run`` takes
after the simulation: the recorded run (:func:`trace_run`), the whole-graph counts, the per-core counts,
the latency estimate, the pricing and the HTML page. The baseline is the plain reference simulation of the
same batch (``run_graph``) in the same process; every step is reported as a ratio to it (median of
``--repeats`` runs after one warm-up). Placement, done once, is timed too.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def _median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="statten-digits")
    parser.add_argument("--target", default="loihi2")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from snncompile import load_checkpoint
    from snncompile.backends.placement import place
    from snncompile.frontend import export
    from snncompile.sim import run_graph
    from snncompile.nn.backbones import build_model
    from snncompile.passes import lower_to_loihi
    from snncompile.report import (core_activity, count_activity, estimate_latency, price_ann, price_nodes,
                                   render_html, trace_run)
    from snncompile.sim.dataset import graph_feeds
    from snncompile.targets import load_target
    from snncompile.zoo.registry import find_entry

    entry = find_entry(args.model)
    torch.manual_seed(0)
    model = load_checkpoint(entry.checkpoint).model if entry.checkpoint else build_model(entry.model).eval()
    cfg = entry.model
    x = torch.rand(args.samples, cfg.in_channels, cfg.img_size, cfg.img_size)
    graph = export(model)
    integer = lower_to_loihi(graph, graph_feeds(graph, x), target=args.target)
    target = load_target(args.target)
    start = time.perf_counter()
    placement = place(integer, target)
    placing = time.perf_counter() - start
    feeds = graph_feeds(integer, x)
    trace = trace_run(integer, feeds)
    activity = count_activity(integer, trace=trace)
    cores = core_activity(integer, placement, trace, target)
    latency = estimate_latency(cores, target)
    report = {"schema": "snncompile-run-report/2", "model": args.model, "target": args.target,
              "float_accuracy": 0.0, "integer_accuracy": 0.0, "test_samples": args.samples,
              "lava": {"accuracy": 0.0, "total": 0, "identical_to_reference": 0, "granularity": "fused"},
              "placement": {"cores": placement.cores_used, "chips": placement.chips_used}, "violations": [],
              "layers": [], "activity": activity.to_dict(), "latency": latency.to_dict(),
              "energy": {args.target: price_nodes(activity, target).plus(latency.energy_pj, latency.figures).to_dict(),
                         "ann": price_ann(activity).to_dict()}, "files": {}, "seconds": {}}

    steps = {
        "reference simulation (baseline)": lambda: run_graph(integer, feeds),
        "recorded run (trace_run)": lambda: trace_run(integer, feeds),
        "whole-graph counts": lambda: count_activity(integer, trace=trace),
        "per-core counts": lambda: core_activity(integer, placement, trace, target),
        "latency estimate": lambda: estimate_latency(cores, target),
        "pricing (per node, ANN)": lambda: (price_nodes(activity, target), price_ann(activity)),
        "HTML page": lambda: render_html(report),
    }
    print(f"{args.model}: {len(integer.nodes)} nodes, {integer.time_steps} steps, {args.samples} samples, "
          f"{placement.cores_used} cores on {args.target} (placement {placing:.2f} s), "
          f"{torch.get_num_threads()} thread(s)")
    base = None
    for label, fn in steps.items():
        seconds = _median_seconds(fn, args.repeats)
        base = base or seconds
        print(f"  {label:34s} {seconds * 1e3:9.1f} ms  {seconds / base:6.2f}x")


if __name__ == "__main__":
    main()

"""Lava backend speed: steps/s of each granularity, and per-sample time against the reference simulator.

Usage::

    .venv/bin/python benchmarks/lava_backend.py                         # default zoo model, batches 1 and 8
    .venv/bin/python benchmarks/lava_backend.py --model sdsa-digits --batch 8 --repeats 3
    .venv/bin/python benchmarks/lava_backend.py --granularity per_op --granularity fused --json out.json

What it measures, for each ``--batch`` (repeatable; default 1 and 8) samples of the model's test set on the
scheduled integer graph (``lower_to_loihi`` calibrated on ``--calibration`` training samples, ``T + L`` steps):

- for each granularity (``per_op``: one Lava Process per IR node; ``fused``: one per transformer block;
  ``fused_model``: one for the whole chip part), ``--repeats`` Lava runs (``run_lava_session``, each a
  fresh Lava runtime in a child process, the whole batch in one run), median of each figure: the Lava
  Processes and OS processes, **steps/s** (steady state: Lava steps 2 .. T+L, after the first step that
  holds every process's one-off warm-up), the first step, startup (compile + runtime start), stop, and the
  end-to-end time of a run per sample (``total`` / batch: child start to answer, host parts included);
- the reference simulator (``run_graph`` on the same batch, single-threaded like the Lava processes):
  median wall time per sample over ``--repeats`` runs after one warm-up.

Every Lava run is checked against the reference: every returned node equal, predictions equal (the script
fails otherwise). The ratio lines give each fused granularity's steps/s over per-op's at each batch; the script
fails where ``fused_model`` is not at least ``--min-ratio`` (5) times as fast as ``per_op`` (the fast path must
stay worth having).

Lava runs one OS process per Process and exchanges a message with each every step: the per-op
granularity pays that for every node, the fused ones for a handful. Timings depend on the machine's free
cores: the load average is printed with the results.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch


def _integer_graph(model: str, batches: list[int], calibration: int):
    from snncompile.data import load_dataset
    from snncompile.frontend import export
    from snncompile.passes import lower_to_loihi
    from snncompile.sim.dataset import graph_feeds
    from snncompile.zoo.checkpoint import load_checkpoint
    from snncompile.zoo.registry import find_entry

    entry = find_entry(model)
    loaded = load_checkpoint(entry.checkpoint)
    graph = export(loaded.model)
    train = load_dataset(entry.data, loaded.config, "train")
    test = load_dataset(entry.data, loaded.config, "test")
    integer = lower_to_loihi(graph, graph_feeds(graph, torch.stack([train[i][0] for i in range(calibration)])))
    return integer, {b: graph_feeds(integer, torch.stack([test[i][0] for i in range(b)])) for b in batches}


def _check(graph, feeds, ref: dict, run) -> None:
    """Lava's values equal the reference simulator's run of the graph Lava ran on every step (per_op runs the
    plan's graph: synapse biases in the neurons and sums) and the compiled graph's on every data window."""
    from snncompile.ir.timing import data_steps, latencies
    from snncompile.sim import run_graph
    from snncompile.sim.dataset import logits_of
    values = run.values
    ran = ref if run.plan.graph is graph else run_graph(run.plan.graph, feeds, keep="all")
    latency, steps, types = latencies(graph), data_steps(graph), graph.types()
    for name, value in values.items():
        window = slice(latency[name], latency[name] + steps) if types[name].time == "stream" else slice(None)
        if not (torch.equal(value.to(torch.float64), ran[name].to(torch.float64))
                and torch.equal(value[window].to(torch.float64), ref[name][window].to(torch.float64))):
            raise SystemExit(f"Lava ({run.plan.granularity}) differs from the reference simulator at node {name!r}")
    out = graph.outputs[0]
    if not torch.equal(logits_of(values[out], graph).argmax(-1), logits_of(ref[out], graph).argmax(-1)):
        raise SystemExit("Lava's predictions differ from the reference simulator's")


def main(argv: list[str] | None = None) -> None:
    from snncompile.zoo.registry import DEFAULT_MODEL

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL, help="zoo model (see `snncompile models`)")
    p.add_argument("--batch", type=int, action="append", help="test samples per Lava run (repeatable; default: 1, 8)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each variant (medians are reported)")
    p.add_argument("--granularity", action="append", choices=["per_op", "fused", "fused_model"],
                   help="granularities to run (repeatable; default: all three)")
    p.add_argument("--calibration", type=int, default=16, help="training samples that calibrate the lowering")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per Lava run")
    p.add_argument("--min-ratio", type=float, default=5.0,
                   help="fail unless fused_model's steps/s is at least this times per_op's (where both ran)")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    batches = args.batch or [1, 8]
    graph, feeds = _integer_graph(args.model, batches, args.calibration)
    results = [_measure(args, graph, feeds[b], b) for b in batches]
    for r in results:
        _print(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    slow = [r["batch"] for r in results if r["ratio"].get("fused_model", args.min_ratio) < args.min_ratio]
    if slow:
        raise SystemExit(f"fused_model is less than {args.min_ratio:g}x per_op's steps/s at batch {slow}")


def _measure(args, graph, feeds, batch: int) -> dict:
    """The reference simulator's time and each granularity's figures for one batch size."""
    from snncompile.backends.lava.runner import run_lava_session
    from snncompile.sim import run_graph

    run_graph(graph, feeds)  # warm-up
    ref_times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        ref = run_graph(graph, feeds, keep="all")
        ref_times.append(time.perf_counter() - t)
    results = {"model": args.model, "batch": batch, "steps": graph.time_steps, "repeats": args.repeats,
               "reference_s_per_sample": statistics.median(ref_times) / batch, "lava": {}}
    for gran in args.granularity or ["per_op", "fused", "fused_model"]:
        runs = []
        for _ in range(args.repeats):
            run = run_lava_session(graph, feeds, granularity=gran, timeout=args.timeout)
            _check(graph, feeds, ref, run)
            runs.append(run)
        med = lambda f: statistics.median(f(r) for r in runs)  # noqa: E731
        results["lava"][gran] = {
            "processes": len(runs[0].plan.processes()), "os_processes": runs[0].os_processes,
            "steps_per_s": med(lambda r: r.steps_per_second),
            "first_step_s": med(lambda r: r.timings["first_step"]),
            "startup_s": med(lambda r: r.timings["compile"] + r.timings["start"]),
            "stop_s": med(lambda r: r.timings["stop"]),
            "s_per_sample": med(lambda r: r.timings["total"]) / batch,
        }
    base = results["lava"].get("per_op")
    results["ratio"] = {g: x["steps_per_s"] / base["steps_per_s"] for g, x in results["lava"].items()
                        if base and g != "per_op"}
    results["load_average"] = os.getloadavg()
    return results


def _print(r: dict) -> None:
    print(f"{r['model']}: batch {r['batch']}, {r['steps']} Lava steps (T + L), medians of {r['repeats']} runs")
    print(f"{'granularity':<12} {'procs':>5} {'OS':>4} {'steps/s':>8} {'1st step s':>10} {'startup s':>9} "
          f"{'stop s':>7} {'s/sample':>9}")
    for gran, x in r["lava"].items():
        print(f"{gran:<12} {x['processes']:>5} {x['os_processes']:>4} {x['steps_per_s']:>8.1f} "
              f"{x['first_step_s']:>10.2f} {x['startup_s']:>9.2f} {x['stop_s']:>7.2f} {x['s_per_sample']:>9.2f}")
    print(f"{'reference':<12} {'':>5} {'':>4} {'':>8} {'':>10} {'':>9} {'':>7} {r['reference_s_per_sample']:>9.3f}")
    for gran, ratio in r["ratio"].items():
        print(f"{gran} / per_op steps/s: {ratio:.1f}x")
    print(f"load average {', '.join(f'{v:.1f}' for v in r['load_average'])} on {os.cpu_count()} cores")


if __name__ == "__main__":
    sys.exit(main())

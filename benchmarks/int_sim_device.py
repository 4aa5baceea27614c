"""The integer reference simulator on an accelerator: its outputs against the CPU run's, and its speed.

Usage (on a machine with a GPU)::

    python benchmarks/int_sim_device.py runs/statten-digits.loihi.snnir --model statten-digits --device cuda

Loads a compiled integer graph (``snncompile compile`` or ``snncompile run`` writes one), runs the model's
whole test set through it with :func:`snncompile.sim.simulate` on the CPU and on ``--device``, checks every
spiking node's trace and every output for exact equality (the integer semantics are exact, so any
difference is a bug), and times both (median of ``--repeats`` runs per batch size, after a warm-up run).

Measured 2026-11-22 on one NVIDIA H100 (16 CPU cores beside it; torch 2.11.0+cu130, Python 3.12: the
device image, with this package on ``PYTHONPATH``), every zoo model's compiled graph, all 360 test digits:
every spiking node's trace and the output identical on CPU and GPU for all six; whole test set per run:

    statten-digits        19 steps   CPU 1075 ms   GPU  96 ms   (11x)
    sdsa-digits           17 steps   CPU 1063 ms   GPU 131 ms   (8x)
    ssa-digits            17 steps   CPU  945 ms   GPU  94 ms   (10x)
    a2os2a-digits         17 steps   CPU 1088 ms   GPU 124 ms   (9x)
    ds2ta-digits          17 steps   CPU 1269 ms   GPU 131 ms   (10x)
    statten-event-digits  28 steps   CPU 2253 ms   GPU 222 ms   (10x)

With TF32 allowed (``run_graph``'s ``ieee_float32`` disabled) statten-digits stayed identical too: its
float32 operands (spikes, 8-bit weights) have at most 11 significant bits, which TF32 keeps; graded
operands of more bits would not be.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("graph", help="compiled integer graph (.snnir)")
    parser.add_argument("--model", default="statten-digits", help="zoo model whose test set to run")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 360])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    from snncompile.data import load_dataset
    from snncompile.ir import io as ir_io
    from snncompile.sim import simulate
    from snncompile.sim.dataset import graph_feeds, logits_of
    from snncompile.zoo.registry import find_entry

    graph = ir_io.load(args.graph)
    entry = find_entry(args.model)
    test = load_dataset(entry.data, entry.model, "test")
    x = torch.stack([test[i][0] for i in range(len(test))])
    labels = torch.tensor([int(test[i][1]) for i in range(len(test))])
    print(f"{args.graph}: {len(graph.nodes)} nodes, {graph.time_steps} steps; {len(test)} test samples; "
          f"device {torch.cuda.get_device_name() if args.device.startswith('cuda') else args.device}, "
          f"torch {torch.__version__}")

    results = {}
    for device in ("cpu", args.device):
        feeds = graph_feeds(graph, x)
        res = simulate(graph, feeds, device=device)
        results[device] = res
        out = res.outputs[graph.outputs[0]]
        accuracy = float((logits_of(out.cpu(), graph).argmax(1) == labels).double().mean())
        print(f"{device}: accuracy {accuracy:.4f}")
    cpu, dev = results["cpu"], results[args.device]
    mismatched = [n for n in cpu.spikes if not torch.equal(cpu.spikes[n], dev.spikes[n].cpu())]
    mismatched += [n for n in cpu.outputs if not torch.equal(cpu.outputs[n], dev.outputs[n].cpu())]
    print(f"spiking nodes compared: {len(cpu.spikes)}, outputs: {len(cpu.outputs)}; mismatched: {mismatched or 'none'}")

    for batch in args.batches:
        feeds = graph_feeds(graph, x[:batch])
        line = [f"batch {batch}:"]
        for device in ("cpu", args.device):
            simulate(graph, feeds, record=(), device=device)
            times = []
            for _ in range(args.repeats):
                if device != "cpu":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                simulate(graph, feeds, record=(), device=device)
                if device != "cpu":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
            line.append(f"{device} {statistics.median(times) * 1e3:.1f} ms")
        print(" ".join(line))


if __name__ == "__main__":
    main()

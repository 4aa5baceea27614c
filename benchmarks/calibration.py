"""How many calibration samples a compiled model needs: the integer graph, its scales and its accuracy as the
calibration set grows, for every zoo model with shipped weights.

Usage::

    .venv/bin/python benchmarks/calibration.py                       # every trained zoo model, train + synthetic
    .venv/bin/python benchmarks/calibration.py --models statten-digits --counts 1 4 16 64 --json /tmp/cal.json

For each model, source (``train``: the first training samples; ``synthetic``: ``snncompile.data.calibration``'s
inputs drawn with the data set's normalisation) and count, the ``loihi`` pipeline is calibrated on that many
samples and the result compared with the graph calibrated on the most samples (``--counts``' largest, from the
training set): whether the integer graph is the same (``graph_digest``), how many neuron thresholds and input
scales differ, the integer graph's top-1 accuracy on the whole test split (unscheduled, reference simulator) and
its agreement with the float model's predictions, and the calibration's time. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

DEFAULT_COUNTS = (1, 2, 4, 8, 16, 32, 64, 256)


def _decisions(graph) -> dict[str, object]:
    """What ``quantize`` chose from data: every node's scale (thresholds and inputs follow from them)."""
    entry = next(e for e in graph.history if e.name == "quantize")
    return {n: round(s, 12) for n, s in entry.options["scales"].items()}


def measure(name: str, counts, sources) -> list[dict]:
    import torch
    from snncompile.data import load_dataset
    from snncompile.data.calibration import calibration_samples
    from snncompile.ir.io import graph_digest
    from snncompile.job import steps
    from snncompile.zoo.registry import find_entry, load_entry_checkpoint

    entry = find_entry(name)
    loaded = load_entry_checkpoint(entry, None)
    graph = steps.export(loaded)
    test = load_dataset(entry.data, loaded.config, "test")
    labels = torch.tensor([int(test[i][1]) for i in range(len(test))])
    float_eval = steps.simulate(graph, test)
    rows, reference = [], None
    for source in sources:
        for count in sorted(counts, reverse=True):
            samples = calibration_samples(source, entry.data, loaded.config, count)
            start = time.perf_counter()
            lowered = steps.lower(graph, samples, calibration=count, target="loihi2")
            seconds = time.perf_counter() - start
            found = steps.simulate(lowered, test)
            predictions = torch.tensor(found.predictions)
            scales = _decisions(lowered)
            reference = reference or (graph_digest(lowered), scales)
            rows.append({"model": name, "source": source, "count": count, "seconds": round(seconds, 2),
                         "same_graph": graph_digest(lowered) == reference[0],
                         "scales_differing": sum(scales.get(n) != s for n, s in reference[1].items()),
                         "integer_accuracy": round(float((predictions == labels).float().mean()), 4),
                         "agreement_with_float": round(float((predictions == torch.tensor(float_eval.predictions))
                                                             .float().mean()), 4),
                         "float_accuracy": round(float_eval.accuracy, 4)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    from snncompile.zoo.registry import list_entries
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[e.name for e in list_entries() if e.checkpoint is not None])
    parser.add_argument("--counts", nargs="+", type=int, default=list(DEFAULT_COUNTS))
    parser.add_argument("--sources", nargs="+", default=["train", "synthetic"])
    parser.add_argument("--json", type=Path, help="write every row here")
    args = parser.parse_args(argv)
    rows = [row for name in args.models for row in measure(name, args.counts, args.sources)]
    print("| model | source | samples | same graph as the largest | scales differing | integer acc. "
          "| agreement with float | calibration s |\n" + "|---" * 8 + "|")
    for r in rows:
        print(f"| {r['model']} | {r['source']} | {r['count']} | {'yes' if r['same_graph'] else 'no'} "
              f"| {r['scales_differing']} | {r['integer_accuracy']:.2%} | {r['agreement_with_float']:.2%} "
              f"| {r['seconds']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

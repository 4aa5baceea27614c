"""What SDT-V3's multi-level activations cost sent graded or unary, measured on a trained model's test samples.

Usage::

    .venv/bin/python benchmarks/sdt_v3_levels.py                          # sdt-v3-digits, 360 test samples
    .venv/bin/python benchmarks/sdt_v3_levels.py --model sdt-v3-digits --samples 64

The model is exported, its quantiser norms folded and its attention lowered to integers
(``passes/multilevel.py``, exact: the lowered graph's logits are checked equal to the float graph's); one run of
the test samples gives every quantiser's levels, and ``report/multilevel.encoding_costs`` the per-sample steps,
messages, synaptic operations, attention accumulates and energy of each encoding, priced with ``loihi2`` and
with the ``cmos45`` convention. It also prints the level histogram (how much of each level the activations
send) and the float accuracy on those samples.
"""
from __future__ import annotations

import argparse

import torch

import snncompile
from snncompile.data import load_dataset
from snncompile.frontend import export
from snncompile.ir import run_graph
from snncompile.passes.multilevel import fold_level_norms, lower_level_attention
from snncompile.report.multilevel import encoding_costs, quantiser_levels
from snncompile.zoo.registry import find_entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sdt-v3-digits")
    parser.add_argument("--samples", type=int, default=360)
    args = parser.parse_args()
    entry = find_entry(args.model)
    model = snncompile.load_checkpoint(entry.checkpoint).model
    test = load_dataset(entry.data, entry.model, "test")
    count = min(args.samples, len(test))
    x = torch.stack([test[i][0] for i in range(count)])
    y = torch.tensor([int(test[i][1]) for i in range(count)])
    graph = export(model)
    lowered = lower_level_attention(fold_level_norms(graph))
    values = run_graph(lowered, {"input": x}, keep="all")
    assert torch.equal(values["output"], run_graph(graph, {"input": x})["output"]), "lowering is not exact"
    accuracy = (values["output"].argmax(-1) == y).double().mean().item()
    levels = torch.cat([v.flatten() for v in quantiser_levels(lowered, values).values()])
    histogram = torch.bincount(levels, minlength=5).double() / levels.numel()
    print(f"{args.model}: {count} test samples, float accuracy {accuracy:.2%}; level shares 0..4: "
          + ", ".join(f"{h:.3f}" for h in histogram.tolist()))
    print("| target | encoding | steps | messages | synaptic ops | attention accumulates | energy (nJ) |")
    print("|---|---|---|---|---|---|---|")
    for target in ("loihi2", "cmos45"):
        for encoding, c in encoding_costs(lowered, values, target).items():
            print(f"| {target} | {encoding} | {c.steps} | {c.messages:,.0f} | {c.synaptic_ops:,.0f} | "
                  f"{c.attention_accumulates:,.0f} | {c.energy_pj / 1e3:,.1f} |")


if __name__ == "__main__":
    main()

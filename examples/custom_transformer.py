"""Your own spiking transformer: choose depth, width, heads and attention, train it briefly, compile, report.

Writes the model as a zoo config (the ``models/*.yaml`` format, validated on load), trains it on
scikit-learn's bundled digits (no download; about 4 s per epoch on one CPU core at the defaults), saves the
checkpoint, then runs the main job (``run_job``): float and integer test accuracy, placement on Loihi cores,
a Lava check against the reference simulator, activity counts, energy and latency estimates in a JSON report
and its HTML page.

    python examples/custom_transformer.py                              # SSA, 1 block, dim 32, 2 heads
    python examples/custom_transformer.py --attention A2OS2A --layers 2 --dim 64 --heads 4 --epochs 10

The written YAML works with the command line too, e.g. ``snncompile train runs/examples/my-transformer.yaml``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

from snncompile import load_checkpoint
from snncompile.config import ATTENTION_MODES, load_entry_file
from snncompile.data import load_dataset
from snncompile.job import JobReport, run_job
from snncompile.train.trainer import train


def main(argv: list[str] | None = None) -> JobReport:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attention", choices=ATTENTION_MODES, default="SSA")
    parser.add_argument("--layers", type=int, default=1, help="encoder blocks")
    parser.add_argument("--dim", type=int, default=32, help="embedding width (a multiple of 8 and of --heads)")
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--mlp-ratio", type=int, default=4)
    parser.add_argument("--time-steps", type=int, default=4)
    parser.add_argument("--img-size", type=int, default=16, help="the 8x8 digits are resized to this")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; a model this small trains fastest on one (more only add contention)")
    parser.add_argument("--target", default="loihi2", help="hardware target (targets/*.toml)")
    parser.add_argument("--samples", type=int, default=64, help="test samples for activity counts and spike agreement")
    parser.add_argument("--lava-samples", type=int, default=8, help="test samples checked on Lava")
    parser.add_argument("--name", default="my-transformer")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/examples"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    config = {
        "name": args.name,
        "description": f"{args.attention}, {args.layers} block(s) of width {args.dim} (examples/custom_transformer.py)",
        "model": {"attention": args.attention, "layers": args.layers, "dim": args.dim, "num_heads": args.heads,
                  "mlp_ratio": args.mlp_ratio, "time_steps": args.time_steps, "chunk_size": 2,
                  "img_size": args.img_size, "in_channels": 1, "num_classes": 10, "pooling_stat": "0011"},
        "data": {"dataset": "digits"},
        "train": {"epochs": args.epochs, "batch_size": 64, "lr": args.lr, "seed": args.seed},
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    config_file = args.out_dir / f"{args.name}.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    entry = load_entry_file(config_file)  # every invalid size or combination is reported here, by field

    trained = train(entry, args.out_dir / f"{args.name}.pt")
    loaded = load_checkpoint(trained.checkpoint)
    train_set, test_set = (load_dataset(entry.data, entry.model, split) for split in ("train", "test"))
    report = run_job(loaded, train_set, test_set, target=args.target, samples=args.samples,
                     lava_samples=args.lava_samples, out_dir=args.out_dir, step=lambda what: print(f"  {what} ..."))

    energy = report.energy[args.target]
    print(f"{args.name}: float test accuracy {report.float_accuracy:.2%}, integer {report.integer_accuracy:.2%} "
          f"({report.test_samples} digits), Lava identical to the reference on "
          f"{report.lava['identical_to_reference']}/{report.lava['total']} samples")
    print(f"{report.placement['cores']} {args.target} cores, {len(report.violations)} design-rule violation(s); "
          f"per sample {energy['total_pj'] / 1e6:.2f} uJ (unpriced: {', '.join(energy['unpriced']) or 'none'}) "
          f"and {report.latency['per_sample_ns'] / 1e6:.2f} ms")
    print(f"config {config_file}, checkpoint {trained.checkpoint}, report {report.files['report']} "
          f"(HTML page {report.files['html']})")
    return report


if __name__ == "__main__":
    main()

"""An upstream training-script checkpoint (STAtten or Spike-Driven Transformer) to a compiled-model report.

Loads a timm ``CheckpointSaver`` file (``model_best.pth.tar``, ``checkpoint-<epoch>.pth.tar``) written by the
STAtten or Spike-Driven Transformer ``train.py`` with ``load_checkpoint``, which reads the architecture from
the file's ``args`` and weight shapes without executing any code from it, and runs the main job
(``run_job``): float accuracy, lowering to integers, placement on the target, integer accuracy, a Lava
check, per-layer activity, energy and latency estimates, written as a JSON report and its HTML page.

    python examples/upstream_checkpoint_report.py                  # a demo checkpoint, written first
    python examples/upstream_checkpoint_report.py model_best.pth.tar --dataset cifar10 --data-root ~/cifar10 --limit 500

Without a path it writes a demo file in the upstream format from a model shipped in ``models/``
(``--demo statten``: STAtten repository, whose ``args`` carry ``attention_mode``; ``--demo sdt``: Spike-Driven
Transformer repository, whose ``args`` do not, which makes it an SDT/SDSA model).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch
from torch.utils.data import Subset

from snncompile import LoadedCheckpoint, load_checkpoint
from snncompile.config import ATTENTION_MODES, DATASETS, DataConfig
from snncompile.data import load_dataset
from snncompile.job import JobReport, run_job
from snncompile.zoo.registry import find_entry

DEMO_MODELS = {"statten": "statten-digits", "sdt": "sdsa-digits"}  # upstream repository -> shipped model


def write_demo_checkpoint(path: Path, repository: str) -> Path:
    """A shipped model saved as the upstream ``train.py`` saves its best epoch (timm ``CheckpointSaver``)."""
    shipped = load_checkpoint(find_entry(DEMO_MODELS[repository]).checkpoint)
    cfg = shipped.config
    args = dict(model="sdt", time_steps=cfg.time_steps, layer=cfg.layers, dim=cfg.dim, num_heads=cfg.num_heads,
                mlp_ratio=cfg.mlp_ratio, img_size=cfg.img_size, in_channels=cfg.in_channels,
                num_classes=cfg.num_classes, pooling_stat=cfg.pooling_stat, spike_mode=cfg.spike_mode,
                dvs_mode=cfg.dvs_mode, TET=cfg.tet, eval_metric="top1")
    if repository == "statten":
        args.update(attention_mode="STAtten", chunk_size=cfg.chunk_size)
    torch.save({"epoch": shipped.metrics["epochs"] - 1, "arch": "sdt", "state_dict": shipped.model.state_dict(),
                "version": 2, "args": argparse.Namespace(**args),
                "metric": 100 * shipped.metrics["test_accuracy"]}, path)
    return path


def main(argv: list[str] | None = None) -> tuple[JobReport, LoadedCheckpoint]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", type=Path, help="upstream checkpoint (default: write a demo one)")
    parser.add_argument("--demo", choices=sorted(DEMO_MODELS), default="statten",
                        help="upstream repository whose format the demo checkpoint takes")
    parser.add_argument("--attention", choices=ATTENTION_MODES, help="override the attention mode the file implies")
    parser.add_argument("--dataset", choices=DATASETS,
                        help="evaluation data (default: the file's args.dataset; digits for the demo)")
    parser.add_argument("--data-root", type=Path, help="folder of user-supplied data (CIFAR-10, CIFAR10-DVS, ...)")
    parser.add_argument("--limit", type=int, help="evaluate on the first LIMIT test samples only")
    parser.add_argument("--target", default="loihi2", help="hardware target (targets/*.toml)")
    parser.add_argument("--samples", type=int, default=64, help="test samples for activity counts and spike agreement")
    parser.add_argument("--lava-samples", type=int, default=8, help="test samples checked on Lava")
    parser.add_argument("--name", help="report name (default: checkpoint file name and attention mode)")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/examples"))
    args = parser.parse_args(argv)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    path, dataset = args.checkpoint, args.dataset
    if path is None:
        path = write_demo_checkpoint(args.out_dir / "model_best.pth.tar", args.demo)
        dataset = dataset or "digits"
        print(f"wrote a demo {args.demo} checkpoint in the upstream format to {path}")

    loaded = load_checkpoint(path, attention=args.attention)
    cfg = loaded.config
    print(f"{path}: {loaded.source} checkpoint, {cfg.attention} attention, T={cfg.time_steps}, dim={cfg.dim}, "
          f"layers={cfg.layers}, heads={cfg.num_heads}, {cfg.img_size}x{cfg.img_size}x{cfg.in_channels} input; "
          f"file metrics {loaded.metrics}")
    for note in loaded.notes:
        print(f"  note: {note}")
    # Every upstream run saves model_best.pth.tar: name the report after the file and the attention it implies.
    loaded = dataclasses.replace(loaded, name=args.name or f"{path.name.split('.')[0]}-{cfg.attention}")

    data = DataConfig(dataset=dataset or loaded.dataset or "", root=args.data_root and str(args.data_root))
    if data.problems():
        parser.error(f"cannot tell which data set to evaluate on ({'; '.join(data.problems())}); pass --dataset")
    train_set, test_set = (load_dataset(data, cfg, split) for split in ("train", "test"))
    if args.limit:
        test_set = Subset(test_set, range(min(args.limit, len(test_set))))

    report = run_job(loaded, train_set, test_set, target=args.target, samples=args.samples,
                     lava_samples=args.lava_samples, out_dir=args.out_dir, step=lambda what: print(f"  {what} ..."))
    print(f"{report.model} on {report.test_samples} {data.dataset} test samples: float accuracy "
          f"{report.float_accuracy:.2%}, integer {report.integer_accuracy:.2%}; Lava identical to the reference on "
          f"{report.lava['identical_to_reference']}/{report.lava['total']} samples; {report.placement['cores']} "
          f"{args.target} cores, {len(report.violations)} design-rule violation(s)")
    print(f"report: {report.files['report']} (HTML page: {report.files['html']})")
    return report, loaded


if __name__ == "__main__":
    main()

"""The ``snncompile`` command line. Each command is a thin wrapper over one library function."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import torch
import typer
from rich.console import Console
from rich.table import Table

from .data import DataError, load_dataset
from .nn.record import record_spikes
from .train.trainer import evaluate, train
from .zoo.checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint
from .config import ATTENTION_MODES, DATASETS, ConfigError, DataConfig, ZooEntry
from .zoo.registry import DEFAULT_MODEL, find_entry, list_entries

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Compile trained PyTorch spiking transformers for a bit-accurate Loihi-style target.")
console = Console()

USER_ERRORS = (ConfigError, CheckpointError, DataError, FileNotFoundError)
EXIT_USER_ERROR = 2

ModelArg = typer.Argument(DEFAULT_MODEL, help="zoo model name (see `snncompile models`) or checkpoint file")
AttentionOpt = typer.Option(None, "--attention", help=f"override the attention mode: {', '.join(ATTENTION_MODES)}")
DataRootOpt = typer.Option(None, "--data-root", help="local folder of user-supplied data (CIFAR-10, CIFAR10-DVS...)")
DatasetOpt = typer.Option(None, "--dataset", help=f"evaluation data set: {', '.join(DATASETS)} "
                                                  "(default: the one the model was trained on)")


def _load(model: str, attention: Optional[str], dataset: Optional[str],
          data_root: Optional[Path]) -> tuple[LoadedCheckpoint, DataConfig]:
    """A zoo name resolves to its shipped checkpoint; anything else is a checkpoint path."""
    path = Path(model)
    if path.is_file() and path.suffix not in (".yaml", ".yml"):
        loaded = load_checkpoint(path, attention=attention)
        entry = _entry_named(loaded.name)
        data = entry.data if entry else DataConfig(dataset=dataset or loaded.dataset or "")
    else:
        entry = find_entry(model)
        if entry.checkpoint is None:
            raise ConfigError(f"zoo model {entry.name!r} ships no trained weights; pass an upstream "
                              f"checkpoint file, or train one with `snncompile train {entry.name}`")
        loaded, data = load_checkpoint(entry.checkpoint, attention=attention), entry.data
    data = dataclasses.replace(data, **{k: v for k, v in (("dataset", dataset), ("root", data_root and str(data_root)))
                                        if v is not None})
    if data.problems():
        raise ConfigError(f"{model}: cannot tell which data set to evaluate on ({'; '.join(data.problems())}); "
                          f"pass --dataset")
    return loaded, data


def _entry_named(name: Optional[str]) -> Optional[ZooEntry]:
    return next((e for e in list_entries() if e.name == name), None) if name else None


@app.command("models")
def models_cmd() -> None:
    """List the model zoo: shipped configs, their checkpoints and recorded accuracy."""
    table = Table("name", "attention", "T", "dim x layers", "dataset", "weights", "test acc.")
    for e in list_entries():
        acc = ""
        if e.checkpoint is not None:
            acc = f"{load_checkpoint(e.checkpoint).metrics.get('test_accuracy', float('nan')):.2%}"
        table.add_row(e.name, e.model.attention, str(e.model.time_steps), f"{e.model.dim} x {e.model.layers}",
                      e.data.dataset, e.checkpoint.name if e.checkpoint else "-", acc)
    console.print(table)


@app.command("train")
def train_cmd(model: str = typer.Argument(..., help="zoo model name or YAML file"),
              out: Path = typer.Option(None, "-o", "--out", help="checkpoint to write (default runs/<name>.pt)"),
              epochs: Optional[int] = typer.Option(None, help="override the config's epoch count")) -> None:
    """Train a zoo model on its dataset (with progress) and save the checkpoint and its metrics."""
    entry = find_entry(model)
    out = out or Path("runs") / f"{entry.name}.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = train(entry, out, epochs=epochs)
    console.print(f"test accuracy {result.metrics['test_accuracy']:.2%} -> {result.checkpoint} "
                  f"(metrics in {result.checkpoint.with_suffix('.json')})")


@app.command("evaluate")
def evaluate_cmd(model: str = ModelArg, attention: Optional[str] = AttentionOpt,
                 dataset: Optional[str] = DatasetOpt, data_root: Optional[Path] = DataRootOpt) -> None:
    """Float accuracy of a checkpoint (ours or upstream) on its dataset's test split."""
    loaded, data = _load(model, attention, dataset, data_root)
    acc = evaluate(loaded.model, load_dataset(data, loaded.config, "test"))
    console.print(f"{loaded.name or loaded.path}: float test accuracy {acc:.2%} on {data.dataset}")


@app.command("run")
def run_cmd(model: str = ModelArg, attention: Optional[str] = AttentionOpt,
            dataset: Optional[str] = DatasetOpt, data_root: Optional[Path] = DataRootOpt,
            samples: int = typer.Option(256, help="test samples for the per-layer spike table")) -> None:
    """The main job on a model: load it, evaluate it in float and report per-layer spiking activity."""
    loaded, data = _load(model, attention, dataset, data_root)
    for note in loaded.notes:
        console.print(f"[yellow]note:[/] {note}")
    test_set = load_dataset(data, loaded.config, "test")
    acc = evaluate(loaded.model, test_set)
    x = torch.stack([test_set[i][0] for i in range(min(samples, len(test_set)))])
    with torch.no_grad(), record_spikes(loaded.model) as spikes:
        loaded.model(x)
    table = Table("neuron layer", "shape [T, B, ...]", "firing rate", title="spiking activity (float model)")
    for name, s in spikes.items():
        table.add_row(name, str(list(s.shape)), f"{s.abs().mean().item():.4f}")
    console.print(table)
    cfg = loaded.config
    console.print(f"model {loaded.name or loaded.path} ({cfg.attention}, T={cfg.time_steps}, dim={cfg.dim}, "
                  f"layers={cfg.layers}): float test accuracy {acc:.2%} on {len(test_set)} {data.dataset} samples")


def main() -> None:
    """Console entry point: user errors (bad file, config, data) print one message and exit 2."""
    try:
        app()
    except USER_ERRORS as e:
        console.print(f"[red]error:[/] {e}")
        raise SystemExit(EXIT_USER_ERROR) from None

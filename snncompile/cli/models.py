"""The model a command is given: a zoo name or a checkpoint file, its options, and the data set it is evaluated on.

Every command that takes a model reads it here, so a new kind of model source (another checkpoint format, a
graph file) is added in one place."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from ..config import ATTENTION_MODES, DATASETS, ConfigError, DataConfig
from ..zoo.registry import DEFAULT_MODEL, find_entry, list_entries
from .options import one_of

if TYPE_CHECKING:
    from ..config import ZooEntry
    from ..zoo.checkpoint import LoadedCheckpoint

ModelArg = typer.Argument(DEFAULT_MODEL, help="zoo model name (see `snncompile models`) or checkpoint file")
AttentionOpt = typer.Option(None, "--attention", callback=one_of(lambda: ATTENTION_MODES),
                            help=f"override the attention mode: {', '.join(ATTENTION_MODES)}")
DataRootOpt = typer.Option(None, "--data-root", help="local folder of user-supplied data (CIFAR-10, CIFAR10-DVS...)")
DatasetOpt = typer.Option(None, "--dataset", callback=one_of(lambda: DATASETS),
                          help=f"evaluation data set: {', '.join(DATASETS)} (default: the one the model was "
                               "trained on)")


def checkpoint_of(model: str, attention: Optional[str]) -> tuple[LoadedCheckpoint, Optional[ZooEntry]]:
    """A zoo name resolves to its shipped checkpoint; anything else is a checkpoint path."""
    from ..zoo.checkpoint import load_checkpoint
    from ..zoo.registry import load_entry_checkpoint
    path = Path(model)
    if path.is_file() and path.suffix not in (".yaml", ".yml"):
        loaded = load_checkpoint(path, attention=attention)
        return loaded, _entry_named(loaded.name)
    entry = find_entry(model)
    return load_entry_checkpoint(entry, attention), entry


def load_model(model: str, attention: Optional[str], dataset: Optional[str],
          data_root: Optional[Path]) -> tuple[LoadedCheckpoint, DataConfig]:
    """The checkpoint and the data set to evaluate it on (its own, unless overridden)."""
    loaded, entry = checkpoint_of(model, attention)
    data = entry.data if entry else DataConfig(dataset=loaded.dataset or "")
    data = dataclasses.replace(data, **{k: v for k, v in (("dataset", dataset), ("root", data_root and str(data_root)))
                                        if v is not None})
    if data.problems():
        raise ConfigError(f"{model}: cannot tell which data set to evaluate on ({'; '.join(data.problems())}); "
                          f"pass --dataset")
    return loaded, data


def _entry_named(name: Optional[str]) -> Optional[ZooEntry]:
    return next((e for e in list_entries() if e.name == name), None) if name else None

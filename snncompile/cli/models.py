"""The model a command is given: a zoo name or a checkpoint file, its options, and the data set it is evaluated on.

Every command that takes a model reads it here, so a new kind of model source (another checkpoint format, a
graph file) is added in one place."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
import yaml

from ..config import ATTENTION_MODES, DATASETS, ConfigError, DataConfig, ModelConfig
from ..zoo.registry import DEFAULT_MODEL, find_entry, list_entries
from .options import one_of

if TYPE_CHECKING:
    from ..config import ZooEntry
    from ..zoo.checkpoint import LoadedCheckpoint

ModelArg = typer.Argument(DEFAULT_MODEL, help="zoo model name (see `snncompile models`) or checkpoint file")
AttentionOpt = typer.Option(None, "--attention", callback=one_of(lambda: ATTENTION_MODES),
                            help=f"override the attention mode: {', '.join(ATTENTION_MODES)}")
DataRootOpt = typer.Option(None, "--data-root", help="local folder of user-supplied data (CIFAR-10, CIFAR10-DVS...)")
SetOpt = typer.Option(None, "--set", metavar="FIELD=VALUE",
                      callback=lambda values: (config_overrides(values), values)[1],
                      help="a model config field the checkpoint file cannot tell (num_heads, time_steps, "
                           "img_size, ...), e.g. --set num_heads=16; repeatable")
DatasetOpt = typer.Option(None, "--dataset", callback=one_of(lambda: DATASETS),
                          help=f"evaluation data set: {', '.join(DATASETS)} (default: the one the model was "
                               "trained on)")


def config_overrides(sets: Optional[list[str]]) -> dict:
    """``--set FIELD=VALUE`` options as ModelConfig field overrides (values read as YAML scalars: ``16`` an int,
    ``0.25`` a float, ``true`` a bool); a malformed option or unknown field is refused naming it."""
    fields = {f.name: f.type for f in dataclasses.fields(ModelConfig)}
    overrides = {}
    for item in sets or ():
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise typer.BadParameter(f"{item!r}: expected FIELD=VALUE, e.g. num_heads=16", param_hint="--set")
        if name not in fields:
            raise typer.BadParameter(f"{name!r} is not a model config field (known: {', '.join(fields)})",
                                     param_hint="--set")
        try:
            value = yaml.safe_load(text) if text.strip() else text
        except yaml.YAMLError:
            value = text
        overrides[name] = text if fields[name] == "str" and not isinstance(value, str) else value
    return overrides


def checkpoint_of(model: str, attention: Optional[str],
                  sets: Optional[list[str]] = None) -> tuple[LoadedCheckpoint, Optional[ZooEntry]]:
    """A zoo name resolves to its shipped checkpoint; anything else is a checkpoint path (``sets``: the
    ``--set`` options, config fields the file cannot tell)."""
    from ..zoo.checkpoint import load_checkpoint
    from ..zoo.registry import load_entry_checkpoint
    overrides = config_overrides(sets)
    path = Path(model)
    if path.is_file() and path.suffix not in (".yaml", ".yml"):
        loaded = load_checkpoint(path, attention=attention, config=overrides or None)
        return loaded, _entry_named(loaded.name)
    entry = find_entry(model)
    if overrides:
        raise ConfigError(f"--set {', '.join(overrides)}: zoo model {entry.name!r} has the architecture of its "
                          "shipped checkpoint; --set is for checkpoint files that cannot tell a field")
    return load_entry_checkpoint(entry, attention), entry


def load_model(model: str, attention: Optional[str], dataset: Optional[str], data_root: Optional[Path],
               sets: Optional[list[str]] = None) -> tuple[LoadedCheckpoint, DataConfig]:
    """The checkpoint and the data set to evaluate it on (its own, unless overridden)."""
    loaded, entry = checkpoint_of(model, attention, sets)
    data = entry.data if entry else DataConfig(dataset=loaded.dataset or "")
    data = dataclasses.replace(data, **{k: v for k, v in (("dataset", dataset), ("root", data_root and str(data_root)))
                                        if v is not None})
    if data.problems():
        raise ConfigError(f"{model}: cannot tell which data set to evaluate on ({'; '.join(data.problems())}); "
                          f"pass --dataset")
    return loaded, data


def _entry_named(name: Optional[str]) -> Optional[ZooEntry]:
    return next((e for e in list_entries() if e.name == name), None) if name else None

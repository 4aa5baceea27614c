"""The model a command is given: a zoo name, a checkpoint file or a graph file, its options, and the data set it is
evaluated on.

Every command that takes a model reads it here, so a new kind of model source (another checkpoint format, a
graph file) is added in one place: a graph file format is one line in ``GRAPH_READERS`` (its suffix and a reader
``(path, GraphOptions) -> Graph``)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Union

import typer
import yaml

from ..config import ATTENTION_MODES, DATASETS, ConfigError, DataConfig, ModelConfig
from ..zoo.registry import DEFAULT_MODEL, find_entry, list_entries
from .options import one_of, positive

if TYPE_CHECKING:
    from ..config import ZooEntry
    from ..ir import Graph
    from ..job.graph_model import GraphModel
    from ..zoo.checkpoint import LoadedCheckpoint

ModelArg = typer.Argument(DEFAULT_MODEL, help="zoo model name (see `snncompile models`), checkpoint file, or graph "
                                              "file (.nir: with --dataset)")
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


def _conventions():
    from ..frontend.nir_conventions import CONVENTIONS
    return CONVENTIONS


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


# -- graph files: a float graph instead of a checkpoint ------------------------------------------------------------

DEFAULT_TIME_STEPS = 4  # a NIR file's steps unless --time-steps says otherwise (NIR is continuous-time)


@dataclass(frozen=True)
class GraphOptions:
    """How a graph file becomes an IR graph: its time steps (None: a netx file's own, a NIR file's
    ``DEFAULT_TIME_STEPS``), the Euler step ``dt`` (None: the file's, else 1) and the NIR framework convention
    (``frontend.nir_conventions.CONVENTIONS``)."""

    time_steps: Optional[int] = None
    dt: Optional[float] = None
    convention: str = "spec"


def _read_nir(path: Path, options: GraphOptions) -> Graph:
    from ..frontend.nir_import import from_nir
    return from_nir(path, time_steps=options.time_steps or DEFAULT_TIME_STEPS, dt=options.dt,
                    convention=options.convention)


def _read_netx(path: Path, options: GraphOptions) -> Graph:
    from ..frontend.netx_import import read_netx
    return read_netx(path, time_steps=options.time_steps)


#: graph file suffix -> its reader ``(path, options) -> Graph``: the float IR graph of a NIR file, the integer
#: (already Loihi) graph of a lava-dl netx network
GRAPH_READERS: dict[str, Callable[[Path, GraphOptions], Graph]] = {".nir": _read_nir, ".net": _read_netx}

TimeStepsOpt = typer.Option(None, "--time-steps", min=1, help=f"graph files: time steps per sample (default: a netx "
                            f"file's own, {DEFAULT_TIME_STEPS} for NIR)")
DtOpt = typer.Option(None, "--dt", callback=positive, help="NIR files: the Euler step in seconds (default: "
                     "the one the file records, else 1; docs/nir.md)")
ConventionOpt = typer.Option("spec", "--nir-convention", callback=one_of(_conventions),
                             help="NIR files: the rules of the framework that wrote it (spec, snntorch, norse, "
                                  "sinabs, rockpool; docs/nir.md)")


def is_graph_file(model: str) -> bool:
    """Whether ``model`` names a graph file one of ``GRAPH_READERS`` reads (by its suffix)."""
    return Path(model).suffix.lower() in GRAPH_READERS


def load_graph(model: str, options: GraphOptions) -> GraphModel:
    """The float graph a graph file holds, read by the reader of its suffix."""
    from ..job.graph_model import GraphModel
    path = Path(model)
    if not path.is_file():
        raise ConfigError(f"{path}: no such graph file")
    graph = GRAPH_READERS[path.suffix.lower()](path, options)
    return GraphModel(graph, path, path.suffix.lower().lstrip("."), dataclasses.asdict(options))


def load_source(model: str, attention: Optional[str], dataset: Optional[str], data_root: Optional[Path],
                options: GraphOptions, sets: Optional[list[str]] = None
                ) -> tuple[Union[LoadedCheckpoint, GraphModel], DataConfig]:
    """:func:`load_model` (``sets``: the ``--set`` options), or for a graph file its graph and the data set
    ``--dataset`` names (a graph file names none; ``--set`` does not apply to it)."""
    if not is_graph_file(model):
        return load_model(model, attention, dataset, data_root, sets)
    if sets:
        raise ConfigError(f"{model}: --set changes a checkpoint's model config; a graph file has none")
    if dataset is None:
        raise ConfigError(f"{model}: a graph file names no data set: pass --dataset ({', '.join(DATASETS)})")
    data = DataConfig(dataset=dataset, root=data_root and str(data_root))
    return load_graph(model, options), data


def data_config(loaded: Union[LoadedCheckpoint, GraphModel], data: DataConfig):
    """The model configuration ``data``'s loaders shape samples by."""
    from ..job.graph_model import GraphModel
    return loaded.loader_config(data.dataset) if isinstance(loaded, GraphModel) else loaded.config


def data_set(loaded: Union[LoadedCheckpoint, GraphModel], data: DataConfig, split: str):
    """The ``split`` of the data set, in the layout of the graph file's input for a graph model."""
    from ..data import load_dataset
    found = load_dataset(data, data_config(loaded, data), split, loaded.transform)
    return fitted(loaded, found, f"{data.dataset} {split}")


def fitted(loaded: Union[LoadedCheckpoint, GraphModel], samples, what: str):
    """``samples`` (a data set, calibration samples) as the model takes them: a graph model's in its input
    layout (``GraphInputs``), a checkpoint's as they are."""
    from ..job.graph_model import GraphInputs, GraphModel
    return GraphInputs(samples, loaded.graph, what) if isinstance(loaded, GraphModel) else samples

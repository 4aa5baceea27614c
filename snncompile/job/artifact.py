"""A compiled model as one object (:class:`Compiled`: integer graph, placement, compile record) and its files.

``save_compiled(compiled, "m.snnir")`` writes ``m.snnir`` (the graph, ``snncompile.ir.io``),
``m.placement.json`` (the placement, tied to the graph's digest) and ``m.compile.json`` (the
:class:`CompileRecord`: the model and data the graph was compiled from, the target, the calibration size and
the chips the design rules allowed); ``load_compiled("m.snnir")`` reads all three back and checks that they
belong together. ``snncompile compile`` and ``snncompile run`` write it, ``snncompile run m.snnir`` and
``snncompile simulate m.snnir`` read it.

The record is JSON with the keys ``model`` (a zoo name, a checkpoint path or a graph file), ``attention`` (the
override, or null), ``dataset``, ``data_root`` (or null), ``graph_options`` (a graph file's reader options:
``time_steps``, ``dt``, ``convention``; left out for checkpoints), ``target``, ``calibration`` (training samples that
calibrated the scales), ``max_chips`` and ``calibration_source`` (which samples calibrated it: the training set,
a file or synthetic inputs, ``snncompile.data.calibration``); these are absent from records written before they
were kept (read as unknown, 1, unknown and none).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from ..backends.placement import Placement, load_placement, save_placement
from ..ir import Graph
from ..ir import io as ir_io
from ..zoo.checkpoint import LoadedCheckpoint
from .graph_model import GraphModel


class ArtifactError(ValueError):
    """A compiled artifact that cannot be written or read; the message starts with the file."""


@dataclass(frozen=True)
class ModelSource:
    """How to load a model and its data again: a zoo name or checkpoint path, the attention override, the
    data set and the folder of user-supplied data."""

    model: str
    attention: str | None = None
    dataset: str | None = None
    data_root: str | None = None
    graph_options: dict | None = None  #: a graph file's reader options (time_steps, dt, convention); else None
    config_sets: list | None = None    #: a checkpoint's ``--set FIELD=VALUE`` config fields; None: none given

    @staticmethod
    def of(loaded: LoadedCheckpoint | GraphModel) -> "ModelSource":
        """The file a model was loaded from, with its attention (a checkpoint) or its reader options (a graph
        file), and the data set it names."""
        if isinstance(loaded, GraphModel):
            return ModelSource(str(loaded.path), graph_options=dict(loaded.options))
        return ModelSource(str(loaded.path), loaded.config.attention, loaded.dataset)


@dataclass(frozen=True)
class CompileRecord:
    """What a compiled graph was made from and for."""

    source: ModelSource
    target: str                        #: the hardware target it was lowered and placed for
    calibration: int | None = None     #: training samples that calibrated its scales (None: not recorded)
    max_chips: int = 1                 #: chips the design rules allow its placement
    calibration_source: str | None = None  #: which samples calibrated it (``data.calibration``; None: not recorded)

    def to_dict(self) -> dict:
        optional = ("graph_options", "config_sets")  # written only when given: other records stay as they were
        source = {k: v for k, v in dataclasses.asdict(self.source).items() if k not in optional or v is not None}
        return {**source, "target": self.target, "calibration": self.calibration,
                "max_chips": self.max_chips, "calibration_source": self.calibration_source}

    @staticmethod
    def from_dict(doc: dict) -> "CompileRecord":
        source = ModelSource(*(doc[k] for k in ("model", "attention", "dataset", "data_root")))
        record = CompileRecord(dataclasses.replace(source, graph_options=doc.get("graph_options"),
                                                   config_sets=doc.get("config_sets")),
                               doc["target"], doc.get("calibration"), doc.get("max_chips", 1),
                               doc.get("calibration_source"))
        if not (isinstance(record.source.model, str) and isinstance(record.target, str)
                and isinstance(record.max_chips, int)
                and isinstance(record.source.graph_options, (dict, type(None)))
                and (record.source.config_sets is None or (isinstance(record.source.config_sets, list) and all(
                    isinstance(item, str) for item in record.source.config_sets)))):
            raise TypeError("model and target must be strings, max_chips an integer, graph_options an object, "
                            "config_sets a list of strings")
        return record


@dataclass(frozen=True)
class Compiled:
    """A compiled model: the scheduled integer graph, its placement on the record's target, the record."""

    graph: Graph
    placement: Placement
    record: CompileRecord


def record_path(artifact: str | Path) -> Path:
    """``m.snnir`` -> ``m.compile.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name[:-len(ir_io.SUFFIX)] + ".compile.json")


def _graph_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.name.endswith(ir_io.SUFFIX):
        raise ArtifactError(f"{path}: a compiled graph is a {ir_io.SUFFIX} file (its placement and compile record "
                            f"are named after it)")
    return path


def save_compiled(compiled: Compiled, path: str | Path) -> dict[str, Path]:
    """Write the graph to ``path`` (``.snnir``), the placement and the record beside it; returns the files
    written by what they hold: ``graph``, ``placement``, ``record``."""
    path = _graph_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    files = {"graph": ir_io.save(compiled.graph, path), "placement": save_placement(compiled.placement, path),
             "record": record_path(path)}
    files["record"].write_text(json.dumps(compiled.record.to_dict(), indent=1) + "\n")
    return files


def load_record(path: str | Path) -> CompileRecord:
    """The compile record beside a compiled graph (``m.snnir`` -> ``m.compile.json``)."""
    file = record_path(_graph_file(path))
    if not file.is_file():
        raise FileNotFoundError(f"{file}: missing; `snncompile compile` and `snncompile run` write it beside "
                                f"{Path(path).name} to name the model and data the graph was compiled from")
    try:
        return CompileRecord.from_dict(json.loads(file.read_text()))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ArtifactError(f"{file}: not a compile record ({type(e).__name__}: {e})") from None


def load_compiled(path: str | Path) -> Compiled:
    """Read what :func:`save_compiled` wrote: the record, the graph, and the placement made for that graph
    on the record's target."""
    record = load_record(path)
    graph = ir_io.load(path)
    placement = load_placement(path, graph)
    if placement.target != record.target:
        raise ArtifactError(f"{path}: placed for {placement.target!r}, but its compile record says "
                            f"{record.target!r}")
    return Compiled(graph, placement, record)


__all__ = ["ArtifactError", "ModelSource", "CompileRecord", "Compiled", "record_path", "save_compiled",
           "load_record", "load_compiled"]

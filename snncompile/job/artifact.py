"""A compiled model as one object (:class:`Compiled`: integer graph, placement, compile record).

The record says what the graph was compiled from and for: the model and data (:class:`ModelSource`), the
target, the calibration size and the chips the design rules allow.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..backends.placement import Placement
from ..ir import Graph
from ..zoo.checkpoint import LoadedCheckpoint


@dataclass(frozen=True)
class ModelSource:
    """How to load a model and its data again: a zoo name or checkpoint path, the attention override, the
    data set and the folder of user-supplied data."""

    model: str
    attention: str | None = None
    dataset: str | None = None
    data_root: str | None = None

    @staticmethod
    def of(loaded: LoadedCheckpoint) -> "ModelSource":
        """The checkpoint file a model was loaded from, with its attention and the data set it names."""
        return ModelSource(str(loaded.path), loaded.config.attention, loaded.dataset)


@dataclass(frozen=True)
class CompileRecord:
    """What a compiled graph was made from and for."""

    source: ModelSource
    target: str                        #: the hardware target it was lowered and placed for
    calibration: int | None = None     #: training samples that calibrated its scales (None: not recorded)
    max_chips: int = 1                 #: chips the design rules allow its placement


@dataclass(frozen=True)
class Compiled:
    """A compiled model: the scheduled integer graph, its placement on the record's target, the record."""

    graph: Graph
    placement: Placement
    record: CompileRecord


__all__ = ["ModelSource", "CompileRecord", "Compiled"]

"""Backends that run a graph, behind one small protocol and found by name (:func:`get_backend`).

A :class:`Backend` runs a graph on one batch (:meth:`Backend.run`) and evaluates it over a data set
(:meth:`Backend.evaluate`, an :class:`Evaluation`). ``BACKENDS_BY_NAME`` names them: ``"ref"``, the reference
simulator (any graph, in this process, sharded when launched by torchrun), and ``"lava"``, Lava 0.10's
bit-accurate ``fixed_pt`` simulator (a compiled integer graph, each batch also run by the reference
simulator and compared). A backend's own settings (Lava's granularity and session timeout, the reference's
progress bar) are given when it is made, so the calls are the same for every backend. Lava is imported
only when a Lava backend is made.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Protocol, Sequence

import torch

from ..ir import Graph
from ..sim import run_graph
from ..sim.distributed import evaluate_distributed, launched


class BackendError(ValueError):
    """An unknown backend or setting, or a graph the backend cannot run; the message says which."""


@dataclass
class Evaluation:
    """Top-1 evaluation of a graph on one backend. ``indices[i]`` is the data set index whose predicted class is
    ``predictions[i]``; ``details`` is what the backend adds (the reference: per-node spike counts; Lava: its
    granularity and on how many samples its outputs equal the reference's); ``summary`` says so in words."""

    accuracy: float
    correct: int
    total: int
    indices: list[int]
    predictions: list[int]
    summary: str
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "correct": self.correct, "total": self.total,
                "predictions": self.predictions, "indices": self.indices, **self.details}


class Backend(Protocol):
    name: str

    def run(self, graph: Graph, feeds: Mapping[str, torch.Tensor], *,
            expose: Iterable[str] | str = ()) -> dict[str, torch.Tensor]:
        """``graph`` on one batch (``feeds`` as for ``run_graph``): the value of every graph output and of every
        node in ``expose`` (``"all"``: every node), in ``run_graph``'s conventions."""

    def evaluate(self, graph: Graph, dataset, *, indices: Sequence[int] | None = None,
                 batch_size: int | None = None) -> Evaluation:
        """Top-1 accuracy of ``graph`` over ``dataset`` items ``(x, y)`` (``indices``: a subset; ``batch_size``:
        samples per run, ``None``: the backend's own)."""


def _exposed(graph: Graph, expose: Iterable[str] | str) -> list[str]:
    """The nodes a run returns: the graph outputs, then ``expose`` (``"all"``: every node); unknown names refused."""
    names = list(graph.nodes) if expose == "all" else list(expose)
    unknown = [n for n in names if n not in graph.nodes]
    if unknown:
        raise BackendError(f"cannot expose {', '.join(map(repr, unknown))}: not a node of this graph")
    return list(dict.fromkeys([*graph.outputs, *names]))


class ReferenceBackend:
    """The reference simulator (:mod:`snncompile.sim`): every graph, float or integer, step for step."""

    name = "ref"
    BATCH = 64

    def __init__(self, *, progress: bool = True):
        self.progress = progress

    def run(self, graph: Graph, feeds, *, expose: Iterable[str] | str = ()) -> dict[str, torch.Tensor]:
        names = _exposed(graph, expose)
        values = run_graph(graph, feeds, keep="all" if len(names) > len(graph.outputs) else "outputs")
        return {n: values[n] for n in names}

    def evaluate(self, graph: Graph, dataset, *, indices=None, batch_size: int | None = None) -> Evaluation:
        result = evaluate_distributed(graph, dataset, batch_size=batch_size or self.BATCH, progress=self.progress,
                                      indices=indices)
        return Evaluation(result.accuracy, result.correct, result.total, result.indices, result.predictions,
                          summary=f"reference simulator, {launched()[1]} process(es)",
                          details={"spike_counts": {n: c.to_dict() for n, c in result.counts.items()}})


class LavaBackend:
    """Lava 0.10's ``fixed_pt`` simulator (:mod:`snncompile.backends.lava`) on a compiled integer graph, each
    session in its own process group under ``timeout`` seconds; ``granularity``: Lava processes per op, per
    transformer block (``fused``) or for the whole chip part (``fused_model``)."""

    name = "lava"
    BATCH = 8
    MOST_PER_SESSION = 16  # a Lava session's memory and start-up grow with its batch; more sessions are cheaper

    def __init__(self, *, granularity: str = "fused", timeout: float = 600.0):
        from .lava.mapping import GRANULARITIES  # imports Lava

        if granularity not in GRANULARITIES:
            raise BackendError(f"{granularity!r} is not one of {', '.join(GRANULARITIES)}")
        self.granularity, self.timeout = granularity, timeout

    @staticmethod
    def _require_compiled(graph: Graph) -> None:
        # what quantize makes of a float neuron: a Loihi LIF, or SDT-V3's quantiser as integer thresholds
        if not any(n.op.type_name() in ("LoihiLIF", "LevelThreshold") for n in graph.nodes.values()):
            raise BackendError("the Lava backend runs a compiled integer graph (`snncompile compile` writes one); "
                               "this graph has no LoihiLIF or LevelThreshold node")

    def run(self, graph: Graph, feeds, *, expose: Iterable[str] | str = ()) -> dict[str, torch.Tensor]:
        from .lava.runner import run_lava

        self._require_compiled(graph)
        names = _exposed(graph, expose)
        values = run_lava(graph, feeds, granularity=self.granularity, timeout=self.timeout,
                          expose=[n for n in names if n not in graph.outputs])
        return {n: values[n] for n in names}

    def evaluate(self, graph: Graph, dataset, *, indices=None, batch_size: int | None = None) -> Evaluation:
        from .lava.evaluate import evaluate_lava

        self._require_compiled(graph)
        result = evaluate_lava(graph, dataset, indices=indices, batch_size=min(batch_size or self.BATCH,
                                                                               self.MOST_PER_SESSION),
                               granularity=self.granularity, timeout=self.timeout)
        same = result["identical_to_reference"]
        return Evaluation(result["accuracy"], result["correct"], result["total"], result["indices"],
                          result["predictions"], summary=f"Lava ({self.granularity}), outputs identical to the "
                                                         f"reference simulator on {same}/{result['total']} samples",
                          details={"identical_to_reference": same, "granularity": self.granularity})


BACKENDS_BY_NAME = {"ref": ReferenceBackend, "lava": LavaBackend}


def get_backend(name: str, **settings) -> Backend:
    """The backend called ``name``, made with the ``settings`` it takes (those it does not take are left out,
    so one command line can offer every backend's settings)."""
    if name not in BACKENDS_BY_NAME:
        raise BackendError(f"unknown backend {name!r}; known: {', '.join(BACKENDS_BY_NAME)}")
    kind = BACKENDS_BY_NAME[name]
    taken = inspect.signature(kind).parameters
    return kind(**{k: v for k, v in settings.items() if k in taken})


__all__ = ["Backend", "BackendError", "Evaluation", "ReferenceBackend", "LavaBackend", "BACKENDS_BY_NAME",
           "get_backend"]

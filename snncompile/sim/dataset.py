"""Dataset-scale evaluation of a graph with :func:`~snncompile.sim.run.simulate`, optionally one shard of it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from torch.utils.data import DataLoader, Dataset, Subset

from ..ir import Graph
from ..ir.timing import data_steps, output_window
from .run import NodeCounts, merge_counts, simulate, zero_counts


@dataclass
class EvalResult:
    """Top-1 evaluation of a graph over (a shard of) a data set.

    ``indices[i]`` is the data set index whose predicted class is ``predictions[i]`` (ascending, so a
    merged result lists the whole data set in order); ``counts`` sums every spiking node's
    :class:`NodeCounts` over the samples seen.
    """

    correct: int
    total: int
    indices: list[int] = field(default_factory=list)
    predictions: list[int] = field(default_factory=list)
    counts: dict[str, NodeCounts] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else float("nan")

    @staticmethod
    def merge(parts: Iterable["EvalResult"]) -> "EvalResult":
        """The result over the union of disjoint shards (exact: integer sums, predictions re-sorted)."""
        parts = list(parts)
        pairs = sorted((i, p) for part in parts for i, p in zip(part.indices, part.predictions))
        if len({i for i, _ in pairs}) != len(pairs):
            raise ValueError("shards overlap: a data set index appears twice")
        return EvalResult(correct=sum(p.correct for p in parts), total=sum(p.total for p in parts),
                          indices=[i for i, _ in pairs], predictions=[p for _, p in pairs],
                          counts=merge_counts(p.counts for p in parts))

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "correct": self.correct, "total": self.total,
                "predictions": self.predictions, "indices": self.indices,
                "spike_counts": {n: c.to_dict() for n, c in self.counts.items()}}


def shard_indices(n: int, shard: tuple[int, int] | None) -> list[int]:
    """Indices of shard ``(rank, world_size)`` of ``range(n)``: ``rank, rank + W, ...`` (all if None)."""
    if shard is None:
        return list(range(n))
    rank, world = shard
    if not (isinstance(rank, int) and isinstance(world, int) and 0 <= rank < world):
        raise ValueError(f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard}")
    return list(range(rank, n, world))


def graph_feeds(graph: Graph, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Feeds for a data loader batch: static ``[B, C, H, W]`` as is, events ``[B, T, ...]`` time-major."""
    (name,) = graph.inputs()
    op = graph.op(name)
    if op.time == "static":
        if tuple(x.shape[1:]) != tuple(op.shape):
            raise ValueError(f"input {name!r} takes static [B, {', '.join(map(str, op.shape))}], got {list(x.shape)}")
        return {name: x}
    steps = data_steps(graph)
    if x.dim() != len(op.shape) + 2 or tuple(x.shape[2:]) != tuple(op.shape) or x.shape[1] != steps:
        raise ValueError(f"input {name!r} takes event batches [B, {steps}, "
                         f"{', '.join(map(str, op.shape))}], got {list(x.shape)}")
    return {name: x.transpose(0, 1).contiguous()}  # a scheduled graph pads them with zeros to its run


def logits_of(value: torch.Tensor, graph: Graph) -> torch.Tensor:
    """``[B, classes]`` logits from the graph output: a stream (TET) is averaged over the steps where its
    data arrive (all of them, unless the graph is scheduled)."""
    name = graph.outputs[0]
    if graph.types()[name].time != "stream":
        return value.float()
    start, steps = output_window(graph, name)
    return value[start:start + steps].float().mean(0)


def progress_bar(console: Console | None = None) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
                    console=console or Console(stderr=True))


def evaluate_graph(graph: Graph, dataset: Dataset, *, batch_size: int = 64, progress: bool = True,
                   shard: tuple[int, int] | None = None, indices: Sequence[int] | None = None,
                   device: str | torch.device = "cpu", description: str = "simulate") -> EvalResult:
    """Top-1 accuracy, predictions and spike counts of ``graph`` on ``dataset`` (items ``(x, y)``).

    ``indices`` restricts the data set (e.g. ``range(64)``); ``shard=(rank, world_size)`` then takes
    every ``world_size``-th of them starting at ``rank``, so the shards of one ``world_size`` partition
    it and :meth:`EvalResult.merge` of them equals the unsharded result exactly.
    """
    if len(graph.outputs) != 1:
        raise ValueError(f"evaluate_graph needs a graph with one (logits) output, got {graph.outputs}")
    base = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    mine = [base[i] for i in shard_indices(len(base), shard)]
    loader = DataLoader(Subset(dataset, mine), batch_size=batch_size, shuffle=False)
    predictions: list[int] = []
    correct = 0
    counts = zero_counts(graph)
    bar = progress_bar() if progress else None
    if bar:
        bar.start()
        task = bar.add_task(description, total=len(mine), status="")
    try:
        for x, y in loader:
            res = simulate(graph, graph_feeds(graph, x), record=(), device=device)
            pred = logits_of(res.outputs[graph.outputs[0]], graph).argmax(-1).cpu()
            correct += int((pred == y).sum())
            predictions += [int(p) for p in pred]
            counts = merge_counts([counts, res.counts])
            if bar:
                bar.update(task, advance=len(y), status=f"acc {correct / len(predictions):.2%}")
    finally:
        if bar:
            bar.stop()
    return EvalResult(correct=correct, total=len(mine), indices=mine, predictions=predictions, counts=counts)

"""Sharded evaluation across processes (and machines) with ``torch.distributed``.

Under ``torchrun`` (``RANK`` / ``WORLD_SIZE`` set) every process joins a gloo group, evaluates its
shard (data set indices ``rank, rank + W, ...``) and all-gathers the shard results, so every rank holds
the exact global :class:`~snncompile.sim.dataset.EvalResult` (integer sums; predictions in data set
order). Without ``torchrun`` it is a plain single-process evaluation.

The command line runs it as ``snncompile simulate``, also under torchrun (rank 0 prints and writes)::

    torchrun --standalone --nproc_per_node=2 -m snncompile simulate statten-digits --limit 64 --json r.json
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.utils.data import Dataset

from ..ir import Graph
from .dataset import EvalResult, evaluate_graph
from .run import NodeCounts


def launched() -> tuple[int, int]:
    """``(rank, world_size)`` from torchrun's environment; ``(0, 1)`` when not launched by it."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def evaluate_distributed(graph: Graph, dataset: Dataset, *, batch_size: int = 64, progress: bool = True,
                         indices=None, device: str = "cpu") -> EvalResult:
    """Evaluate this process's shard and all-reduce: every rank returns the exact global result.

    Initialises (and afterwards tears down) a gloo process group when launched by torchrun with a world
    size above one and none is initialised yet; uses an existing group as it is.
    """
    rank, world = launched()
    own_group = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="gloo")
        own_group = True
    buffers: list[torch.Tensor] = []
    try:
        if dist.is_initialized():
            rank, world = dist.get_rank(), dist.get_world_size()
        local = evaluate_graph(graph, dataset, batch_size=batch_size, progress=progress and rank == 0,
                               shard=(rank, world) if world > 1 else None, indices=indices, device=device,
                               description=f"simulate (rank 0 of {world})" if world > 1 else "simulate")
        if world == 1:
            return local
        return _all_reduce(local, graph, dataset, indices, buffers)
    finally:
        if own_group:
            dist.barrier()
            dist.destroy_process_group()
        # ``buffers`` outlives the group on purpose: with torch 2.3's gloo, a collective's tensor freed by
        # the group's worker thread (its last owner) needs the GIL while destroy_process_group holds it
        # waiting for that thread (a deadlock seen with all_gather_object's temporaries).
        del buffers


def _all_reduce(local: EvalResult, graph: Graph, dataset: Dataset, indices, buffers: list) -> EvalResult:
    """Sum the shards' integers: correct, total, one slot per data set index for the predictions (the shards
    are disjoint, so each slot is written by one rank), and every node's per-timestep spike counts."""
    base = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    slot = {index: k for k, index in enumerate(base)}
    preds = torch.zeros(len(base), dtype=torch.int64)
    for index, p in zip(local.indices, local.predictions):
        preds[slot[index]] = p + 1  # 0: not evaluated by this rank
    names = list(local.counts)
    counts = torch.tensor([[c.samples, *c.spikes] for c in local.counts.values()], dtype=torch.int64)
    head = torch.tensor([local.correct, local.total], dtype=torch.int64)
    buffers += [head, preds, counts]
    for t in buffers:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    if int((preds == 0).sum()) or int(head[1]) != len(base):
        raise RuntimeError(f"the shards did not cover the {len(base)} samples exactly once")
    merged = {n: NodeCounts(op=c.op, neurons=c.neurons, samples=int(row[0]), spikes=tuple(int(v) for v in row[1:]))
              for (n, c), row in zip(local.counts.items(), counts.tolist())}
    assert names == list(merged)
    return EvalResult(correct=int(head[0]), total=int(head[1]), indices=base,
                      predictions=[int(p) - 1 for p in preds], counts=merged)

"""Data-set evaluation on Lava: a compiled graph's predictions from Lava runs, checked against the
reference simulator on the same samples.

Import-safe as a standalone file (Lava's compiler executes every module beside a Process definition):
absolute imports only, no Lava import at module level.
"""
import torch

from snncompile.sim import run_graph
from snncompile.sim.dataset import graph_feeds, logits_of


def evaluate_lava(graph, dataset, *, indices=None, batch_size: int = 8, granularity: str = "fused",
                  timeout: float = 600.0) -> dict:
    """Top-1 accuracy of ``graph`` run on Lava over ``dataset`` items ``(x, y)`` (``indices``: a subset), one
    Lava session per batch; every batch is also run by the reference simulator, and the returned dict
    counts the samples whose Lava outputs equal the reference's exactly (``identical``)."""
    from snncompile.backends.lava.runner import run_lava  # imports Lava (which sets the fork start method)

    chosen = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    out_name = graph.outputs[0]
    correct = identical = 0
    predictions: list[int] = []
    for start in range(0, len(chosen), batch_size):
        items = [dataset[i] for i in chosen[start:start + batch_size]]
        feeds = graph_feeds(graph, torch.stack([x for x, _ in items]))
        labels = torch.tensor([int(y) for _, y in items])
        lava = run_lava(graph, feeds, granularity=granularity, expose=[], timeout=timeout)[out_name]
        reference = run_graph(graph, feeds)[out_name]
        same = lava.double() == reference.double()
        if graph.types()[out_name].time == "stream":
            same = same.transpose(0, 1)  # [T, B, ...] -> [B, T, ...]
        identical += int(same.reshape(len(items), -1).all(1).sum())
        pred = logits_of(lava, graph).argmax(-1)
        correct += int((pred == labels).sum())
        predictions += [int(p) for p in pred]
    return {"accuracy": correct / max(len(chosen), 1), "correct": correct, "total": len(chosen),
            "identical_to_reference": identical, "predictions": predictions, "indices": chosen,
            "granularity": granularity}

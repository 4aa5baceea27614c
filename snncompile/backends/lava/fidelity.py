"""How much of a graph Lava checks independently: which Lava class runs each node, and the stock share.

The ``per_op`` granularity is the independent check of the integer semantics: where one of Lava's own
process models (:data:`~.stock.STOCK_CLASSES`: ``LIF``, ``LIFReset``, ``TernaryLIF``, ``Dense``, ``Conv``,
``Sparse``) runs a node, the Lava run confirms the IR's equations with code snncompile did not write; a
custom process (``UnaryNode``, ``BinaryNode``) steps the node's own ``run`` and confirms only the timing. The
fused granularities run snncompile's code by design.

- :func:`lava_classes`: per node, the Lava class that runs it in each granularity (``host`` for the nodes the
  IR computes on the host, before or after the chip);
- :func:`stock_share`: of a recorded run's synaptic operations and neuron updates on the chip, the fraction
  Lava's own process models execute in ``per_op``.
"""
from __future__ import annotations

from typing import Mapping

from snncompile.backends.lava.mapping import GRANULARITIES, LavaPlan, plan_lava
from snncompile.ir import Graph

HOST = "host"  # a node the IR computes on the host (the host input or host output part)
CONVERGING = "InPort"  # a per-op sum that runs as converging connections, summed by its readers' Lava ports
BIASED_CONVERGING = "InPort+Dense"  # one whose constant term a bias source (RingBuffer -> Dense) sends there too
SYNAPTIC_COUNTS = ("ACs", "MACs")  # a node's streamed synaptic operations in Activity.node_totals()
NEURON_COUNTS = ("neuron_updates_active", "neuron_updates_inactive")  # every update Lava steps, idle or not


def plan_classes(plan: LavaPlan) -> dict[str, str]:
    """Node -> the Lava process class that runs it in ``plan`` (:data:`HOST` for the host parts; a quantiser the
    plan runs as LIFs, :mod:`.level_neurons`: theirs, ``"4 x LIF"`` or the one merged LIF's class)."""
    out = {n: HOST for n in (*plan.host_in, *plan.host_out)}
    for _, cls, nodes in plan.processes():
        if cls not in ("RingBuffer", "Extractor"):  # (the processes that feed and record the chip part)
            out.update((n, cls) for n in nodes)
    out.update((n, CONVERGING if plan.graph.op(n).bias is None else BIASED_CONVERGING) for n in plan.converging)
    classes = {n: out[n] for n in plan.graph.topo_order()}
    for name, runners in plan.executed_by.items():  # a quantiser: the LIF(s) that compute it
        classes[name] = " + ".join(f"{len(runners)} x {c}" if len(runners) > 1 else c
                                   for c in dict.fromkeys(out[r] for r in runners))
    return classes


def lava_plans(graph: Graph, batch: int = 1) -> dict[str, LavaPlan]:
    """Granularity -> the plan of ``graph`` for a batch of ``batch`` samples (a batched stock ``Dense`` must stay
    small enough: see :mod:`.mapping`)."""
    return {g: plan_lava(graph, granularity=g, batch=batch) for g in GRANULARITIES}


def lava_classes(graph: Graph, plans: Mapping[str, LavaPlan]) -> dict[str, dict[str, str]]:
    """Node -> {granularity: the Lava class that runs it} under ``plans`` (:func:`lava_plans` of ``graph``)."""
    by_granularity = {g: plan_classes(plan) for g, plan in plans.items()}
    return {n: {g: classes[n] for g, classes in by_granularity.items()} for n in graph.topo_order()}


def _share(plan: LavaPlan, node_totals: Mapping[str, Mapping[str, int]], keys: tuple[str, ...]) -> dict:
    chip = set(plan.chip)
    total = stock = 0
    for name, counts in node_totals.items():
        work = sum(int(counts.get(k, 0)) for k in keys)
        runners = plan.executed_by.get(name, (name,))  # a quantiser's work: its LIFs'
        if all(r in chip for r in runners):
            total += work
            stock += work if all(r in plan.stock for r in runners) else 0
    return {"stock": stock, "total": total, "fraction": stock / total if total else None}


def stock_share(plan: LavaPlan, node_totals: Mapping[str, Mapping[str, int]]) -> dict[str, dict]:
    """Of the chip's work in a recorded run, what Lava's own process models execute under ``plan`` (a
    ``per_op`` plan). ``node_totals``: per node, its counts (``Activity.node_totals()``, the run report's
    ``activity.node_totals``). Returns ``{"synaptic_ops": ..., "neuron_updates": ...}``, each
    ``{"stock", "total", "fraction"}`` (``fraction`` ``None`` where the chip did none of that work): synaptic
    operations are the streamed ACs and MACs (the host's first layer is not on the chip), neuron updates are
    every update, active or idle (a Lava neuron process steps all its neurons each step)."""
    if plan.granularity != "per_op":
        raise ValueError(f"the stock share is defined on a per_op plan, got {plan.granularity!r}")
    return {"synaptic_ops": _share(plan, node_totals, SYNAPTIC_COUNTS),
            "neuron_updates": _share(plan, node_totals, NEURON_COUNTS)}


__all__ = ["BIASED_CONVERGING", "CONVERGING", "HOST", "lava_classes", "lava_plans", "plan_classes", "stock_share"]

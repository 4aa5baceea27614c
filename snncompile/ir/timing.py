"""Timing queries on a graph: each node's latency, the steps its inputs carry data, where a stream output's
values arrive, and the graph before its schedule.

They read the graph's :class:`~snncompile.ir.graph.Schedule` (set by the ``schedule`` pass); an
unscheduled graph's data fill its whole run.
"""
from __future__ import annotations

from .graph import Graph, Node


def delay_latencies(graph: Graph) -> dict[str, int]:
    """Steps from the graph's inputs to each node's output as its nodes' delays give them (static nodes:
    0): a stream node answers its latest stream input's latency plus its own ``delay`` later."""
    types, out = graph.types(), {}
    for name in graph.topo_order():
        node = graph.nodes[name]
        arrivals = [out[s] for s in node.inputs if types[s].time == "stream"]
        out[name] = (max(arrivals, default=0) + node.op.delay) if types[name].time == "stream" else 0
    return out


def latencies(graph: Graph) -> dict[str, int]:
    """Steps from the graph's inputs to each node's output: the schedule's, or for an unscheduled graph
    those its nodes' delays give (:func:`delay_latencies`)."""
    return dict(graph.schedule.latency) if graph.schedule is not None else delay_latencies(graph)


def data_steps(graph: Graph) -> int:
    """Timesteps of input data ``graph`` takes: ``time_steps``, less the latency a schedule added."""
    return graph.time_steps if graph.schedule is None else graph.schedule.data_steps


def output_window(graph: Graph, name: str) -> tuple[int, int]:
    """``(start, steps)``: where a stream output's ``data_steps`` values arrive in a (scheduled) run."""
    start = 0 if graph.schedule is None else graph.schedule.latency[name]
    return start, data_steps(graph)


def unschedule(graph: Graph) -> Graph:
    """The graph before ``schedule``: its delay lines removed, every node as its op's ``unscheduled(T)``
    gives it (no delay, its absolute-time fields back to the data window), ``T`` steps, no schedule, and its
    history without the schedule step's entry (the graph is again the one that step received). Node values
    equal the scheduled graph's from their latency on (the schedule's guarantee), so a simulator that needs
    no step-for-step timing (accuracy, a data set's outputs) can run this. An unscheduled graph is returned
    as it is."""
    timing = graph.schedule
    if timing is None:
        return graph
    steps, lines = timing.data_steps, set(timing.delay_lines)

    def source(name: str) -> str:
        return source(graph.nodes[name].inputs[0]) if name in lines else name

    nodes = {}
    for name, node in graph.nodes.items():
        if name in lines:
            continue
        nodes[name] = Node(node.op.unscheduled(steps), tuple(map(source, node.inputs)))
    entry = next((h for h in reversed(graph.history) if h.name == "schedule"), None)
    scales = None if graph.scales is None else {n: s for n, s in graph.scales.items() if n not in lines}
    return Graph(nodes=nodes, outputs=tuple(map(source, graph.outputs)), time_steps=steps,
                 history=tuple(h for h in graph.history if h is not entry), scales=scales)


__all__ = ["latencies", "delay_latencies", "data_steps", "output_window", "unschedule"]

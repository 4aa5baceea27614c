"""schedule: give a lowered graph the timing of a time-stepped target, so every value meets its partners
on the step it is needed and the outputs are read where they arrive.

On Loihi/Lava a Dense or Conv hop delivers on the next step, and STAtten's block accumulator can only
answer once the last step of its block is in. Converging paths of different lengths (the residual
identity against the attention branch; Q against ``KᵀV``) must therefore be re-aligned with delay lines.
This pass:

1. sets each node's ``delay`` and absolute-time fields as its op's ``scheduled(...)`` declares them
   (``snncompile.ir.ops``): a synapse takes the target's delay (``synapse_delay``, 1 for Lava), a
   ``KVOuterAccumulate`` ``block - 1``; other nodes answer on the step their inputs arrive;
2. computes each node's *latency* (steps from the graph's input to its output) and inserts a ``Delay``
   node ``<source>.delay<k>`` on every input that would arrive ``k`` steps early;
3. aligns what depends on absolute time: a temporal block starts at its input's latency
   (``block_offset``), a synapse's bias starts with its data (``bias_start``), and a ``TimeMean`` reads
   the ``T`` steps starting at its input's latency;
4. lengthens the run to ``T + L`` steps (``L`` the largest latency): ``Repeat`` nodes hold their value for
   the ``T`` data steps and zeros after, stream inputs are zero-padded, the pipeline drains.

Guarantee (tested exactly): every node's scheduled output, read from its latency on, equals its output
in the unscheduled graph step for step, for all ``T`` data steps; graph outputs after a ``TimeMean`` are
identical. The result carries its timing as ``Graph.schedule`` (``T``, every node's latency, the delay
lines); the queries on it (``latencies``, ``data_steps``, ``output_window``) and its inverse
(``unschedule``) are in :mod:`snncompile.ir.timing`. The report states each node's latency and the
end-to-end latency.
"""
from __future__ import annotations

import dataclasses

from ..ir import Graph, Node
from ..ir.graph import Schedule
from ..ir.ops import Delay
from ..ir.timing import delay_latencies
from .pipeline import Alignment, PassContext, as_pass

DEFAULTS = {"synapse_delay": 1}


def _report(before: Graph, after: Graph) -> dict:
    timing = after.schedule
    return {"latency": dict(timing.latency), "end_to_end": after.time_steps - before.time_steps,
            "delay_lines": {n: after.op(n).delay for n in timing.delay_lines},
            "run_steps": after.time_steps, "data_steps": timing.data_steps}


def _align(before: Graph, after: Graph) -> Alignment:
    return Alignment(offset=dict(after.schedule.latency))


# timing only: every value is the unscheduled one, read from its latency on
@as_pass(report=_report, align=_align, exact=True)
def schedule(graph: Graph, ctx: PassContext) -> Graph:
    """Assign target delays, insert delay lines and stretch the run (see the module docstring).

    Requires: an unscheduled graph (every node's latency 0 apart from what this pass sets; run it once).
    Option ``synapse_delay`` (1: Lava's Dense/Conv). Returns a new graph with ``time_steps = T + L`` and
    its :class:`~snncompile.ir.graph.Schedule` (``T``, every node's latency, the delay lines); a delay line
    has its source's scale.
    """
    options = {**DEFAULTS, **ctx.options_for(schedule)}
    if set(options) != set(DEFAULTS):
        raise ValueError(f"schedule: unknown options {sorted(set(options) - set(DEFAULTS))}")
    already = [n for n, node in graph.nodes.items() if node.op.delay]
    if already or graph.schedule is not None:
        raise ValueError(f"schedule: the graph is scheduled already (nodes with delays: {already[:5]})")
    data_steps, synapse_delay = graph.time_steps, options["synapse_delay"]
    types = graph.types()
    timed: dict[str, Node] = {}
    lat: dict[str, int] = {}
    arrivals: dict[str, int] = {}
    for name in graph.topo_order():
        node = graph.nodes[name]
        streams = [s for s in node.inputs if types[s].time == "stream"]
        arrival = arrivals[name] = max((lat[s] for s in streams), default=0)
        inputs = []
        for src in node.inputs:
            early = arrival - lat[src] if src in streams else 0
            if early:
                line = f"{src}.delay{early}"
                timed.setdefault(line, Node(Delay(delay=early), (src,)))
                src = line
            inputs.append(src)
        # the run's length is known once every latency is: layout nodes are scheduled again below
        op = node.op.scheduled(arrival, data_steps, data_steps, synapse_delay)
        timed[name] = Node(op, tuple(inputs))
        lat[name] = arrival + op.delay if types[name].time == "stream" else 0
    run_steps = data_steps + max(lat.values(), default=0)
    nodes: dict[str, Node] = {}
    lines: dict[str, str] = {}  # delay line -> its source
    for name in graph.nodes:  # the input's node order, each delay line just before its first reader
        node = timed[name]
        for line in node.inputs:
            if line not in graph.nodes:
                nodes[line], lines[line] = timed[line], timed[line].inputs[0]
        if node.op.STEPPING == "layout":  # defines the time layout: it depends on the run's length
            op = graph.op(name).scheduled(arrivals[name], data_steps, run_steps, synapse_delay)
            node = Node(op, node.inputs)
        nodes[name] = node
    scales = None if graph.scales is None else {
        **graph.scales, **{line: graph.scales[src] for line, src in lines.items() if src in graph.scales}}
    out = Graph(nodes=nodes, outputs=graph.outputs, time_steps=run_steps, history=graph.history, scales=scales)
    return dataclasses.replace(out, schedule=Schedule(data_steps, delay_latencies(out), tuple(lines)))


__all__ = ["schedule"]

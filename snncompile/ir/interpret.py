"""Interpreter: runs any IR graph with each node's own semantics (``Op.run``): float32 for float nodes,
exact int64 for the integer (Loihi) nodes; see the tensor convention in ``ops/base.py``.

How a node is evaluated is pluggable: a *kernel table* maps op types to functions computing the same values
faster (the simulator's exact integer kernels, ``snncompile.sim.kernels``); op types it does not name are
evaluated by :func:`reference`. An *observer* sees every node's inputs, value and, where asked, the state
traces its evaluation computed (a neuron's currents and voltages), so one run serves recording and counting.
"""
from __future__ import annotations

from contextlib import contextmanager
from enum import Enum
from typing import Callable, Collection, Iterator, Mapping, Sequence

import torch

from .graph import Graph
from .ops.base import Op
from .ops.relay import joined_splits

class Traces(Enum):
    """The state traces a kernel returns beside a node's value (asked only of ops that have ``simulate``)."""

    NONE = "none"        #: none: ``()``
    STATES = "states"    #: the state traces ``simulate`` returns after its output, in the op's own time
    NONZERO = "nonzero"  #: one bool trace, where any state is non-zero after each step (:func:`nonzero_states`;
    #: counting needs only that, in an eighth of an int64 trace's memory)


#: ``kernel(op, args, delay, traces) -> (value, traces)``: the node's value on its inputs ``args`` (as the
#: interpreter hands them to ``op.run``), ``delay`` steps later (0 for a static value), and the state traces
#: :class:`Traces` asks for. A kernel must equal :func:`reference` exactly.
Kernel = Callable[[Op, Sequence[torch.Tensor], int, Traces], tuple[torch.Tensor, tuple[torch.Tensor, ...]]]
#: ``observer(name, op, inputs, value, traces)``, called once per node in topological order (an Input node with
#: no inputs and its fed value); ``traces`` as a kernel returns them (``()`` unless the node's were asked for).
Observer = Callable[[str, Op, list[torch.Tensor], torch.Tensor, tuple[torch.Tensor, ...]], None]


def delayed(x: torch.Tensor, steps: int) -> torch.Tensor:
    """A ``[T, B, ...]`` stream shifted ``steps`` later in time, zeros first (a node's ``delay``)."""
    if steps == 0:
        return x
    return torch.cat([torch.zeros_like(x[:steps]), x[:-steps]])[: x.shape[0]]


def _drained(x: torch.Tensor, steps: int) -> torch.Tensor:
    if x.shape[0] >= steps:
        return x
    return torch.cat([x, torch.zeros((steps - x.shape[0], *x.shape[1:]), dtype=x.dtype, device=x.device)])


@contextmanager
def ieee_float32() -> Iterator[None]:
    """Float32 products in IEEE float32 on every device. On NVIDIA GPUs cuDNN convolutions (and matrix
    products where a user allowed it) may use TF32, which keeps 10 mantissa bits of each operand: the
    integer nodes' float32 fast paths are exact only with full float32 products, and the float nodes would
    no longer match the CPU. The flags are restored afterwards."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = matmul.allow_tf32, cudnn.allow_tf32
    matmul.allow_tf32 = cudnn.allow_tf32 = False
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


def nonzero_states(traces: Sequence[torch.Tensor]) -> tuple[torch.Tensor]:
    """The :attr:`Traces.NONZERO` form of state traces: one bool tensor, true where any of them is non-zero."""
    live = traces[0] != 0
    for s in traces[1:]:
        live |= s != 0
    return (live,)


def reference(op: Op, args: Sequence[torch.Tensor], delay: int, states: Traces
              ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The op's own semantics as a :data:`Kernel`: ``op.run``, then its delay. Where state traces are asked
    for, ``op.simulate`` instead (one evaluation): its first result is the output, spikes, which the tensor
    convention carries as float32 (the integer neurons' ``simulate`` gives them as int64)."""
    if states is not Traces.NONE:
        spikes, *traces = op.simulate(*args)
        kept = nonzero_states(traces) if states is Traces.NONZERO else tuple(traces)
        return delayed(spikes.to(torch.float32), delay), kept
    return delayed(op.run(*args), delay), ()


def evaluate(op: Op, args: Sequence[torch.Tensor], *, stream: bool, states: Traces = Traces.NONE,
             kernels: Mapping[type[Op], Kernel] | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One node on its input values exactly as :func:`run_graph` evaluates it: integer inputs handed to a
    float node as float32, the node's delay applied to a ``stream`` output, by its kernel in ``kernels`` (else
    :func:`reference`). ``states``: the state traces to return of an op that has ``simulate`` (others: ``()``)."""
    if not op.INTEGER_INPUTS:  # float semantics: int64 streams arrive as float32
        args = [a if a.is_floating_point() else a.to(torch.float32) for a in args]
    kernel = reference if kernels is None else kernels.get(type(op), reference)
    return kernel(op, args, op.delay if stream else 0, states if hasattr(op, "simulate") else Traces.NONE)


def run_graph(graph: Graph, feeds: Mapping[str, torch.Tensor], keep: str = "outputs", *,
              kernels: Mapping[type[Op], Kernel] | None = None, observer: Observer | None = None,
              states: Collection[str] = (), traces: Traces = Traces.STATES, observes: Collection[str] | None = None
              ) -> dict[str, torch.Tensor]:
    """Run ``graph`` on ``feeds`` (Input node name -> tensor; ``[B, ...]`` static, ``[T, B, ...]`` stream).

    ``keep="outputs"`` returns the graph outputs; ``keep="all"`` every node's value (for tracing).
    A stream fed with fewer timesteps than ``graph.time_steps`` is padded with zeros (a scheduled graph
    runs longer than its input lasts, draining its pipeline). ``kernels``: op type -> :data:`Kernel` for the
    op types not evaluated by :func:`reference` (``snncompile.sim.run_graph`` passes the fast exact ones).
    ``observer``: called with every node as it is evaluated (:data:`Observer`); ``states``: the nodes whose
    state traces it receives (those of an op with ``simulate``; others get ``()``), in the form ``traces`` asks
    (:attr:`Traces.NONZERO`: one bool trace each); ``observes``: the nodes the observer needs (``None``: every
    node).

    Unless every value is kept or the observer needs every node, a split synapse whose partial sums and relay
    no one needs is evaluated as the synapse it replaces (:func:`~snncompile.ir.ops.relay.joined_splits`):
    the same values everywhere else, without the partial sums' stream (``blocks`` times the synapse's).
    """
    graph.validate()
    missing = [n for n in graph.inputs() if n not in feeds]
    unknown = [n for n in feeds if n not in graph.inputs()]
    if missing or unknown:
        raise ValueError(f"feeds must name exactly the graph inputs {graph.inputs()}; "
                         f"missing {missing}, unknown {unknown}")
    values: dict[str, torch.Tensor] = {}
    states = set(states)
    types = graph.types()
    nodes = {n: (node.op, node.inputs) for n, node in graph.nodes.items()}
    if keep != "all" and (observer is None or observes is not None):
        joined = joined_splits(graph, types, {*graph.outputs, *states, *(observes or ())})
        relays = [graph.nodes[name].inputs[0] for name in joined]
        for s in (*relays, *(graph.nodes[r].inputs[0] for r in relays)):  # the relays and the partial sums
            del nodes[s]
        nodes.update(joined)
    order = [n for n in graph.topo_order() if n in nodes]
    # unless every value is kept, drop each one after its last consumer has run (peak memory)
    last_use: dict[str, list[str]] = {}
    if keep != "all":
        final = {s: i for i, name in enumerate(order) for s in nodes[name][1]}
        for s, i in final.items():
            if s not in graph.outputs:
                last_use.setdefault(order[i], []).append(s)
    with torch.no_grad(), ieee_float32():
        for name in order:
            op, inputs = nodes[name]
            stream = types[name].time == "stream"
            if name in feeds:
                values[name] = _drained(feeds[name], graph.time_steps) if stream else feeds[name]
                if observer is not None:
                    observer(name, op, [], values[name], ())
                continue
            args = [values[s] for s in inputs]
            asked = traces if name in states else Traces.NONE
            values[name], found = evaluate(op, args, stream=stream, states=asked, kernels=kernels)
            if observer is not None:
                observer(name, op, args, values[name], found)
            del args, found
            for s in last_use.get(name, ()):
                del values[s]
    if keep == "all":
        return values
    return {name: values[name] for name in graph.outputs}

"""Interpreter: runs any IR graph with each node's own semantics (``Op.run``): float32 for float nodes,
exact int64 for the integer (Loihi) nodes; see the tensor convention in ``ops/base.py``."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping

import torch

from .graph import Graph


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


def run_graph(graph: Graph, feeds: Mapping[str, torch.Tensor], keep: str = "outputs") -> dict[str, torch.Tensor]:
    """Run ``graph`` on ``feeds`` (Input node name -> tensor; ``[B, ...]`` static, ``[T, B, ...]`` stream).

    ``keep="outputs"`` returns the graph outputs; ``keep="all"`` every node's value (for tracing).
    A stream fed with fewer timesteps than ``graph.time_steps`` is padded with zeros (a scheduled graph
    runs longer than its input lasts, draining its pipeline).
    """
    graph.validate()
    missing = [n for n in graph.inputs() if n not in feeds]
    unknown = [n for n in feeds if n not in graph.inputs()]
    if missing or unknown:
        raise ValueError(f"feeds must name exactly the graph inputs {graph.inputs()}; "
                         f"missing {missing}, unknown {unknown}")
    values: dict[str, torch.Tensor] = {}
    types = graph.types()
    order = graph.topo_order()
    # unless every value is kept, drop each one after its last consumer has run (peak memory)
    last_use: dict[str, list[str]] = {}
    if keep != "all":
        final = {s: i for i, name in enumerate(order) for s in graph.nodes[name].inputs}
        for s, i in final.items():
            if s not in graph.outputs:
                last_use.setdefault(order[i], []).append(s)
    with torch.no_grad(), ieee_float32():
        for name in order:
            node = graph.nodes[name]
            if name in feeds:
                values[name] = _drained(feeds[name], graph.time_steps) if types[name].time == "stream" else feeds[name]
                continue
            args = [values[s] for s in node.inputs]
            if not node.op.INTEGER_INPUTS:  # float semantics: int64 streams arrive as float32
                args = [a if a.is_floating_point() else a.to(torch.float32) for a in args]
            stream = types[name].time == "stream"
            # an op that can produce its delayed output directly (the integer synapses) skips the copy
            run_delayed = getattr(node.op, "_run_delayed", None) if stream else None
            if run_delayed is not None:
                values[name] = run_delayed(*args)
            else:
                out = node.op.run(*args)
                values[name] = delayed(out, node.op.delay) if stream else out
            del args
            for s in last_use.get(name, ()):
                del values[s]
    if keep == "all":
        return values
    return {name: values[name] for name in graph.outputs}

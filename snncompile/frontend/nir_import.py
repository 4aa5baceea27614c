"""NIR (``nir`` 1.0.8) -> snncompile graph IR.

``from_nir(graph_or_path, time_steps=T, dt=...)`` turns a NIR graph written by any framework into an
IR :class:`~snncompile.ir.Graph` that :func:`~snncompile.ir.run_graph` executes. NIR is declarative and
continuous-time; the IR is discrete. The conventions applied here (full discussion: ``docs/nir.md``):

Time. Neurons are discretised with forward Euler and step ``dt`` (default: the ``snncompile.dt`` the
file was written with by :mod:`snncompile.backends.nir_export`, else 1.0). NIR files carry no ``dt``:
pass the one the graph was trained with (snnTorch/Rockpool Braille and single-neuron graphs: 1e-4,
Norse: 1e-3). A neuron whose Euler factor ``dt/tau`` exceeds 1 is refused (wrong ``dt``, or Norse's bug).

- ``LIF``  ``tau dv/dt = (v_leak - v) + r I`` ->  IR ``LIF``, ``decay_input=True``, ``v_rest = v_leak``::

      h[t] = v[t-1] + (x[t] - (v[t-1] - v_leak)) * rate     rate = fl32(fl32(dt) * fl32(1/tau))

  (``leak_encoding="multiply_by_rate"``: Norse's float order ``dt * tau_inv``); with
  ``leak_encoding="divide_by_tau"`` (SpikingJelly's order) ``leak = tau/dt`` divides instead. A ``Scale(r)``
  node feeds the neuron when ``r != 1``; when ``r == tau/dt`` (snnTorch's export of ``beta``) the neuron
  takes ``decay_input=False`` instead: ``h = v - (v - v_leak) * rate + x``.
- ``IF``  ``dv/dt = r I`` -> IR ``LIF`` with ``leak_encoding="none"``: ``h[t] = v[t-1] + r x[t]``. The
  input is an impulse per step, ``dt`` does not enter (Norse ``IAFCell``, Sinabs ``IAF``, NIR's Lava and
  SpiNNaker2 back ends all do this).
- ``LI`` / ``I`` -> IR ``LI`` (membrane output, no threshold), as LIF / IF without the spike.
- ``CubaLIF`` -> IR ``CubaLIF`` with ``dt`` (current updated first, Euler).
- Spikes: ``s = [v - v_threshold > 0]`` (NIR's Heaviside; ``threshold_cmp=">="`` for SpikingJelly or
  Sinabs ``SingleSpike`` sources), then reset to ``v_reset`` (``reset="subtract"`` subtracts
  ``v_threshold`` instead, as Sinabs' and snnTorch's defaults do). The membrane starts at ``v_reset``
  (LIF, IF, CubaLIF) or ``v_leak`` (LI): NIR leaves the initial state open.
- ``convention`` (``CONVENTIONS`` in :mod:`~snncompile.frontend.nir_conventions`: spec, snntorch, norse, sinabs,
  rockpool) sets the options below as the framework that wrote the file needs them, and what its exporter leaves
  out: Sinabs' and Rockpool's exact decays ``1 - exp(-dt/tau)``, Norse's and Rockpool's ``CubaLIF`` gains.
- Norse 1.1.0 exports ``tau = dt/tau_inv`` instead of ``1/tau_inv`` (norse#411): ``norse_tau_bug=True``
  uses ``tau/dt`` as the time constant. Norse also writes 0-d torch tensors and leaks the batch dimension
  into ``Input`` (``[1, n]``); both are accepted (parameters are broadcast to the neuron shape; a leading
  1 is dropped when the Input's consumers expect the rest, or when it feeds a ``Conv2d``); a module its exporter
  does not know is written as ``None``: a ``Flatten`` where the consumers declare the flattened input.

Graph structure. Fan-in edges are summed (an ``Add`` node, inputs in edge order); nested ``NIRGraph``
subgraphs are flattened (names ``sub.node``; edges may address ``sub`` or ``sub.port``); ``Affine`` ->
``Linear`` with bias, ``Linear`` -> ``Linear``; ``Conv2d`` (``"same"``/``"valid"`` padding resolved);
``SumPool2d``; ``AvgPool2d`` -> ``SumPool2d`` + ``Scale(1/(kH*kW))`` (NIR's own definition; bit-equal to
PyTorch ``avg_pool2d`` when ``kH*kW`` is a power of two); ``Scale``; ``Flatten`` (per-sample shapes: the
NIR reading of ``start_dim`` and, failing a full flatten, the PyTorch one counting a batch axis).
Refused with :class:`NIRImportError`: recurrent graphs (cycles; the IR is acyclic), ``Delay``,
``Threshold``, ``CubaLI``, ``Conv1d``, and anything that does not give a full flatten or a 1-D ``Affine``
input.

Modules: :mod:`~snncompile.frontend.nir_file` reads the file without trusting it (no other file is read through
it, sizes are bounded before anything is read), :mod:`~snncompile.frontend.nir_graph` checks the graph's structure,
:mod:`~snncompile.frontend.nir_conventions` turns neuron parameters into IR fields under the conventions above,
:mod:`~snncompile.frontend.nir_nodes` converts one node at a time; this module runs them in order.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np

from ..ir import FLOAT32, DType, Graph, GraphError, HistoryEntry
from ..ir.ops import Add, Input, Output
from .nir_conventions import CONVENTIONS, HINT, Conventions
from .nir_file import read_nir
from .nir_graph import MAX_RANK, NIRImportError, as_array, declared_input, feed_forward_order, flat_graph
from .nir_nodes import Builder, convert_node, unknown_module

__all__ = ["CONVENTIONS", "NIRImportError", "from_nir", "read_nir"]


def from_nir(source, *, time_steps: int, dt: float | None = None, convention: str = "spec",
             threshold_cmp: Literal[">", ">="] | None = None, reset: Literal["hard", "subtract"] | None = None,
             leak_encoding: Literal["multiply_by_rate", "divide_by_tau"] | None = None,
             norse_tau_bug: bool | None = None, input_dtype: DType = FLOAT32,
             type_check: bool | None = None) -> Graph:
    """Import a NIR graph (a ``nir.NIRGraph``, a single ``nir.NIRNode``, or a ``.nir`` path) as an IR graph.

    ``time_steps``: T of the IR graph. ``dt``: Euler step (default: the file's ``snncompile.dt``
    metadata, else 1.0). ``convention``: the framework that wrote the file (``CONVENTIONS``: spec, snntorch,
    norse, sinabs, rockpool), which sets the defaults of the options below and the decay and ``CubaLIF`` gains
    (docs/nir.md). ``threshold_cmp``/``reset``: the spike rule of the source framework (NIR's own:
    ``">"``, ``"hard"``). ``leak_encoding``: float order of the leak (default ``multiply_by_rate``, i.e.
    ``dt * (1/tau)`` as Norse; files written by snncompile carry their own). ``norse_tau_bug``: the file
    holds ``dt*tau`` (Norse 1.1.0). ``input_dtype``: the promised value type of every Input (NIR has none).
    ``type_check``: for paths, ``nir.read``'s type checking (default: on, retried off). Node names are the
    NIR names; inserted nodes are ``<name>.sum`` (fan-in Add, AvgPool's sum) and ``<name>.r`` (``Scale(r)``).
    Raises :class:`NIRImportError` naming the node or edge that cannot be imported.
    """
    import nir

    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {', '.join(CONVENTIONS)}, got {convention!r}")
    rules = CONVENTIONS[convention]
    cuba_reset = reset or "hard"  # the IR CubaLIF resets to v_reset: only an explicit subtraction is refused
    threshold_cmp = rules.threshold_cmp if threshold_cmp is None else threshold_cmp
    reset = rules.reset if reset is None else reset
    norse_tau_bug = rules.norse_tau_bug if norse_tau_bug is None else norse_tau_bug
    if threshold_cmp not in (">", ">="):
        raise ValueError(f"threshold_cmp must be '>' or '>=', got {threshold_cmp!r}")
    if reset not in ("hard", "subtract"):
        raise ValueError(f"reset must be 'hard' or 'subtract', got {reset!r}")
    if dt is not None and not dt > 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    origin = None
    if isinstance(source, (str, Path)):
        origin = str(source)
        source = read_nir(source, type_check)
    options = {"dt": dt, "convention": convention, "threshold_cmp": threshold_cmp, "reset": reset,
               "cuba_reset": cuba_reset, "leak_encoding": leak_encoding, "norse_tau_bug": norse_tau_bug,
               "input_dtype": input_dtype}
    try:
        return _import(source, time_steps, options, origin)
    except NIRImportError as e:
        if origin is None:
            raise
        raise NIRImportError(f"{origin}: {e}") from None


def _file_dt(graph) -> float:
    """The step a file written by snncompile records (graph metadata ``snncompile.dt``), else 1."""
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    if HINT + "dt" not in meta:
        return 1.0
    value = as_array(meta[HINT + "dt"])
    if value.size != 1 or value.dtype.kind not in "iuf" or not 0 < float(value.reshape(-1)[0]) < math.inf:
        raise NIRImportError(f"the graph metadata {HINT}dt is {value.reshape(-1)[:4]} ({value.dtype}, shape "
                             f"{value.shape}), not one positive step")
    return float(value.reshape(-1)[0])


def _leaked_batch(shape: tuple[int, ...], consumers: list) -> bool:
    """Whether an Input of ``shape`` ``[1, *s]`` holds a leaked batch axis: every consumer declares ``s``,
    or a consumer is a ``Conv2d`` (it reads ``[C, H, W]``) and ``s`` has three axes (Norse declares no conv
    input shape)."""
    import nir

    if len(shape) < 2 or shape[0] != 1 or not consumers:
        return False
    declared = [declared_input(c) for c in consumers]
    return (all(d == shape[1:] for d in declared)
            or (len(shape) == 4 and any(isinstance(c, nir.Conv2d) for c in consumers)))


def _import(source, time_steps: int, options: dict, origin: str | None) -> Graph:
    """from_nir on a nir graph or node (``origin``: the file it was read from, recorded in the history)."""
    import nir

    if not isinstance(source, nir.NIRGraph):
        if not isinstance(source, nir.NIRNode):
            raise TypeError(f"from_nir needs a nir.NIRGraph, a nir.NIRNode or a path, got {type(source).__name__}")
        shape = declared_input(source)
        if shape is None:
            raise NIRImportError(f"a lone {type(source).__name__} node has no input type")
        source = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array(shape)), "node": source,
                                     "output": nir.Output(output_type=np.array(shape))},
                              edges=[("input", "node"), ("node", "output")], type_check=False)
    dt = _file_dt(source) if options["dt"] is None else options["dt"]
    rules = CONVENTIONS[options["convention"]]
    ctx = Conventions(dt=float(dt), threshold_cmp=options["threshold_cmp"], reset=options["reset"],
                      leak_encoding=options["leak_encoding"], norse_tau_bug=options["norse_tau_bug"],
                      decay=rules.decay, cuba_gain=rules.cuba_gain, cuba_reset=options["cuba_reset"])

    nodes, edges = flat_graph(source)
    order, preds, succs = feed_forward_order(nodes, edges)

    b = Builder()
    b.taken.update(nodes)
    out_of: dict[str, str] = {}
    outputs: list[str] = []
    for name in order:
        node = nodes[name]
        if isinstance(node, nir.Input):
            shape = declared_input(node)
            if not shape:
                raise NIRImportError(f"Input node {name!r} declares no shape of 1 to {MAX_RANK} whole numbers")
            if _leaked_batch(shape, [nodes[d] for d in succs[name]]):
                shape = shape[1:]  # a batch dimension leaked into the Input (Norse 1.1.0, nirtorch tracing)
            b.add(name, Input(shape=shape, dtype=options["input_dtype"], time="stream"), (), name)
            out_of[name] = name
            continue
        srcs = [out_of[p] for p in preds[name]]
        if len(srcs) > 1:
            x = b.add(b.fresh(f"{name}.sum"), Add(), tuple(srcs), name)
        else:
            x = srcs[0]
        if isinstance(node, nir.Output):
            out_of[name] = b.add(name, Output(), (x,), name)
            outputs.append(name)
            continue
        if node is None:
            out_of[name] = unknown_module(b, name, x, [declared_input(nodes[d]) for d in succs[name]])
            continue
        convert_node(b, name, node, x, ctx)
        out_of[name] = name
    if not outputs:  # type_check=False graphs may lack Output nodes: their leaves are the outputs
        outputs = [n for n in order if not succs[n]]
    recorded = dict(options, dt=dt, input_dtype=str(options["input_dtype"]))
    if origin is not None:
        recorded["path"] = origin
    graph = Graph(nodes=b.nodes, outputs=tuple(outputs), time_steps=time_steps,
                  history=(HistoryEntry("from_nir", recorded),))
    try:
        return graph.validate()
    except GraphError as e:
        raise NIRImportError(f"the imported graph is invalid: {e}") from None

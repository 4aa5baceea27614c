"""Running a lowered graph on Lava: bounded in time, always stopped, nothing left behind.

:func:`run_lava` plans the graph (:func:`~.mapping.plan_lava`, which refuses what Lava cannot run, naming
the node), computes the host input part with the IR, runs the chip part in Lava for ``graph.time_steps``
steps, and computes the host output part from what the extractors recorded. It returns every exposed chip
node's stream and every host output node's value, in ``run_graph``'s conventions (``[T+L, B, ...]``; spike
and ternary streams float32, integers int64), so they compare with ``run_graph(graph, feeds, keep="all")``
exactly. The whole batch runs in one Lava run (the processes carry the batch axis).

Isolation. The Lava session (build, compile, run, read, stop) runs in a forked child process that leads
its own process group, under a timeout, its runtime always stopped; whatever is left of the group afterwards
is killed and its shared memory unlinked (:mod:`.session`, shared with the netx runs). (Importing this
module imports Lava, whose import sets ``multiprocessing``'s start method to ``fork`` and fails where
another one was fixed before.)

Speed. Lava's compiler searches a Process's models once per Process instance, compiling every ``.py``
file beside the Process class from source each time; the parent does that search once per Process class
and the children reuse it (:func:`_discover`). Lava's compiler and runtime modules are imported once in
the parent too. The first Lava step is timed apart from the others (``LavaRun.steps_per_second``).
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import torch
import snncompile.backends.lava.first_import  # noqa: F401 -- before Lava's first import (its docstring)
from lava.proc.io.extractor import Extractor
from lava.proc.io.source import RingBuffer

from snncompile.backends.lava.mapping import LavaPlan, build_network, host_subgraph, plan_lava
from snncompile.backends.lava.processes import BinaryNode, FusedNodes, UnaryNode
from snncompile.backends.lava.stock import STOCK_CLASSES
from snncompile.backends.lava.session import (DEFAULT_TIMEOUT, LavaBackendError, LavaTimeoutError, compile_config,
                                              descendants, fixed_pt_config, import_lava, run_isolated, stopped)
from snncompile.sim import run_graph


@dataclass
class LavaRun:
    """What a run returned and cost. ``timings`` (seconds): ``host`` (IR host parts), ``build`` (processes),
    ``compile``, ``start`` (runtime and its OS processes), ``first_step`` (Lava step 1, with every process's
    one-off warm-up), ``run`` (the other ``steps - 1`` Lava steps), ``read`` (extractors), ``stop``,
    ``total`` (in the parent, child start to answer); ``pids``: the OS processes Lava had while running,
    ``pgid``: the child's process group (empty once the run returned)."""

    values: dict[str, torch.Tensor]
    plan: LavaPlan
    timings: dict[str, float] = field(default_factory=dict)
    pids: tuple[int, ...] = ()
    pgid: int = 0

    @property
    def steps_per_second(self) -> float:
        """Lava steps per second after the first step (steady state: the first holds one-off warm-ups)."""
        return (self.plan.steps - 1) / self.timings["run"] if self.timings.get("run") else float("nan")

    @property
    def os_processes(self) -> int:
        return len(self.pids)


# -- the Lava session (in the child) -------------------------------------------------------------------------------

_DISCOVERED: dict[type, list] = {}  # Process class -> its models (filled in the parent, inherited by children)


def _find_models():
    from lava.magma.compiler.compiler_graphs import ProcGroupDiGraphs
    find = ProcGroupDiGraphs.__dict__["_find_proc_models"]
    return getattr(find, "original", find.__func__)


def _discover(classes) -> None:
    """Find the models of the Process ``classes`` once per (parent) process, for every child to inherit.

    Lava looks for a Process's models once per Process *instance*, compiling every ``.py`` file beside the
    Process class from source each time (seconds per dozen Processes without a bytecode cache); the answer
    depends on the class only. A bare instance (``cls.__new__``) is all the search reads."""
    find = _find_models()
    for cls in classes:
        if cls not in _DISCOVERED:
            with warnings.catch_warnings():
                # Lava executes every file beside our Processes; package modules with relative imports fail there
                warnings.filterwarnings("ignore", message="Cannot import module")
                bare = cls.__new__(cls)
                object.__setattr__(bare, "_runtime", None)  # what AbstractProcess.__del__ reads (to stop nothing)
                _DISCOVERED[cls] = find(bare)


def _memoize_model_discovery() -> None:
    """In the (disposable) child: let Lava's compiler take the models found by :func:`_discover`."""
    from lava.magma.compiler.compiler_graphs import ProcGroupDiGraphs
    find = _find_models()

    def memoized(proc):
        if type(proc) not in _DISCOVERED:
            _DISCOVERED[type(proc)] = find(proc)
        return list(_DISCOVERED[type(proc)])

    memoized.original = find
    ProcGroupDiGraphs._find_proc_models = staticmethod(memoized)


def _process_classes(plan: LavaPlan) -> list[type]:
    """The Process classes the network of ``plan`` is made of."""
    if plan.granularity != "per_op":
        return [RingBuffer, Extractor, FusedNodes]
    return [RingBuffer, Extractor, UnaryNode, BinaryNode] + [STOCK_CLASSES[k] for k in dict.fromkeys(
        plan.stock.values())]


def _lava_session(plan: LavaPlan, sources: dict[str, np.ndarray]) -> dict:
    """Build, compile, run, read and stop (always) the Lava network of ``plan``: in the child process."""
    from lava.magma.core.run_conditions import RunSteps

    _memoize_model_discovery()

    timings = {}
    t = time.perf_counter()
    net = build_network(plan, sources)
    timings["build"] = time.perf_counter() - t
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Cannot import module")  # (see _discover)
        executable = net.anchor.compile(fixed_pt_config(), compile_config())
    timings["compile"] = time.perf_counter() - t
    with stopped(net.anchor, timings):
        t = time.perf_counter()
        net.anchor.create_runtime(executable=executable)
        timings["start"] = time.perf_counter() - t
        t = time.perf_counter()  # the first step apart: it holds every process's one-off warm-up
        net.anchor.run(condition=RunSteps(num_steps=1, blocking=True))
        timings["first_step"] = time.perf_counter() - t
        t = time.perf_counter()
        if plan.steps > 1:
            net.anchor.run(condition=RunSteps(num_steps=plan.steps - 1, blocking=True))
        timings["run"] = time.perf_counter() - t
        t = time.perf_counter()
        values = net.read(plan.steps)
        timings["read"] = time.perf_counter() - t
        pids = tuple(descendants(os.getpid()))
    return {"values": values, "timings": timings, "pids": pids, "processes": len(net.processes)}


# -- the API -------------------------------------------------------------------------------------------------------

def _batch_of(graph, feeds: Mapping[str, torch.Tensor]) -> int:
    types = graph.types()
    name = graph.inputs()[0]
    x = feeds[name]
    return int(x.shape[0] if types[name].time == "static" else x.shape[1])


def _as_reference(value: np.ndarray, dtype) -> torch.Tensor:
    """An int64 stream as ``run_graph`` holds it: spikes and ternary spikes float32, integers int64."""
    t = torch.from_numpy(np.asarray(value, dtype=np.int64))
    return t.to(torch.float32) if dtype.is_spike else t


def run_lava_session(graph, feeds: Mapping[str, torch.Tensor], *, granularity: str = "fused", expose=None,
                     timeout: float = DEFAULT_TIMEOUT) -> LavaRun:
    """:func:`run_lava` with the run's plan, timings and processes (:class:`LavaRun`)."""
    t = time.perf_counter()
    plan = plan_lava(graph, granularity=granularity, expose=expose, batch=_batch_of(graph, feeds))
    types = graph.types()
    host = run_graph(host_subgraph(graph, plan.host_in, plan.host_in), feeds, keep="all")
    sources = {s: host[s].to(torch.int64).numpy() for s in plan.sources}
    host_time = time.perf_counter() - t
    # Lava's compiler and runtime (about a second, networkx included) once here, for every child to inherit
    import_lava("lava.magma.compiler.compiler", "lava.magma.core.run_conditions", "lava.magma.core.run_configs")
    _discover(_process_classes(plan))  # once per process, seconds: not part of the run's timings
    result, pgid = run_isolated(_lava_session, plan, sources, timeout=timeout,
                                what=f"Lava run ({granularity}, {plan.steps} steps)")
    values = {n: _as_reference(v, types[n].dtype) for n, v in result["values"].items()}
    t = time.perf_counter()
    if plan.host_out:
        reads = {s for n in plan.host_out for s in graph.nodes[n].inputs if s not in plan.host_out}
        boundary = {s: values[s] if s in values else host[s] for s in reads}  # recorded chip or host values
        values.update({n: v for n, v in run_graph(host_subgraph(graph, plan.host_out, plan.host_out, boundary),
                                                  boundary, keep="all").items() if n in plan.host_out})
    values.update({n: host[n] for n in plan.exposed_host})
    wanted = set(plan.recorded) | set(plan.host_out) | set(plan.exposed_host)
    timings = {**result["timings"], "host": host_time + time.perf_counter() - t}
    return LavaRun(values={n: v for n, v in values.items() if n in wanted}, plan=plan, timings=timings,
                   pids=tuple(result["pids"]), pgid=pgid)


def run_lava(graph, feeds: Mapping[str, torch.Tensor], *, granularity: str = "fused", expose=None,
             timeout: float = DEFAULT_TIMEOUT) -> dict[str, torch.Tensor]:
    """Run a lowered, scheduled integer ``graph`` on Lava (``Loihi2SimCfg(select_tag="fixed_pt")``).

    ``feeds`` as for ``run_graph``; ``granularity``: ``"per_op"`` (one Lava Process per node), ``"fused"``
    (one per transformer block) or ``"fused_model"`` (one for the chip part); ``expose``: which chip nodes'
    streams come back (``None``: every neuron; ``"all"``; or node names), the chip values the host output
    part reads always;
    ``timeout``: seconds for the whole Lava session. Returns node -> value for the exposed chip nodes and
    every host output node (see the module docstring). Raises :class:`LavaBackendError` (a node Lava cannot
    run, or a failed run) and :class:`LavaTimeoutError`."""
    return run_lava_session(graph, feeds, granularity=granularity, expose=expose, timeout=timeout).values


__all__ = ["run_lava", "run_lava_session", "LavaRun", "LavaTimeoutError", "LavaBackendError", "DEFAULT_TIMEOUT"]

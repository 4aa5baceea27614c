"""Passes and the pipeline that runs them.

A *pass* is a :class:`Pass`: a pure function ``def verb_object(graph: Graph, ctx: PassContext) -> Graph``,
one per module of this package, together with what the pipeline and ``verify`` need to know of it (its
report, its alignment, its float view, whether it is exact), declared where the function is defined with
:func:`as_pass`. The function's docstring states what it requires and what it guarantees. It never mutates
its input (graphs, nodes and parameter arrays are immutable), and it returns its input object itself when
nothing matched, so "changed" means ``out is not graph``. A pass leaves ``graph.history`` alone: the
pipeline records it. A pass with something to say about its work (what it did, what it had to leave)
declares a ``report(before, after) -> dict`` or, when only the run itself knows it (the decisions
``quantize`` takes on the way), returns :class:`Reported` (the graph and that dict); the pipeline puts the
dict into the pass's :class:`~snncompile.ir.graph.HistoryEntry` options, next to the options it ran with.

:func:`run_pipeline` runs a list of :class:`Pass` objects (never names), validates the graph after every
step and records one ``HistoryEntry(name, options, digest)`` per step, where ``digest`` is
``graph_digest`` of that step's result. Every failure raises :class:`PassError` naming the pass.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Mapping, Sequence

from ..ir import Graph, GraphError, HistoryEntry
from ..ir import io as ir_io



class PassError(ValueError):
    """A pipeline step failed; ``pass_name`` names the pass and the message says how."""

    def __init__(self, pass_name: str, message: str):
        self.pass_name = pass_name
        super().__init__(f"pass {pass_name!r}: {message}")


@dataclass(frozen=True)
class PassContext:
    """What a pass may read besides the graph: never the whole configuration."""

    seed: int = 0                     #: seed for any randomness (calibration samples, tie breaks)
    target: str | None = None         #: name of the hardware target, or None for a target-free pass
    #: per-pass options, keyed by pass name: ``{"quantize_weights": {"bits": 8}}``
    options: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    #: calibration feeds (Input node name -> tensor, as ``run_graph`` takes them) for the passes that
    #: choose a scale from data; None: such a pass refuses to guess
    calibration: Mapping[str, object] | None = None

    def __post_init__(self):
        frozen = {name: MappingProxyType(dict(opts)) for name, opts in self.options.items()}
        object.__setattr__(self, "options", MappingProxyType(frozen))

    def options_for(self, p: Pass | str) -> Mapping[str, object]:
        """The options given to pass ``p`` (a :class:`Pass` or its name); empty when none."""
        return self.options.get(p if isinstance(p, str) else p.name, MappingProxyType({}))


@dataclass(frozen=True)
class Reported:
    """A pass's result together with its report (same rules as a :attr:`Pass.report` dict)."""

    graph: Graph
    report: Mapping[str, object]


PassFunction = Callable[[Graph, PassContext], "Graph | Reported"]
Report = Callable[[Graph, Graph], Mapping[str, object]]
@dataclass(frozen=True)
class Alignment:
    """How candidate values map onto reference values, per candidate node (absent: 1, 1, 0)."""

    scale: Mapping[str, float] = field(default_factory=dict)           #: candidate * scale = reference units
    membrane_scale: Mapping[str, float] = field(default_factory=dict)  #: the same for a neuron's membrane
    offset: Mapping[str, int] = field(default_factory=dict)            #: candidate step offset + t = reference t

    @property
    def timed(self) -> bool:
        return any(self.offset.values())


Align = Callable[[Graph, Graph], Alignment]
FloatView = Callable[[Graph], Graph]
Verify = Callable[["Pass", Graph, Graph], None]


@dataclass(frozen=True)
class Pass:
    """One pipeline step: the pass function and what the pipeline and ``verify`` read of it.

    Calling a ``Pass`` calls its function; its ``__doc__`` is the function's (the pass's contract).
    """

    run: PassFunction                 #: ``run(graph, ctx) -> Graph | Reported``: the pass itself
    #: ``report(before, after) -> dict``, recorded in the step's history entry. Its keys must not clash with
    #: the pass's option names; its values must be storable in a ``.snnir`` history (str, numbers, tuples,
    #: lists, str-keyed dicts)
    report: Report | None = None
    #: ``align(before, after) -> Alignment``: how the result's values map onto its input's (``verify``);
    #: None: identity
    align: Align | None = None
    #: ``float_view(after) -> Graph``: the result computed in float; ``verify`` compares it as a stage of
    #: its own before the result (``quantize``: quantisation error, then integer arithmetic error)
    float_view: FloatView | None = None
    exact: bool = False               #: every value of the result is its input's (after ``align``), bit for bit
    name: str = ""                    #: the name options, history and ``start``/``stop`` use; "": the function's

    def __post_init__(self):
        if not callable(self.run):
            raise TypeError(f"a Pass runs a function, got {self.run!r}")
        if not self.name:
            object.__setattr__(self, "name", self.run.__name__)
        object.__setattr__(self, "__doc__", self.run.__doc__)

    def __call__(self, graph: Graph, ctx: PassContext) -> Graph | Reported:
        return self.run(graph, ctx)


def as_pass(*, report: Report | None = None, align: Align | None = None, float_view: FloatView | None = None,
            exact: bool = False) -> Callable[[PassFunction], Pass]:
    """Decorator: the pass function as a :class:`Pass` with these fields (named after the function)."""
    def define(run: PassFunction) -> Pass:
        return Pass(run, report=report, align=align, float_view=float_view, exact=exact)
    return define


def to_fixpoint(p: Pass, max_iter: int = 32) -> Pass:
    """``p`` applied until it returns its input unchanged; raises :class:`PassError` if it still
    changes the graph after ``max_iter`` applications. Keeps every other field of ``p`` (name, report ...)."""
    def fixpoint(graph: Graph, ctx: PassContext) -> Graph:
        current = graph
        for _ in range(max_iter):
            out = p(current, ctx)
            if out is current:
                return current
            current = out
        raise PassError(p.name, f"did not reach a fixpoint in {max_iter} iterations (it still changes "
                                f"the graph)")
    functools.update_wrapper(fixpoint, p.run)  # the contract (docstring) stays the pass's
    return dataclasses.replace(p, run=fixpoint)


def _select(steps: Sequence[Pass], start: str | None, stop: str | None) -> range:
    names = [s.name for s in steps]

    def index(name: str, what: str) -> int:
        if name not in names:
            raise ValueError(f"{what}={name!r} is not a pass of this pipeline (its passes: "
                             f"{', '.join(names) or 'none'})")
        if names.count(name) > 1:
            raise ValueError(f"{what}={name!r} is ambiguous: the pipeline runs it {names.count(name)} times")
        return names.index(name)

    first = 0 if start is None else index(start, "start")
    last = len(steps) - 1 if stop is None else index(stop, "stop")
    if first > last:
        raise ValueError(f"start={start!r} comes after stop={stop!r} in the pipeline ({', '.join(names)})")
    return range(first, last + 1)


def _entry(p: Pass, ctx: PassContext, before: Graph, after: Graph,
           found: Mapping[str, object] | None) -> HistoryEntry:
    options = dict(ctx.options_for(p))
    if found is None and p.report is not None:
        found = p.report(before, after)
    if found is not None:
        found = dict(found)
        clash = sorted(set(found) & set(options))
        if clash:
            raise PassError(p.name, f"its report keys {clash} clash with its option names")
        options.update(found)
    return HistoryEntry(name=p.name, options=options, digest=ir_io.graph_digest(after))


def run_pipeline(graph: Graph, steps: Sequence[Pass], ctx: PassContext | None = None, *,
                 start: str | None = None, stop: str | None = None, verify: Verify | None = None,
                 dump_dir: str | Path | None = None) -> Graph:
    """Run ``steps`` (:class:`Pass` objects) in order on ``graph`` and return the final graph.

    - ``start``/``stop``: names of the first and last pass to run (both inclusive; unknown, ambiguous or
      reversed names raise ``ValueError`` before anything runs).
    - After every step the result is validated and ``HistoryEntry(pass name, options, digest)`` is
      appended to its history (options: ``ctx.options_for(pass)`` plus the pass's report, if any).
    - ``verify(step, before, after)`` (``step`` the :class:`Pass`), if given, runs after every step
      (``after`` already has the new history entry); anything it raises becomes a :class:`PassError` naming
      the pass.
    - ``dump_dir``: writes ``00_input.snnir``, then ``NN_<pass>.snnir`` after every step (``NN`` is the
      pass's 1-based position in ``steps``), and ``time_per_pass.json`` (``{"NN_<pass>": seconds}``,
      the time spent in the pass itself).
    """
    ctx = PassContext() if ctx is None else ctx
    for s in steps:
        if not isinstance(s, Pass):
            raise TypeError(f"pipeline steps must be Pass objects (Pass(function) makes one), got {s!r}")
    unknown = sorted(set(ctx.options) - {s.name for s in steps})
    if unknown:
        raise ValueError(f"options given for {unknown}, which this pipeline does not run "
                         f"({', '.join(s.name for s in steps) or 'no passes'})")
    selected = _select(steps, start, stop)
    try:
        graph.validate()
    except GraphError as e:
        raise GraphError(["(pipeline input) " + p for p in e.problems]) from None
    dump = None if dump_dir is None else Path(dump_dir)
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
        ir_io.save(graph, dump / "00_input.snnir")
    times: dict[str, float] = {}
    for i in selected:
        p, tag = steps[i], f"{i + 1:02d}_{steps[i].name}"
        started = time.perf_counter()
        try:
            out = p(graph, ctx)
        except PassError:
            raise
        except Exception as e:
            raise PassError(p.name, f"failed: {type(e).__name__}: {e}") from e
        times[tag] = time.perf_counter() - started
        found = None
        if isinstance(out, Reported):
            out, found = out.graph, out.report
        if not isinstance(out, Graph):
            raise PassError(p.name, f"returned {type(out).__name__}, not a Graph")
        if out.history != graph.history:
            raise PassError(p.name, "changed the graph's history (the pipeline records history)")
        problems = out.problems()
        if problems:
            raise PassError(p.name, "produced an invalid graph:\n  - " + "\n  - ".join(problems))
        out = dataclasses.replace(out, history=out.history + (_entry(p, ctx, graph, out, found),))
        if verify is not None:
            try:
                verify(p, graph, out)
            except Exception as e:
                raise PassError(p.name, f"verification failed: {type(e).__name__}: {e}") from e
        if dump is not None:
            ir_io.save(out, dump / f"{tag}{ir_io.SUFFIX}")
        graph = out
    if dump is not None:
        (dump / "time_per_pass.json").write_text(json.dumps(times, indent=2) + "\n")
    return graph


__all__ = ["PassContext", "PassError", "Pass", "Reported", "as_pass", "to_fixpoint", "run_pipeline"]

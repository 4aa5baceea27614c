"""The steps of the main job, each a function from what it needs to what it gives, shared by ``snncompile
compile``, ``simulate`` and ``run`` (:func:`~snncompile.job.run.run_job` runs them in order).

- :func:`export`: the trained model to the IR graph (a graph file's model: its graph, ``graph_model``).
- :func:`simulate`: a graph's top-1 evaluation on a data set with the reference simulator (an integer graph
  unscheduled: the same outputs in its data window, without the pipeline's extra steps).
- :func:`lower`: the IR graph to the target's scheduled integer graph, calibrated on the first samples of a
  training set or of any calibration set (``snncompile.data.calibration``; :func:`calibration_feeds`).
- :func:`place`: the integer graph on the target's cores.
- :func:`compile_graph`: ``lower`` then ``place``, one :class:`~.artifact.Compiled` with its record.
- :func:`check_rules`: every design rule a compiled graph breaks on its target.
- :func:`lower_bound`: the fewest cores any placement of the compiled graph needs, beside the cores used.
- :func:`check_on_lava`: the first test samples on a backend (Lava), checked against the reference simulator.
- :func:`compare_spikes`: float and integer spike trains per neuron layer on the same samples.
- :func:`count`: activity per node and per core, counted while the compiled graph runs, batch by batch.
- :func:`lava_fidelity`: of those counts, the share Lava's own process models execute (``per_op``), and the
  Lava class of each node per granularity.
- :func:`price`: latency and energy for the target, the 45 nm convention and the ANN equivalent.
- :func:`report`: the run report (schema ``SCHEMA``, docs/report_schema.md) as JSON and an HTML page.

:class:`Clock` names each step as it starts and keeps its wall time (the report's ``seconds``).
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

import torch

from ..backends.design_rules import Violation, check
from ..backends.placement import core_lower_bound, place
from ..backends.placement_bound import CoreBound
from ..backends.protocol import Backend
from ..frontend import export as export_model
from ..ir import Graph
from ..ir.timing import unschedule
from ..passes import lower_to_loihi
from ..report.cores import count_streamed, stream_batch
from ..report.cost import EnergyEstimate, price_ann, price_nodes
from ..report.counts import Activity
from ..report.latency import CoreTimes, LatencyEstimate, core_times, estimate_latency
from ..report.render import render_html
from ..sim import run_graph
from ..sim.dataset import EvalResult, evaluate_graph, graph_feeds
from ..targets import Target
from ..zoo.checkpoint import LoadedCheckpoint
from .artifact import CompileRecord, Compiled
from .graph_model import GraphModel

SCHEMA = "snncompile-run-report/2"
T = TypeVar("T")


@dataclass
class Clock:
    """Runs steps by name: tells ``step`` what runs next and keeps each one's wall time in ``seconds``."""

    step: Callable[[str], None] = lambda message: None
    seconds: dict[str, float] = field(default_factory=dict)

    def __call__(self, label: str, fn: Callable[[], T]) -> T:
        self.step(label)
        start = time.perf_counter()
        result = fn()
        self.seconds[label] = round(time.perf_counter() - start, 3)
        return result


def first_samples(data_set, count: int) -> torch.Tensor:
    """The inputs of the first ``count`` items of a data set, stacked."""
    return torch.stack([data_set[i][0] for i in range(min(count, len(data_set)))])


def export(loaded: LoadedCheckpoint | GraphModel) -> Graph:
    """The float IR graph: the checkpoint's model exported, or the graph a graph file holds."""
    return loaded.graph if isinstance(loaded, GraphModel) else export_model(loaded.model)


def simulate(graph: Graph, data_set, *, progress: bool = False, description: str = "simulate") -> EvalResult:
    return evaluate_graph(unschedule(graph), data_set, progress=progress, description=description)


def calibration_feeds(graph: Graph, train_set, count: int) -> dict[str, torch.Tensor]:
    """What calibrates the scales chosen from data: the first ``count`` samples of ``train_set`` (training
    samples or a ``CalibrationSet``, never test samples)."""
    return graph_feeds(graph, first_samples(train_set, count))


def lower(graph: Graph, train_set, *, calibration: int, target: str, dump_dir: Path | None = None) -> Graph:
    """The ``loihi`` pipeline for ``target``, calibrated on the first ``calibration`` training samples."""
    return lower_to_loihi(graph, calibration_feeds(graph, train_set, calibration), target=target, dump_dir=dump_dir)


def is_integer(graph: Graph) -> bool:
    """Whether ``graph`` is already in the chip's integer form (a lava-dl netx network is): every synapse and
    neuron an integer one, and a schedule (its delays) set."""
    ops = [node.op for node in graph.nodes.values()]
    return (graph.schedule is not None or any(op.delay for op in ops)) and all(
        op.INTEGER_INPUTS for op in ops if op.ROLE in ("synapse", "neuron"))


def compile_graph(graph: Graph, train_set, record: CompileRecord, *, dump_dir: Path | None = None,
                  clock: Clock | None = None) -> Compiled:
    """``lower`` (unless the graph is integer already: :func:`is_integer`) then ``place`` for the record's target
    and calibration, timed as ``lowering`` and ``placement``; the design rules are not checked here
    (:func:`check_rules`)."""
    clock = clock or Clock()
    integer = graph if is_integer(graph) else clock("lowering", lambda: lower(
        graph, train_set, calibration=record.calibration, target=record.target, dump_dir=dump_dir))
    return Compiled(integer, clock("placement", lambda: place(integer, record.target)), record)


def check_rules(compiled: Compiled, chip: Target) -> list[Violation]:
    """Every design rule violation of the compiled graph on ``chip`` (the record's target), with the chips
    its record allows."""
    return check(compiled.graph, compiled.placement, chip, max_chips=compiled.record.max_chips)


def lower_bound(compiled: Compiled, chip: Target) -> CoreBound:
    """The fewest cores any placement of the compiled graph on ``chip`` needs (from the graph alone), shown next
    to the cores used."""
    return core_lower_bound(compiled.graph, chip)


def check_on_lava(integer: Graph, test_set, *, samples: int, backend: Backend) -> dict:
    """The first ``samples`` test samples on ``backend``: the report's ``lava`` entry (accuracy, samples, how
    many equal the reference simulator's outputs, the granularity)."""
    found = backend.evaluate(integer, test_set, indices=range(min(samples, len(test_set)))).to_dict()
    return {k: found[k] for k in ("accuracy", "total", "identical_to_reference", "granularity")}


def _outputs_of(graph: Graph, feeds: dict[str, torch.Tensor], names: set[str]) -> dict[str, torch.Tensor]:
    """The values of the nodes ``names`` of ``graph`` on ``feeds`` (every other value freed after its last
    reader)."""
    found = {}

    def keep(name, op, inputs, value, traces):
        if name in names:
            found[name] = value

    run_graph(graph, feeds, observer=keep)
    return found


def compare_spikes(float_graph: Graph, integer: Graph, x: torch.Tensor, *, batch: int = 4) -> list[dict]:
    """Per neuron layer present in both graphs: firing rates and spike agreement on the inputs ``x`` (the
    integer graph unscheduled, so both are read on the same steps), ``batch`` samples at a time, keeping
    only the neurons' outputs of one batch (spikes are 0 or +-1, so the sums and the rates are exact)."""
    window = unschedule(integer)
    neurons = {n for n, node in float_graph.nodes.items() if node.op.ROLE == "neuron" and n in window.nodes}
    sums: dict[str, list[float]] = {}  # layer -> |float| sum, |integer| sum, equal elements, elements
    for part in x.split(batch):
        a = _outputs_of(float_graph, graph_feeds(float_graph, part), neurons)
        b = _outputs_of(window, graph_feeds(integer, part), neurons)
        for name, u in a.items():
            if u.shape == b[name].shape:
                u, v = u.double(), b[name].double()
                add = (float(u.abs().sum()), float(v.abs().sum()), float((u == v).sum()), u.numel())
                sums[name] = [t + d for t, d in zip(sums.get(name, (0.0, 0.0, 0.0, 0)), add)]
    return [{"node": name, "float_rate": f / n, "integer_rate": i / n, "agreement": same / n}
            for name in float_graph.topo_order() if name in sums for f, i, same, n in [sums[name]]]


@dataclass
class Counts:
    """A run's activity: per node (``activity``, and its JSON form ``table``, made once) and per core of the
    placement, as the latency reads it (``cores``)."""

    activity: Activity
    table: dict
    cores: CoreTimes


def count(compiled: Compiled, chip: Target, x: torch.Tensor, *, batch: int | None = None) -> Counts:
    """Run the compiled graph on the inputs ``x``, ``batch`` samples at a time (default:
    :func:`~snncompile.report.cores.stream_batch`), and count its activity per node and core as it runs
    (streamed: no value kept past its last reader, only the counts; per core, only what the latency needs:
    :func:`~snncompile.report.latency.core_times`)."""
    graph = compiled.graph
    parts = x.split(batch or stream_batch(graph))
    activity, cores = count_streamed(graph, compiled.placement, chip, (graph_feeds(graph, part) for part in parts),
                                     lambda per_core: core_times(per_core, chip))
    return Counts(activity, activity.to_dict(), cores)


def lava_fidelity(graph: Graph, counts: Counts) -> dict:
    """The report's ``lava`` additions: ``stock_share`` (of the recorded run's synaptic operations and neuron
    updates on the chip, what Lava's own process models execute in ``per_op``) and ``processes`` (per node,
    the Lava class that runs it in each granularity), for one sample per Lava run."""
    from ..backends.lava.fidelity import lava_classes, lava_plans, stock_share  # (imports Lava: when a job asks)

    plans = lava_plans(graph)  # each granularity planned once: the classes and the share read the same plans
    return {"stock_share": stock_share(plans["per_op"], counts.table["node_totals"]),
            "processes": lava_classes(graph, plans)}


@dataclass
class Estimate:
    """Latency on the target, and energy keyed by pricing: the target's name, ``cmos45`` and ``ann``."""

    latency: LatencyEstimate
    energy: dict[str, EnergyEstimate]


def price(counts: Counts, chip: Target) -> Estimate:
    """Latency from the per-core counts; energy from the counts, the target's with its static, message and
    hop energy, the 45 nm convention's, and the ANN equivalent's (every connection a 45 nm MAC)."""
    latency = estimate_latency(counts.cores, chip)
    return Estimate(latency, {chip.name: price_nodes(counts.table, chip).plus(latency.energy_pj, latency.figures),
                              "cmos45": price_nodes(counts.table, "cmos45"),
                              "ann": price_ann(counts.activity, "cmos45")})


@dataclass
class JobReport:
    """What :func:`~snncompile.job.run.run_job` found; ``to_dict()`` is the JSON report (``schema`` =
    ``SCHEMA``)."""

    model: str
    target: str
    checkpoint: dict                   #: where the model came from: path, format, architecture, loader notes
    float_accuracy: float
    integer_accuracy: float
    test_samples: int
    lava: dict
    placement: dict                    #: cores, chips, lower bound, per_core (loads, capacities, busy time)
    violations: list[str]
    layers: list[dict]                 #: per neuron layer: float / integer firing rate, spike agreement
    activity: dict                     #: the integer graph's counts (``Activity.to_dict()``)
    energy: dict                       #: the target, cmos45 and "ann": ``EnergyEstimate.to_dict()``
    latency: dict                      #: ``LatencyEstimate.to_dict()`` on the target
    calibration: dict                  #: what calibrated the scales: ``source`` (a line) and ``samples``
    files: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, **{k: v for k, v in self.__dict__.items()}}


def _per_core(compiled: Compiled, chip: Target, latency: LatencyEstimate) -> list[dict]:
    """Each core's load beside the target's per-core capacities, and its busy time per sample."""
    def cap(figure, scale=1):
        return None if figure is None else figure.value * scale

    return [{"core": c.core, "chip": c.chip, "node": c.node, "neurons": c.neurons,
             "neuron_capacity": cap(chip.neurons_per_core), "synaptic_bytes": c.synaptic_bytes,
             "synaptic_capacity_bytes": cap(chip.synaptic_memory_per_core, 1024),
             "fan_in_axons": c.fan_in_axons, "fan_in_capacity": cap(chip.fan_in_axons_per_core),
             "fan_out_axons": c.fan_out_axons, "fan_out_capacity": cap(chip.fan_out_axons_per_core),
             "busy_ns": latency.core_busy_ns.get(c.core, 0.0)} for c in compiled.placement.cores]


def report(name: str, loaded: LoadedCheckpoint | GraphModel, chip: Target, *, float_eval: EvalResult, int_eval: EvalResult,
           lava: dict, compiled: Compiled, bound: CoreBound, violations: list[Violation], layers: list[dict],
           counts: Counts, estimate: Estimate, artifact: dict[str, Path], out_dir: Path,
           seconds: dict[str, float]) -> JobReport:
    """The run report of everything the steps found, written to ``<out_dir>/<name>.report.json`` and its HTML
    page ``<name>.report.html``; ``artifact``: the compiled model's files (``save_compiled``)."""
    config = dict(loaded.options) if isinstance(loaded, GraphModel) else dataclasses.asdict(loaded.config)
    checkpoint = {"path": str(loaded.path), "format": loaded.source, "config": config, "notes": list(loaded.notes)}
    files = {"graph": str(artifact["graph"]), "placement": str(artifact["placement"]),
             "report": str(out_dir / f"{name}.report.json"), "html": str(out_dir / f"{name}.report.html")}
    result = JobReport(model=name, target=chip.name, checkpoint=checkpoint, float_accuracy=float_eval.accuracy,
                       integer_accuracy=int_eval.accuracy, test_samples=int_eval.total, lava=lava,
                       placement={"cores": compiled.placement.cores_used, "chips": compiled.placement.chips_used,
                                  "lower_bound": bound.cores, "lower_bound_by_resource": dict(bound.by_resource),
                                  "per_core": _per_core(compiled, chip, estimate.latency)},
                       violations=[f"[{v.rule}] {v.node}: {v.message}" for v in violations], layers=layers,
                       activity=counts.table, energy={k: e.to_dict() for k, e in estimate.energy.items()},
                       latency=estimate.latency.to_dict(), files=files, seconds=seconds,
                       calibration={"source": compiled.record.calibration_source,
                                    "samples": compiled.record.calibration})
    document = result.to_dict()
    out_dir.mkdir(parents=True, exist_ok=True)
    Path(files["report"]).write_text(json.dumps(document, indent=1) + "\n")
    Path(files["html"]).write_text(render_html(document), encoding="utf-8")
    return result


__all__ = ["SCHEMA", "Clock", "Counts", "Estimate", "JobReport", "first_samples", "calibration_feeds", "export",
           "simulate", "lower", "place", "compile_graph", "check_rules", "lower_bound", "check_on_lava", "lava_fidelity", "compare_spikes", "count",
           "price", "report"]

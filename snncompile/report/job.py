"""The main job on a trained model: float evaluation, lowering, placement, integer simulation, a Lava check,
activity counts, and one JSON report (``SCHEMA``) with the figures a reader needs first.

Steps: evaluate the float model on the test split; export and lower it (``lower_to_loihi``, calibrated on
the first training samples); place it on the target and check the design rules; evaluate the integer graph
on the whole test split with the reference simulator; run the first ``lava_samples`` test samples on Lava
(fused) and check that every output equals the reference simulator's; on the first ``samples`` test
samples compare the float and the integer graph's spike trains per neuron layer (the integer graph
unscheduled, so both are read on the same steps), count the integer graph's activity (``count_activity``),
split it over the placement's cores (``core_activity``), estimate latency, mesh and static energy
(``estimate_latency``) and price it for the target, the 45 nm convention and the ANN equivalent (``cost``).
Writes the JSON report and its HTML page (``render``).

Schema history: ``/1`` had no ``checkpoint``, ``latency``, ``placement.per_core``, ``energy[...].per_node_pj`` or
``energy["ann"]``; docs/report_schema.md describes every field.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..backends.design_rules import check
from ..backends.lava.evaluate import evaluate_lava
from ..backends.placement import Placement, PlacementError, place, save_placement
from ..frontend import export
from ..ir import io as ir_io
from ..ir import Graph
from ..passes import lower_to_loihi
from ..ir.timing import unschedule
from ..sim import run_graph
from ..sim.dataset import evaluate_graph, graph_feeds
from ..targets import load_target
from .cores import core_activity
from .cost import price_ann, price_nodes
from .counts import count_activity, trace_run
from .latency import estimate_latency
from .render import render_html

SCHEMA = "snncompile-run-report/2"


@dataclass
class JobReport:
    """What :func:`run_job` found; ``to_dict()`` is the JSON report (``schema`` = ``SCHEMA``)."""

    model: str
    target: str
    checkpoint: dict                   #: where the model came from: path, format, architecture, loader notes
    float_accuracy: float
    integer_accuracy: float
    test_samples: int
    lava: dict
    placement: dict                    #: cores, chips, per_core (loads, capacities, busy time)
    violations: list[str]
    layers: list[dict]                 #: per neuron layer: float / integer firing rate, spike agreement
    activity: dict                     #: the integer graph's counts (``Activity.to_dict()``)
    energy: dict                       #: the target, cmos45 and "ann": ``EnergyEstimate.to_dict()``
    latency: dict                      #: ``LatencyEstimate.to_dict()`` on the target
    files: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, **{k: v for k, v in self.__dict__.items()}}


def _stack(data_set, count: int) -> torch.Tensor:
    return torch.stack([data_set[i][0] for i in range(min(count, len(data_set)))])


def _layers(float_graph, integer, feeds_float, feeds_int) -> list[dict]:
    """Per neuron layer present in both graphs: firing rates and spike agreement on the same samples."""
    a = run_graph(float_graph, feeds_float, keep="all")
    b = run_graph(unschedule(integer), feeds_int, keep="all")
    rows = []
    for name in float_graph.topo_order():
        if name in b and hasattr(float_graph.op(name), "simulate") and a[name].shape == b[name].shape:
            x, y = a[name].double(), b[name].double()
            rows.append({"node": name, "float_rate": float(x.abs().mean()), "integer_rate": float(y.abs().mean()),
                         "agreement": float((x == y).double().mean())})
    return rows


def _per_core(placement, chip, latency) -> list[dict]:
    """Each core's load beside the target's per-core capacities, and its busy time per sample."""
    def cap(figure, scale=1):
        return None if figure is None else figure.value * scale

    return [{"core": c.core, "chip": c.chip, "node": c.node, "neurons": c.neurons,
             "neuron_capacity": cap(chip.neurons_per_core), "synaptic_bytes": c.synaptic_bytes,
             "synaptic_capacity_bytes": cap(chip.synaptic_memory_per_core, 1024),
             "fan_in_axons": c.fan_in_axons, "fan_in_capacity": cap(chip.fan_in_axons_per_core),
             "fan_out_axons": c.fan_out_axons, "fan_out_capacity": cap(chip.fan_out_axons_per_core),
             "busy_ns": latency.core_busy_ns.get(c.core, 0.0)} for c in placement.cores]


def run_job(loaded, train_set, test_set, *, target: str = "loihi2", samples: int = 64,
            lava_samples: int = 8, calibration: int = 64, out_dir: Path = Path("runs"),
            lava_granularity: str = "fused", lava_timeout: float = 600.0,
            compiled: tuple[Graph, Placement] | None = None, progress: bool = False,
            step: Callable[[str], None] = lambda message: None) -> JobReport:
    """Run the whole job (see the module docstring) and write ``<out_dir>/<name>.loihi.snnir``, its
    placement, ``<name>.report.json`` and ``<name>.report.html``. Data sets are any indexable ``(x, y)``
    sequence (a ``torch.utils.data.Subset`` evaluates part of one). ``lava_granularity`` and
    ``lava_timeout`` (seconds per Lava session) go to ``evaluate_lava``. ``compiled``: an integer graph and
    its placement on ``target`` (``snncompile compile`` writes both) to use instead of lowering and placing
    the model afresh. ``step(message)`` is told what runs next; ``progress`` shows a bar (on stderr) while
    the test set is evaluated."""
    name = loaded.name or Path(str(loaded.path)).stem
    chip = load_target(target)
    seconds: dict[str, float] = {}

    def timed(label: str, fn):
        step(label)
        start = time.perf_counter()
        result = fn()
        seconds[label] = round(time.perf_counter() - start, 3)
        return result

    graph = timed("export", lambda: export(loaded.model))
    float_eval = timed("float evaluation", lambda: evaluate_graph(graph, test_set, progress=progress,
                                                                  description="float model"))
    if compiled is None:
        integer = timed("lowering", lambda: lower_to_loihi(graph, graph_feeds(graph, _stack(train_set, calibration)),
                                                           target=target))
        placement = timed("placement", lambda: place(integer, target))
    else:
        integer, placement = compiled
        if placement.target != target:
            raise PlacementError(f"the compiled graph was placed for {placement.target!r}, not {target!r}")
    violations = [f"[{v.rule}] {v.node}: {v.message}" for v in check(integer, placement, chip)]
    int_eval = timed("integer simulation", lambda: evaluate_graph(unschedule(integer), test_set, progress=progress,
                                                                  description="integer graph"))
    lava = timed("Lava check", lambda: evaluate_lava(integer, test_set, indices=range(min(lava_samples,
                                                                                          len(test_set))),
                                                     granularity=lava_granularity, timeout=lava_timeout))
    x = _stack(test_set, samples)
    feeds_int = graph_feeds(integer, x)
    layers = timed("spike agreement", lambda: _layers(graph, integer, graph_feeds(graph, x), feeds_int))
    trace = timed("activity counts", lambda: trace_run(integer, feeds_int))
    activity = count_activity(integer, trace=trace)
    counts = activity.to_dict()
    latency = timed("latency estimate", lambda: estimate_latency(core_activity(integer, placement, trace, chip),
                                                                 chip))
    out_dir.mkdir(parents=True, exist_ok=True)
    artifact = ir_io.save(integer, out_dir / f"{name}.loihi.snnir")
    checkpoint = {"path": str(loaded.path), "format": loaded.source, "config": dataclasses.asdict(loaded.config),
                  "notes": list(loaded.notes)}
    report = JobReport(model=name, target=target, checkpoint=checkpoint, float_accuracy=float_eval.accuracy,
                       integer_accuracy=int_eval.accuracy, test_samples=len(test_set),
                       lava={k: lava[k] for k in ("accuracy", "total", "identical_to_reference", "granularity")},
                       placement={"cores": placement.cores_used, "chips": placement.chips_used,
                                  "per_core": _per_core(placement, chip, latency)},
                       violations=violations, layers=layers, activity=counts,
                       energy={target: price_nodes(counts, chip).plus(latency.energy_pj, latency.figures).to_dict(),
                               "cmos45": price_nodes(counts, "cmos45").to_dict(),
                               "ann": price_ann(activity, "cmos45").to_dict()},
                       latency=latency.to_dict(), seconds=seconds)
    report.files = {"graph": str(artifact), "placement": str(save_placement(placement, artifact)),
                    "report": str(out_dir / f"{name}.report.json"), "html": str(out_dir / f"{name}.report.html")}
    document = report.to_dict()
    Path(report.files["report"]).write_text(json.dumps(document, indent=1) + "\n")
    Path(report.files["html"]).write_text(render_html(document), encoding="utf-8")
    return report


__all__ = ["run_job", "JobReport", "SCHEMA"]

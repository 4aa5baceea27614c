"""The tables a run report (:mod:`.document`) is shown as, in the terminal and on the HTML page alike
(:mod:`.render`), each a :class:`Rows` of text cells.

Every energy or time is shown next to the status of the figures that priced it ("proxy", "pre-silicon"...): a
number is only as good as its figures. A count the target gives no figure for reads "unpriced", never an energy
of 0; a term a re-pricing cannot price reads "left out". The headline (:func:`headline`) is short enough for an
80-column terminal; the long tables are shown on request or only on the page (:attr:`Rows.place`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .cost import PRICES
from .latency import ENERGIES

HEADLINE_WIDTH = 62  # what a headline value may take on an 80-column terminal, beside its label


@dataclass
class Rows:
    """One table: ``key`` (its id on the page), title, column names and rows of text cells. ``place``:
    ``"headline"`` (always shown), ``"details"`` (in the terminal on request, on the page always) or ``"page"``
    (the HTML page only); ``wide``: columns only the page shows (a terminal has 80 columns)."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    place: str = "details"
    wide: tuple[str, ...] = ()


_PREFIXES = ((0, ""), (-3, "m"), (-6, "u"), (-9, "n"), (-12, "p"))


def si(value: float, unit: str, exponent: int) -> str:
    """``value`` x 10^``exponent`` ``unit`` with an SI prefix: ``si(1.355e8, "J", -12)`` is ``'135.51 uJ'``."""
    scaled = value * 10.0 ** exponent
    power, prefix = next(((p, s) for p, s in _PREFIXES if abs(scaled) >= 10.0 ** p), _PREFIXES[-1])
    return f"{scaled / 10.0 ** power:.2f} {prefix}{unit}"


def pj(value: float) -> str:
    return si(value, "J", -12)


def ns(value: float) -> str:
    return si(value, "s", -9)


def statuses(figures: dict) -> str:
    return ", ".join(sorted({f["status"] for f in figures.values()})) or "no figure"


def _per_sample(report: dict) -> Callable[[float], float]:
    samples = max(report["activity"]["samples"], 1)
    return lambda count: count / samples


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


# count -> figure, for each way a report's energy entries are priced (cost.PRICES, cost.price_ann, latency)
_PRICED_BY = (*PRICES.values(), {"ANN_MACs": "mac_energy"}, ENERGIES, {"static": "static_power_per_chip"})


def _figure_pricing(count: str, figures: dict) -> str | None:
    """The figure of ``figures`` that priced ``count``."""
    return next((by_count[count] for by_count in _PRICED_BY if by_count.get(count) in figures), None)


def energy_label(key: str, entry: dict) -> str:
    name = key if entry["target"] == key else f"{key} ({entry['target']})"
    return f"{name} [{statuses(entry['figures'])}]"


def title(report: dict) -> str:
    """The report's title: the model, the target it was placed on and, when ``snncompile report --target``
    priced it again, the target that did."""
    repriced = f", energy re-priced for {report['repriced_for']}" if "repriced_for" in report else ""
    return f"{report['model']} on {report['target']}{repriced}"


# -- the headline: what a reader looks for first, on 80 columns --------------------------------------------------

ARCHITECTURE = (("attention", "{}"), ("dim", "dim {}"), ("layers", "{} layers"), ("num_heads", "{} heads"),
                ("time_steps", "T={}"))
# sdt-v3 (the one backbone with stage widths) has no attention choice, width or block count of those fields
STAGED_ARCHITECTURE = (("backbone", "{}"), ("stage_dims", "widths {}"), ("stage_layers", "blocks {}"),
                       ("num_heads", "{} heads"), ("time_steps", "T={}"))


def _architecture(report: dict) -> str:
    config = report.get("checkpoint", {}).get("config", {})
    fields = STAGED_ARCHITECTURE if config.get("stage_dims") else ARCHITECTURE
    parts = [form.format(config[key]) for key, form in fields if key in config]
    return f"{report['model']}: {', '.join(parts)}" if parts else report["model"]


# what each core holds beside its capacity, as the per-core records name them
UTILISATION = {"neurons": ("neurons", "neuron_capacity"),
               "synaptic memory": ("synaptic_bytes", "synaptic_capacity_bytes"),
               "fan-in": ("fan_in_axons", "fan_in_capacity"), "fan-out": ("fan_out_axons", "fan_out_capacity")}


def _core_use(per_core: list[dict]) -> str:
    """The highest share of each per-core capacity over the cores: what limits the placement."""
    shares = []
    for what, (load, capacity) in UTILISATION.items():
        used = [c[load] / c[capacity] for c in per_core if c[capacity]]
        if used:
            shares.append(f"{what} {max(used):.0%}")
    return ", ".join(shares)


def _energy_lines(key: str, entry: dict) -> list[str]:
    line = f"{key}: {pj(entry['total_pj'])}/sample [{statuses(entry['figures'])}]"
    if entry["target"] != key:
        line += f" ({entry['target']})"
    if entry["unpriced"]:
        named = f"{line}; unpriced: {', '.join(entry['unpriced'])}"
        line = named if len(named) <= HEADLINE_WIDTH else f"{line}; {_count(len(entry['unpriced']), 'count')} unpriced"
    left_out = [f"  left out: {', '.join(entry['left_out'])} (need a placement on {key})"] if entry.get("left_out") \
        else []
    return [line, *left_out]


def headline(report: dict) -> Rows:
    """Accuracy float and integer, the Lava check, cores and chips, energy and latency with their status, and where
    the files are: each value within :data:`HEADLINE_WIDTH` characters (a long file path excepted)."""
    lava, placement, violations = report["lava"], report["placement"], report["violations"]
    rows = [["model", _architecture(report)]]
    if "checkpoint" in report:
        rows.append(["checkpoint", f"{report['checkpoint']['path']} ({report['checkpoint']['format']})"])
    rows += [["accuracy", f"float {report['float_accuracy']:.2%}, integer {report['integer_accuracy']:.2%} "
                          f"({report['test_samples']:,} test samples)"],
             ["Lava", f"{lava['identical_to_reference']}/{lava['total']} samples identical to the reference "
                      f"({lava['granularity']}); accuracy {lava['accuracy']:.2%}"]]
    if "stock_share" in lava:  # how much per_op runs on Lava's own process models
        rows.append(["", "on Lava's own processes (per_op): " + ", ".join(
            f"{'-' if v['fraction'] is None else format(v['fraction'], '.1%')} of {k.replace('_', ' ')}"
            for k, v in lava["stock_share"].items())])
    rows += [["placement", f"{_count(placement['cores'], 'core')} on {_count(placement['chips'], 'chip')} of "
                           f"{report['target']}; "
                           + (f"{_count(len(violations), 'design-rule violation')}" if violations
                              else "no design-rule violation")]]
    if "lower_bound" in placement:  # the fewest cores any placement needs, from the graph alone
        rows.append(["", f"lower bound {_count(placement['lower_bound'], 'core')} "
                         f"({placement['cores'] / max(1, placement['lower_bound']):.1f}x used)"])
    if placement.get("per_core"):
        rows.append(["most used", _core_use(placement["per_core"])])
    energy = [line for key, entry in report["energy"].items() for line in _energy_lines(key, entry)]
    rows += [["energy" if i == 0 else "", line] for i, line in enumerate(energy)]
    if "latency" in report:
        latency = report["latency"]
        rows.append(["latency", f"{latency['target']}: {ns(latency['per_sample_ns'])}/sample, "
                                f"{latency['throughput_samples_per_s']:,.0f} samples/s [{statuses(latency['figures'])}]"])
    files = [f"{name}: {report['files'][key]}" for key, name in (("report", "report"), ("html", "page"),
                                                                 ("graph", "graph")) if key in report["files"]]
    rows += [["files" if i == 0 else "", line] for i, line in enumerate(files)]
    return Rows("summary", f"run report: {title(report)}", ["", ""], rows, place="headline")


# -- the tables behind it -----------------------------------------------------------------------------------------

def _layers(report: dict) -> Rows:
    per_sample, spikes = _per_sample(report), report["activity"]["spikes"]
    rows = [[row["node"], f"{row['float_rate']:.4f}", f"{row['integer_rate']:.4f}", f"{row['agreement']:.4f}",
             f"{per_sample(spikes[row['node']]['total']):,.0f}" if row["node"] in spikes else "-"]
            for row in report["layers"]]
    return Rows("layers", f"spiking activity per neuron layer (float vs integer graph, "
                          f"{report['activity']['samples']} samples)",
                ["neuron layer", "float rate", "integer rate", "spike agreement", "spikes per sample"], rows)


def node_energy(activity: dict, entry: dict, node: str) -> str:
    """``node``'s energy per sample in the energy ``entry``: "unpriced" where the target gives no figure for its
    counts (not an energy of 0), "+ unpriced" where it prices only part of them."""
    if node not in entry.get("per_node_pj", {}):
        return "-"
    priced = entry["per_node_pj"][node]
    unpriced = [c for c, n in activity.get("node_totals", {}).get(node, {}).items() if n and c in entry["unpriced"]]
    if not unpriced:
        return pj(priced)
    return f"{pj(priced)} + unpriced" if priced else "unpriced"


def _node_energies(report: dict) -> list[Rows]:
    by_node = {key: entry for key, entry in report["energy"].items() if entry.get("per_node_pj")}
    nodes = list(dict.fromkeys(n for entry in by_node.values() for n in entry["per_node_pj"]))
    if not nodes:
        return []
    rows = [[node, *(node_energy(report["activity"], entry, node) for entry in by_node.values())] for node in nodes]
    return [Rows("energy-by-node", "energy per sample by node",
                 ["node", *(energy_label(key, entry) for key, entry in by_node.items())], rows)]


def operations(report: dict) -> list[tuple[str, str, str, float]]:
    """(node, op, kind, operations per sample) of every synapse and attention node."""
    per_sample, activity = _per_sample(report), report["activity"]
    return ([(node, c["op"], "host MAC" if c["static"] else c["kind"], per_sample(c["total"]))
             for node, c in activity["synapses"].items()]
            + [(node, c["op"], "attention", per_sample(c["total"])) for node, c in activity["attention"].items()])


def _operations(report: dict) -> Rows:
    rows = [[node, op, kind, f"{ops:,.0f}"] for node, op, kind, ops in operations(report)]
    return Rows("operations", "synaptic and attention operations per node",
                ["node", "op", "kind", "ops per sample"], rows)


def _energy(report: dict, key: str, entry: dict) -> Rows:
    totals, per_sample = report["activity"]["totals"], _per_sample(report)
    rows = []
    for count, energy in entry["per_sample_pj"].items():
        figure = _figure_pricing(count, entry["figures"])
        spec = entry["figures"].get(figure, {})
        rows.append([count, f"{per_sample(totals[count]):,.0f}" if count in totals else "-", figure or "-",
                     f"{spec['value']} {spec['unit']}" if spec else "-", spec.get("status", "-"), pj(energy),
                     f"{energy / entry['total_pj']:.1%}" if entry["total_pj"] else "-"])
    rows += [[count, f"{per_sample(totals[count]):,.0f}" if count in totals else "-", "-", "-", "unpriced", "-", "-"]
             for count in entry["unpriced"]]
    rows += [[term, "-", "-", "-", "left out", "-", "-"] for term in entry.get("left_out", ())]
    rows.append(["total", "", "", "", "", pj(entry["total_pj"]), "100%"])  # its statuses: in the title
    return Rows(f"energy-{key}", f"energy per sample: {energy_label(key, entry)}",
                ["count", "per sample", "figure", "price", "status", "energy per sample", "share"], rows,
                wide=("figure",))


# a research note the targets' sources cite ("[lava_loihi.md §6.1]", "as cited in lava_loihi.md §6.2"): not part
# of the repository, so the page cites the paper or tool and the target file instead
_NOTE_CITATION = re.compile(r"\s*\[[^\]]*\.md\b[^\]]*\]|,? as cited in \S+\.md(?: §[\d.]+)*")


def cited(source: str) -> str:
    """A figure's source without citations of notes that are not in the repository."""
    return _NOTE_CITATION.sub("", source)


def _target_file(target: str) -> str:
    """The shipped file of ``target`` (an energy entry's target; the ANN entry's is ``'<target> ANN'``)."""
    return f"targets/{target.removesuffix(' ANN')}.toml"


def _figures(report: dict) -> Rows:
    rows = [[key, name, f"{f['value']}", f["unit"], f["status"], cited(f["source"]), _target_file(entry["target"])]
            for key, entry in report["energy"].items() for name, f in entry["figures"].items()]
    if "latency" in report:
        latency = report["latency"]
        rows += [[f"latency ({latency['target']})", name, f"{f['value']}", f["unit"], f["status"], cited(f["source"]),
                  _target_file(latency["target"])] for name, f in latency["figures"].items()]
    return Rows("figures", "figures used, with their status and source",
                ["used for", "figure", "value", "unit", "status", "source", "from"], rows, place="page")


def _latency(latency: dict) -> list[Rows]:
    steps = latency["step_ns"]
    slowest = int(np.argmax(steps)) if steps else None
    spread = (f" (min {ns(latency['per_sample_ns_min'])}, max {ns(latency['per_sample_ns_max'])})"
              if "per_sample_ns_min" in latency and "per_sample_ns_max" in latency else "")
    rows = [["per sample", ns(latency["per_sample_ns"]) + spread],
            ["throughput", f"{latency['throughput_samples_per_s']:,.1f} samples/s"],
            ["time steps", str(latency["time_steps"])],
            ["slowest step", "-" if slowest is None else f"step {slowest}: {ns(steps[slowest])} "
                                                         f"(core {latency['slowest_core'][slowest]})"],
            ["barrier per step", ns(latency["barrier_ns"])],
            *([f"energy per sample: {term}", pj(energy)] for term, energy in latency.get("energy_pj", {}).items()),
            *(["not modelled", what] for what in latency.get("not_modelled", ()))]
    heading = f"latency on {latency['target']} [{statuses(latency['figures'])}]"
    per_step = [[str(t), ns(step), str(core)] for t, (step, core) in enumerate(zip(steps, latency["slowest_core"]))]
    return [Rows("latency", heading, ["", ""], rows),
            Rows("latency-steps", f"{heading}: per time step", ["step", "time", "slowest core"], per_step,
                 place="page")]


def _cores(per_core: list[dict]) -> Rows:
    def used(n: int, capacity: float | None) -> str:
        return f"{n:,}/{capacity:,.0f} ({n / capacity:.0%})" if capacity else f"{n:,} (no capacity given)"

    busy = any("busy_ns" in c for c in per_core)
    rows = [[str(c["core"]), str(c["chip"]), c["node"], used(c["neurons"], c["neuron_capacity"]),
             used(c["synaptic_bytes"], c["synaptic_capacity_bytes"]), used(c["fan_in_axons"], c["fan_in_capacity"]),
             used(c["fan_out_axons"], c["fan_out_capacity"]),
             *([ns(c["busy_ns"]) if "busy_ns" in c else "-"] if busy else [])] for c in per_core]
    return Rows("cores", f"core utilisation ({len(per_core)} cores)",
                ["core", "chip", "node", "neurons", "synaptic memory (bytes)", "fan-in (axons)", "fan-out (axons)",
                 *(["busy per sample"] if busy else [])], rows, place="page")


def tables(report: dict) -> list[Rows]:
    """Every table of ``report``, the headline first."""
    out = [headline(report), _layers(report), _operations(report), *_node_energies(report),
           *(_energy(report, key, entry) for key, entry in report["energy"].items()), _figures(report)]
    if "latency" in report:
        out += _latency(report["latency"])
    if "per_core" in report["placement"]:
        out.append(_cores(report["placement"]["per_core"]))
    if report["violations"]:
        out.append(Rows("violations", "design-rule violations", ["violation"], [[v] for v in report["violations"]],
                        place="headline"))
    return out


__all__ = ["HEADLINE_WIDTH", "UTILISATION", "Rows", "cited", "energy_label", "headline", "node_energy", "ns", "operations", "pj",
           "si", "statuses", "tables", "title"]

"""Showing a run report (:mod:`.document`): rich tables for the terminal (:func:`render_terminal`) and one
self-contained HTML file (:func:`render_html`: inline SVG plots made with matplotlib, no external resource),
both from the same tables. Every energy or time is shown next to the status of the figures that priced it
("proxy", "pre-silicon"...): a number is only as good as its figures.
"""
from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter
from rich.table import Column, Table
from rich.text import Text

from .cost import PRICES
from .latency import ENERGIES


# -- the tables both renderings show ------------------------------------------------------------------------------

@dataclass
class _Rows:
    key: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    in_terminal: bool = True


_PREFIXES = ((0, ""), (-3, "m"), (-6, "u"), (-9, "n"), (-12, "p"))


def _si(value: float, unit: str, exponent: int) -> str:
    """``value`` x 10^``exponent`` ``unit`` with an SI prefix: ``_si(1.355e8, "J", -12)`` is ``'135.51 uJ'``."""
    scaled = value * 10.0 ** exponent
    power, prefix = next(((p, s) for p, s in _PREFIXES if abs(scaled) >= 10.0 ** p), _PREFIXES[-1])
    return f"{scaled / 10.0 ** power:.2f} {prefix}{unit}"


def _pj(value: float) -> str:
    return _si(value, "J", -12)


def _statuses(figures: dict) -> str:
    return ", ".join(sorted({f["status"] for f in figures.values()})) or "no figure"


def _per_sample(report: dict) -> Callable[[float], float]:
    samples = max(report["activity"]["samples"], 1)
    return lambda count: count / samples


# count -> figure, for each way a report's energy entries are priced (cost.PRICES, cost.price_ann, latency)
_PRICED_BY = (*PRICES.values(), {"ANN_MACs": "mac_energy"}, ENERGIES, {"static": "static_power_per_chip"})


def _figure_pricing(count: str, figures: dict) -> str | None:
    """The figure of ``figures`` that priced ``count``."""
    return next((by_count[count] for by_count in _PRICED_BY if by_count.get(count) in figures), None)


def _energy_label(key: str, entry: dict) -> str:
    name = key if entry["target"] == key else f"{key} ({entry['target']})"
    return f"{name} [{_statuses(entry['figures'])}]"


def _summary(report: dict) -> _Rows:
    lava, placement, activity = report["lava"], report["placement"], report["activity"]
    rows = [["model", report["model"]], ["schema", report["schema"]]]
    if "checkpoint" in report:
        c = report["checkpoint"]["config"]
        rows += [["checkpoint", f"{report['checkpoint']['path']} ({report['checkpoint']['format']})"],
                 ["architecture", ", ".join(f"{k}={c[k]}" for k in ("attention", "dim", "layers", "num_heads",
                                                                     "time_steps") if k in c)]]
    rows += [["placement", f"{placement['cores']} cores on {placement['chips']} chip(s) of {report['target']}"],
             ["design rules", f"{len(report['violations'])} violation(s)" if report["violations"] else "no violation"],
             ["test samples", f"{report['test_samples']:,}"],
             ["float test accuracy", f"{report['float_accuracy']:.2%}"],
             ["integer test accuracy", f"{report['integer_accuracy']:.2%}"],
             ["Lava check", f"{lava['identical_to_reference']}/{lava['total']} samples identical to the reference "
                            f"simulator ({lava['granularity']}), Lava accuracy {lava['accuracy']:.2%}"],
             ["activity counted on", f"{activity['samples']:,} samples x {activity['time_steps']} steps"]]
    if "stock_share" in lava:
        rows.insert(-1, ["Lava's own processes (per_op)", ", ".join(
            f"{'-' if v['fraction'] is None else format(v['fraction'], '.1%')} of {k.replace('_', ' ')}"
            for k, v in lava["stock_share"].items())])
    for key, entry in report["energy"].items():
        unpriced = f"; unpriced: {', '.join(entry['unpriced'])}" if entry["unpriced"] else ""
        rows.append([f"energy per sample, {key}", f"{_pj(entry['total_pj'])} [{_statuses(entry['figures'])}]"
                                                  + unpriced])
    if "latency" in report:
        latency = report["latency"]
        rows.append([f"latency per sample, {latency['target']}",
                     f"{_si(latency['per_sample_ns'], 's', -9)}, {latency['throughput_samples_per_s']:,.0f} "
                     f"samples/s [{_statuses(latency['figures'])}]"])
    return _Rows("summary", f"run report: {report['model']} on {report['target']}", ["", ""], rows)


def _node_energy_columns(report: dict) -> list[tuple[str, dict]]:
    return [(f"energy/sample {_energy_label(key, entry)}", entry["per_node_pj"])
            for key, entry in report["energy"].items() if entry.get("per_node_pj")]


def _layers(report: dict) -> _Rows:
    per_sample, spikes, energy = _per_sample(report), report["activity"]["spikes"], _node_energy_columns(report)
    rows = [[row["node"], f"{row['float_rate']:.4f}", f"{row['integer_rate']:.4f}", f"{row['agreement']:.4f}",
             f"{per_sample(spikes[row['node']]['total']):,.0f}" if row["node"] in spikes else "-",
             *(_pj(by_node[row["node"]]) if row["node"] in by_node else "-" for _, by_node in energy)]
            for row in report["layers"]]
    return _Rows("layers", f"spiking activity per neuron layer (float vs integer graph, "
                           f"{report['activity']['samples']} samples)",
                 ["neuron layer", "float rate", "integer rate", "spike agreement", "spikes/sample",
                  *(label for label, _ in energy)], rows)


def _operations(report: dict) -> list[tuple[str, str, str, float]]:
    """(node, op, kind, operations per sample) of every synapse and attention node."""
    per_sample, activity = _per_sample(report), report["activity"]
    return ([(node, c["op"], "host MAC" if c["static"] else c["kind"], per_sample(c["total"]))
             for node, c in activity["synapses"].items()]
            + [(node, c["op"], "attention acc.", per_sample(c["total"])) for node, c in activity["attention"].items()])


def _operation_rows(report: dict) -> _Rows:
    energy = _node_energy_columns(report)
    rows = [[node, op, kind, f"{ops:,.0f}", *(_pj(by_node[node]) if node in by_node else "-"
                                              for _, by_node in energy)]
            for node, op, kind, ops in _operations(report)]
    return _Rows("operations", "synaptic and attention operations per node",
                 ["node", "op", "kind", "ops/sample", *(label for label, _ in energy)], rows)


def _energy(report: dict, key: str, entry: dict) -> _Rows:
    totals, per_sample = report["activity"]["totals"], _per_sample(report)
    rows = []
    for count, pj in entry["per_sample_pj"].items():
        figure = _figure_pricing(count, entry["figures"])
        spec = entry["figures"].get(figure, {})
        rows.append([count, f"{per_sample(totals[count]):,.0f}" if count in totals else "-", figure or "-",
                     f"{spec['value']} {spec['unit']}" if spec else "-", spec.get("status", "-"), _pj(pj),
                     f"{pj / entry['total_pj']:.1%}" if entry["total_pj"] else "-"])
    rows += [[count, f"{per_sample(totals[count]):,.0f}" if count in totals else "-", "-", "-", "unpriced", "-", "-"]
             for count in entry["unpriced"]]
    rows.append(["total", "", "", "", _statuses(entry["figures"]), _pj(entry["total_pj"]), "100%"])
    return _Rows(f"energy-{key}", f"energy per sample: {_energy_label(key, entry)}",
                 ["count", "per sample", "figure", "price", "status", "energy/sample", "share"], rows)


def _figures(report: dict) -> _Rows:
    rows = [[key, name, f"{f['value']}", f["unit"], f["status"], f["source"]]
            for key, entry in report["energy"].items() for name, f in entry["figures"].items()]
    if "latency" in report:
        rows += [[f"latency ({report['latency']['target']})", name, f"{f['value']}", f["unit"], f["status"],
                  f["source"]] for name, f in report["latency"]["figures"].items()]
    return _Rows("figures", "figures used, with their status and source",
                 ["used for", "figure", "value", "unit", "status", "source"], rows, in_terminal=False)


def _latency(latency: dict) -> list[_Rows]:
    steps = latency["step_ns"]
    slowest = int(np.argmax(steps)) if steps else None
    spread = (f" (min {_si(latency['per_sample_ns_min'], 's', -9)}, max {_si(latency['per_sample_ns_max'], 's', -9)})"
              if "per_sample_ns_min" in latency and "per_sample_ns_max" in latency else "")
    rows = [["per sample", _si(latency["per_sample_ns"], "s", -9) + spread],
            ["throughput", f"{latency['throughput_samples_per_s']:,.1f} samples/s"],
            ["time steps", str(latency["time_steps"])],
            ["slowest step", "-" if slowest is None else f"step {slowest}: {_si(steps[slowest], 's', -9)} "
                                                         f"(core {latency['slowest_core'][slowest]})"],
            ["barrier per step", _si(latency["barrier_ns"], "s", -9)],
            *([f"energy per sample: {term}", _pj(pj)] for term, pj in latency.get("energy_pj", {}).items()),
            *(["not modelled", what] for what in latency.get("not_modelled", ()))]
    title = f"latency on {latency['target']} [{_statuses(latency['figures'])}]"
    per_step = [[str(t), _si(ns, "s", -9), str(core)]
                for t, (ns, core) in enumerate(zip(steps, latency["slowest_core"]))]
    return [_Rows("latency", title, ["", ""], rows),
            _Rows("latency-steps", f"{title}: per time step", ["step", "time", "slowest core"], per_step,
                  in_terminal=False)]


def _cores(per_core: list[dict]) -> _Rows:
    def used(n: int, capacity: float | None) -> str:
        return f"{n:,}/{capacity:,.0f} ({n / capacity:.0%})" if capacity else f"{n:,} (no capacity given)"

    busy = any("busy_ns" in c for c in per_core)
    rows = [[str(c["core"]), str(c["chip"]), c["node"], used(c["neurons"], c["neuron_capacity"]),
             used(c["synaptic_bytes"], c["synaptic_capacity_bytes"]), used(c["fan_in_axons"], c["fan_in_capacity"]),
             used(c["fan_out_axons"], c["fan_out_capacity"]),
             *([_si(c["busy_ns"], "s", -9) if "busy_ns" in c else "-"] if busy else [])] for c in per_core]
    return _Rows("cores", f"core utilisation ({len(per_core)} cores)",
                 ["core", "chip", "node", "neurons", "synaptic memory (bytes)", "fan-in (axons)", "fan-out (axons)",
                  *(["busy/sample"] if busy else [])], rows)


def _tables(report: dict) -> list[_Rows]:
    tables = [_summary(report), _layers(report), _operation_rows(report),
              *(_energy(report, key, entry) for key, entry in report["energy"].items()), _figures(report)]
    if "latency" in report:
        tables += _latency(report["latency"])
    if "per_core" in report["placement"]:
        tables.append(_cores(report["placement"]["per_core"]))
    if report["violations"]:
        tables.append(_Rows("violations", "design-rule violations", ["violation"],
                            [[v] for v in report["violations"]]))
    return tables


def render_terminal(report: dict) -> list[Table]:
    """Rich tables for ``console.print``: summary, neuron layers, operations, energy per target, latency, cores."""
    out = []
    for rows in _tables(report):
        if rows.in_terminal:
            table = Table(*(Column(Text(name)) for name in rows.columns), title=Text(rows.title),
                          show_header=any(rows.columns))
            for row in rows.rows:
                table.add_row(*map(Text, row))  # Text: a node name is never read as rich markup
            out.append(table)
    return out


# -- HTML ---------------------------------------------------------------------------------------------------------

_RC = {"svg.fonttype": "none", "text.parse_math": False, "font.size": 9}
_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:1em 0;font-size:.85em}caption{font-weight:bold;text-align:left;padding:.3em 0}
td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}
figure{margin:1.5em 0}figure svg{max-width:100%;height:auto}figcaption{font-weight:bold}.absent{color:#777}"""


def _plot(key: str, caption: str, height: float, draw: Callable[[Figure], None]) -> str:
    with rc_context({**_RC, "svg.hashsalt": key}):
        fig = Figure(figsize=(9, height), layout="constrained")
        draw(fig)
        buffer = io.StringIO()
        # no metadata block: no date (the same report gives the same page), no RDF namespace links
        fig.savefig(buffer, format="svg", metadata=dict.fromkeys(("Creator", "Date", "Format", "Type")))
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    # ids are document-wide in HTML: each plot's own (clip paths, glyphs) get its key as prefix
    svg = re.sub(r'(\bid="|url\(#|href="#)', rf"\g<1>{key}-", svg)
    return f'<figure id="{key}"><figcaption>{html.escape(caption)}</figcaption>{svg}</figure>'


def _absent(key: str, caption: str, why: str) -> str:
    return (f'<figure id="{key}"><figcaption>{html.escape(caption)}</figcaption>'
            f'<p class="absent">{html.escape(why)}</p></figure>')


def _barh(fig: Figure, names: list[str], series: dict[str, list[float]], xlabel: str, picojoules: bool = False,
          overlaid: bool = False):
    """Horizontal bars, one row per name (top to bottom), one bar per series side by side (``overlaid``: all
    in the row's place, for series that are each non-zero on their own rows); ``picojoules``: a log axis of
    energies (they span decades across nodes and targets)."""
    ax = fig.add_subplot()
    y, height = np.arange(len(names)), 0.8 if overlaid else 0.8 / max(len(series), 1)
    for i, (label, values) in enumerate(series.items()):
        ax.barh(y if overlaid else y + (i - (len(series) - 1) / 2) * height, values, height, label=label)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    if picojoules:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: _pj(value)))
        ax.xaxis.set_minor_formatter(NullFormatter())
    if len(series) > 1:
        ax.legend(loc="best")
    ax.grid(axis="x", alpha=.3)
    return ax


def _row_height(rows: int, bars_per_row: int = 1) -> float:
    return 1.2 + rows * (0.12 + 0.08 * bars_per_row)


def _plots(report: dict) -> list[str]:
    layers, energy, placement = report["layers"], report["energy"], report["placement"]
    names = [row["node"] for row in layers]
    operations = _operations(report)
    kinds = list(dict.fromkeys(kind for _, _, kind, _ in operations))
    counts = list(dict.fromkeys(c for entry in energy.values() for c in entry["per_sample_pj"]))
    by_node = {k: e for k, e in energy.items() if e.get("per_node_pj")}
    nodes = list(dict.fromkeys(n for e in by_node.values() for n in e["per_node_pj"]))
    plots = [
        _plot("plot-firing-rate", "firing rate per neuron layer: float vs integer graph", _row_height(len(names)),
              lambda fig: _barh(fig, names, {"float": [r["float_rate"] for r in layers],
                                             "integer": [r["integer_rate"] for r in layers]},
                                "firing rate (spikes per neuron per step)")),
        _plot("plot-agreement", "float-vs-integer spike agreement per neuron layer", _row_height(len(names)),
              lambda fig: _agreement(fig, layers)),
        _plot("plot-synaptic-ops", "synaptic and attention operations per sample, per node",
              _row_height(len(operations)),
              lambda fig: _barh(fig, [node for node, *_ in operations],
                                {kind: [ops if k == kind else 0 for _, _, k, ops in operations] for kind in kinds},
                                "operations per sample", overlaid=True)),
        _plot("plot-energy-by-op", "energy per sample by kind of operation (log scale)",
              _row_height(len(counts), len(energy)),
              lambda fig: _barh(fig, counts, {_energy_label(k, e): [e["per_sample_pj"].get(c, 0) for c in counts]
                                              for k, e in energy.items()}, "energy per sample", picojoules=True)),
    ]
    caption = "energy per sample by node (log scale)"
    plots.append(_plot("plot-energy-by-layer", caption, _row_height(len(nodes), len(by_node)),
                       lambda fig: _barh(fig, nodes, {_energy_label(k, e): [e["per_node_pj"].get(n, 0) for n in nodes]
                                                      for k, e in by_node.items()},
                                         "energy per sample", picojoules=True)) if nodes else
                 _absent("plot-energy-by-layer", caption, "this report has no per-node energy (per_node_pj, /2)"))
    caption = "core utilisation: share of each core's neuron and synaptic memory capacity"
    plots.append(_plot("plot-core-utilisation", caption, 3.5, lambda fig: _utilisation(fig, placement["per_core"]))
                 if placement.get("per_core") else
                 _absent("plot-core-utilisation", caption, "this report has no per-core placement (per_core, /2)"))
    if "latency" in report:
        latency = report["latency"]
        plots.append(_plot("plot-step-latency", f"time per step on {latency['target']} "
                                                f"[{_statuses(latency['figures'])}]", 3,
                           lambda fig: _steps(fig, latency["step_ns"])))
    return plots


def _agreement(fig: Figure, layers: list[dict]) -> None:
    agreement = [r["agreement"] for r in layers]
    ax = _barh(fig, [r["node"] for r in layers], {"agreement": agreement},
               "fraction of (neuron, step, sample) spike values equal in both graphs")
    # agreements sit near 1: a full 0..1 axis would hide the differences between layers
    ax.set_xlim(max(0.0, min(agreement, default=1.0) - 0.05), 1.0)


def _utilisation(fig: Figure, per_core: list[dict]) -> None:
    def share(load: str, capacity: str) -> list[float]:
        return [c[load] / c[capacity] if c[capacity] else 0.0 for c in per_core]

    ax, x = fig.add_subplot(), np.arange(len(per_core))
    shares = {"neurons": share("neurons", "neuron_capacity"),
              "synaptic memory": share("synaptic_bytes", "synaptic_capacity_bytes")}
    for i, (label, values) in enumerate(shares.items()):
        ax.bar(x + (i - 0.5) * 0.4, values, 0.4, label=label)
    ax.axhline(1.0, color="red", linestyle="--", linewidth=1, label="capacity")
    ax.set_xticks(x, [str(c["core"]) for c in per_core], rotation=90 if len(per_core) > 30 else 0)
    ax.set_xlabel("core")
    ax.set_ylabel("share of capacity")
    ax.legend(loc="best")


def _steps(fig: Figure, step_ns: list[float]) -> None:
    ax = fig.add_subplot()
    ax.bar(np.arange(len(step_ns)), step_ns)
    ax.set_xlabel("time step")
    ax.set_ylabel("ns")


def _html_table(rows: _Rows) -> str:
    def cells(tag: str, row: list[str]) -> str:
        return "".join(f"<{tag}>{html.escape(cell)}</{tag}>" for cell in row)

    head = f"<thead><tr>{cells('th', rows.columns)}</tr></thead>" if any(rows.columns) else ""
    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows.rows)
    return (f'<table id="table-{rows.key}"><caption>{html.escape(rows.title)}</caption>{head}'
            f'<tbody>{body}</tbody></table>')


def render_html(report: dict) -> str:
    """One self-contained HTML page: header, summary, plots (inline SVG), then every table, the figures' sources
    and statuses included. Loads nothing from anywhere; all report text is escaped."""
    tables = _tables(report)
    model, lava = html.escape(report["model"]), report["lava"]
    header = (f"<header><h1>{model} on {html.escape(report['target'])}</h1><p>float test accuracy "
              f"{report['float_accuracy']:.2%}, integer {report['integer_accuracy']:.2%} on "
              f"{report['test_samples']:,} test samples; Lava ({html.escape(lava['granularity'])}): "
              f"{lava['identical_to_reference']}/{lava['total']} samples identical to the reference simulator</p>"
              f"</header>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>snncompile report: {model}</title>'
            f"<style>{_CSS}</style></head><body>{header}{_html_table(tables[0])}"
            f'<section id="plots">{"".join(_plots(report))}</section>'
            f'<section id="tables">{"".join(map(_html_table, tables[1:]))}</section></body></html>\n')


__all__ = ["render_terminal", "render_html"]

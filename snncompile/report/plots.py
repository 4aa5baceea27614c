"""The HTML page's plots of a run report (:func:`plots`): inline SVG made with matplotlib, no external resource,
every text of the report escaped by matplotlib's SVG writer. Energies on log axes (they span decades), times in
the unit that suits them, time steps as whole numbers."""
from __future__ import annotations

import html
import io
import re
from typing import Callable

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from .tables import UTILISATION, energy_label, operations, pj, statuses

_RC = {"svg.fonttype": "none", "text.parse_math": False, "font.size": 9}
_TIME_UNITS = ((1e6, "ms"), (1e3, "us"), (1.0, "ns"))  # ns per unit, largest first


def _plot(key: str, caption: str, height: float, draw: Callable[[Figure], None]) -> tuple[str, str, str]:
    with rc_context({**_RC, "svg.hashsalt": key}):
        fig = Figure(figsize=(9, height), layout="constrained")
        draw(fig)
        buffer = io.StringIO()
        # no metadata block: no date (the same report gives the same page), no RDF namespace links
        fig.savefig(buffer, format="svg", metadata=dict.fromkeys(("Creator", "Date", "Format", "Type")))
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    # ids are document-wide in HTML: each plot's own (clip paths, glyphs, ticks) get its key as prefix
    svg = re.sub(r'(\bid="|url\(#|href="#)', rf"\g<1>{key}-", svg)
    return key, caption, svg


def _absent(key: str, caption: str, why: str) -> tuple[str, str, str]:
    return key, caption, f'<p class="absent">{html.escape(why)}</p>'


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
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: pj(value)))
        ax.xaxis.set_minor_formatter(NullFormatter())
    if len(series) > 1:
        ax.legend(loc="best")
    ax.grid(axis="x", alpha=.3)
    return ax


def _row_height(rows: int, bars_per_row: int = 1) -> float:
    return 1.2 + rows * (0.12 + 0.08 * bars_per_row)


def plots(report: dict) -> list[tuple[str, str, str]]:
    """(id, caption, HTML: the SVG, or why the report cannot give the plot) of every plot, in page order."""
    layers, energy, placement = report["layers"], report["energy"], report["placement"]
    names = [row["node"] for row in layers]
    ops = operations(report)
    kinds = list(dict.fromkeys(kind for _, _, kind, _ in ops))
    counts = list(dict.fromkeys(c for entry in energy.values() for c in entry["per_sample_pj"]))
    by_node = {k: e for k, e in energy.items() if e.get("per_node_pj")}
    nodes = list(dict.fromkeys(n for e in by_node.values() for n in e["per_node_pj"]))
    out = [
        _plot("plot-firing-rate", "firing rate per neuron layer: float vs integer graph", _row_height(len(names)),
              lambda fig: _barh(fig, names, {"float": [r["float_rate"] for r in layers],
                                             "integer": [r["integer_rate"] for r in layers]},
                                "firing rate (spikes per neuron per step)")),
        _plot("plot-agreement", "float-vs-integer spike agreement per neuron layer", _row_height(len(names)),
              lambda fig: _agreement(fig, layers)),
        _plot("plot-synaptic-ops", "synaptic and attention operations per sample, per node", _row_height(len(ops)),
              lambda fig: _barh(fig, [node for node, *_ in ops],
                                {kind: [n if k == kind else 0 for _, _, k, n in ops] for kind in kinds},
                                "operations per sample", overlaid=True)),
        _plot("plot-energy-by-op", "energy per sample by kind of operation (log scale)",
              _row_height(len(counts), len(energy)),
              lambda fig: _barh(fig, counts, {energy_label(k, e): [e["per_sample_pj"].get(c, 0) for c in counts]
                                              for k, e in energy.items()}, "energy per sample", picojoules=True)),
    ]
    caption = "energy per sample by node (log scale; an unpriced node has no bar)"
    out.append(_plot("plot-energy-by-layer", caption, _row_height(len(nodes), len(by_node)),
                     lambda fig: _barh(fig, nodes, {energy_label(k, e): [e["per_node_pj"].get(n, 0) for n in nodes]
                                                    for k, e in by_node.items()},
                                       "energy per sample", picojoules=True)) if nodes else
               _absent("plot-energy-by-layer", caption, "this report has no per-node energy (per_node_pj, /2)"))
    caption = "core utilisation: share of each core's neuron, synaptic memory, fan-in and fan-out capacity"
    out.append(_plot("plot-core-utilisation", caption, 3.5, lambda fig: _utilisation(fig, placement["per_core"]))
               if placement.get("per_core") else
               _absent("plot-core-utilisation", caption, "this report has no per-core placement (per_core, /2)"))
    if "latency" in report:
        latency = report["latency"]
        out.append(_plot("plot-step-latency", f"time per step on {latency['target']} "
                                              f"[{statuses(latency['figures'])}]", 3,
                         lambda fig: _steps(fig, latency["step_ns"])))
    return out


def _agreement(fig: Figure, layers: list[dict]) -> None:
    agreement = [r["agreement"] for r in layers]
    ax = _barh(fig, [r["node"] for r in layers], {"agreement": agreement},
               "fraction of (neuron, step, sample) spike values equal in both graphs")
    # agreements sit near 1: a full 0..1 axis would hide the differences between layers
    ax.set_xlim(max(0.0, min(agreement, default=1.0) - 0.05), 1.0)


def _utilisation(fig: Figure, per_core: list[dict]) -> None:
    ax, x = fig.add_subplot(), np.arange(len(per_core))
    width = 0.8 / len(UTILISATION)
    for i, (label, (load, capacity)) in enumerate(UTILISATION.items()):
        shares = [c[load] / c[capacity] if c[capacity] else 0.0 for c in per_core]
        ax.bar(x + (i - (len(UTILISATION) - 1) / 2) * width, shares, width, label=label)
    ax.axhline(1.0, color="red", linestyle="--", linewidth=1, label="capacity")
    ax.set_xticks(x, [str(c["core"]) for c in per_core], rotation=90 if len(per_core) > 30 else 0)
    ax.set_xlabel("core")
    ax.set_ylabel("share of capacity")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=len(UTILISATION) + 1)  # above: bars reach 1


def _steps(fig: Figure, step_ns: list[float]) -> None:
    per_unit, unit = next(((n, u) for n, u in _TIME_UNITS if max(step_ns, default=0.0) >= n), _TIME_UNITS[-1])
    ax = fig.add_subplot()
    ax.bar(np.arange(len(step_ns)), np.asarray(step_ns) / per_unit)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("time step")
    ax.set_ylabel(f"time per step ({unit})")


__all__ = ["plots"]

"""Showing a run report (:mod:`.document`): rich tables for the terminal (:func:`render_terminal`) and one
self-contained HTML file (:func:`render_html`: a table of contents, the plots of :mod:`.plots`, every table),
both from the same tables (:mod:`.tables`).

The terminal gets the headline, short enough for 80 columns, and on request (``details``) the tables per layer,
node and energy term, laid out for 80 columns: a node name is wrapped where it must be, never cut. The per-core
and per-step tables, the figures' sources and the plots are on the page only.
"""
from __future__ import annotations

import html
import textwrap

from rich import box
from rich.table import Column, Table
from rich.text import Text

from .tables import Rows, tables, title

_TERMINAL = 80  # columns the terminal tables are laid out for
DETAILS_HINT = "--details: per layer, node and energy term; the HTML page: per core, plots"


def _wrapped(header: str, cells: list[str]) -> str:
    """``header`` on lines no wider than its column's cells (or its longest word): the columns of numbers stay
    narrow, leaving the width to the names in the first column."""
    return textwrap.fill(header, max([len(cell) for cell in cells] + [len(word) for word in header.split()]),
                         break_on_hyphens=False)


def _terminal_table(rows: Rows, hint: str | None) -> Table:
    shown = [i for i, name in enumerate(rows.columns) if name not in rows.wide]
    if rows.key == "summary":  # label and value, no rules: the headline reads as lines
        table = Table(*(Column(overflow="fold") for _ in shown), title=Text(rows.title), title_justify="left",
                      caption=hint and Text(hint), caption_justify="left", box=None, show_header=False,
                      pad_edge=False, min_width=min(max(len(rows.title), len(hint or "")), _TERMINAL))
    else:
        headers = [rows.columns[shown[0]], *(_wrapped(rows.columns[i], [row[i] for row in rows.rows]) for i in shown[1:])]
        table = Table(*(Column(Text(header), overflow="fold") for header in headers), title=Text(rows.title),
                      title_justify="left", box=box.SIMPLE_HEAD, show_header=any(rows.columns), show_edge=False,
                      pad_edge=False, collapse_padding=True, min_width=min(len(rows.title), _TERMINAL))
    for row in rows.rows:
        table.add_row(*(Text(row[i]) for i in shown))  # Text: a node name is never read as rich markup
    return table


def render_terminal(report: dict, details: bool = False) -> list[Table]:
    """Rich tables for ``console.print``: the headline (accuracy, Lava check, placement, energy, latency, files)
    and design-rule violations; with ``details`` also the neuron layers, operations, energy per node and per
    term, and the latency."""
    return [_terminal_table(rows, None if details else DETAILS_HINT) for rows in tables(report)
            if rows.place == "headline" or (details and rows.place == "details")]


# -- HTML ---------------------------------------------------------------------------------------------------------

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:1em 0;font-size:.85em}caption{font-weight:bold;text-align:left;padding:.3em 0}
td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}
figure{margin:1.5em 0}figure svg{max-width:100%;height:auto}figcaption{font-weight:bold}.absent{color:#777}
nav ol{columns:2;font-size:.9em}a.up{font-weight:normal;font-size:.8em;margin-left:1em}"""
_UP = '<a class="up" href="#contents">contents</a>'


def _html_table(rows: Rows) -> str:
    def cells(tag: str, row: list[str]) -> str:
        return "".join(f"<{tag}>{html.escape(cell)}</{tag}>" for cell in row)

    head = f"<thead><tr>{cells('th', rows.columns)}</tr></thead>" if any(rows.columns) else ""
    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows.rows)
    return (f'<table id="table-{rows.key}"><caption>{html.escape(rows.title)}{_UP}</caption>{head}'
            f'<tbody>{body}</tbody></table>')


def _contents(parts: list[tuple[str, str]]) -> str:
    """The table of contents: a link to each (id, caption) of the page."""
    items = "".join(f'<li><a href="#{key}">{html.escape(caption)}</a></li>' for key, caption in parts)
    return f'<nav id="contents"><h2>Contents</h2><ol>{items}</ol></nav>'


def _figure(key: str, caption: str, body: str) -> str:
    return f'<figure id="{key}"><figcaption>{html.escape(caption)}{_UP}</figcaption>{body}</figure>'


def render_html(report: dict) -> str:
    """One self-contained HTML page: header, contents, summary, plots (inline SVG), then every table, the
    figures' sources and statuses included. Loads nothing from anywhere; all report text is escaped."""
    from .plots import plots  # here: importing matplotlib takes seconds every command, and only the page plots
    summary, *rest = tables(report)
    figures = plots(report)
    model, lava = html.escape(report["model"]), report["lava"]
    header = (f"<header><h1>{html.escape(title(report))}</h1><p>float test accuracy "
              f"{report['float_accuracy']:.2%}, integer {report['integer_accuracy']:.2%} on "
              f"{report['test_samples']:,} test samples; Lava ({html.escape(lava['granularity'])}): "
              f"{lava['identical_to_reference']}/{lava['total']} samples identical to the reference simulator; "
              f"activity counted on {report['activity']['samples']:,} samples x {report['activity']['time_steps']} "
              f"steps; schema {html.escape(report['schema'])}</p></header>")
    contents = _contents([(f"table-{summary.key}", summary.title), *((key, caption) for key, caption, _ in figures),
                          *((f"table-{rows.key}", rows.title) for rows in rest)])
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>snncompile report: {model}</title>'
            f"<style>{_CSS}</style></head><body>{header}{contents}{_html_table(summary)}"
            f'<section id="plots"><h2>Plots</h2>{"".join(_figure(*plot) for plot in figures)}</section>'
            f'<section id="tables"><h2>Tables</h2>{"".join(map(_html_table, rest))}</section></body></html>\n')


__all__ = ["DETAILS_HINT", "render_terminal", "render_html"]

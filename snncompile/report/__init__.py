"""Reports on a compiled graph's run: exact activity counts first, kept apart from any prices so that a report
can be re-priced without re-simulating (issue #6).

- ``counts``: :func:`count_activity` runs a graph once on a batch, counting each node as it is evaluated (or reads
  a :func:`trace_run`), and returns an
  :class:`Activity`: per node and per timestep, summed over the batch, spikes, synaptic operations
  (binary-event accumulates and graded multiply-accumulates apart, the host's static first layer once per
  sample), active and inactive neuron updates and the integer attention accumulates. ``merge`` sums batches.
- ``cores``: :func:`core_activity` splits a run over a placement's cores, per sample (messages and hops too);
  :func:`count_streamed` counts batches per node and per core as they run (``core_map``: what each core owns
  and reads, without a mask per core).
- ``cost``: :func:`price` / :func:`price_nodes` price counts with a target's figures (``targets/``);
  :func:`price_ann` the ANN equivalent.
- ``latency``: :func:`estimate_latency`, the cycle-approximate step time, latency, throughput, mesh, message
  and static energy.
- ``document``: the report as a document: :func:`load_report` reads and checks a file (its JSON schema),
  :func:`reprice` prices its counts for another target.
- ``render``: the report as terminal tables (a headline for 80 columns, the rest on request) and one
  self-contained HTML page; ``tables`` holds the tables both show, ``plots`` the page's plots.
"""
from .cores import CoreActivity, core_activity, count_streamed
from .cost import EnergyEstimate, price, price_ann, price_nodes
from .counts import Activity, AttentionCounts, NeuronCounts, SynapseCounts, Trace, count_activity, merge, trace_run
from .document import ReportError, load_report, reprice
from .latency import LatencyEstimate, estimate_latency
from .render import render_html, render_terminal

__all__ = ["Activity", "AttentionCounts", "NeuronCounts", "SynapseCounts", "Trace",
           "count_activity", "merge", "trace_run", "CoreActivity", "core_activity", "count_streamed", "EnergyEstimate",
           "price", "price_ann", "price_nodes", "LatencyEstimate", "estimate_latency", "ReportError", "load_report",
           "render_html", "render_terminal", "reprice"]

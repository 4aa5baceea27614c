"""Reports on a compiled graph's run: exact activity counts first (``counts``), kept apart from any prices so
that a report can be re-priced without re-simulating (issue #6).

:func:`count_activity` runs a graph once on a batch and returns an :class:`Activity`: per node and per
timestep, summed over the batch, the spikes of every spiking node, the synaptic operations of every synapse
(binary-event accumulates and graded multiply-accumulates apart, the host's static first layer once per
sample), active and inactive neuron updates and the integer attention accumulates. ``merge`` sums batches.

:func:`price` (``cost``) prices counts with a target's figures (``targets/``).
:func:`run_job` (``job``) is the main job behind ``snncompile run``: float and integer evaluation, placement
and design rules, a Lava check, per-layer spike agreement and counts, one JSON report.
"""
from .counts import (ATTENTION, SYNAPSES, Activity, AttentionCounts, NeuronCounts, SynapseCounts, count_activity,
                     fan_out, merge)
from .cost import EnergyEstimate, price
from .job import SCHEMA, JobReport, run_job

__all__ = ["ATTENTION", "SYNAPSES", "Activity", "AttentionCounts", "NeuronCounts", "SynapseCounts",
           "count_activity", "fan_out", "merge", "EnergyEstimate", "price", "SCHEMA", "JobReport", "run_job"]

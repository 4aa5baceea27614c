"""Energy estimates: activity counts (``counts.Activity.totals``) priced with a target's figures.

Prices come only from ``targets/`` (each with its source and status); counts are never re-simulated, so one
run can be priced for any target. Two kinds of target:

- a **chip** (``loihi1``, ``loihi2``): every synaptic operation on the chip (binary-event accumulates, graded
  multiply-accumulates and attention accumulates alike, for want of a separate graded figure) at
  ``synaptic_op_energy``, neuron updates at ``neuron_update_energy_active`` / ``_inactive``, every emitted
  spike at ``spike_energy_within_tile``. The host's first-layer MACs run off chip: left unpriced, listed.
- an **energy convention** (``cmos45``, the 45 nm figures the spiking-transformer papers use): accumulates
  (synaptic ACs and attention accumulates) at ``ac_energy``, multiply-accumulates (graded synapses and the
  first layer) at ``mac_energy``; neuron updates and spikes are not part of that convention: listed unpriced.

Mesh hops and static power need the placement and a latency model (``latency``); ``EnergyEstimate.plus``
adds them. ``price_nodes`` prices each node's own counts (the per-layer breakdown); ``price_ann`` prices the
same architecture run as an ANN (``Activity.ann_macs``: one pass, every connection a MAC) with a
convention's ``mac_energy``, for comparison.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from ..targets import Target, load_target

# count (a key of Activity.totals) -> the figure that prices it, per target kind
PRICES = {
    "chip": {"ACs": "synaptic_op_energy", "MACs": "synaptic_op_energy",
             "attention_accumulates": "synaptic_op_energy", "neuron_updates_active": "neuron_update_energy_active",
             "neuron_updates_inactive": "neuron_update_energy_inactive", "spikes": "spike_energy_within_tile"},
    "energy-convention": {"ACs": "ac_energy", "attention_accumulates": "ac_energy", "MACs": "mac_energy",
                          "host_MACs": "mac_energy"},
}


@dataclass(frozen=True)
class EnergyEstimate:
    """Energy per sample in pJ, by count; the figures used (value, unit, status, source); what is unpriced."""

    target: str
    per_sample_pj: dict[str, float]
    figures: dict[str, dict] = field(default_factory=dict)
    unpriced: tuple[str, ...] = ()
    per_node_pj: dict[str, float] = field(default_factory=dict)

    @property
    def total_pj(self) -> float:
        return sum(self.per_sample_pj.values())

    def plus(self, per_sample_pj: Mapping[str, float], figures: Mapping[str, dict]) -> "EnergyEstimate":
        """This estimate with more priced terms (mesh hops, static energy) and the figures they used."""
        return EnergyEstimate(self.target, {**self.per_sample_pj, **per_sample_pj}, {**self.figures, **figures},
                              self.unpriced, self.per_node_pj)

    def to_dict(self) -> dict:
        return {"target": self.target, "per_sample_pj": self.per_sample_pj, "total_pj": self.total_pj,
                "per_node_pj": self.per_node_pj, "figures": self.figures, "unpriced": list(self.unpriced)}


def price(totals: Mapping[str, int], samples: int, target: Target | str) -> EnergyEstimate:
    """Price whole-run ``totals`` over ``samples`` samples with ``target``'s figures (see the module
    docstring). A count whose figure the target does not give is listed as unpriced, never guessed."""
    target = load_target(target)
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    prices = PRICES[target.kind]
    per_sample, figures, unpriced = {}, {}, []
    for count, value in totals.items():
        figure = getattr(target, prices[count]) if count in prices else None
        if figure is None:
            if value:
                unpriced.append(count)
            continue
        per_sample[count] = value * figure.value / samples
        figures[prices[count]] = figure.record()
    return EnergyEstimate(target.name, per_sample, figures, tuple(unpriced))


def price_nodes(activity, target: Target | str) -> EnergyEstimate:
    """:func:`price` of an activity's totals with ``per_node_pj``: each node's own counts priced alike.
    ``activity``: an ``Activity`` or its ``to_dict()`` form (a stored report re-priced without re-simulating)."""
    target = load_target(target)
    counts = activity if isinstance(activity, Mapping) else activity.to_dict()
    whole = price(counts["totals"], counts["samples"], target)
    per_node = {n: price(t, counts["samples"], target).total_pj for n, t in counts["node_totals"].items()}
    return EnergyEstimate(whole.target, whole.per_sample_pj, whole.figures, whole.unpriced, per_node)


def price_ann(activity, target: Target | str = "cmos45") -> EnergyEstimate:
    """The ANN-equivalent energy per sample: ``Activity.ann_macs`` at ``target``'s ``mac_energy``."""
    target = load_target(target)
    if target.mac_energy is None:
        raise ValueError(f"target {target.name!r} gives no mac_energy to price an ANN with")
    return EnergyEstimate(f"{target.name} ANN", {"ANN_MACs": activity.ann_macs() * target.mac_energy.value},
                          {"mac_energy": target.mac_energy.record()})


__all__ = ["price", "price_nodes", "price_ann", "EnergyEstimate", "PRICES"]

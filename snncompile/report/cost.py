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

Mesh hops and static power need the placement and a latency model; they are not priced here.
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

    @property
    def total_pj(self) -> float:
        return sum(self.per_sample_pj.values())

    def to_dict(self) -> dict:
        return {"target": self.target, "per_sample_pj": self.per_sample_pj, "total_pj": self.total_pj,
                "figures": self.figures, "unpriced": list(self.unpriced)}


def price(totals: Mapping[str, int], samples: int, target: Target | str) -> EnergyEstimate:
    """Price whole-run ``totals`` over ``samples`` samples with ``target``'s figures (see the module
    docstring). A count whose figure the target does not give is listed as unpriced, never guessed."""
    target = load_target(target) if isinstance(target, str) else target
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
        figures[prices[count]] = {"value": figure.value, "unit": figure.unit, "status": figure.status,
                                  "source": figure.source}
    return EnergyEstimate(target.name, per_sample, figures, tuple(unpriced))


__all__ = ["price", "EnergyEstimate", "PRICES"]

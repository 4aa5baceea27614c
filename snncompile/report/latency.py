"""Cycle-approximate latency, mesh, message and static energy from per-core counts (:mod:`cores`) and a chip
target.

A Loihi core is a pipeline: its input side (message receipt, synaptic accumulation) and its output side
(neuron updates, spike generation, messages out) work at the same time, so a core's time in a step is the
longer of the two (SANA-FE's Loihi model times them the same way). Per core ``c``, timestep ``t``, sample
``b`` (figures from ``targets/``; an optional figure a target does not give costs nothing)::

    receive[c, t, b] = message_receive_time        * messages_in
                     + synaptic_op_time            * (synaptic_ops + attention_accumulates)
    send[c, t, b]    = neuron_update_time_active   * neuron_updates_active
                     + neuron_update_time_inactive * neuron_updates_inactive
                     + spike_latency_within_tile   * events_out
                     + message_time                * messages_out
    busy[c, t, b]    = max(receive, send)
    step[t, b]       = max_c busy[c, t, b] + barrier(tiles in use)

The cores of a step run in parallel and the step ends at a barrier, so the slowest core sets the pace. The
barrier is ``barrier_sync_time_by_tiles`` where the target gives that table (the entry for the most tiles
not above those in use), else a line from ``barrier_sync_time_one_tile`` to ``_full_chip``; on several chips
the full-chip figure, the chip-to-chip barrier listed as not modelled. A sample takes ``sum_t step[t, b]``;
throughput is one sample after another (``1 / mean latency``: samples are not pipelined).

Energy the whole-graph counts cannot price: mesh hops (``tile_hop_energy_ew`` / ``_ns`` per hop), messages
(``message_energy`` per message sent core to core or from the host) and static power
(``static_power_per_chip * chips * latency``; mW x ns = pJ).

Attention accumulates are timed as synaptic operations (no separate figure exists), the same choice as
``cost.PRICES``. Message transit across the mesh overlaps with the cores' work and is not added.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..targets import Target, load_target
from .cores import CoreActivity, tile_position

RECEIVE = {"messages_in": "message_receive_time", "synaptic_ops": "synaptic_op_time",
           "attention_accumulates": "synaptic_op_time"}
SEND = {"neuron_updates_active": "neuron_update_time_active", "neuron_updates_inactive": "neuron_update_time_inactive",
        "events_out": "spike_latency_within_tile", "messages_out": "message_time"}
ENERGIES = {"hops_ew": "tile_hop_energy_ew", "hops_ns": "tile_hop_energy_ns", "messages": "message_energy"}


@dataclass(frozen=True)
class LatencyEstimate:
    """Latency per sample (ns) and what sets it; mesh and static energy per sample (pJ); the figures used."""

    target: str
    time_steps: int
    step_ns: list[float]                  #: per step, mean over samples (slowest core + barrier)
    per_sample_ns: float                  #: mean over samples
    per_sample_ns_min: float
    per_sample_ns_max: float
    barrier_ns: float
    slowest_core: list[int]               #: per step, the core that is slowest in most samples
    core_busy_ns: dict[int, float]        #: per core, busy time per sample summed over steps (mean)
    energy_pj: dict[str, float]           #: mesh hops and static energy per sample
    figures: dict[str, dict] = field(default_factory=dict)
    not_modelled: tuple[str, ...] = ()

    @property
    def throughput_samples_per_s(self) -> float:
        return 1e9 / self.per_sample_ns if self.per_sample_ns > 0 else float("inf")

    def to_dict(self) -> dict:
        out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}
        out["core_busy_ns"] = {str(k): v for k, v in self.core_busy_ns.items()}
        out["throughput_samples_per_s"] = self.throughput_samples_per_s
        return out


def _figure(target: Target, key: str, used: dict, optional: bool = False):
    fig = getattr(target, key)
    if fig is None:
        if optional:
            return 0.0
        raise ValueError(f"target {target.name!r} gives no {key}: it is needed for the latency estimate")
    used[key] = fig.record()
    return fig.value if isinstance(fig.value, dict) else float(fig.value)


def barrier_ns(tiles: int, target: Target, used: dict) -> float:
    """The timestep barrier over ``tiles`` tiles: the target's table entry for the most tiles not above
    ``tiles``, or a line between the one-tile and full-chip figures."""
    if target.barrier_sync_time_by_tiles is not None:
        table = _figure(target, "barrier_sync_time_by_tiles", used)
        return table[max([k for k in table if k <= tiles] or [min(table)])]
    one = _figure(target, "barrier_sync_time_one_tile", used)
    full = _figure(target, "barrier_sync_time_full_chip", used)
    span = target.tiles_per_chip.value - 1
    return one + (full - one) * min(max(tiles - 1, 0), span) / span if span > 0 else full


@dataclass
class CoreTimes:
    """What the latency estimate needs of a run's per-core counts on one target: per step and sample, the
    slowest core's busy time and row; per core and sample, its busy time over the steps; the hops and messages
    sent in all. A batch's :class:`CoreActivity` is reduced to it at once (:func:`core_times`), so that a run of
    many samples keeps these instead of its counts per core and step; ``+`` joins batches (samples in order)."""

    target: str
    cores: tuple[int, ...]
    slowest_busy_ns: np.ndarray            #: [T, B]
    slowest_row: np.ndarray                #: [T, B]
    core_busy_ns: np.ndarray               #: [C, B], summed over steps
    sent: dict[str, float]                 #: hops_ew, hops_ns, messages: summed over cores, steps, samples
    between_chips: bool                    #: some message goes to another chip
    figures: dict[str, dict]               #: the time figures used

    @property
    def samples(self) -> int:
        return self.slowest_busy_ns.shape[1]

    def __add__(self, other: "CoreTimes") -> "CoreTimes":
        if (self.target, self.cores) != (other.target, other.cores):
            raise ValueError("cannot join the core times of different targets or placements")
        return CoreTimes(self.target, self.cores, *(np.concatenate([getattr(self, k), getattr(other, k)], axis=1)
                                                    for k in ("slowest_busy_ns", "slowest_row", "core_busy_ns")),
                         {k: v + other.sent[k] for k, v in self.sent.items()}, self.between_chips or other.between_chips,
                         self.figures)


def _chip(target: Target | str) -> Target:
    target = load_target(target)
    if target.kind != "chip":
        raise ValueError(f"target {target.name!r} ({target.kind}) has no timing: latency needs a chip target")
    return target


def core_times(cores: CoreActivity, target: Target | str) -> CoreTimes:
    """``cores`` timed with ``target``'s figures: each core's busy time per step (the longer of its input and
    output side), reduced to what :func:`estimate_latency` reads."""
    target = _chip(target)
    used: dict[str, dict] = {}

    def stage(times: dict) -> np.ndarray:  # [C, T, B] ns
        return sum(getattr(cores, count) * _figure(target, key, used, optional=True) for count, key in times.items())

    busy = np.maximum(stage(RECEIVE), stage(SEND))
    per_core = busy[:, 0].copy()
    for t in range(1, busy.shape[1]):  # step by step, as a sum over the steps of all the samples at once adds them
        per_core += busy[:, t]
    sent = {"hops_ew": float(cores.hops_ew.sum()), "hops_ns": float(cores.hops_ns.sum()),
            "messages": float((cores.messages_out + cores.host_messages_in).sum())}
    return CoreTimes(target.name, cores.cores, busy.max(axis=0), busy.argmax(axis=0), per_core, sent,
                     bool(cores.messages_between_chips.any()), used)


def estimate_latency(cores: CoreActivity | CoreTimes, target: Target | str) -> LatencyEstimate:
    """Price ``cores`` (per-core counts on a placement for ``target``, or their :func:`core_times`) with
    ``target``'s time, hop, message and static figures."""
    target = _chip(target)
    times = cores if isinstance(cores, CoreTimes) else core_times(cores, target)
    if times.target != target.name:
        raise ValueError(f"the core times were taken on {times.target!r}, not {target.name!r}")
    used = dict(times.figures)
    positions = {tile_position(c, target) for c in times.cores}  # the tiles in use: (chip, x, y)
    chips = len({p[0] for p in positions})
    not_modelled = ["chip-to-chip barrier and links"] if chips > 1 else []
    barrier = barrier_ns(len(positions) if chips == 1 else target.tiles_per_chip.value, target, used)
    step = times.slowest_busy_ns + barrier  # [T, B]
    per_sample = step.sum(axis=0)
    slowest_core = [int(times.cores[np.bincount(row, minlength=len(times.cores)).argmax()])
                    for row in times.slowest_row]
    energy = {count: float(times.sent[count] / times.samples) * _figure(target, key, used)
              for count, key in ENERGIES.items() if getattr(target, key) is not None}
    if target.static_power_per_chip is not None:
        energy["static"] = _figure(target, "static_power_per_chip", used) * chips * float(per_sample.mean())
    else:
        not_modelled.append("static power (the target gives no figure)")
    if times.between_chips:
        not_modelled.append("chip-to-chip message energy")
    return LatencyEstimate(target.name, step.shape[0], step.mean(axis=1).tolist(), float(per_sample.mean()),
                           float(per_sample.min()), float(per_sample.max()), barrier, slowest_core,
                           {c: float(b) for c, b in zip(times.cores, times.core_busy_ns.mean(axis=1))},
                           energy, used, tuple(not_modelled))


__all__ = ["LatencyEstimate", "CoreTimes", "core_times", "estimate_latency", "barrier_ns", "RECEIVE", "SEND", "ENERGIES"]

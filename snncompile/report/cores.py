"""Activity per core, per timestep and per sample: what a cycle-approximate latency model needs.

:func:`core_activity` splits one recorded run (:class:`counts.Trace`) over a placement's cores
(:func:`snncompile.backends.placement.core_views`). Each count is an ``[cores, T, B]`` array (B samples):

- ``synaptic_ops``: the synaptic operations of every synapse attached to the core, for its own output
  elements only (a synapse's operations happen where its postsynaptic compartments are): per input event,
  the non-zero weights that connect it to an output element on this core (the synapse's ``Op.fan_out``
  restricted to those outputs). Exact; summed over cores it equals ``Activity.totals`` ``ACs + MACs``.
- ``attention_accumulates``: an integer attention node's additions into the output elements the core holds
  (the node's ``Op.work``, per element). Exact.
- ``neuron_updates_active`` / ``neuron_updates_inactive``: the core's neurons (Loihi LIF compartments) whose
  update at that step is active (input, carried state or bias) or idle (``counts.active_neurons``). Exact.
- ``events_out``: the non-zero values the unit's slice emits (spikes, or graded messages from attention
  and arithmetic units); ``messages_out``: one message per event and destination core that reads that
  element (Loihi sends a spike once to each core on its fan-out list); ``messages_in``: the messages a core
  receives, from other cores and from the host; ``hops_ew`` / ``hops_ns``: those
  messages' east-west and north-south mesh hops (Manhattan routing between the cores' tiles on one chip);
  ``messages_between_chips``: messages whose destination core is on another chip (no per-hop figure
  exists for chip-to-chip links: counted, never priced); ``host_messages_in``: events arriving from the
  host (input spikes, the host-side first layer's output).

A core's tile is ``(core mod cores_per_chip) // cores_per_tile``; tiles are laid out row by row in a mesh
``mesh_columns`` wide (a target figure).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..backends.placement import Placement, core_views
from ..ir import Graph
from ..targets import Target
from .counts import Trace

COUNTS = ("synaptic_ops", "attention_accumulates", "neuron_updates_active", "neuron_updates_inactive", "events_out",
          "messages_out", "messages_in", "hops_ew", "hops_ns", "messages_between_chips", "host_messages_in")


@dataclass
class CoreActivity:
    """Per-core counts ``[cores, T, B]`` (float64 holding exact integers); ``cores[i]`` is the core id of
    row ``i``."""

    cores: tuple[int, ...]
    synaptic_ops: np.ndarray
    attention_accumulates: np.ndarray
    neuron_updates_active: np.ndarray
    neuron_updates_inactive: np.ndarray
    events_out: np.ndarray
    messages_out: np.ndarray
    messages_in: np.ndarray
    hops_ew: np.ndarray
    hops_ns: np.ndarray
    messages_between_chips: np.ndarray
    host_messages_in: np.ndarray

    @property
    def samples(self) -> int:
        return self.synaptic_ops.shape[2]

    def __add__(self, other: "CoreActivity") -> "CoreActivity":
        """The counts of two batches of the same graph and placement (samples concatenated)."""
        if self.cores != other.cores or self.synaptic_ops.shape[1] != other.synaptic_ops.shape[1]:
            raise ValueError("cannot add the core activity of different placements or step counts")
        return CoreActivity(self.cores, *(np.concatenate([getattr(self, k), getattr(other, k)], axis=2)
                                          for k in COUNTS))


def tile_position(core: int, target: Target) -> tuple[int, int, int]:
    """``(chip, x, y)`` of ``core``'s tile in the target's mesh."""
    per_chip = target.cores_per_chip.value
    tile = (core % per_chip) // target.cores_per_tile.value
    columns = target.mesh_columns.value
    return core // per_chip, tile % columns, tile // columns


def _synaptic_ops(graph: Graph, views, trace: Trace, events, out: np.ndarray, batch: int = 32) -> None:
    """Add each core's synaptic operations ``[T, B]`` to ``out[row]``: per synapse on a streamed input, the
    fan-outs restricted to each core's outputs (``batch`` cores at a time) times the input events, one
    matrix product per batch (float64: exact, every sum is an integer below 2^53)."""
    rows: dict[str, list[tuple[int, np.ndarray]]] = {}
    for i, v in enumerate(views):
        for member, outputs in v.owned.items():
            src = graph.nodes[member].inputs[0]
            if graph.op(member).WORK == "synaptic" and trace.types[src].time == "stream":
                rows.setdefault(member, []).append((i, outputs))
    for member, cores in rows.items():
        src = graph.nodes[member].inputs[0]
        x = events(src)
        flat = x.reshape(-1, x.shape[2])
        for start in range(0, len(cores), batch):
            part = cores[start:start + batch]
            fans = graph.op(member).fan_out(tuple(trace.types[src].shape), [o for _, o in part]).flatten(1)
            ops = flat @ fans.numpy().T  # [T * B, cores in the batch]
            for column, (i, _) in enumerate(part):
                out[i] += ops[:, column].reshape(x.shape[:2])


def core_activity(graph: Graph, placement: Placement, trace: Trace, target: Target) -> CoreActivity:
    """Split the run ``trace`` of ``graph`` over ``placement``'s cores (see the module docstring)."""
    views = core_views(graph, placement)
    steps, samples = graph.time_steps, trace.samples
    counts = {k: np.zeros((len(views), steps, samples)) for k in COUNTS}
    row = {v.core: i for i, v in enumerate(views)}
    owner = {}  # unit -> flat element -> row of the core that emits it
    for v in views:
        owner.setdefault(v.unit, np.full(int(np.prod(trace.types[v.unit].shape)), -1))[v.owned[v.unit]] = row[v.core]
    cache: dict[str, np.ndarray] = {}

    def events(name: str) -> np.ndarray | None:
        """``[T, B, N]`` float64 non-zero indicators of a streamed value (None for a static one)."""
        if trace.types[name].time != "stream":
            return None
        if name not in cache:
            cache[name] = (trace.values[name] != 0).flatten(2).to(torch.float64).numpy()
        return cache[name]

    works: dict[str, torch.Tensor] = {}
    chips, xs, ys = (np.array(axis) for axis in zip(*(tile_position(v.core, target) for v in views)))
    _synaptic_ops(graph, views, trace, events, counts["synaptic_ops"])

    for i, v in enumerate(views):
        for member, outputs in v.owned.items():
            op = graph.op(member)
            if op.WORK == "attention":
                if member not in works:
                    works[member] = op.work([trace.values[s] for s in graph.nodes[member].inputs]).flatten(2)
                counts["attention_accumulates"][i] += works[member][:, :, outputs].sum(2).double().numpy()
            if member in trace.active:
                active = trace.active[member].flatten(2)[:, :, outputs].sum(2).to(torch.float64).numpy()
                counts["neuron_updates_active"][i] += active
                counts["neuron_updates_inactive"][i] += len(outputs) - active
        if events(v.unit) is not None:
            counts["events_out"][i] += events(v.unit)[:, :, v.owned[v.unit]].sum(2)
        for src, mask in v.reads.items():
            if events(src) is None:
                continue
            if src not in owner:  # a host node
                received = events(src)[:, :, mask].sum(2)
                counts["host_messages_in"][i] += received
                counts["messages_in"][i] += received
                continue
            # the elements read, grouped by the core that emits them: one [T, B] message count per sender
            read = np.flatnonzero(mask)
            read = read[np.argsort(owner[src][read], kind="stable")]
            senders = owner[src][read]
            starts = np.flatnonzero(np.r_[True, senders[1:] != senders[:-1]])
            sent = np.moveaxis(np.add.reduceat(events(src)[:, :, read], starts, 2), 2, 0)  # [senders, T, B]
            senders = senders[starts]  # distinct: each row below is added once
            counts["messages_out"][senders] += sent
            counts["messages_in"][i] += sent.sum(0)
            away = chips[senders] != chips[i]
            counts["messages_between_chips"][senders[away]] += sent[away]
            near, hops = senders[~away], sent[~away]
            counts["hops_ew"][near] += hops * np.abs(xs[near] - xs[i])[:, None, None]
            counts["hops_ns"][near] += hops * np.abs(ys[near] - ys[i])[:, None, None]
    return CoreActivity(tuple(v.core for v in views), **counts)


__all__ = ["CoreActivity", "core_activity", "tile_position", "COUNTS"]

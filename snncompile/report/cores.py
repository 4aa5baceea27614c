"""Activity per core, per timestep and per sample: what a cycle-approximate latency model needs.

:class:`CoreCounter` splits a run over a placement's cores node by node as the graph runs (what each core
computes and reads: :func:`.core_map.core_map`, the elements of
:func:`snncompile.backends.placement.core_views` held compactly); :func:`count_streamed` counts several batches
that way, per node and per core, with no value kept past its last reader; :func:`core_activity` replays one
recorded run (:class:`counts.Trace`). Each count is an ``[cores, T, B]`` array (B samples):

- ``synaptic_ops``: the synaptic operations of every synapse attached to the core, for its own output
  elements only (a synapse's operations happen where its postsynaptic compartments are): per input event,
  the non-zero weights that connect it to an output element on this core (the synapse's ``Op.fan_out``
  restricted to those outputs; computed per output element, ``received``, and summed per core). Exact; summed over cores it equals ``Activity.totals`` ``ACs + MACs``.
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

import functools
import math
import operator
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence, TypeVar

import numpy as np
import torch

from ..backends.placement import Placement
from ..ir import Graph
from ..targets import Target
from .core_map import CoreMap, Owned, Pairs, core_map
from .counts import Activity, ActivityCounter, Trace, batch_samples, merge, record, replay

Kept = TypeVar("Kept")
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
        return CoreActivity.concatenate([self, other])

    @staticmethod
    def concatenate(parts: Sequence["CoreActivity"]) -> "CoreActivity":
        """The counts of several batches of the same graph and placement, samples in order."""
        if any(p.cores != parts[0].cores or p.synaptic_ops.shape[1] != parts[0].synaptic_ops.shape[1] for p in parts):
            raise ValueError("cannot add the core activity of different placements or step counts")
        return CoreActivity(parts[0].cores, *(np.concatenate([getattr(p, k) for p in parts], axis=2) for k in COUNTS))


def tile_position(core: int, target: Target) -> tuple[int, int, int]:
    """``(chip, x, y)`` of ``core``'s tile in the target's mesh."""
    per_chip = target.cores_per_chip.value
    tile = (core % per_chip) // target.cores_per_tile.value
    columns = target.mesh_columns.value
    return core // per_chip, tile % columns, tile // columns


#: elements of a value handled at once while its counts are added per core (float64: 128 MB)
CHUNK = 1 << 24


def _chunks(value: torch.Tensor):
    """``[T * B, elements]`` row blocks of a ``[T, B, ...]`` value: (first row, block)."""
    flat = value.reshape(value.shape[0] * value.shape[1], -1)
    step = max(1, CHUNK // max(1, flat.shape[1]))
    for a in range(0, flat.shape[0], step):
        yield a, flat[a:a + step]


class CoreCounter:
    """Per-core counts of one batch of ``samples``, added node by node while the graph runs (:meth:`see`, in
    topological order, each value read once and never kept); :meth:`result` is the :class:`CoreActivity`."""

    def __init__(self, graph: Graph, cores: CoreMap, target: Target, samples: int):
        self.map, self.types, self.steps = cores, graph.types(), graph.time_steps
        self.graph = graph
        self.counts = {k: np.zeros((len(cores.cores), self.steps, samples)) for k in COUNTS}
        self.flat = {k: torch.from_numpy(v.reshape(v.shape[0], -1)) for k, v in self.counts.items()}
        chips, xs, ys = zip(*(tile_position(c, target) for c in cores.cores)) if cores.cores else ((), (), ())
        self.chips, self.xs, self.ys = (np.array(axis, np.int64) for axis in (chips, xs, ys))

    def _add(self, count: str, owned: Owned, value: torch.Tensor, fn=lambda block: block) -> None:
        """Add ``fn(block)`` (float64 per element, from row blocks of ``value``) summed per emitting core."""
        local = torch.from_numpy(owned.local).to(torch.int64)
        keep = local >= 0
        rows = torch.from_numpy(owned.rows)
        for a, block in _chunks(value):
            found = fn(block).to(torch.float64)
            if not bool(keep.all()):
                found, index = found[:, keep], local[keep]
            else:
                index = local
            per_core = torch.zeros((found.shape[0], len(owned.rows)), dtype=torch.float64).index_add_(1, index, found)
            self.flat[count].narrow(1, a, found.shape[0]).index_add_(0, rows, per_core.T.contiguous())

    def see(self, name: str, op, inputs: list[torch.Tensor], value: torch.Tensor,
            active: torch.Tensor | None) -> None:
        """Count node ``name`` (its op, input values, value and, for a neuron on a stream, its active updates)."""
        for key in self.map.members(name):
            owned = self.map.owned[key]
            source = self.types[self.graph.nodes[name].inputs[0]] if inputs else None
            if op.WORK == "synaptic" and source.time == "stream":
                self._add("synaptic_ops", owned, inputs[0], lambda block: op.received(
                    (block != 0).reshape(-1, *source.shape), len(source.shape)).flatten(1))
            if op.WORK == "attention":
                self._add("attention_accumulates", owned, op.work(inputs))
            if active is not None:
                self._add("neuron_updates_active", owned, active)
                self.flat["neuron_updates_inactive"][torch.from_numpy(owned.rows)] += \
                    torch.from_numpy(owned.sizes.astype(np.float64))[:, None]
                self._add("neuron_updates_inactive", owned, active, lambda block: -block.to(torch.float64))
            if key[0] == name and self.types[name].time == "stream":
                self._add("events_out", owned, value, lambda block: block != 0)
        if name in self.map.pairs and self.types[name].time == "stream":
            self._messages(self.map.pairs[name], value)

    def _messages(self, pairs: Pairs, value: torch.Tensor) -> None:
        """The messages of one source: to each reader, from each sender (or the host), with their hops."""
        host, sender = pairs.sender < 0, np.maximum(pairs.sender, 0)
        away = ~host & (self.chips[sender] != self.chips[pairs.reader])
        near = ~host & ~away
        per_pair = {"messages_out": ~host, "messages_between_chips": away,
                    "hops_ew": near * np.abs(self.xs[sender] - self.xs[pairs.reader]),
                    "hops_ns": near * np.abs(self.ys[sender] - self.ys[pairs.reader])}
        readers, senders = torch.from_numpy(pairs.reader), torch.from_numpy(sender)
        for a, block in _chunks(value):
            sent = torch.from_numpy(np.asarray(pairs.matrix @ (block != 0).numpy().astype(np.float32).T,
                                               dtype=np.float64))  # [pairs, rows of the block]
            self.flat["messages_in"].narrow(1, a, sent.shape[1]).index_add_(0, readers, sent)
            self.flat["host_messages_in"].narrow(1, a, sent.shape[1]).index_add_(
                0, readers, sent * torch.from_numpy(host.astype(np.float64))[:, None])
            for count, weight in per_pair.items():
                self.flat[count].narrow(1, a, sent.shape[1]).index_add_(
                    0, senders, sent * torch.from_numpy(weight.astype(np.float64))[:, None])

    def result(self) -> CoreActivity:
        return CoreActivity(self.map.cores, **self.counts)


def core_activity(graph: Graph, placement: Placement, trace: Trace, target: Target,
                  cores: CoreMap | None = None) -> CoreActivity:
    """Split the run ``trace`` of ``graph`` over ``placement``'s cores (see the module docstring); ``cores``: its
    :func:`~.core_map.core_map`, when made already."""
    counter = CoreCounter(graph, cores or core_map(graph, placement), target, trace.samples)
    replay(graph, trace, counter.see)
    return counter.result()


def stream_batch(graph: Graph, budget: int = 1 << 27) -> int:
    """Samples per streamed run: as many as keep the largest value of one run (``[T, B, ...]``, 8 bytes an
    element) within ``budget`` bytes, at least one."""
    types = graph.types()
    largest = max((math.prod(t.shape) * (graph.time_steps if t.time == "stream" else 1) for t in types.values()),
                  default=1)
    return max(1, budget // (8 * largest))


def count_streamed(graph: Graph, placement: Placement, target: Target, batches: Iterable[Mapping[str, torch.Tensor]],
                   per_batch: Callable[[CoreActivity], Kept] = lambda cores: cores) -> tuple[Activity, Kept]:
    """The activity per node and per core of ``graph`` over several batches (``feeds`` each), each batch run
    once with every value freed after its last reader and counted as it is made (:func:`.counts.record`):
    memory is one run's live values, the counts and the :class:`~.core_map.CoreMap`. Equal to counting one
    run of all the samples. Each batch's per-core counts are kept as ``per_batch`` makes them (all of them by
    default; ``latency.core_times`` keeps only what the latency needs) and the batches' added together."""
    cores = core_map(graph, placement)
    activities, per_core = [], []
    for feeds in batches:
        samples = batch_samples(graph, feeds)
        nodes, split = ActivityCounter(graph, samples), CoreCounter(graph, cores, target, samples)

        def see(*node) -> None:
            nodes.see(*node)
            split.see(*node)

        record(graph, feeds, see)
        activities.append(nodes.activity)
        per_core.append(per_batch(split.result()))
    return merge(activities), functools.reduce(operator.add, per_core)


__all__ = ["CoreActivity", "CoreCounter", "core_activity", "count_streamed", "stream_batch", "tile_position", "COUNTS"]

"""Placement of a lowered (integer) graph onto the cores of a chip target.

``place(graph, target) -> Placement`` partitions the graph; ``design_rules.check`` checks the result
against the target. ``save_placement`` / ``load_placement`` keep it beside the compiled artifact (the data
model and its file: :mod:`~snncompile.backends.placement_model`, whose names this module re-exports).
The families below (host, synapse, neuron and dendritic ops) and each node's receptive field are the op
types' own declarations in the op registry (``snncompile.ir.ops``: ``ROLE``, ``DENDRITIC``, ``reads``).

What lives where
----------------
- **Host nodes** are not placed (:mod:`.host_split`, the rule the Lava backend follows too): the ``io`` and
  ``host`` roles (``Input``, ``Output``, ``Repeat``, ``TimeMean``, ``Scale``, ``Quantize``), every node with a
  static (once per sample) output, such as the stem's ``Conv2d`` named ``*.host``, what the host computes
  from the inputs alone, and every node reading what the host computed after the chip (an imported ``LI``
  readout behind its ``Scale``).
- **Units** hold compartments (neurons) on cores: neurons (``LoihiLIF``, ``LoihiTernaryLIF``) and
  every node doing arithmetic on the chip that is not attached (below): ``IntAdd``/``IntShift`` of
  messages, ``TokenSum``, ``MaxPool2d``/``SumPool2d``, the integer attention nodes (``KVOuterAccumulate``,
  ``QMAccumulate``, ``SpikeScores``, ``ScoreLUT``, ``ScoreValueAccumulate``). On a real chip the latter are
  custom compute (Loihi 2 microcode neurons): each is counted as neuron-like, **one compartment per output
  element** (per sample and timestep).
- **Attached nodes** have no compartments of their own and live on the cores of the unit they feed:
  synapses (``IntDense``, ``IntConv2d``: on the core of their *postsynaptic* compartments, with their
  weight memory counted there), ``Delay`` (a delay on the receiving side: synaptic/dendritic delay), the
  ``DENDRITIC`` ops (``IntAdd``, ``IntShift``, ``Delay``) of synaptic sums only (dendritic arithmetic, as
  ``prove_ranges`` treats them), and
  an ``IntShift`` read only by neurons (fraction bits or a saturating clamp of their input ``a_in``). A
  unit's *group* is the unit and everything attached to it, found by walking its inputs upstream through
  attachable nodes. A node attached to two units is stored on both. An attachable node that feeds the
  host (the classifier's ``IntDense`` read by ``TimeMean``) is a unit itself: its readout compartments.

Per unit
--------
- **Compartments** ``N``: the largest per-sample element count among the unit and its attached nodes
  (Delays aside). Usually the unit's own output size; a pool after a synapse gets one accumulator per
  synaptic sum (``IntConv2d`` 64x8x8 into a 2x2 max pool: 4096, not 1024).
- **Compartment order**: ``channel`` (the output's C order, ``[C, H, W]``) or, where every member's
  output is 3-D, ``position`` (``[H, W, C]``: all channels of a position together, which keeps a 1x1
  convolution's fan-in local) or ``boxes:CBxTHxTW/GCxGHxGW`` (blocks of ``CB`` channels times tiles of
  ``TH x TW`` positions of the members' common grid, box by box, each position by position: a core then
  stores the kernels of a block's channels only and reads the inputs of a tile's window only, where neither
  a channel nor a position slice fits; :mod:`.placement_boxes`); :func:`compartment_order` gives the flat
  output indices in that order.
  A **slice** is a contiguous range ``[start, stop)`` of compartments in the unit's order; a member with
  ``E`` elements covers ``[start*E // N, ceil(stop*E / N))`` of its own in the same order (and *emits*
  ``[start*E // N, stop*E // N)``, so each output element belongs to exactly one slice), except that a
  slice that is one whole box of a box order covers and emits the member's ranges of that box per axis
  (:mod:`.placement_boxes`: a pool's half-cells after a convolution).
- **Synaptic memory** of a slice: for each attached synapse, stored weights x the node's ``weight_bits``
  (9 for Loihi's 8-bit weights plus sign), counting every entry (dense storage, zeros included). The
  kernel is shared across positions, so a core stores the kernel rows of the output channels its slice
  covers: ``IntConv2d`` channels x ``C_in/groups x kH x kW``; ``IntDense`` distinct output rows x ``in``.
  A ``ScoreLUT`` stores its table (entries x their signed width). Neuron state and routing tables are not
  counted here.
- **Fan-in axons** of a slice: the distinct source elements (outputs of other units, or host inputs)
  whose messages reach any compartment of the slice, found exactly by walking each member's receptive
  field (``Op.reads``: convolution and pooling windows, dense rows, head structure of the attention nodes).
- **Fan-out axons** of a slice: for every output element it emits, one axon per destination core whose
  fan-in includes it, plus one if the host reads it.

Partitioning
------------
How a unit is cut changes only its own fan-in and memory and its *sources'* fan-out, so units are cut
in reverse topological order (consumers first: a unit's fan-out is then known when it is cut).

- A **box-readable** unit (every member a ``[C, H, W]`` convolution, pool or elementwise op:
  :func:`.placement_boxes.box_unit`) is cut into boxes, each one slice: the box size with the fewest boxes
  plus the source cores their input axons cost (:func:`.placement_boxes.best_box_cut`), every cost
  computed from ranges, not element masks, which keeps a 224 x 224 model's placement within seconds.
- Any other unit (attention, dense, token sums) is cut greedily into the fewest slices: from its first
  compartment, every slice is extended as far as the per-core limits allow (neurons, synaptic memory,
  fan-in and fan-out axons, all monotone in the slice's length, so the greedy cut is minimal), in
  ``channel`` and ``position`` order; a 3-D group is also cut in the box order of its members' common grid
  that costs fewest cores (:func:`_best_tiles`: for every tile of rows x columns, the largest channel block
  whose first box fits a core, counted as its boxes plus the cores their input axons take from the sources'
  output axons), each box one slice where every box fits (else greedily in that order). The attention
  accumulates are such units: each output a (row, column) pair of a head that reads a whole row of one
  input and a whole column of the other (:mod:`.placement_outer`), so their boxes are rectangles of rows x
  columns that fill a core's input axons. The order with fewer slices wins, then the one with fewer input
  axons in all, then ``channel``.

A limit that one compartment alone (one reference cell of a box-readable unit) exceeds is not partitioned
for (the slice is bounded by the other limits) and is left to the design rules to report. Each slice gets its own core (no two units share a core), numbered from 0 in
topological order; chip ``k`` holds cores ``k*cores_per_chip`` onwards.

:func:`core_lower_bound` gives the fewest cores any such placement can use, from the graph alone
(:mod:`.placement_bound`: per unit, neurons, kernel memory, input and output axons, a convolution's
kernels and windows and an attention accumulate's rows and columns over the per-core limits), to show next
to the cores used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from ..ir import Graph
from ..ir.interval import Interval
from ..ir.io import graph_digest
from ..ir.ops import Delay, IntConv2d, IntDense, IntShift, ScoreLUT, family, ops_where
from ..passes.prove_ranges import width
from ..targets import Target, load_target
from .host_split import split_host
from .placement_boxes import (BoxUnit, best_box_cut, block_lengths, box_compartment_order, box_elements, box_reads,
                              box_sizes, box_unit)
from .placement_model import (CoreLoad, Message, NodePlacement, Placement, PlacementError, Slice, load_placement,
                              placement_path, save_placement)

SYNAPSES = family("synapse")
DENDRITIC = ops_where(DENDRITIC=True)
NEURONS = family("neuron")


# -- classification --------------------------------------------------------------------------------------------------

def host_nodes(graph: Graph, types=None) -> list[str]:
    """Nodes the host computes (:mod:`.host_split`: before the chip and after it), in node order."""
    host = set(split_host(graph, types).host)
    return [n for n in graph.nodes if n in host]


def _groups(graph: Graph, types) -> tuple[list[str], dict[str, list[str]]]:
    """(host nodes, unit -> its group members in topological order, the unit last); units in topological order."""
    order = graph.topo_order()
    host = set(host_nodes(graph, types))
    sums: set[str] = set()  # synaptic sums still inside the receiving core (prove_ranges' in-core set)
    for n in order:
        op = graph.op(n)
        if isinstance(op, SYNAPSES) or (isinstance(op, DENDRITIC) and all(
                s in sums or graph.op(s).RELAYED for s in graph.nodes[n].inputs)):
            sums.add(n)
    consumers: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for src, dst in graph.edges():
        consumers[src].append(dst)
    # a shift or saturating clamp read only by neurons conditions their input (a_in) on their own core
    conditioning = {n for n in order if isinstance(graph.op(n), IntShift) and consumers[n]
                    and all(isinstance(graph.op(c), NEURONS) for c in consumers[n])}
    attachable = sums | conditioning | {n for n in order if isinstance(graph.op(n), Delay)}
    units = [n for n in order if n not in host and (
        n not in attachable or not consumers[n] or n in graph.outputs or any(c in host for c in consumers[n]))]
    unit_set, groups = set(units), {}
    for u in units:
        members, stack = {u}, [u]
        while stack:
            for src in graph.nodes[stack.pop()].inputs:
                if src in attachable and src not in unit_set and src not in members and src not in host:
                    members.add(src)
                    stack.append(src)
        groups[u] = [n for n in order if n in members]
    return [n for n in graph.nodes if n in host], groups


# -- one unit's slices ---------------------------------------------------------------------------------------------

def compartment_order(shape: tuple[int, ...], order: str) -> np.ndarray:
    """The flat (C-order) output indices of a ``shape`` tensor in compartment order: ``channel`` is C order
    itself; ``position`` (3-D shapes) is ``[d1, d2, d0]`` order, all channels of a position together;
    ``boxes:...`` blocks of channels times tiles of positions (:func:`.placement_boxes.box_compartment_order`)."""
    index = np.arange(math.prod(shape))
    if order == "channel":
        return index
    if order == "position":
        return index.reshape(shape).transpose(1, 2, 0).reshape(-1)
    return box_compartment_order(shape, order)


@dataclass
class _Unit:
    """A unit's group while it is being cut: ``neurons`` compartments, ordered by ``order``."""

    name: str
    members: list[str]
    neurons: int
    shapes: dict[str, tuple[int, ...]]        # every node -> per-sample output shape
    graph: Graph
    order: str = "channel"

    def elements(self, member: str, start: int, stop: int, owned: bool = False) -> np.ndarray:
        """Flat output indices of ``member`` that compartments ``[start, stop)`` cover (or, ``owned``, emit:
        then each element belongs to exactly one slice)."""
        if self.order.startswith("boxes:"):  # a whole box: the member's ranges of the box per axis
            found = box_elements(self.shapes[member], self.order, self.neurons, start, stop, owned)
            if found is not None:
                return found
        e = math.prod(self.shapes[member])
        lo, hi = start * e // self.neurons, (stop * e // self.neurons if owned else -(-stop * e // self.neurons))
        return _order(self.shapes[member], self.order)[lo:hi]

    def synaptic_bits(self, start: int, stop: int) -> int:
        bits = 0
        for m in self.members:
            op = self.graph.op(m)
            if isinstance(op, IntConv2d):
                channels = np.unique(self.elements(m, start, stop) // math.prod(self.shapes[m][1:])).size
                bits += channels * math.prod(op.weight.shape[1:]) * op.weight_bits
            elif isinstance(op, IntDense):
                rows = np.unique(self.elements(m, start, stop) % op.weight.shape[0]).size
                bits += rows * op.weight.shape[1] * op.weight_bits
            elif isinstance(op, ScoreLUT) and op.table.size:
                bits += op.table.size * width(Interval(int(op.table.min()), int(op.table.max())), True)
        return bits

    def fan_in(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Source (outside the group) -> flat mask of its output elements the slice reads."""
        reads: dict[str, np.ndarray] = {}
        for m in self.members:
            node = self.graph.nodes[m]
            out = np.zeros(math.prod(self.shapes[m]), bool)
            out[self.elements(m, start, stop)] = True
            masks = node.op.reads(out.reshape(self.shapes[m]), [self.shapes[s] for s in node.inputs])
            for src, mask in zip(node.inputs, masks):
                if src not in self.members:
                    flat = mask.reshape(-1)
                    reads[src] = flat if src not in reads else reads[src] | flat
        return reads


_ORDERS: dict[tuple, np.ndarray] = {}


def _order(shape: tuple[int, ...], order: str) -> np.ndarray:
    key = (tuple(shape), order)
    if key not in _ORDERS:
        _ORDERS[key] = compartment_order(shape, order)
    return _ORDERS[key]


def _limit(figure, scale: float = 1) -> int | None:
    return None if figure is None else int(figure.value * scale)


def _cut(unit: _Unit, target: Target, sends: np.ndarray, most: int | None = None) -> list[tuple[int, int]] | None:
    """Greedy cut into the fewest slices within the per-core limits (see the module docstring); ``sends``:
    axons each output element of the unit needs (destination cores, host readout). ``None`` as soon as it
    needs more than ``most`` slices."""
    max_n, limits = target.neurons_per_core.value, _limits(target)
    cost = _costs(unit, sends)
    cuts, a, span = [], 0, None
    while a < unit.neurons:
        # a limit one compartment alone exceeds is not partitioned for (the design rules report it)
        active = _active(cost, limits, a)

        def fits(end: int) -> bool:
            return all(cost[k](a, end) <= limits[k] for k in active)

        lo, hi = a + 1, min(a + max_n, unit.neurons)  # lo always fits; find the largest end that does
        if span is not None and lo < hi:  # a unit's slices tend to be alike: gallop from the last one's length
            guess, step = max(lo, min(a + span, hi)), 1
            if fits(guess):
                lo = guess
                while lo < hi:
                    if not fits(end := min(lo + step, hi)):
                        hi = end - 1
                        break
                    lo, step = end, 2 * step
            else:
                hi = guess - 1
                while lo < hi:
                    if fits(end := max(hi - step, lo)):
                        lo = end
                        break
                    hi, step = end - 1, 2 * step
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid - 1
        cuts.append((a, lo))
        if most is not None and len(cuts) > most:
            return None
        span, a = lo - a, lo
    return cuts


def place(graph: Graph, target: Target | str | Path) -> Placement:
    """Partition ``graph`` (a valid, lowered integer graph) onto the cores of a chip ``target``."""
    target = load_target(target)
    if target.kind != "chip" or target.neurons_per_core is None or target.cores_per_chip is None:
        raise PlacementError(f"target {target.name!r} ({target.kind}) has no cores to place a graph on")
    types = graph.types()
    shapes = {n: tuple(t.shape) for n, t in types.items()}
    host, groups = _groups(graph, types)
    host_set = set(host)
    # axons each output element needs (int32: a count of cores; half the memory of int64 on 224 x 224 maps)
    sends = {u: np.zeros(math.prod(shapes[u]), np.int32) for u in groups}
    for u in groups:  # one axon to the host per element it reads
        if u in graph.outputs or any(c in host_set for c in graph.consumers(u)):
            sends[u] += 1
    cut: dict[str, tuple[str, int, list[tuple[int, int, int, int, int]]]] = {}
    for u in reversed(list(groups)):  # consumers first: a unit's fan-out depends on how they are cut
        members = groups[u]
        counted = [m for m in members if not isinstance(graph.op(m), Delay)] or [u]
        neurons = max(1, max(math.prod(shapes[m]) for m in counted))
        boxes = box_unit(graph, members, shapes, counted)
        cut[u] = (_cut_boxes(boxes, u, sends, target) if boxes is not None
                  else _cut_greedy(_Unit(u, members, neurons, shapes, graph), sends, target))
    per_chip = target.cores_per_chip.value
    nodes, loads = {}, []
    for u in groups:  # cores numbered in topological order
        order, neurons, slices = cut[u]
        placed = []
        for a, b, bits, fan_in, fan_out in slices:
            core = len(loads)
            loads.append(CoreLoad(core, core // per_chip, u, a, b, b - a, bits, fan_in, fan_out))
            placed.append(Slice(core, a, b))
        nodes[u] = NodePlacement(u, graph.op(u).type_name(), neurons, order,
                                 tuple(m for m in groups[u] if m != u), tuple(placed))
    messages = tuple(Message(src, u, m, str(types[src].dtype)) for u, members in groups.items() for m in members
                     for src in dict.fromkeys(graph.nodes[m].inputs) if src not in members)
    return Placement(target.name, graph_digest(graph), per_chip, nodes, tuple(loads), tuple(host), messages)


def _limits(target: Target) -> dict[str, int | None]:
    return {"bits": _limit(target.synaptic_memory_per_core, 1024 * 8), "in": _limit(target.fan_in_axons_per_core),
            "out": _limit(target.fan_out_axons_per_core)}


def _cut_boxes(unit: BoxUnit, u: str, sends: dict[str, np.ndarray], target: Target):
    """A box-readable unit cut into boxes (:mod:`.placement_boxes`); adds its reads to its sources' ``sends``.
    (order, compartments, [(start, stop, kernel bits, input axons, output axons)])."""
    best = best_box_cut(unit, u, sends[u], target.neurons_per_core.value, _limits(target))
    for reads in box_reads(unit, best):
        for src, boxes in reads.items():
            if src not in sends:
                continue
            view = sends[src].reshape(unit.shapes[src])
            for box in boxes:
                view[box] += 1
            if len(unit.readers[src]) == 2:  # the overlap of two readers' boxes is one axon, not two
                view[tuple(slice(max(a.start, b.start), max(max(a.start, b.start), min(a.stop, b.stop)))
                           for a, b in zip(*boxes))] -= 1
    slices = [(a, b, int(bits), int(fan_in), int(fan_out)) for (a, b), bits, fan_in, fan_out
              in zip(best.bounds(), best.bits, best.fan_in, best.fan_out)]
    return best.order, slices[-1][1], slices


def _costs(unit: _Unit, sends: np.ndarray) -> dict:
    """Per limit, what compartments ``[a, b)`` of ``unit`` take of it: kernel bits, input axons, output axons
    (``sends``: the axons each output element of the unit needs)."""
    return {"bits": unit.synaptic_bits,
            "in": lambda a, b: sum(int(m.sum()) for m in unit.fan_in(a, b).values()),
            "out": lambda a, b: int(sends[unit.elements(unit.name, a, b, owned=True)].sum())}


def _active(cost: dict, limits: dict, a: int) -> list[str]:
    """The limits compartment ``a`` alone keeps within (a limit one compartment exceeds is not partitioned
    for: the design rules report it)."""
    return [k for k, v in limits.items() if v is not None and cost[k](a, a + 1) <= v]


def _best_tiles(base: _Unit, target: Target, sends: np.ndarray) -> str | None:
    """The box order of the members' common ``[C, H, W]`` grid (their sizes' greatest common divisors) whose
    boxes cost fewest cores: for every tile of rows x columns (every distinct range count per axis), the
    largest channel block whose first (largest) box fits a core (neurons, kernel memory, input and output
    axons), counted as its boxes plus the cores their input axons take from the sources' output axons, then
    its input axons in all; None when no box fits."""
    max_n, limits = target.neurons_per_core.value, _limits(target)
    ref = [math.gcd(*(base.shapes[m][axis] for m in base.members)) for axis in range(3)]
    per_cell = base.neurons // math.prod(ref)
    order = "boxes:{0}x{1}x{2}/{0}x{1}x{2}".format(*ref)  # compartment 0: the first element in every box order
    active = _active(_costs(_Unit(base.name, base.members, base.neurons, base.shapes, base.graph, order), sends),
                     limits, 0)
    best, channels = None, block_lengths(ref[0])
    for th in block_lengths(ref[1]):
        for tw in block_lengths(ref[2]):
            if best is not None and -(-ref[1] // th) * -(-ref[2] // tw) > best[0][0]:
                continue  # more tiles than the best cut costs cores, whatever the channel block
            lo, hi, found = 0, len(channels) - 1, None  # the largest channel block whose box fits
            while lo <= hi:
                mid = (lo + hi) // 2
                box = (channels[mid], th, tw)
                unit = _Unit(base.name, base.members, base.neurons, base.shapes, base.graph,
                             "boxes:{}x{}x{}/{}x{}x{}".format(*box, *ref))
                size, cost = math.prod(box) * per_cell, _costs(unit, sends)
                if size <= max_n and all(cost[k](0, size) <= limits[k] for k in active):
                    found, lo = (box, unit.order, cost["in"](0, size)), mid + 1
                else:
                    hi = mid - 1
            if found is None:
                break  # wider tiles read more: none of them fits either
            box, order, axons = found
            boxes = math.prod(-(-r // b) for r, b in zip(ref, box))
            key = (boxes + (-(-boxes * axons // limits["out"]) if limits["out"] else 0), boxes * axons)
            if best is None or key < best[0]:
                best = (key, order)
    return None if best is None else best[1]


def _reads(unit: _Unit, a: int, b: int) -> dict[str, np.ndarray]:
    """Compartments ``[a, b)``'s reads as indices per source: a slice reads few of its sources' elements (at
    most the fan-in limit), so thousands of slices of a large unit hold little memory."""
    return {s: np.flatnonzero(m) for s, m in unit.fan_in(a, b).items()}


def _whole_boxes(unit: _Unit, target: Target, sends: np.ndarray):
    """Every box of ``unit``'s box order as one slice with its reads (:func:`_reads`), or None where one of
    them does not fit a core (within the limits its first compartment keeps)."""
    stops = np.cumsum(box_sizes(unit.order, unit.neurons)).tolist()
    cost, limits = _costs(unit, sends), _limits(target)
    active, slices = _active(cost, limits, 0), []
    for a, b in zip([0] + stops[:-1], stops):
        reads = _reads(unit, a, b)
        used = {"bits": cost["bits"](a, b) if "bits" in active else 0, "in": sum(ix.size for ix in reads.values()),
                "out": cost["out"](a, b) if "out" in active else 0}
        if b - a > target.neurons_per_core.value or any(used[k] > limits[k] for k in active):
            return None
        slices.append((a, b, reads))
    return slices


def _cut_greedy(base: _Unit, sends: dict[str, np.ndarray], target: Target):
    """Any other unit: a 3-D group in the box order of :func:`_best_tiles`, its boxes as they are where each
    fits a core; else the greedy cut in channel order and, for 3-D groups, in position order and that box
    order; the one with fewer slices wins, then fewer input axons in all, then channel. Adds its reads to its
    sources' ``sends``. (order, compartments, [(start, stop, kernel bits, input axons, output axons)])."""
    u = base.name
    spatial = all(len(base.shapes[m]) == 3 for m in base.members)
    tiles = _best_tiles(base, target, sends[u]) if spatial else None
    boxed = tiles and _Unit(u, base.members, base.neurons, base.shapes, base.graph, tiles)
    slices = boxed and _whole_boxes(boxed, target, sends[u])
    best = (None, boxed, slices) if slices else None
    # the channel cut comes last so that it can stop once it needs more slices than the position cut
    for o in [] if best else reversed(["channel"] + (["position"] if spatial else []) + ([tiles] if tiles else [])):
        unit = _Unit(u, base.members, base.neurons, base.shapes, base.graph, o)
        cuts = _cut(unit, target, sends[u], None if best is None else best[0][0])
        if cuts is None:
            continue
        slices = [(a, b, _reads(unit, a, b)) for a, b in cuts]
        key = (len(slices), sum(ix.size for *_, reads in slices for ix in reads.values()))
        if best is None or key <= best[0]:
            best = (key, unit, slices)
    _, unit, slices = best
    for _, _, reads in slices:
        for src, ix in reads.items():
            if src in sends:
                sends[src][ix] += 1
    return unit.order, unit.neurons, [
        (a, b, unit.synaptic_bits(a, b), sum(ix.size for ix in reads.values()),
         int(sends[u][unit.elements(u, a, b, owned=True)].sum())) for a, b, reads in slices]


# -- how few cores any placement needs -------------------------------------------------------------------------------

def core_lower_bound(graph: Graph, target: Target | str | Path):
    """The fewest cores any placement of ``graph`` on ``target`` can use, per resource and in all
    (:func:`.placement_bound.lower_bound`, which reads this module's units: imported here when called)."""
    from .placement_bound import lower_bound
    return lower_bound(graph, target)


# -- what each core computes and receives (for per-core activity and latency) -----------------------------------------

@dataclass(frozen=True)
class CoreView:
    """One placed slice seen element by element: ``owned`` maps each member of the unit's group to the flat
    output indices this core computes (every element of a member belongs to exactly one core); ``reads``
    maps each source outside the group to the flat mask of its output elements that reach this core."""

    core: int
    chip: int
    unit: str
    owned: Mapping[str, np.ndarray]
    reads: Mapping[str, np.ndarray]


def core_views(graph: Graph, placement: Placement) -> list[CoreView]:
    """Every core of ``placement`` (made for ``graph``) as a :class:`CoreView`, in core order."""
    shapes = {n: tuple(t.shape) for n, t in graph.types().items()}
    views = []
    for u, p in placement.nodes.items():
        unit = _Unit(u, [*p.attached, u], p.neurons, shapes, graph, p.order)
        for s in p.slices:
            views.append(CoreView(s.core, s.core // placement.cores_per_chip, u,
                                  {m: unit.elements(m, s.start, s.stop, owned=True) for m in unit.members},
                                  unit.fan_in(s.start, s.stop)))
    return sorted(views, key=lambda v: v.core)


__all__ = ["place", "core_lower_bound",
           "Placement", "NodePlacement", "Slice", "CoreLoad", "CoreView", "Message", "PlacementError",
           "core_views", "host_nodes",
           "placement_path", "save_placement", "load_placement"]

"""Box cuts: a spatial unit's compartments cut into blocks of channels times tiles of positions, costed by
arithmetic on ranges instead of element masks, so that placement scales to 224 x 224 maps.

A unit is **box-readable** when every member of its group has a ``[C, H, W]`` output and reads each input
as a box: an elementwise op (the registry's default ``reads``: the same position), a convolution
(``IntConv2d``: a window of rows and columns, the input channels of its groups) or a pool (``MaxPool2d``,
``SumPool2d``: a window, the same channels), with unit dilation and a stride no larger than the kernel (so
that the rows a range of output rows reads are one range), or a sum of relayed partial sums (``BlockSum``:
the same box in each of its channel blocks), and no source read by more than two members (by one, where a
``BlockSum`` reads it). Then the input elements a box of output elements reads are a box per source (two
boxes at most; one per block of a ``BlockSum``), and a box's cost is exact arithmetic: neurons (its
volume), kernel memory (its channels' kernel rows), input axons (the volume of the boxes it reads, their
overlap counted once) and output axons (a sum over the box of the axons each emitted element needs).

The **reference grid** of a unit is ``(RC, RH, RW)``: its largest member's shape where every member's
sizes divide it (a pool after a convolution: the convolution's grid), else the greatest common divisors
of the members' sizes. A box cut ``(cb, th, tw)`` splits the grid into ranges of ``cb`` channels, ``th``
rows and ``tw`` columns (the last range of an axis may be shorter), boxes numbered channel block first,
then row block, then column block; each box is one slice of the unit's compartments, the box's volume times
the compartments per reference cell. A reference range ``[r0, r1)`` of an axis of ``R`` cells covers
``[r0*n // R, ceil(r1*n / R))`` of a member's axis of ``n`` elements and *emits* ``[r0*n // R, r1*n // R)``
(so each output element belongs to exactly one box; on the gcd grid both are the range scaled). The order
is named ``boxes:CBxTHxTW/RCxRHxRW``; :func:`box_compartment_order` lists a member's flat indices in it
(box by box, each position by position with all its channels together) and :func:`box_elements` a whole
box's elements of a member.

:func:`best_box_cut` searches the box sizes: for each tile of positions (``th``, ``tw``: every distinct
range count per axis, at most 2:1 elongated) the largest channel block that keeps every box within the
per-core limits (a limit one compartment alone exceeds is left out, as the greedy cut leaves it to the
design rules), and keeps the cut with the fewest boxes plus the cores its input axons take from its
sources' output axons (all it reads over the fan-out limit: a finer cut of a consumer multiplies the axons
of its sources), then the fewest boxes, then the fewest input axons in all. A unit with grouped convolutions
also tries the channel blocks that divide a group (a block across two groups reads both groups' inputs).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..ir import Graph
from ..ir.ops import BlockSum, IntConv2d, MaxPool2d, Op, SumPool2d

AXES = 3  # channel, row, column


@dataclass(frozen=True)
class AxisRead:
    """How one member reads one source along one axis: output range ``[o0, o1)`` (member cells) ->
    input range. ``kind``: ``same``, ``window`` (kernel, stride, padding), ``groups`` (out/in per group) or
    ``blocks`` (``b`` blocks of ``a`` channels: the range itself in each block, ``copies`` of it)."""

    kind: str
    size: int                    # the source's length on this axis
    a: int = 1
    b: int = 1
    c: int = 0

    @property
    def copies(self) -> int:
        """How many times the range is read, ``a`` apart (blocks: once per block)."""
        return self.b if self.kind == "blocks" else 1

    def read(self, o0: np.ndarray, o1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.kind in ("same", "blocks"):  # blocks: the first block's range
            return o0, o1
        if self.kind == "window":  # kernel a, stride b, padding c
            return np.maximum(0, o0 * self.b - self.c), np.minimum(self.size, (o1 - 1) * self.b - self.c + self.a)
        return (o0 // self.a) * self.b, ((o1 - 1) // self.a + 1) * self.b  # groups: a outputs, b inputs each


def _axis_reads(op: Op, out_shape, in_shapes) -> list[tuple[AxisRead, AxisRead, AxisRead]] | None:
    """Per input, the three axis reads of ``op``; ``None`` when it does not read boxes (module docstring)."""
    if len(out_shape) != AXES or any(len(s) != AXES for s in in_shapes):
        return None
    if isinstance(op, IntConv2d):
        (kh, kw), groups = op.weight.shape[2:], op.groups
        if tuple(op.dilation) != (1, 1) or op.stride[0] > kh or op.stride[1] > kw:
            return None
        (c, h, w), = in_shapes
        return [(AxisRead("groups", c, out_shape[0] // groups, c // groups),
                 AxisRead("window", h, kh, op.stride[0], op.padding[0]),
                 AxisRead("window", w, kw, op.stride[1], op.padding[1]))]
    if isinstance(op, BlockSum):
        (c, h, w), = in_shapes
        return [(AxisRead("blocks", c, out_shape[0], op.blocks), AxisRead("same", h), AxisRead("same", w))]
    if isinstance(op, (MaxPool2d, SumPool2d)):
        if op.stride[0] > op.kernel[0] or op.stride[1] > op.kernel[1]:
            return None
        (c, h, w), = in_shapes
        return [(AxisRead("same", c), AxisRead("window", h, op.kernel[0], op.stride[0], op.padding[0]),
                 AxisRead("window", w, op.kernel[1], op.stride[1], op.padding[1]))]
    if type(op).reads is Op.reads and op.ROLE in ("elementwise", "neuron") and \
            all(tuple(s) == tuple(out_shape) for s in in_shapes):
        return [tuple(AxisRead("same", n) for n in out_shape) for _ in in_shapes]
    return None


@dataclass
class BoxUnit:
    """A box-readable unit: per source outside the group, the members reading it with their axis reads."""

    members: list[str]
    shapes: dict[str, tuple[int, ...]]
    ref: tuple[int, int, int]
    readers: dict[str, list[tuple[str, tuple[AxisRead, AxisRead, AxisRead]]]]
    kernels: list[tuple[str, int]]  # conv members and the bits one output channel's kernel takes
    per_cell: int                   # compartments per reference cell
    group_channels: int | None = None  # reference channels per group of its grouped convolutions (None: none)

    def span(self, member: str, axis: int, r0, r1, owned: bool = False):
        return member_range(self.shapes[member][axis], self.ref[axis], r0, r1, owned)


def member_range(size: int, ref: int, r0, r1, owned: bool = False):
    """Reference range ``[r0, r1)`` of an axis ``ref`` cells long -> the range of a member's axis of ``size``
    elements it covers (``owned``: emits, so that the ranges of a partition partition the member's axis)."""
    lo = r0 * size // ref
    return lo, (r1 * size // ref if owned else -(-r1 * size // ref))


def box_unit(graph: Graph, members: list[str], shapes, counted: list[str]) -> BoxUnit | None:
    """``members`` (a unit's group) as a :class:`BoxUnit`, or ``None`` when the group is not box-readable.
    The reference grid is the largest ``counted`` member's shape where every member's sizes divide it (a
    pool after a convolution: the convolution's grid, the pool covering half a cell), else the greatest
    common divisors of the members' sizes."""
    readers: dict[str, list] = {}
    for m in members:
        node = graph.nodes[m]
        axes = _axis_reads(node.op, shapes[m], [shapes[s] for s in node.inputs])
        if axes is None:
            return None
        for src, read in zip(node.inputs, axes):
            if src not in members:
                readers.setdefault(src, []).append((m, read))
    if any(len(r) > 2 or (len(r) == 2 and any(axes[0].copies > 1 for _, axes in r)) for r in readers.values()):
        return None
    largest = max(counted, key=lambda m: math.prod(shapes[m]))
    ref = shapes[largest]
    if any(r % shapes[m][axis] for m in members for axis, r in enumerate(ref)):
        ref = tuple(math.gcd(*(shapes[m][axis] for m in members)) for axis in range(AXES))
    kernels = [(m, math.prod(graph.op(m).weight.shape[1:]) * graph.op(m).weight_bits)
               for m in members if isinstance(graph.op(m), IntConv2d)]
    grouped = [shapes[m][0] // graph.op(m).groups * ref[0] // shapes[m][0] for m, _ in kernels
               if graph.op(m).groups > 1]
    return BoxUnit(members, shapes, tuple(ref), readers, kernels, math.prod(shapes[largest]) // math.prod(ref),
                   math.gcd(*grouped) if grouped else None)


def _ranges(length: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    starts = np.arange(0, length, block)
    return starts, np.minimum(starts + block, length)


@dataclass
class BoxCut:
    """A cut ``box`` = (cb, th, tw) of a unit's reference grid; per box (channel, row, column block order,
    flattened): compartments, kernel bits, input axons, output axons."""

    box: tuple[int, int, int]
    ref: tuple[int, int, int]
    neurons: np.ndarray
    bits: np.ndarray
    fan_in: np.ndarray
    fan_out: np.ndarray

    @property
    def order(self) -> str:
        return "boxes:{}x{}x{}/{}x{}x{}".format(*self.box, *self.ref)

    def bounds(self) -> list[tuple[int, int]]:
        """Each box's compartment range ``[start, stop)``."""
        stops = np.cumsum(self.neurons)
        return list(zip((stops - self.neurons).tolist(), stops.tolist()))


def _source_reads(unit: BoxUnit, src: str, blocks) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Per member reading ``src``, per axis, the input ranges each block of that axis reads."""
    return [[axes[k].read(*unit.span(m, k, *blocks[k])) for k in range(AXES)] for m, axes in unit.readers[src]]


def _volume(lengths: list[np.ndarray]) -> np.ndarray:
    return lengths[0][:, None, None] * lengths[1][None, :, None] * lengths[2][None, None, :]


def _fan_in(unit: BoxUnit, blocks) -> np.ndarray:
    """Input axons of every box ``[nc, nh, nw]``: per source the volume it reads, two readers' overlap once."""
    total = np.zeros([len(b[0]) for b in blocks], np.int64)
    for src, readers in unit.readers.items():
        reads = _source_reads(unit, src, blocks)
        for axes, (_, how) in zip(reads, readers):
            total += _volume([hi - lo for lo, hi in axes]) * how[0].copies
        if len(reads) == 2:
            total -= _volume([np.maximum(0, np.minimum(a[1], b[1]) - np.maximum(a[0], b[0]))
                              for a, b in zip(*reads)])
    return total


class _SendSums:
    """Output axons over boxes of the unit's own output: per (row blocks, column blocks), the tile sums of
    every channel from a summed-area table, cumulated over channels, so a channel block's sum is a difference."""

    def __init__(self, sends: np.ndarray):
        self.table = np.zeros((sends.shape[0], sends.shape[1] + 1, sends.shape[2] + 1), np.int64)
        self.table[:, 1:, 1:] = sends.cumsum(1).cumsum(2)
        self.tiles: dict[tuple, np.ndarray] = {}

    def __call__(self, ranges) -> np.ndarray:
        (c0, c1), (h0, h1), (w0, w1) = ranges
        key = (h0.tobytes(), h1.tobytes(), w0.tobytes(), w1.tobytes())
        if key not in self.tiles:
            t = self.table
            per_channel = (t[:, h1][:, :, w1] - t[:, h0][:, :, w1] - t[:, h1][:, :, w0] + t[:, h0][:, :, w0])
            self.tiles[key] = np.concatenate([np.zeros((1, *per_channel.shape[1:]), np.int64),
                                              per_channel.cumsum(0)])
        cumulated = self.tiles[key]
        return cumulated[c1] - cumulated[c0]


def _evaluate(unit: BoxUnit, box, send_sums: _SendSums, name: str) -> BoxCut:
    blocks = [_ranges(unit.ref[k], box[k]) for k in range(AXES)]
    lengths = [hi - lo for lo, hi in blocks]
    bits = np.zeros(len(lengths[0]), np.int64)
    for m, kernel in unit.kernels:  # a conv stores the kernels of the output channels its box covers
        lo, hi = unit.span(m, 0, *blocks[0])
        bits += (hi - lo) * kernel
    fan_out = send_sums([unit.span(name, k, *blocks[k], owned=True) for k in range(AXES)])
    shape = [len(b[0]) for b in blocks]
    return BoxCut(tuple(box), unit.ref, (_volume(lengths) * unit.per_cell).reshape(-1),
                  np.broadcast_to(bits[:, None, None], shape).reshape(-1), _fan_in(unit, blocks).reshape(-1),
                  fan_out.reshape(-1))


def block_lengths(length: int) -> list[int]:
    """Every block length that gives a different number of blocks of an axis ``length`` long, smallest first."""
    return sorted({-(-length // k) for k in range(1, length + 1)})


def best_box_cut(unit: BoxUnit, name: str, sends: np.ndarray, max_neurons: int, limits: dict) -> BoxCut:
    """The box cut with the fewest boxes within the per-core limits (``limits``: ``bits``, ``in``, ``out``,
    each ``None`` when the target gives none); ``sends``: axons each output element of ``name`` (the unit)
    needs."""
    table = _SendSums(sends.reshape(unit.shapes[name]))
    smallest = _evaluate(unit, (1, 1, 1), table, name)
    active = {k: v for k, v in limits.items() if v is not None and getattr(smallest, _FIELD[k]).max() <= v}

    def fits(cut: BoxCut) -> bool:
        return cut.neurons.max() <= max_neurons and all(getattr(cut, _FIELD[k]).max() <= v for k, v in active.items())

    def cost(cut: BoxCut) -> tuple[int, int, int]:
        # its own boxes plus the output-axon cores its reads cost its sources (each element a box reads
        # takes one of its source's axons), then its boxes, then its input axons
        axons = int(cut.fan_in.sum())
        return cut.neurons.size + (-(-axons // limits["out"]) if limits.get("out") else 0), cut.neurons.size, axons

    best, best_key = smallest, cost(smallest)
    # channel blocks of every length, and (grouped convolutions) the lengths that divide a group, whose blocks
    # never straddle two groups and so read one group's inputs
    channel_blocks = [block_lengths(unit.ref[0])]
    if unit.group_channels:
        channel_blocks.append([d for d in range(1, unit.group_channels + 1) if unit.group_channels % d == 0])
    for th in block_lengths(unit.ref[1]):
        for tw in block_lengths(unit.ref[2]):
            if max(th, tw) > 2 * min(th, tw) and min(th, tw) < min(unit.ref[1], unit.ref[2]):
                continue
            if th * tw * unit.per_cell > max_neurons:
                continue
            for channels in channel_blocks:
                lo, hi, found = 0, len(channels) - 1, None  # the largest channel block that fits
                while lo <= hi:
                    mid = (lo + hi) // 2
                    cut = _evaluate(unit, (channels[mid], th, tw), table, name)
                    if fits(cut):
                        found, lo = cut, mid + 1
                    else:
                        hi = mid - 1
                if found is not None:
                    key = cost(found)
                    if key < best_key:
                        best, best_key = found, key
    return best


_FIELD = {"bits": "bits", "in": "fan_in", "out": "fan_out"}


def box_reads(unit: BoxUnit, cut: BoxCut) -> list[dict[str, list[tuple[slice, slice, slice]]]]:
    """Per box (in order), per source, the boxes of the source it reads (as slices): one per reader, or one
    per block of a reader of blocks (the only reader of its source)."""
    blocks = [_ranges(unit.ref[k], cut.box[k]) for k in range(AXES)]
    per_source = {src: list(zip(_source_reads(unit, src, blocks), (axes[0] for _, axes in unit.readers[src])))
                  for src in unit.readers}
    found = []
    for i in range(len(blocks[0][0])):
        for j in range(len(blocks[1][0])):
            for k in range(len(blocks[2][0])):
                found.append({src: [(slice(int(c[0][i]) + g * channel.a, int(c[1][i]) + g * channel.a),
                                     *(slice(int(a[0][x]), int(a[1][x])) for a, x in zip(rest, (j, k))))
                                    for (c, *rest), channel in reads for g in range(channel.copies)]
                             for src, reads in per_source.items()})
    return found


def parse_box_order(order: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``boxes:CBxTHxTW/GCxGHxGW`` -> ((cb, th, tw), (gC, gH, gW))."""
    box, ref = order.split(":", 1)[1].split("/")
    return tuple(int(v) for v in box.split("x")), tuple(int(v) for v in ref.split("x"))


@functools.lru_cache(maxsize=64)
def _box_blocks(order: str):
    """(reference grid, per axis its blocks' ranges) of a box order (cached: placement asks it per slice)."""
    box, ref = parse_box_order(order)
    return ref, [list(zip(*(r.tolist() for r in _ranges(g, size)))) for g, size in zip(ref, box)]


@functools.lru_cache(maxsize=64)
def _box_starts(order: str, neurons: int) -> tuple[np.ndarray, np.ndarray]:
    sizes = box_sizes(order, neurons)
    return np.cumsum(sizes) - sizes, sizes


def box_compartment_order(shape: Sequence[int], order: str) -> np.ndarray:
    """A ``[C, H, W]`` member's flat indices in box order: box by box (the elements each box emits), each
    position by position, all the channels of a position together."""
    ref, blocks = _box_blocks(order)
    index = np.arange(math.prod(shape)).reshape(shape)
    spans = [[member_range(n, g, a, b, owned=True) for a, b in axis] for n, g, axis in zip(shape, ref, blocks)]
    return np.concatenate([index[c0:c1, h0:h1, w0:w1].transpose(1, 2, 0).reshape(-1)
                           for c0, c1 in spans[0] for h0, h1 in spans[1] for w0, w1 in spans[2]])


def box_sizes(order: str, neurons: int) -> np.ndarray:
    """The compartments of each box of a unit of ``neurons`` compartments in box ``order``, in order."""
    ref, blocks = _box_blocks(order)
    return _volume([np.array([b - a for a, b in axis]) for axis in blocks]).reshape(-1) * (neurons // math.prod(ref))


def box_elements(shape: Sequence[int], order: str, neurons: int, start: int, stop: int,
                 owned: bool) -> np.ndarray | None:
    """The flat indices of a member of ``shape`` that compartments ``[start, stop)`` of a unit of ``neurons``
    compartments in box ``order`` cover (``owned``: emit), where that range is one whole box; else None."""
    ref, blocks = _box_blocks(order)
    starts, sizes = _box_starts(order, neurons)
    box = int(np.searchsorted(starts, start))
    if box == len(starts) or starts[box] != start or sizes[box] != stop - start:
        return None
    i, j, k = np.unravel_index(box, [len(axis) for axis in blocks])
    (c0, c1), (h0, h1), (w0, w1) = (member_range(n, g, *axis[x], owned=owned)
                                    for n, g, axis, x in zip(shape, ref, blocks, (i, j, k)))
    return np.arange(math.prod(shape)).reshape(shape)[c0:c1, h0:h1, w0:w1].transpose(1, 2, 0).reshape(-1)


__all__ = ["BoxUnit", "BoxCut", "box_unit", "best_box_cut", "box_reads", "box_compartment_order",
           "box_elements", "box_sizes", "block_lengths", "member_range", "parse_box_order"]

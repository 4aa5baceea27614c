"""What each core of a placement computes and receives, held compactly: what per-core counting reads while a
graph runs (:mod:`.cores`), without a full-size element mask per core.

A :class:`CoreMap` has, per unit and member of its group, the row (core) that emits each output element, and
per source read by placed cores, its **pairs**: every (reading core, sending core) with the source elements
that reach the reader from that sender, as one sparse 0/1 matrix ``[pairs, elements]`` (a host source has
sender ``-1``). The elements a core owns and reads are those of
:func:`snncompile.backends.placement.core_views`; they are found by range arithmetic where a unit is cut into
whole boxes (:mod:`snncompile.backends.placement_boxes`: a box of a member reads a box of each source), and
otherwise from one unit's core views at a time, their masks turned into indices at once. Memory is one integer per
element of every placed member plus one per input axon, whatever the number of cores.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from ..backends.placement import Placement, core_views
from ..backends.placement_boxes import AXES, BoxUnit, box_unit, parse_box_order
from ..ir import Graph
from ..ir.ops import Delay


@dataclass
class Owned:
    """One member of one unit's group: ``rows`` are the unit's rows (cores), ``local[e]`` the index into
    ``rows`` of the core that emits flat element ``e``; ``sizes[i]`` elements emitted by ``rows[i]``."""

    rows: np.ndarray
    local: np.ndarray
    sizes: np.ndarray


@dataclass
class Pairs:
    """The messages one source sends: ``matrix[p, e]`` is 1 where element ``e`` reaches core ``reader[p]``
    from core ``sender[p]`` (rows of the map; ``-1`` for the host)."""

    matrix: scipy.sparse.csr_matrix
    reader: np.ndarray
    sender: np.ndarray


@dataclass
class CoreMap:
    """``cores[i]``: the core id of row ``i`` (core order); ``owned[(unit, member)]``; ``pairs[source]``."""

    cores: tuple[int, ...]
    owned: dict[tuple[str, str], Owned]
    pairs: dict[str, Pairs]

    def members(self, name: str) -> list[tuple[str, str]]:
        """The (unit, member) keys under which ``name`` is computed on cores (a node attached to two units
        is computed on both)."""
        return [key for key in self.owned if key[1] == name]


def _box_ranges(unit: BoxUnit, order: str, slices) -> list[tuple[tuple[int, int], ...]] | None:
    """Each slice's reference ranges per axis where the slices are exactly the boxes of the box ``order``;
    else None."""
    if not order.startswith("boxes:"):
        return None
    box, ref = parse_box_order(order)
    if tuple(ref) != tuple(unit.ref):
        return None
    blocks = [[(a, min(a + b, r)) for a in range(0, r, b)] for b, r in zip(box, ref)]
    found = list(itertools.product(*blocks))  # channel block first, then row, then column block
    bounds = np.cumsum([0, *(math.prod(b - a for a, b in axes) * unit.per_cell for axes in found)])
    if len(slices) != len(found) or any((s.start, s.stop) != (int(a), int(b))
                                        for s, a, b in zip(slices, bounds[:-1], bounds[1:])):
        return None
    return found


def _box_indices(shape, ranges) -> np.ndarray:
    """The flat C-order indices of the box ``ranges`` (one ``(lo, hi)`` per axis) of a ``shape`` tensor."""
    axes = [np.arange(lo, hi) for lo, hi in ranges]
    strides = [math.prod(shape[k + 1:]) for k in range(len(shape))]
    return sum(a.reshape([-1 if k == j else 1 for j in range(len(shape))]) * strides[k]
               for k, a in enumerate(axes)).reshape(-1)


def _box_views(unit: BoxUnit, boxes):
    """Per box: member -> emitted flat indices, source -> read flat indices (range arithmetic)."""
    for cells in boxes:
        owned = {m: _box_indices(unit.shapes[m], [unit.span(m, k, *cells[k], owned=True) for k in range(AXES)])
                 for m in unit.members}
        reads = {}
        for src, readers in unit.readers.items():
            parts = [_box_indices(unit.shapes[src], [axes[k].read(*unit.span(m, k, *cells[k])) for k in range(AXES)])
                     for m, axes in readers]
            reads[src] = parts[0] if len(parts) == 1 else np.union1d(*parts)
        yield owned, reads


def _generic_views(graph: Graph, placement: Placement, unit: str):
    """Per slice of ``unit``: its :class:`CoreView`'s owned indices and read masks as indices (the masks of one
    unit's slices at a time)."""
    for view in core_views(graph, dataclasses.replace(placement, nodes={unit: placement.nodes[unit]})):
        yield dict(view.owned), {src: np.flatnonzero(mask) for src, mask in view.reads.items()}


def core_map(graph: Graph, placement: Placement) -> CoreMap:
    """The :class:`CoreMap` of ``placement`` (made for ``graph``)."""
    shapes = {n: tuple(t.shape) for n, t in graph.types().items()}
    cores = tuple(sorted(c.core for c in placement.cores))
    row = {c: i for i, c in enumerate(cores)}
    owned: dict[tuple[str, str], Owned] = {}
    reads: dict[str, list[tuple[int, np.ndarray]]] = {}
    for u, p in placement.nodes.items():
        members = [*p.attached, u]
        counted = [m for m in members if not isinstance(graph.op(m), Delay)] or [u]
        boxed = box_unit(graph, members, shapes, counted)
        boxes = None if boxed is None else _box_ranges(boxed, p.order, p.slices)
        views = _box_views(boxed, boxes) if boxes is not None else _generic_views(graph, placement, u)
        rows = np.array([row[s.core] for s in p.slices])
        local = {m: np.full(math.prod(shapes[m]), -1, np.int32) for m in members}
        sizes = {m: np.zeros(len(rows), np.int64) for m in members}
        for i, (own, read) in enumerate(views):
            for m, ix in own.items():
                local[m][ix] = i
                sizes[m][i] = ix.size
            for src, ix in read.items():
                reads.setdefault(src, []).append((int(rows[i]), ix))
        for m in members:
            owned[(u, m)] = Owned(rows, local[m], sizes[m])
    emitters = {u: owned[(u, u)] for u in placement.nodes}
    pairs = {src: _pairs(found, emitters.get(src), math.prod(shapes[src])) for src, found in reads.items()}
    return CoreMap(cores, owned, pairs)


def _pairs(found: list[tuple[int, np.ndarray]], emitter: Owned | None, elements: int) -> Pairs:
    """The (reader, sender) pairs of one source from each reading row's element indices."""
    readers, senders, indptr, columns = [], [], [0], []
    for reader, ix in found:
        sent = np.full(ix.size, -1) if emitter is None else emitter.rows[emitter.local[ix]]
        order = np.argsort(sent, kind="stable")
        ix, sent = ix[order], sent[order]
        starts = np.flatnonzero(np.r_[True, sent[1:] != sent[:-1]]) if ix.size else np.zeros(0, np.int64)
        readers += [reader] * starts.size
        senders += sent[starts].tolist()
        indptr += (indptr[-1] + np.r_[starts[1:], ix.size]).tolist()
        columns.append(ix)
    columns = np.concatenate(columns) if columns else np.zeros(0, np.int64)
    matrix = scipy.sparse.csr_matrix((np.ones(columns.size, np.float32), columns.astype(np.int32),
                                      np.asarray(indptr, np.int64)), shape=(len(readers), elements))
    return Pairs(matrix, np.asarray(readers, np.int64), np.asarray(senders, np.int64))


__all__ = ["CoreMap", "Owned", "Pairs", "core_map"]

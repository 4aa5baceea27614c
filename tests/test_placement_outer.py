"""Attention accumulates on cores (snncompile/backends/placement_outer.py and the box orders of
snncompile/backends/placement.py): their outputs are (row, column) pairs of a head, cut into rectangles that
fill a core's input axons, and the lower bound's "rows and columns" rule, both against counts by hand and by
brute force."""
from __future__ import annotations

import itertools

import pytest

from snncompile.backends.design_rules import check
from snncompile.backends.placement import core_lower_bound, place
from snncompile.backends.placement_outer import Outer, outer, outputs_per_core, receivers
from snncompile.ir import SPIKE, Graph, Node
from snncompile.ir.ops import Input, KVOuterAccumulate, Output, QMAccumulate, ScoreValueAccumulate, SpikeScores
from test_placement import changed_target, recounted


def linear_attention(channels: int, h: int, w: int, heads: int) -> Graph:
    """STAtten's integer attention on spike inputs: kv = K^T V per head, qm = Q (K^T V)."""
    nodes = {n: Node(Input(shape=(channels, h, w), dtype=SPIKE, time="stream")) for n in "qkv"}
    nodes["kv"] = Node(KVOuterAccumulate(heads=heads), ("k", "v"))
    nodes["qm"] = Node(QMAccumulate(heads=heads), ("q", "kv"))
    nodes["y"] = Node(Output(), ("qm",))
    return Graph(nodes, ("y",), time_steps=2).validate()


def test_attention_accumulates_are_cut_into_rectangles_that_fill_the_input_axons(tmp_path, monkeypatch):
    # 2 heads of d = 6 channels over N = 2 x 2 tokens, 20 input axons per core. kv: a core with r rows (K
    # channels) and c columns (V channels) of a head reads 4r + 4c axons, so r + c <= 5 and it holds at most
    # 2 x 3 = 6 of the head's 36 outputs: 6 cores per head. qm: a core with r tokens and c columns reads 6r Q
    # and 6c M elements, so r + c <= 3: 2 of the 48 outputs per core, 24 cores
    target = changed_target(tmp_path, "loihi2", "axons20", {"fan_in_axons_per_core": 20})
    graph = linear_attention(12, 2, 2, heads=2)
    p = place(graph, target)
    assert p.nodes["kv"].order == "boxes:1x2x3/2x6x6"
    assert [s.stop - s.start for s in p.nodes["kv"].slices] == [6] * 12
    assert p.nodes["qm"].order == "boxes:2x1x1/12x2x2" and p.cores_used == 36
    assert [s.stop - s.start for s in p.nodes["qm"].slices] == [2] * 24
    # each kv box reads its 2 K channels and 3 V channels at the 4 tokens; each qm box 2 columns of a head at
    # one token: its 6 Q channels there and 2 x 6 elements of K^T V, each of which so reaches 4 qm cores
    assert [(c.fan_in_axons, c.fan_out_axons) for c in p.cores] == [(20, 6 * 4)] * 12 + [(18, 2)] * 24
    assert recounted(graph, p) == [(c.fan_in_axons, c.fan_out_axons) for c in p.cores]
    assert not check(graph, p, target, max_chips=p.chips_used)
    bound = core_lower_bound(graph, target)
    assert bound.by_resource["rows and columns"] == 12 + 24 == bound.cores == p.cores_used
    import snncompile.backends.placement as placement
    monkeypatch.setattr(placement, "_best_tiles", lambda *args: None)
    assert place(graph, target).nodes["kv"].order in ("channel", "position")
    assert len(place(graph, target).nodes["kv"].slices) > 12


def brute_outputs_per_core(shape: Outer, axons: int) -> int:
    """The largest set of outputs whose rows and columns read at most ``axons`` elements, by trying every set."""
    cells = list(itertools.product(range(shape.heads), range(shape.rows), range(shape.columns)))
    best = 0
    for mask in range(1 << len(cells)):
        chosen = [c for i, c in enumerate(cells) if mask >> i & 1]
        rows, columns = {(h, r) for h, r, _ in chosen}, {(h, c) for h, _, c in chosen}
        if len(rows) * shape.row_reads + len(columns) * shape.column_reads <= axons:
            best = max(best, len(chosen))
    return best


@pytest.mark.parametrize("shape, axons, exact", [(Outer(1, 3, 3, 0, 2, 2), 8, True), (Outer(2, 3, 2, 0, 1, 2), 7, True),
                                                 (Outer(2, 2, 3, 0, 2, 3), 12, False)])
def test_outputs_per_core_bound_brute_force(shape, axons, exact):
    # a bound: never below the best set; equal to it where one head's rectangle can fill the axons (else two
    # heads' rectangles are counted as one of their rows and columns together: 3 x 2 where each head has 2 rows)
    found, best = outputs_per_core(shape, axons), brute_outputs_per_core(shape, axons)
    assert found == best if exact else found > best


def test_the_paper_configurations_rectangles_by_hand():
    # statten-imagenet-8-768: 8 heads of d = 96 over N = 14 x 14 = 196 tokens, 4096 input axons per core
    q, k, m = (768, 14, 14), (768, 14, 14), (8, 96, 96)
    kv, qm = outer(KVOuterAccumulate(heads=8), [k, k]), outer(QMAccumulate(heads=8), [q, m])
    assert kv == Outer(8, 96, 96, 0, 196, 196) and qm == Outer(8, 196, 96, 0, 96, 96)
    # kv: 196 (r + c) <= 4096: r + c <= 20, 10 x 10; a K (V) element reaches the cores of its row (column),
    # each with at most (4096 - 196) / 196 = 19 of the 96 columns: 6 cores
    assert outputs_per_core(kv, 4096) == 100 and receivers(kv, 0, 4096) == receivers(kv, 1, 4096) == 6
    # qm: 96 (r + c) <= 4096: r + c <= 42, 21 x 21; a Q element reaches >= 96 / 41 cores, an M one 196 / 41
    assert outputs_per_core(qm, 4096) == 441 and (receivers(qm, 0, 4096), receivers(qm, 1, 4096)) == (3, 5)
    assert outer(SpikeScores(heads=8), [q, k]) == Outer(8, 196, 196, 0, 96, 96)
    assert outer(ScoreValueAccumulate(heads=8), [(8, 196, 196), k]) == Outer(8, 196, 96, 0, 196, 196)
    assert outer(Output(), [k]) is None

"""Verify steps (``snncompile.passes.verify``): per-node isolated and cumulative comparison of two graphs,
stage-by-stage verification of a pipeline with accuracies and tolerances, and its table/JSON output.

Hand-built graphs differ from their reference in exactly one node, so the isolated comparison must flag
that node alone and the cumulative one that node and everything downstream. The shipped statten-digits
checkpoint runs the BatchNorm-folding pipeline on real digits.
"""
from __future__ import annotations

import dataclasses
import io
import json
import re

import numpy as np
import pytest
import torch
from rich.console import Console

import snncompile
from snncompile.data import load_dataset
from snncompile.frontend import export
from snncompile.ir import Graph, Node
from snncompile.ir.ops import LIF, BatchNorm, Input, Linear, Output
from snncompile.passes import PIPELINES, PassContext, PassError, as_pass
from snncompile.passes.verify import (Tolerance, VerificationError, compare_graphs, render, to_json,
                                      verify_pipeline)
from snncompile.zoo.registry import find_entry

CTX = PassContext()
CHAIN = ["x", "fc1", "lif1", "fc2", "lif2", "head", "out"]


def chain(*, threshold=1.0, w1_factor=1.0, head_factor=1.0) -> Graph:
    """x [6] -> fc1 (6 -> 8) -> lif1 -> fc2 (8 -> 5) -> lif2 -> head (5 -> 3) -> out."""
    rng = np.random.default_rng(0)
    w1 = (rng.normal(size=(8, 6)) * w1_factor).astype(np.float32)
    w2 = rng.normal(size=(5, 8)).astype(np.float32)
    w3 = (rng.normal(size=(3, 5)) * head_factor).astype(np.float32)
    nodes = {"x": Node(Input(shape=(6,))),
             "fc1": Node(Linear(weight=w1, bias=np.full(8, 0.5, np.float32)), ("x",)),
             "lif1": Node(LIF(v_threshold=threshold), ("fc1",)),
             "fc2": Node(Linear(weight=w2), ("lif1",)),
             "lif2": Node(LIF(v_threshold=0.5), ("fc2",)),
             "head": Node(Linear(weight=w3), ("lif2",)),
             "out": Node(Output(), ("head",))}
    return Graph(nodes, ("out",), time_steps=6)


def feeds(batch=32, seed=1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.rand(6, batch, 6, generator=g) * 2}


def rows(report) -> dict:
    """Name -> row of the candidate's nodes (a reference-only row may share a candidate node's name)."""
    return {r.name: r for r in report if r.status != "only_reference"}


def test_identical_graphs_agree_everywhere():
    table = rows(compare_graphs(chain(), chain(), feeds()))
    assert list(table) == CHAIN
    for r in table.values():
        assert r.status == "matched" and r.reference == r.name
        for c in (r.cumulative, r.isolated):
            assert c.bit_identical and c.differing == 0 and c.max_abs_error == 0
            if r.kind == "spike":
                assert c.agreement == 1.0 and c.membrane_max_abs_error == 0
            else:
                assert c.smape == 0.0


def flagged(table, which: str) -> set[str]:
    return {n for n, r in table.items() if not getattr(r, which).bit_identical}


def test_changed_lif_threshold_isolated_flags_only_that_neuron():
    table = rows(compare_graphs(chain(), chain(threshold=1.7), feeds()))
    assert flagged(table, "isolated") == {"lif1"}
    assert flagged(table, "cumulative") == {"lif1", "fc2", "lif2", "head", "out"}
    lif1 = table["lif1"].cumulative
    assert 0 < lif1.agreement < 1 and lif1.differing == round((1 - lif1.agreement) * lif1.elements)
    assert lif1.membrane_max_abs_error > 0 and lif1.smape is None
    assert table["fc2"].cumulative.smape > 0 and table["fc2"].isolated.bit_identical


def test_changed_weight_isolated_flags_only_that_layer():
    table = rows(compare_graphs(chain(), chain(w1_factor=1.25), feeds()))
    assert flagged(table, "isolated") == {"fc1"}
    assert flagged(table, "cumulative") == {"fc1", "lif1", "fc2", "lif2", "head", "out"}
    fc1 = table["fc1"].isolated
    assert fc1.max_abs_error > 0 and 0 < fc1.smape < 1 and fc1.agreement is None


def test_nodes_in_one_graph_only_are_listed():
    ref = chain()
    nodes = dict(ref.nodes)
    nodes["lif2"] = Node(LIF(v_threshold=0.5), ("fc2b",))
    nodes = {("fc2b" if k == "fc2" else k): v for k, v in nodes.items()}
    cand = dataclasses.replace(ref, nodes=nodes)
    table = compare_graphs(ref, cand, feeds())
    status = {(r.name, r.status) for r in table}
    assert ("fc2b", "matched") in status  # it replaced fc2 for every consumer: it stands for fc2
    assert rows(table)["fc2b"].reference == "fc2" and rows(table)["fc2b"].cumulative.bit_identical
    extra = dict(cand.nodes, spare=Node(LIF(), ("fc1",)))
    table = rows(compare_graphs(ref, dataclasses.replace(cand, nodes=extra), feeds()))
    assert table["spare"].status == "only_candidate" and table["spare"].cumulative is None


@as_pass()
def scale_head(graph: Graph, ctx: PassContext) -> Graph:
    """Toy pass: head weights x1.5 (a local change, as a broken integer pass would make)."""
    head = graph.nodes["head"]
    return dataclasses.replace(graph, nodes={**graph.nodes, "head": Node(
        dataclasses.replace(head.op, weight=head.op.weight * np.float32(1.5)), head.inputs)})


@as_pass()
def raise_threshold(graph: Graph, ctx: PassContext) -> Graph:
    lif = graph.nodes["lif1"]
    return dataclasses.replace(graph, nodes={**graph.nodes, "lif1": Node(
        dataclasses.replace(lif.op, v_threshold=1.7), lif.inputs)})


@as_pass()
def rebuild(graph: Graph, ctx: PassContext) -> Graph:
    """Toy pass: a structurally new but identical graph."""
    return dataclasses.replace(graph, nodes=dict(graph.nodes))


def test_exact_stage_mismatch_raises_naming_the_pass_and_node():
    with pytest.raises(VerificationError) as e:
        verify_pipeline(chain(), [rebuild, scale_head], CTX, feeds(), exact={"rebuild", "scale_head"})
    assert isinstance(e.value, PassError) and e.value.pass_name == "scale_head" and e.value.node == "head"
    assert "'scale_head'" in str(e.value) and "'head'" in str(e.value)
    with pytest.raises(VerificationError, match="scale_head"):  # a pass may declare itself exact
        verify_pipeline(chain(), [dataclasses.replace(scale_head, exact=True)], CTX, feeds())
    report = verify_pipeline(chain(), [rebuild], CTX, feeds(), exact={"rebuild"})
    assert all(r.cumulative.bit_identical for r in report.stages[1].nodes)


def test_float_stages_report_violations_unless_strict():
    report = verify_pipeline(chain(), [raise_threshold], CTX, feeds())
    (violation, *_) = report.stages[1].violations
    assert "lif1" in violation and "spike agreement" in violation
    loose = verify_pipeline(chain(), [raise_threshold], CTX, feeds(), tolerance=Tolerance(spike_agreement=0.0))
    assert loose.stages[1].violations == []
    with pytest.raises(VerificationError) as e:
        verify_pipeline(chain(), [raise_threshold], CTX, feeds(), strict=True)
    assert e.value.pass_name == "raise_threshold" and e.value.node == "lif1"


def test_stage_accuracy_and_output():
    x = feeds(batch=16)
    labels = torch.arange(16) % 3
    report = verify_pipeline(chain(), [rebuild, scale_head], CTX, x, labels)
    assert [s.pass_name for s in report.stages] == ["input", "rebuild", "scale_head"]
    assert report.samples == 16 and all(s.accuracy is not None for s in report.stages)
    assert report.stages[0].accuracy == report.stages[1].accuracy  # identical graphs
    data = to_json(report)
    json.dumps(data)
    assert [n["name"] for n in data["stages"][2]["nodes"]] == CHAIN
    assert data["stages"][2]["nodes"][5]["isolated"]["bit_identical"] is False


# ------------------------------------------------------------------------------------------------
# the BatchNorm-folding pipeline on the shipped statten-digits checkpoint, with real digits
# ------------------------------------------------------------------------------------------------

def test_fold_batchnorm_report_on_the_shipped_statten_digits_model():
    entry = find_entry("statten-digits")
    graph = export(snncompile.load_checkpoint(entry.checkpoint).model)
    test = load_dataset(entry.data, entry.model, "test")
    x = torch.stack([test[i][0] for i in range(48)])
    y = torch.tensor([int(test[i][1]) for i in range(48)])
    report = verify_pipeline(graph, PIPELINES["float"], CTX, {graph.inputs()[0]: x}, y)
    assert [s.pass_name for s in report.stages] == ["input", "fold_batchnorm"]
    acc = [s.accuracy for s in report.stages]
    assert acc[0] is not None and acc[0] >= 0.9 and acc[1] == acc[0]
    stage = report.stages[1]
    assert stage.violations == []
    table = rows(stage.nodes)
    neurons = [n for n, node in graph.nodes.items() if isinstance(node.op, LIF)]
    assert len(neurons) == 19  # 4 patch-embed, 7 per block, the head
    for n in neurons:  # fold_batchnorm's known result: no spike flips on this model
        for c in (table[n].cumulative, table[n].isolated):
            assert c.agreement == 1.0 and c.differing == 0, n
    bns = [n for n, node in graph.nodes.items() if isinstance(node.op, BatchNorm)]
    only_ref = {r.name for r in stage.nodes if r.status == "only_reference"}
    assert only_ref == {graph.nodes[b].inputs[0] for b in bns}  # the convs' own (pre-BN) values
    folded = table["patch_embed.proj_conv"]  # the folded conv stands for its BatchNorm
    assert folded.reference == "patch_embed.proj_bn" and folded.isolated.smape < 1e-5
    text = render_text(report, details=True)
    assert max(map(len, text.splitlines())) <= 80 and "…" not in text
    for n in neurons + ["patch_embed.proj_conv"]:  # each whole, on one line
        assert re.search(rf"^{re.escape(n)} ", text, re.MULTILINE), n
    summary = render_text(report)
    assert max(map(len, summary.splitlines())) <= 80 and len(summary.splitlines()) < 20
    assert "fold_batchnorm" in summary and f"{acc[0]:.4f}" in summary and "--details" in summary
    worst = sorted((r for r in stage.nodes if r.status == "matched" and not r.cumulative.bit_identical),
                   key=lambda r: -r.cumulative.smape)[:3]  # no spike differs: the values furthest off
    assert [r.name for r in worst] == re.findall(r"^(\S+) +smape", summary, re.MULTILINE)
    data = to_json(report)
    json.dumps(data)
    assert {n["name"] for n in data["stages"][1]["nodes"]} >= set(neurons)
    print("\n" + summary)


def render_text(report, details: bool = False) -> str:
    console = Console(record=True, width=80, file=io.StringIO())
    for t in render(report, details=details):
        console.print(t)
    return console.export_text()

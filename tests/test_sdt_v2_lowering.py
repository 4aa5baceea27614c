"""The Spike-Driven Transformer V2 end to end on a tiny config: export (bit-identical to the torch model), the
folding of RepConv and SepConv chains, lowering (residual streams as proven-width integer sums, graded messages on
Loihi 2), the reference simulator against Lava per_op and fused on every exposed node, placement, design rules,
counts and energy, ONNX and NIR export."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from snncompile.backends.placement import place
from snncompile.config import ModelConfig
from snncompile.frontend import export
from snncompile.ir.interval import Interval
from snncompile.ir.ops import LIF, BorderPad, Conv2d, IntAdd, IntDense, LoihiLIF
from snncompile.ir.interpret import run_graph
from snncompile.nn.backbones import build_model
from snncompile.nn.record import record_spikes
from snncompile.passes import PassContext, fold_batchnorm, lower_to_loihi, run_pipeline
from snncompile.passes.fold_linear_chains import composed, fold_linear_chains
from snncompile.passes.prove_ranges import analyse, graded_edges
from snncompile.sim.dataset import graph_feeds

try:
    from . import upstream_sdt_v2 as up
except ImportError:
    import upstream_sdt_v2 as up

TINY = dict(backbone="sdt-v2", attention="SSA", dim=16, num_heads=2, layers=3, img_size=32, time_steps=2,
            num_classes=10)


@pytest.fixture(scope="module")
def tiny():
    """The tiny model, its float graph, its integer graph for Loihi 2 (calibrated on 8 images) and 2 test feeds."""
    model = up.active_weights(build_model(ModelConfig(**TINY)))
    graph = export(model)
    g = torch.Generator().manual_seed(1)
    integer = lower_to_loihi(graph, graph_feeds(graph, torch.rand(8, 3, 32, 32, generator=g)), target="loihi2")
    return model, graph, integer, torch.rand(2, 3, 32, 32, generator=g)


def test_export_is_the_torch_model_bit_for_bit_with_neurons_at_upstream_paths(tiny):
    model, graph, _, x = tiny
    with torch.no_grad(), record_spikes(model) as spikes:
        logits = model(x)
    values = run_graph(graph, {"input": x}, keep="all")
    neurons = [n for n in graph.topo_order() if isinstance(graph.op(n), LIF)]
    assert neurons == list(spikes)  # every neuron under its torch (= upstream) module path, in forward order
    for name in neurons:
        assert torch.equal(values[name].reshape(spikes[name].shape), spikes[name]), name
    assert torch.equal(values[graph.outputs[0]], logits)
    pads = sum(isinstance(n.op, BorderPad) for n in graph.nodes.values())
    assert pads == 4 * TINY["layers"]  # the q, k, v and proj RepConvs


def test_kd_heads_export_exactly_and_lower_as_one_head():
    """``--kd``: the graph computes upstream's ``(mean_T head + mean_T head_kd) / 2`` bit for bit;
    fold_linear_chains merges the two heads into one (mean weights), which the lowering takes as any head."""
    model = up.active_weights(build_model(ModelConfig(**{**TINY, "kd_head": True})))
    graph = export(model)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(run_graph(graph, {"input": x})[graph.outputs[0]], model(x))
    folded = run_pipeline(graph, (fold_batchnorm,), PassContext())
    merged = run_pipeline(folded, (fold_linear_chains,), PassContext())
    assert {"head", "time_mean"} <= set(merged.nodes) and not {"head_kd", "heads_add", "heads_mean"} & set(merged.nodes)
    assert torch.allclose(run_graph(merged, {"input": x})[merged.outputs[0]],
                          run_graph(folded, {"input": x})[folded.outputs[0]], atol=1e-5)
    integer = lower_to_loihi(graph, graph_feeds(graph, torch.rand(4, 3, 32, 32)))
    assert sum(isinstance(n.op, IntDense) for n in integer.nodes.values()) == 1


def _conv(rng, c_out, c_in, k, **kw) -> Conv2d:
    groups = kw.get("groups", 1)
    return Conv2d(weight=rng.normal(size=(c_out, c_in // groups, k, k)).astype(np.float32),
                  bias=rng.normal(size=c_out).astype(np.float32), **kw)


def _apply(op: Conv2d, x: torch.Tensor) -> torch.Tensor:
    weight, bias = (torch.tensor(a, dtype=torch.float64) for a in (op.weight, op.bias))
    return F.conv2d(x, weight, bias, op.stride, op.padding, op.dilation, op.groups)


@pytest.mark.parametrize("first, second", [
    (dict(c_out=6, c_in=6, k=7, padding=(3, 3), groups=6), dict(c_out=3, c_in=6, k=1)),       # SepConv
    (dict(c_out=4, c_in=4, k=1, padding=(1, 1)), dict(c_out=4, c_in=4, k=3, groups=4)),         # RepConv 1x1 -> dw
    (dict(c_out=4, c_in=3, k=3, stride=(2, 2), padding=(1, 1)), dict(c_out=5, c_in=4, k=1)),   # any -> 1x1
])
def test_composed_convolution_is_the_chain_in_exact_arithmetic(first, second):
    rng = np.random.default_rng(0)
    a, b = (_conv(rng, **kw) for kw in (first, second))
    x = torch.randn(2, a.weight.shape[1] * a.groups, 9, 9, dtype=torch.float64)
    merged = composed(a, b)
    assert torch.allclose(_apply(merged, x), _apply(b, _apply(a, x)), rtol=1e-5, atol=1e-4)


def test_fold_linear_chains_leaves_one_convolution_between_neurons_and_every_spike(tiny):
    _, graph, _, x = tiny
    folded = run_pipeline(graph, (fold_batchnorm,), PassContext())
    chained = run_pipeline(folded, (fold_linear_chains,), PassContext())
    assert not any(isinstance(n.op, BorderPad) for n in chained.nodes.values())
    for name, node in chained.nodes.items():
        if isinstance(node.op, Conv2d):
            assert not isinstance(chained.op(node.inputs[0]), Conv2d), name
    assert len(folded.nodes) - len(chained.nodes) == 3 * 4 * TINY["layers"] + 4  # 3 per RepConv, 1 per SepConv
    before, after = run_graph(folded, {"input": x}, keep="all"), run_graph(chained, {"input": x}, keep="all")
    for name, node in chained.nodes.items():
        if isinstance(node.op, LIF):
            assert torch.equal(before[name], after[name]), name  # measured: no spike moves on this model
    assert torch.allclose(before[graph.outputs[0]], after[graph.outputs[0]], atol=1e-5)


def test_lowered_residual_streams_are_proven_graded_messages(tiny):
    _, graph, integer, _ = tiny
    analysis = analyse(integer)
    sums = [n for n, node in integer.nodes.items() if isinstance(node.op, IntAdd)]
    assert {n for n in sums if n.endswith("add")} >= {"ConvBlock1_1.0.sep_add", "ConvBlock1_1.0.add",
                                                       "block3.0.attn.add", "block4.1.mlp.add"}
    for name in sums:
        assert analysis.proven[name] is not None and analysis.proven[name].within(
            Interval.of_dtype(analysis.types[name].dtype)), name
    graded = {src for src, _ in graded_edges(integer, analysis.types)}
    assert "ConvBlock1_1.0.sep_add" in graded  # the stream reaches the next block's neurons and sum as a message
    assert sum(isinstance(n.op, LoihiLIF) for n in integer.nodes.values()) == sum(
        isinstance(n.op, LIF) for n in graph.nodes.values())


def test_placement_rules_counts_and_energy(tiny):
    from snncompile.backends.design_rules import check
    from snncompile.job.artifact import Compiled
    from snncompile.job import CompileRecord, ModelSource, steps
    from snncompile.targets import load_target
    _, _, integer, x = tiny
    chip = load_target("loihi2")
    placement = place(integer, chip)
    assert check(integer, placement, chip) == []
    compiled = Compiled(integer, placement, CompileRecord(ModelSource("tiny-sdt-v2"), "loihi2", 8))
    counts = steps.count(compiled, chip, x)
    totals = counts.table["totals"]
    assert min(totals["ACs"], totals["host_MACs"], totals["attention_accumulates"], totals["spikes"]) > 0
    estimate = steps.price(counts, chip)
    assert set(estimate.energy) == {"loihi2", "cmos45", "ann"}
    assert estimate.energy["loihi2"].total_pj > 0 and estimate.energy["cmos45"].total_pj > 0


def test_onnx_export_runs_in_onnxruntime_and_nir_exports_the_expressible_part(tiny, tmp_path):
    pytest.importorskip("onnxruntime")
    from snncompile.backends.onnx import run_onnx, to_onnx
    _, graph, _, x = tiny
    got = run_onnx(to_onnx(graph), {"input": x})[graph.outputs[0]]
    want = run_graph(graph, {"input": x})[graph.outputs[0]]
    assert torch.allclose(got, want, atol=1e-4)
    pytest.importorskip("nir")
    from snncompile.backends.nir_export import expressible_nodes, write_nir
    part = expressible_nodes(graph, fold_batchnorm=True)
    assert "ConvBlock1_1.0.Conv.lif1" in part and "block3.0.attn.q_conv.0.body.1" not in part  # up to RepConv
    write_nir(graph, tmp_path / "part.nir", nodes="expressible", fold_batchnorm=True)
    assert (tmp_path / "part.nir").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("granularity", ["per_op", "fused"])
def test_lava_is_bit_exact_with_the_reference_on_every_exposed_node(tiny, granularity):
    pytest.importorskip("lava.magma")
    from snncompile.backends.lava.runner import run_lava_session
    _, _, integer, x = tiny
    feeds = graph_feeds(integer, x)
    ref = run_graph(integer, feeds, keep="all")
    run = run_lava_session(integer, feeds, granularity=granularity, expose="all", timeout=600)
    assert set(run.plan.chip) <= set(run.values)
    for name, value in run.values.items():
        assert torch.equal(value.to(ref[name].dtype), ref[name]), name
    assert sum(ref[n].sum() for n in run.plan.chip if isinstance(integer.op(n), LoihiLIF)) > 0


def test_snncompile_verify_on_an_upstream_checkpoint(tmp_path):
    """``snncompile verify`` on a main_finetune.py-style file (the spec's example sizes, 32 px): every stage, the
    two folds without a moved spike, the integer stages exact."""
    import json
    from test_cli import cli
    model = up.active_weights(up.build((8, 16, 32, 40), time_steps=2, stage3_depth=1, num_classes=10))
    path = tmp_path / "checkpoint-199.pth"
    up.save_like_upstream(path, model, up.finetune_args(model="metaspikformer_8_32", time_steps=2, input_size=32))
    out = cli("verify", path, "--dataset", "digits", "--samples", "4", "--calibration", "4",
              "--json", tmp_path / "report.json")
    assert out.returncode == 0, out.stdout + out.stderr
    stages = {s["pass"]: s for s in json.loads((tmp_path / "report.json").read_text())["stages"]}
    assert list(stages)[:3] == ["input", "fold_batchnorm", "fold_linear_chains"]
    assert stages["prove_ranges"]["exact"] and stages["schedule"]["exact"]
    for name in ("fold_batchnorm", "fold_linear_chains"):
        spikes = [n["cumulative"]["agreement"] for n in stages[name]["nodes"]
                  if n.get("cumulative") and n["cumulative"].get("agreement") is not None]
        assert spikes and min(spikes) == 1.0, name

"""SDT-V3 (E-SpikeFormer Model_Base): the quantiser, the model against a re-derivation of upstream's forward (logits
and the integer level of every activation), its key layout against the spec, and loading upstream files."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from conftest import SHARED
from upstream_sdt_v3 import UpstreamSDTV3, mae_args, trained_like_v3, v3_cfg, write_mae

from snncompile.config import ConfigError, parse_entry
from snncompile.data import load_dataset
from snncompile.frontend.builder import ExportError
from snncompile.frontend.torch_export import export
from snncompile.ir import Graph, Node, int_type, run_graph
from snncompile.ir.interval import Interval
from snncompile.ir.ops import Conv2d, Input, LevelScoreValue, MultiLevelAttention, Output
from snncompile.ir.ops import MultiLevelSpike as MultiLevelSpikeNode
from snncompile.nn.backbones import build_model
from snncompile.passes.multilevel import fold_level_norms, lower_level_attention
from snncompile.passes.prove_ranges import analyse
from snncompile.report.counts import count_activity
from snncompile.report.multilevel import encoding_costs, quantiser_levels
from snncompile.targets import load_target
from snncompile.nn.sdt_v3 import MultiLevelSpike, record_levels
from snncompile.zoo.checkpoint import load_checkpoint
from snncompile.zoo.registry import find_entry
from snncompile.zoo.torchfile import CheckpointError
from snncompile.zoo.upstream_sdt_v3 import FACTORIES, SDT_V3

SPEC = SHARED / "spec" / "backbone_checkpoints.md"


def test_quantiser_rounds_half_to_even_and_divides_by_levels():
    x = torch.tensor([-1.0, 0.5, 0.51, 1.5, 2.5, 3.5, 4.7, 2.49])
    assert MultiLevelSpike()(x).tolist() == [0.0, 0.0, 0.25, 0.5, 0.5, 1.0, 1.0, 0.5]
    assert MultiLevelSpike(norm=1)(x).tolist() == [0.0, 0.0, 1.0, 2.0, 2.0, 4.0, 4.0, 2.0]


def test_quantiser_gradient_is_straight_through_inside_the_range():
    x = torch.tensor([-0.5, 0.0, 1.3, 4.0, 4.5], requires_grad=True)
    MultiLevelSpike()(x).sum().backward()
    assert x.grad.tolist() == [0.0, 0.25, 0.25, 0.25, 0.0]


@pytest.mark.parametrize("heads", [8, 2])
def test_model_equals_upstream_rederivation_in_logits_and_every_level(heads):
    cfg = v3_cfg(num_heads=heads)
    model = trained_like_v3(cfg, seed=heads)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    upstream = UpstreamSDTV3(model.state_dict(), num_heads=heads)
    expected = upstream(x)
    with record_levels(model) as levels, torch.no_grad():
        logits = model(x)
    assert torch.equal(logits, expected)
    assert list(levels) == list(upstream.levels) and len(levels) == 105
    for name, level in levels.items():
        assert torch.equal(level, upstream.levels[name]), name
        assert 0 <= level.min() and level.max() <= 4
    assert levels["spike"].max() > 1  # the head reads integers, not levels / 4


def test_examples_meet_exact_halves_where_round_half_up_differs():
    """Head dim 4 (block3 of the spec example): ((Q K^T) V) * 1.0 is a multiple of 1/64 and lands on .5."""
    model = trained_like_v3(v3_cfg(), seed=3)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    even, up = UpstreamSDTV3(model.state_dict()), UpstreamSDTV3(model.state_dict(), half_up=True)
    even(x)
    up(x)
    differs = [k for k in even.levels if not torch.equal(even.levels[k], up.levels[k])]
    assert any(".attn.attn_spike" in k for k in differs)


def test_state_dict_layout_is_the_spec_example():
    if not SPEC.is_file():
        pytest.skip(f"{SPEC} (the shared spec) is not available on this machine")
    section = SPEC.read_text().split("### sdtv3_base", 1)[1].split("```", 2)[1]
    spec = [(m.group(1), [int(v) for v in m.group(2).split(",") if v.strip()])
            for m in re.finditer(r"^(\S+) \[([^\]]*)\]$", section, re.M)]
    model = trained_like_v3(v3_cfg(img_size=64, num_classes=1000))
    assert [(k, list(v.shape)) for k, v in model.state_dict().items()] == spec


def test_loads_mae_style_file_with_sizes_from_shapes_and_args(tmp_path):
    cfg = v3_cfg(num_classes=7, stage_layers="2,1", num_heads=4)
    model = trained_like_v3(cfg, seed=1)
    path = tmp_path / "checkpoint-299.pth"
    write_mae(path, model, mae_args(time_steps=4))
    loaded = load_checkpoint(path, config={"num_heads": 4})
    assert loaded.source == "upstream"
    c = loaded.config
    assert (c.backbone, c.stage_dims, c.stage_layers, c.img_size, c.num_classes, c.num_heads, c.mlp_ratio) == \
        ("sdt-v3", "8,16,32,40", "2,1", 32, 7, 4, 4)
    assert any("time_steps=4 is ignored" in n for n in loaded.notes)
    assert any("Efficient_Spiking_Transformer_n" in n for n in loaded.notes)
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(loaded.model.predict_logits(x), UpstreamSDTV3(model.state_dict(), num_heads=4)(x))


def test_heads_default_to_the_factories_eight_with_a_note(tmp_path):
    path = tmp_path / "c.pth"
    write_mae(path, trained_like_v3(v3_cfg(stage_layers="1,1")), mae_args(model="Efficient_Spiking_Transformer_s"))
    loaded = load_checkpoint(path)
    assert loaded.config.num_heads == 8
    assert any("num_heads not given by the file; assuming 8" in n for n in loaded.notes)
    assert not any("not one of upstream's factories" in n for n in loaded.notes)


def test_file_without_input_size_asks_for_img_size(tmp_path):
    path = tmp_path / "c.pth"
    write_mae(path, trained_like_v3(v3_cfg(stage_layers="1,0")), mae_args(input_size=None))
    with pytest.raises(CheckpointError, match="img_size"):
        load_checkpoint(path)
    assert load_checkpoint(path, config={"img_size": 32}).config.stage_layers == "1,0"


def test_bad_stage_fields_are_one_line_each():
    with pytest.raises(ConfigError) as e:
        parse_entry({"name": "x", "model": {"backbone": "sdt-v3", "stage_dims": "8,16,x", "stage_layers": "2",
                                            "img_size": 40, "time_steps": 4}})
    text = str(e.value)
    assert "model.stage_dims: '8,16,x' must be 4 comma-separated even widths" in text
    assert "model.stage_layers: '2' must be 2 comma-separated block counts" in text
    assert "model.img_size: 40 must be divisible by 16" in text
    assert "model.time_steps: 4 must be 1 (backbone sdt-v3 has no time axis" in text


def test_time_axis_input_is_refused_with_the_shape():
    model = trained_like_v3(v3_cfg(stage_layers="1,0"))
    with pytest.raises(ValueError, match=r"not \[B, 3, 32, 32\].*no time axis"):
        model(torch.zeros(1, 4, 3, 32, 32))


def _graph_levels(graph, values: dict, name: str) -> torch.Tensor:
    """A quantiser node's integer levels from its run value ``[1, B, ...]`` (one step)."""
    return torch.round(values[name][0] * graph.op(name).norm).to(torch.int64)


def test_float_graph_reproduces_the_model_bit_for_bit():
    """The exported graph (node names = module paths) run by the reference interpreter: the same logits and
    the same level at every activation."""
    model = trained_like_v3(v3_cfg(stage_layers="2,1"), seed=5)
    graph = export(model)
    assert graph.time_steps == 1
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    values = run_graph(graph, {"input": x}, keep="all")
    with record_levels(model) as levels, torch.no_grad():
        logits = model(x)
    assert torch.equal(values["output"], logits)
    assert {n for n, node in graph.nodes.items() if isinstance(node.op, MultiLevelSpikeNode)} == set(levels)
    for name, level in levels.items():
        assert torch.equal(_graph_levels(graph, values, name).reshape(level.shape), level), name


def test_export_refuses_event_input_and_custom_layers():
    model = trained_like_v3(v3_cfg(stage_layers="1,0"))
    with pytest.raises(ExportError, match="static images"):
        export(model, events=True)
    model.block3[0].mlp.fc1_spike = torch.nn.ReLU()
    with pytest.raises(ExportError, match=r"block3\.0\.mlp\.fc1_spike \(torch\.nn\.ReLU\): replaces an SDT-V3 layer"):
        export(model)


def _lowered(heads: int, seed: int):
    model = trained_like_v3(v3_cfg(stage_layers="2,1", num_heads=heads), seed=seed)
    graph = export(model)
    return graph, lower_level_attention(fold_level_norms(graph))


@pytest.mark.parametrize("heads", [8, 2])
def test_folded_norms_and_integer_attention_are_exact(heads):
    """The /4 moves into the next convolution or the attention scale (not before the head), the attention runs as
    an integer accumulate with 4 thresholds: logits and every level as the float graph's, bit for bit."""
    graph, lowered = _lowered(heads, seed=3)
    assert lowered.op("spike").norm == 1 and lowered.op("block3.0.attn.q_spike").norm == 1
    assert isinstance(lowered.op("block3.0.attn.product"), LevelScoreValue)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    before, after = (run_graph(g, {"input": x}, keep="all") for g in (graph, lowered))
    assert torch.equal(before["output"], after["output"])
    levels_before, levels_after = quantiser_levels(graph, before), quantiser_levels(lowered, after)
    assert levels_before.keys() == levels_after.keys()
    for name, level in levels_before.items():
        assert torch.equal(level, levels_after[name]), name


def test_attention_thresholds_send_exact_halves_to_even():
    """Head dim 4: scale 2/sqrt(4) / 4^3 = 1/64, so level k starts at 64 (k - 1/2), except where the half itself
    rounds up to an even k: 0.5 -> 0 (from 33), 1.5 -> 2 (from 96), 2.5 -> 2 (from 161), 3.5 -> 4 (from 224)."""
    _, lowered = _lowered(8, seed=3)
    assert lowered.op("block3.0.attn.attn_spike").thresholds.tolist() == [33, 96, 161, 224]


def test_attention_accumulator_range_is_proven():
    """prove_ranges' analysis bounds the scores by d D^2 (d = 4: 64) and each accumulate by N d D^3 (2x2 tokens,
    d = 4, D = 4: 1024, 11 bits; block4, d = 5: 1280) and the run stays inside."""
    _, lowered = _lowered(8, seed=4)
    proven = analyse(lowered).proven
    assert proven["block3.0.attn.product.scores"] == Interval(0, 4 * 16)
    assert proven["block3.0.attn.product"] == Interval(0, 4 * 4 * 64)
    assert proven["block4.0.attn.product"] == Interval(0, 4 * 5 * 64)
    assert str(lowered.types()["block3.0.attn.product"].dtype) == "uint11"
    values = run_graph(lowered, {"input": torch.rand(4, 3, 32, 32) * 2 - 1}, keep="all")
    assert 0 < values["block3.0.attn.product"].max() <= 1024


def test_encoding_costs_by_hand():
    """Levels 0, 1, 3, 4 into a 1x1 convolution with 2 outputs: graded 3 messages, 6 MACs, 1 step; unary 8 spikes,
    16 ACs, 4 steps; priced with loihi2's synaptic-op and spike figures."""
    nodes = {"input": Node(Input(shape=(1, 2, 2))), "q": Node(MultiLevelSpikeNode(), ("input",)),
             "conv": Node(Conv2d(weight=np.ones((2, 1, 1, 1), np.float32)), ("q",)), "out": Node(Output(), ("conv",))}
    graph = Graph(nodes=nodes, outputs=("out",), time_steps=1).validate()
    values = run_graph(graph, {"input": torch.tensor([0.0, 1.0, 3.0, 4.0]).reshape(1, 1, 1, 2, 2)}, keep="all")
    costs = encoding_costs(graph, values, "loihi2")
    target = load_target("loihi2")
    synop, spike = target.synaptic_op_energy.value, target.spike_energy_within_tile.value
    assert (costs["graded"].steps, costs["graded"].messages, costs["graded"].synaptic_ops) == (1, 3, 6)
    assert (costs["unary"].steps, costs["unary"].messages, costs["unary"].synaptic_ops) == (4, 8, 16)
    assert costs["graded"].energy_pj == pytest.approx(6 * synop + 3 * spike)
    assert costs["unary"].energy_pj == pytest.approx(16 * synop + 8 * spike)


@pytest.mark.parametrize("name, factory, millions", [("sdt-v3-imagenet-5m", "Efficient_Spiking_Transformer_s", 5.1),
                                                     ("sdt-v3-imagenet-10m", "Efficient_Spiking_Transformer_m", 10.0),
                                                     ("sdt-v3-imagenet-19m", "Efficient_Spiking_Transformer_l", 19.0)])
def test_model_base_families_have_the_papers_sizes_and_export(name, factory, millions):
    entry = find_entry(name)
    assert entry.model.stage_dims == FACTORIES[factory] and entry.model.stage_layers == "6,2"
    with torch.device("meta"):
        size = sum(p.numel() for p in build_model(entry.model).parameters())
    assert size / 1e6 == pytest.approx(millions, abs=0.05)
    if name == "sdt-v3-imagenet-5m":  # one family through the export (the others differ in widths only)
        graph = export(build_model(entry.model).eval())
        assert sum(isinstance(n.op, MultiLevelAttention) for n in graph.nodes.values()) == 8
        assert graph.types()["block4.1.attn.product"].shape == (4 * 192, 14, 14)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("granularity", ["per_op", "fused"])
def test_lowered_attention_on_lava_equals_the_reference(granularity):
    """block3.0's lowered attention (scores, accumulate, thresholds) on Lava, fed the model's own Q, K, V levels:
    every value equals the reference run's, and the levels are the whole model's attn_spike levels."""
    pytest.importorskip("lava.magma")
    from snncompile.backends.lava.runner import run_lava_session

    _, lowered = _lowered(8, seed=3)
    values = run_graph(lowered, {"input": torch.rand(3, 3, 32, 32) * 2 - 1}, keep="all")
    p = "block3.0.attn"
    types = lowered.types()
    operands = {n: f"{p}.{n}_spike" for n in "qkv"}
    level = int_type(3, signed=False)
    nodes = {n: Node(Input(shape=types[src].shape, dtype=level)) for n, src in operands.items()}
    nodes[f"{p}.product.scores"] = Node(lowered.op(f"{p}.product.scores"), ("q", "k"))
    nodes[f"{p}.product"] = Node(lowered.op(f"{p}.product"), (f"{p}.product.scores", "v"))
    nodes[f"{p}.attn_spike"] = Node(lowered.op(f"{p}.attn_spike"), (f"{p}.product",))
    nodes["output"] = Node(Output(), (f"{p}.attn_spike",))
    graph = Graph(nodes=nodes, outputs=("output",), time_steps=1).validate()
    feeds = {n: values[src].to(torch.int64) for n, src in operands.items()}
    ref = run_graph(graph, feeds, keep="all")
    run = run_lava_session(graph, feeds, granularity=granularity, expose="all", timeout=240)
    for name, value in run.values.items():
        assert torch.equal(value.to(torch.int64), ref[name].to(torch.int64)), name
    assert torch.equal(run.values[f"{p}.attn_spike"].to(torch.int64), values[f"{p}.attn_spike"].to(torch.int64))
    assert run.values[f"{p}.attn_spike"].max() > 0


def test_activity_counts_of_the_lowered_graph_agree_with_the_graded_costs():
    """The report's counts (count_activity) on the lowered graph: graded MACs = the graded encoding's synaptic ops
    plus the first convolution's (on the image, not a quantiser), attention accumulates alike."""
    _, lowered = _lowered(8, seed=6)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    values = run_graph(lowered, {"input": x}, keep="all")
    activity = count_activity(lowered, {"input": x})
    totals = activity.to_dict()["totals"]
    graded = encoding_costs(lowered, values, "loihi2")["graded"]
    assert totals["ACs"] == 0
    first = activity.synapses["downsample1_1.encode_conv"].total
    assert totals["MACs"] == pytest.approx(2 * graded.synaptic_ops + first)
    assert totals["attention_accumulates"] == pytest.approx(2 * graded.attention_accumulates)


def test_shipped_digits_model_lowers_exactly():
    """The trained sdt-v3-digits (>= 95 %, checked with every shipped model in test_zoo.py): on test digits the
    lowered graph (levels, integer attention) gives the torch model's logits bit for bit."""
    entry = find_entry("sdt-v3-digits")
    model = load_checkpoint(entry.checkpoint).model
    test = load_dataset(entry.data, entry.model, "test")
    x = torch.stack([test[i][0] for i in range(32)])
    lowered = lower_level_attention(fold_level_norms(export(model)))
    assert torch.equal(run_graph(lowered, {"input": x})["output"], model.predict_logits(x))


def test_reader_claims_model_base_files_only():
    """By args.model, or by the key layout (SDT-V2's SepConv keys are ``Conv.pwconv1.weight``, V3's
    ``Conv.pwconv1.0.weight``); never a timm file, whose weights are under ``state_dict``."""
    v3 = {"downsample1_1.encode_conv.weight": 0, "ConvBlock1_1.0.Conv.pwconv1.0.weight": 0}
    v2 = {"downsample1_1.encode_conv.weight": 0, "ConvBlock1_1.0.Conv.pwconv1.weight": 0}
    assert SDT_V3.claims({"model": v3}, None, v3)
    assert SDT_V3.claims({"model": {}}, {"model": "Efficient_Spiking_Transformer_l"}, {})
    assert not SDT_V3.claims({"model": v2}, {"model": "metaspikformer_8_384"}, v2)
    assert not SDT_V3.claims({"state_dict": v3}, None, v3)

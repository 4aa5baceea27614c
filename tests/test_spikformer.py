"""The Spikformer backbone (its three upstream code variants) and the zoo attentions on it: upstream checkpoints
load (the variant from the file; GPU-tagged storages; unused parameters dropped with a note), reproduce the
upstream forward exactly (every spike under its upstream module path; tests/upstream_spikformer.py re-derives
it), export to the IR, lower to integers, place, count and price, and run on ONNX Runtime, NIR and Lava."""
from __future__ import annotations

import argparse

import pytest
import torch
from typer.testing import CliRunner

from snncompile.cli import app
from snncompile.config import ATTENTION_MODES, ModelConfig
from snncompile.frontend import export
from snncompile.ir import run_graph
from snncompile.nn.backbones import build_model
from snncompile.nn.attention import SSA_ORDERS, ssa_scores
from snncompile.nn.record import record_spikes
from snncompile.nn.sdt import SpikingSelfAttention
from snncompile.nn.spikformer import SpikformerAttention
from snncompile.zoo.checkpoint import load_checkpoint
from upstream_spikformer import UpstreamSpikformer, randomised, timm_args, write_timm, write_torchvision

DVS_ARGS = argparse.Namespace(model="SEWResNet", T=8, num_classes=10, dataset="cifar10dvs", device="cuda")
# (upstream variant, its sizes as the spec's examples, an input, how upstream's script writes the file)
VARIANTS = {
    "cifar10": (dict(dim=64, heads=4, layers=2, img_size=32, time_steps=4),
                lambda g: torch.rand(3, 3, 32, 32, generator=g) * 2 - 1,
                lambda path, m: write_timm(path, m, timm_args(dim=64, num_heads=4, layer=2, mlp_ratio=4, time_step=4,
                                                              num_classes=10, img_size=32), cuda_tags=True)),
    "cifar10dvs": (dict(dim=32, heads=2, layers=2, in_channels=2, img_size=128, time_steps=8),
                   lambda g: torch.randint(0, 3, (2, 8, 2, 128, 128), generator=g).float(),
                   lambda path, m: write_torchvision(path, m, DVS_ARGS, cuda_tags=True)),
    "imagenet": (dict(dim=64, heads=8, layers=2, num_classes=1000, img_size=64),
                 lambda g: torch.rand(3, 3, 64, 64, generator=g) * 2 - 1,
                 lambda path, m: write_timm(path, m, timm_args(model="resnet101", img_size=64, num_classes=1000,
                                                               dataset="imagenet"), cuda_tags=True)),
}


def _ours(name: str, upstream: torch.Tensor, ours: torch.Tensor, variant: str) -> torch.Tensor:
    """An upstream neuron's output in our channels-first layout (cifar10's blocks are tokens-last)."""
    if variant == "cifar10" and name.startswith("block."):
        return upstream.transpose(2, 3).reshape(ours.shape)
    return upstream.reshape(ours.shape)


def _written(variant: str, folder):
    """A randomised upstream model of ``variant``, an input, and its checkpoint as upstream's script writes it."""
    sizes, make_input, write = VARIANTS[variant]
    x = make_input(torch.Generator().manual_seed(0))
    model = randomised(UpstreamSpikformer(variant, **sizes), x, seed=1)
    return variant, model, x, write(folder / "checkpoint.pth", model)


@pytest.fixture(scope="module", params=list(VARIANTS))
def upstream_file(request, tmp_path_factory):
    return _written(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def dvs_file(tmp_path_factory):
    """The cifar10dvs example: its factory was edited to 2 heads, which nothing in the file says."""
    return _written("cifar10dvs", tmp_path_factory.mktemp("dvs"))


def test_upstream_checkpoints_load_with_the_variant_read_from_the_file(upstream_file):
    variant, model, _, path = upstream_file
    loaded = load_checkpoint(path, config={"num_heads": 2} if variant == "cifar10dvs" else None)
    cfg = loaded.config
    assert (cfg.backbone, cfg.attention) == (f"spikformer-{variant}", "SSA")
    assert (cfg.dim, cfg.layers, cfg.num_heads, cfg.time_steps) == {
        "cifar10": (64, 2, 4, 4), "cifar10dvs": (32, 2, 2, 8), "imagenet": (64, 2, 8, 4)}[variant]
    assert cfg.ssa_scale == (0.25 if variant == "cifar10dvs" else 0.125) and cfg.dvs_mode == (variant == "cifar10dvs")
    dropped = {n.split()[3] for n in loaded.notes if n.startswith("dropped dead parameter")}
    expected = {k for k in model.state_dict() if ".norm" in k or k.startswith(("pos_embed", "norm."))}
    assert dropped == expected and expected
    if variant == "imagenet":  # nothing in the file says 8 heads or T = 4: assumed, with a note each
        assert any(n.startswith("num_heads is not in the file: assuming 8") for n in loaded.notes)
        assert any(n.startswith("time_steps is not in the file: assuming 4") for n in loaded.notes)


def test_every_spike_and_the_logits_equal_upstreams(upstream_file):
    variant, model, x, path = upstream_file
    loaded = load_checkpoint(path, config={"num_heads": 2} if variant == "cifar10dvs" else None)
    with torch.no_grad(), record_spikes(loaded.model) as ours:
        logits = loaded.model(x)
        expected = model(x)
    upstream = model.spikes()
    assert torch.equal(logits, expected)
    assert set(upstream) == set(ours) and len(ours) == 5 + 7 * 2  # stem 5, per block q/k/v/attn/proj/fc1/fc2
    for name, spikes in upstream.items():
        assert torch.equal(_ours(name, spikes, ours[name], variant), ours[name]), name
        assert 0 < spikes.mean() < 1, name
    # attn_lif sees exact multiples of the SSA scale: charges sit exactly on its 0.5 threshold and fire (>=)
    hits = [m.threshold_hits for n, m in model.named_modules() if n.endswith("attn_lif")]
    assert sum(hits) > 0


def test_num_heads_the_file_cannot_tell_is_a_config_field(dvs_file):
    _, model, x, path = dvs_file
    loaded = load_checkpoint(path)  # upstream's factory value, 16, with a note: a different model
    assert loaded.config.num_heads == 16 and any(n.startswith("num_heads is not in the file") for n in loaded.notes)
    assert not torch.equal(loaded.model(x), model(x))


def test_the_cli_takes_config_fields_with_set(dvs_file, tmp_path):
    path = dvs_file[3]
    out = tmp_path / "m.snnir"
    result = CliRunner().invoke(app, ["export", str(path), "-o", str(out), "--set", "num_heads=2",
                                      "--set", "time_steps=8"])
    assert result.exit_code == 0, result.output
    from snncompile.ir import io as ir_io
    graph = ir_io.load(out)
    assert graph.time_steps == 8 and graph.op("block.0.attn.core").heads == 2
    bad = CliRunner().invoke(app, ["export", str(path), "-o", str(out), "--set", "heads=2"])
    assert bad.exit_code != 0 and "'heads' is not a model config field" in bad.output
    assert "Traceback" not in bad.output


def test_each_reader_claims_its_own_variant_only():
    from snncompile.zoo.upstream import FORMATS
    from upstream_files import small_cfg
    layouts = {f"spikformer-{v}": UpstreamSpikformer(v, **VARIANTS[v][0]).state_dict() for v in VARIANTS}
    layouts["sdt"] = build_model(small_cfg()).state_dict()
    for backbone, state_dict in layouts.items():
        claimed = [name for name, f in FORMATS.items() if name != "sdt" and f.claims({}, None, state_dict)]
        assert claimed == ([] if backbone == "sdt" else [backbone])
    assert list(FORMATS)[-1] == "sdt"  # the SDT reader, which takes any timm file, is asked last


def test_the_three_ssa_orders_give_the_same_float_result():
    g = torch.Generator().manual_seed(0)
    q, k, v = ((torch.rand(2, 2, 3, 196, 64, generator=g) < 0.5).float() for _ in range(3))
    results = [ssa_scores(q, k, v, scale, order) for scale in (0.125, 0.25) for order in SSA_ORDERS]
    for scale_results in (results[:3], results[3:]):
        assert all(torch.equal(r, scale_results[0]) for r in scale_results)


def test_the_attention_code_is_the_sdt_backbones():
    for method in ("attend", "qkv_spikes", "_add_qkv_neurons", "_add_core"):
        assert getattr(SpikformerAttention, method) is getattr(SpikingSelfAttention, method)


def _tiny(backbone: str = "spikformer-cifar10", attention: str = "SSA", **kw) -> ModelConfig:
    variant = dict(pooling_stat="1111", img_size=32) if backbone != "spikformer-cifar10" else dict(img_size=16)
    if backbone == "spikformer-cifar10dvs":
        variant.update(dvs_mode=True, in_channels=2, ssa_scale=0.25)
    return ModelConfig(backbone=backbone, attention=attention, dim=16, num_heads=2, layers=1,
                       time_steps=4, chunk_size=2, **variant, **kw)


def _inputs(cfg: ModelConfig, count: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if cfg.dvs_mode:
        return (torch.rand(count, cfg.time_steps, cfg.in_channels, cfg.img_size, cfg.img_size, generator=g) * 2).round()
    return torch.rand(count, cfg.in_channels, cfg.img_size, cfg.img_size, generator=g)


def _feeds(graph, x):
    (name,) = graph.inputs()
    return {name: x if graph.op(name).time == "static" else x.transpose(0, 1).contiguous()}


DS2TA_INIT = ("lut.", "_window.")  # DS2TA's identity table and initial attenuation (a random table silences it)
CASES = [("spikformer-cifar10", a) for a in ATTENTION_MODES] + [("spikformer-cifar10dvs", "SSA"),
                                                                 ("spikformer-imagenet", "SSA")]


@pytest.mark.parametrize("backbone, attention", CASES)
def test_the_ir_graph_reproduces_the_model(backbone, attention):
    cfg = _tiny(backbone, attention)
    x = _inputs(cfg, 6)
    model = randomised(build_model(cfg), x, keep=DS2TA_INIT)
    graph = export(model)
    assert not graph.history[0].options["dropped"]
    with torch.no_grad(), record_spikes(model) as spikes:
        logits = model(x)
    values = run_graph(graph, _feeds(graph, x), keep="all")
    assert torch.equal(values[graph.outputs[0]], logits)
    for name, s in spikes.items():
        assert torch.equal(values[name].reshape(s.shape), s), name
        assert s.abs().sum() > 0, name


# ------------------------------------------------------------------------------------------------
# end to end on a tiny config: integers, placement and design rules, counts and energy, ONNX, NIR, Lava
# ------------------------------------------------------------------------------------------------

_LOWERED: dict[tuple[str, str], tuple] = {}


def _lowered(backbone: str, attention: str = "SSA"):
    """The tiny model, its float graph, its scheduled integer graph (calibrated on 16 inputs) and 8 test inputs."""
    if (backbone, attention) not in _LOWERED:
        from snncompile.passes import lower_to_loihi
        from snncompile.sim.dataset import graph_feeds
        cfg = _tiny(backbone, attention)
        x = _inputs(cfg, 24)
        model = randomised(build_model(cfg), x[:16], keep=DS2TA_INIT)
        graph = export(model)
        integer = lower_to_loihi(graph, graph_feeds(graph, x[:16]))
        _LOWERED[backbone, attention] = model, graph, integer, x[16:]
    return _LOWERED[backbone, attention]


@pytest.mark.parametrize("backbone, attention", CASES)
def test_lowered_placed_counted_and_priced(backbone, attention):
    from snncompile.backends.design_rules import check
    from snncompile.job.artifact import CompileRecord, Compiled, ModelSource
    from snncompile.job.steps import count, place, price
    from snncompile.sim.dataset import graph_feeds, logits_of
    from snncompile.targets import load_target
    model, graph, integer, x = _lowered(backbone, attention)
    # the residual stream holds spike counts 0..2+2L: its integer sums are proven a few bits wide (graded spikes)
    assert integer.op("block.0.mlp.add").out_bits <= 5
    values = run_graph(integer, graph_feeds(integer, x))
    agree = logits_of(values[integer.outputs[0]], integer).argmax(-1) == model.predict_logits(x).argmax(-1)
    assert agree.float().mean() >= 0.75
    chip = load_target("loihi2")
    placement = place(integer, chip)
    assert check(integer, placement, chip) == []
    compiled = Compiled(integer, placement, CompileRecord(ModelSource("tiny"), "loihi2"))
    counts = count(compiled, chip, x)
    estimate = price(counts, chip)
    totals = counts.activity.totals
    # Q/K/V and fc1 read the residual counts (multi-bit: MACs), fc2 spikes (ACs)
    assert totals["MACs"] > 0 and totals["ACs"] > 0 and totals["spikes"] > 0
    kind = "linear" if backbone == "spikformer-cifar10" else "conv"
    synapses = counts.activity.synapses
    assert synapses[f"block.0.mlp.fc1_{kind}"].kind == "MAC" and synapses[f"block.0.mlp.fc2_{kind}"].kind == "AC"
    assert estimate.energy["cmos45"].total_pj > 0 and estimate.energy["loihi2"].total_pj > 0


@pytest.mark.parametrize("backbone", ["spikformer-cifar10", "spikformer-cifar10dvs", "spikformer-imagenet"])
def test_onnx_runs_the_float_graph_and_nir_takes_its_expressible_part(backbone, tmp_path):
    from snncompile.backends.nir_export import expressible_nodes, write_nir
    from snncompile.backends.onnx import run_onnx, to_onnx
    model, graph, _, x = _lowered(backbone)
    expected = run_graph(graph, _feeds(graph, x))[graph.outputs[0]]
    out = run_onnx(to_onnx(graph), _feeds(graph, x))[graph.outputs[0]]
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    part = expressible_nodes(graph, fold_batchnorm=True)
    assert "patch_embed.proj_lif" in part and "block.0.attn.core" not in part
    nir_graph = write_nir(graph, tmp_path / "part.nir", nodes=part, fold_batchnorm=True)
    assert len(nir_graph.nodes) > 3


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("granularity", ["per_op", "fused"])
@pytest.mark.parametrize("backbone", ["spikformer-cifar10", "spikformer-cifar10dvs", "spikformer-imagenet"])
def test_lava_equals_the_reference_simulator_on_every_exposed_node(backbone, granularity):
    pytest.importorskip("lava.magma")
    from snncompile.backends.lava.runner import run_lava_session
    from snncompile.sim.dataset import graph_feeds
    _, _, integer, x = _lowered(backbone)
    feeds = graph_feeds(integer, x[:2])
    run = run_lava_session(integer, feeds, granularity=granularity, expose="all" if granularity == "fused" else None,
                           timeout=600)
    ref = run_graph(run.plan.graph, feeds, keep="all")  # per_op: the graph with its synapse biases moved
    assert set(integer.outputs) <= set(run.values) and len(run.values) > 10
    for name, value in run.values.items():
        assert torch.equal(value.to(ref[name].dtype), ref[name]), name


def test_set_fields_are_part_of_the_compile_record(dvs_file, tmp_path):
    """A model compiled with --set loads again with the same fields (its graph is that model's); another --set on
    the compiled file is refused rather than silently mixed."""
    import json
    path, out = dvs_file[3], tmp_path / "m.snnir"
    result = CliRunner().invoke(app, ["compile", str(path), "--set", "num_heads=2", "--dataset", "event-digits",
                                      "--calibration", "2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "m.compile.json").read_text())["config_sets"] == ["num_heads=2"]
    from snncompile.job import load_compiled
    assert load_compiled(out).record.source.config_sets == ["num_heads=2"]
    again = CliRunner().invoke(app, ["simulate", str(out), "--limit", "2"])
    assert again.exit_code == 0, again.output
    other = CliRunner().invoke(app, ["simulate", str(out), "--set", "num_heads=4", "--limit", "2"])
    assert other.exit_code != 0 and "was compiled with --set num_heads=2" in other.output

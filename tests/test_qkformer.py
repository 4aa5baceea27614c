"""QKFormer (cifar10/ and imagenet/ models): the upstream parameter layout, the float forward equal to the re-derived
upstream code (logits and every spike, at batch 1; the upstream batch coupling kept out), upstream checkpoints loaded
with the backbone inferred, the IR export, and the integer graph end to end (reference simulation, placement and
design rules, counts and energy, Lava per_op and fused bit-exact on a tiny config)."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from torch import nn

import snncompile
import upstream_qkformer as up
from snncompile.config import ModelConfig
from snncompile.frontend import export
from snncompile.ir import run_graph
from snncompile.ir.ops import HeadChannelSum, HeadTokenMask
from snncompile.nn.backbones import build_model
from snncompile.nn.record import record_spikes
from snncompile.nn.qkformer import stage_depths
from snncompile.zoo.registry import find_entry
from snncompile.zoo.torchfile import CheckpointError


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Tiny models: intra-op threads only cost on a loaded box (the sums do not depend on the setting)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def randomise_(model: nn.Module, seed: int) -> nn.Module:
    """Random weights and BN statistics that keep every neuron layer firing sometimes (BN shift ~ 0.6)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, m in sorted(model.named_modules(), key=lambda kv: kv[0]):
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.weight[0].numel() ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(0.6 + 0.8 * torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.6 + torch.randn(m.bias.shape, generator=g) * 0.4)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.3)
                m.running_var.copy_(0.4 + 1.6 * torch.rand(m.running_var.shape, generator=g))
                m.num_batches_tracked.fill_(17)
    return model.eval()


# The spec's example sizes (backbone_checkpoints.md): cifar10 dim 64, depths 4 (1 + 1 + 2); imagenet
# QKFormer_10_512 edited to dim 64, depths 4 (1 + 2 + 1), 1000 classes; 8 heads, T = 4.
CIFAR10 = dict(backbone="qkformer-cifar10", dim=64, num_heads=8, layers=4, time_steps=4, num_classes=10)
IMAGENET = dict(backbone="qkformer-imagenet", dim=64, num_heads=8, layers=4, time_steps=4, num_classes=1000)


def upstream_model(cfg: ModelConfig) -> nn.Module:
    if cfg.backbone == "qkformer-cifar10":
        return up.spiking_transformer(cfg.in_channels, cfg.num_classes, cfg.dim, cfg.num_heads, cfg.mlp_ratio,
                                      cfg.layers, cfg.time_steps)
    return up.hierarchical_spiking_transformer(cfg.time_steps, cfg.in_channels, cfg.num_classes, cfg.dim,
                                               cfg.num_heads, cfg.mlp_ratio, cfg.layers)


def pair(sizes: dict, img_size: int, seed: int = 0):
    """The re-derived upstream model with random weights and ours loaded from its state_dict (strict)."""
    cfg = ModelConfig(**sizes, img_size=img_size)
    reference = randomise_(upstream_model(cfg), seed)
    ours = build_model(cfg).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return cfg, reference, ours


@pytest.mark.parametrize("sizes, entries, parameters", [(CIFAR10, 200, 190994), (IMAGENET, 200, 218960)],
                         ids=["cifar10", "imagenet"])
def test_the_parameters_are_upstreams_key_layout(sizes, entries, parameters):
    state = build_model(ModelConfig(**sizes, img_size=64)).state_dict()
    weights = sum(t.numel() for k, t in state.items() if "running_" not in k and "num_batches" not in k)
    assert (len(state), weights) == (entries, parameters)  # backbone_checkpoints.md's counts
    assert tuple(state["stage1.0.tssa.q_conv.weight"].shape) == (16, 16, 1)
    assert tuple(state["patch_embed2.proj_res_conv.weight"].shape) == (32, 16, 1, 1)
    if sizes is CIFAR10:
        assert "stage3.1.ssa.v_conv.weight" in state and "stage1.0.mlp.mlp1_conv.bias" in state
    else:
        assert "stage3.0.attn.v_conv.weight" in state and "stage2.1.mlp.fc2_bn.weight" in state
        assert tuple(state["patch_embed1.proj2_conv.weight"].shape) == (16, 16, 3, 3)


@pytest.mark.parametrize("sizes, img_size", [(CIFAR10, 16), (IMAGENET, 64)], ids=["cifar10", "imagenet"])
def test_the_float_forward_equals_upstream_at_batch_one(sizes, img_size):
    """Logits bit-identical and every neuron's spikes equal to the re-derived upstream forward, and alive."""
    cfg, reference, ours = pair(sizes, img_size)
    x = torch.rand(1, 3, img_size, img_size, generator=torch.Generator().manual_seed(1))
    upstream_spikes: dict = {}
    expected = up.run(reference, x, upstream_spikes)
    with torch.no_grad(), record_spikes(ours) as spikes:
        logits = ours(x)
    assert torch.equal(logits, expected)
    assert set(spikes) == set(upstream_spikes) and len(spikes) == 35
    for name, s in spikes.items():
        assert torch.equal(upstream_spikes[name].reshape(s.shape), s), name
    assert all(0 < s.mean() < 1 for s in spikes.values())  # every layer fires, none saturates


def test_token_qk_attention_masks_k_by_the_lif_of_each_heads_channel_count():
    """Hand-computed: 2 heads of 2 channels, 1 token, T = 2; attn_lif (tau 2, threshold 0.5) on the Q count."""
    from snncompile.nn.qkformer import TokenQKAttention
    attn = TokenQKAttention(4, 2)
    q = torch.tensor([[1., 1., 0., 0.], [0., 0., 1., 0.]]).reshape(2, 1, 4, 1)  # counts: head0 2, 0; head1 0, 1
    a = attn.attn_lif(q.reshape(2, 1, 2, 2, 1).sum(3, keepdim=True))
    # head0: h = 1 -> spike, then h = 0 -> none; head1: h = 0, then h = 0.5 >= 0.5 -> spike
    assert a.flatten().tolist() == [1, 0, 0, 1]
    k = torch.ones(2, 1, 4, 1, 1)
    op = HeadTokenMask(heads=2)
    assert op.run(k, a.reshape(2, 1, 2, 1, 1)).flatten().tolist() == [1, 1, 0, 0, 0, 0, 1, 1]
    assert HeadChannelSum(heads=2).run(q.reshape(2, 1, 4, 1, 1)).flatten().tolist() == [2, 0, 0, 1]


def test_a_channel_count_is_one_attention_accumulate_per_q_spike():
    from snncompile.ir import Graph, Node
    from snncompile.ir.ops import Input, Output
    from snncompile.ir.types import SPIKE
    from snncompile.report.counts import count_activity
    q = torch.tensor([[1, 1, 0], [1, 0, 0]]).reshape(1, 1, 2, 1, 3).float()  # 1 head, d = 2, tokens: 2, 1, 0 spikes
    g = Graph(nodes={"q": Node(Input(shape=(2, 1, 3), dtype=SPIKE)), "cs": Node(HeadChannelSum(heads=1), ("q",)),
                     "out": Node(Output(), ("cs",))}, outputs=("out",), time_steps=1).validate()
    c = count_activity(g, {"q": q}).attention["cs"]
    assert c.accumulates == (3,) and c.connections == 2 * 3  # every channel of every token


def test_upstreams_batch_coupling_is_kept_out_each_sample_gets_its_own_logits():
    """Upstream's stage-3 proj_lif steps over [T*B]: at batch 2 it differs from two batch-1 runs; ours does not."""
    cfg, reference, ours = pair(CIFAR10, 16)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    coupled: dict = {}
    up.run(reference, x, coupled)
    alone = [{} for _ in range(2)]
    singles = torch.cat([up.run(reference, x[i:i + 1], alone[i]) for i in range(2)])
    name = "stage3.1.ssa.proj_lif"
    T, C = cfg.time_steps, cfg.dim
    per_sample = torch.stack([alone[i][name].reshape(T, C, -1) for i in range(2)], 1)
    assert not torch.equal(coupled[name].reshape(T, 2, C, -1), per_sample)  # the membrane crossed samples
    with torch.no_grad(), record_spikes(ours) as spikes:
        logits = ours(x)
    assert torch.equal(spikes[name].reshape(T, 2, C, -1), per_sample)
    torch.testing.assert_close(logits, singles, rtol=0, atol=1e-5)


def test_config_problems_name_the_qkformer_constraints():
    problems = ModelConfig(backbone="qkformer-imagenet", dim=64, num_heads=3, layers=2, img_size=40).problems()
    assert any(p.startswith("num_heads: QKFormer's first stage width dim/4 = 16") for p in problems)
    assert any(p.startswith("img_size: 40 is not divisible by 16") for p in problems)
    assert any(p.startswith("layers: qkformer-imagenet has 3 blocks before stage 3") for p in problems)
    assert ModelConfig(**CIFAR10, img_size=32, chunk_size=3).problems() == []  # STAtten's chunk check is SDT's


@pytest.mark.parametrize("name, millions", [("qkformer-cifar10-4-384", 6.71), ("qkformer-imagenet-10-384", 16.47),
                                           ("qkformer-imagenet-10-512", 29.08), ("qkformer-imagenet-10-768", 64.96)])
def test_the_upstream_family_configs_build_at_the_published_sizes_and_export(name, millions):
    """The zoo configs of upstream's models: the parameter counts of QKFormer's README (ImageNet HST-10-384/512/768;
    CIFAR-10 as cifar10.yml builds it), and each exports with Token-QK attention in stages 1-2 and SSA in 3."""
    entry = find_entry(name)
    torch.manual_seed(0)
    model = build_model(entry.model).eval()
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == millions
    graph = export(model)
    assert graph.validate() is graph and graph.time_steps == entry.model.time_steps == 4
    stage1, stage2, stage3 = stage_depths(entry.model)
    found = [n.op.type_name() for n in graph.nodes.values()]
    assert found.count("HeadTokenMask") == stage1 + stage2 and found.count("BlockLinearAttention") == stage3


# -- upstream checkpoint files ------------------------------------------------------------------

def _optimizer_state(model: nn.Module) -> dict:
    """An AdamW ``state_dict`` as the scripts save it (written by hand: building an optimizer imports dynamo)."""
    state = {i: {"step": torch.tensor(10.0), "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.ones_like(p)}
             for i, p in enumerate(model.parameters())}
    return {"state": state, "param_groups": [{"lr": 1e-3, "weight_decay": 0.05, "params": list(state)}]}


def write_cifar10_file(path, net: nn.Module, **args):
    """As QKFormer's cifar10/train.py (timm CheckpointSaver) writes it."""
    fields = dict(model="vitsnn", dim=64, num_heads=8, layer=4, depths=4, mlp_ratio=4, time_step=4, num_classes=10,
                  img_size=32, patch_size=4, dataset="torch/cifar10")
    fields.update(args)
    torch.save({"epoch": 12, "arch": fields["model"], "state_dict": net.state_dict(),
                "optimizer": _optimizer_state(net), "version": 2, "args": argparse.Namespace(**fields),
                "amp_scaler": {}, "metric": np.float64(91.5)}, path)
    return path


def write_imagenet_file(path, net: nn.Module, **args):
    """As QKFormer's imagenet/train.py (util/misc.py::save_model, MAE style) writes it."""
    fields = dict(model="QKFormer_4_64", time_step=4, nb_classes=1000, input_size=32)
    fields.update(args)
    torch.save({"model": net.state_dict(), "optimizer": _optimizer_state(net), "epoch": 299,
                "scaler": {"scale": 65536.0}, "args": argparse.Namespace(**fields)}, path)
    return path


def test_a_cifar10_timm_checkpoint_loads_as_qkformer_with_its_args(tmp_path):
    cfg, reference, _ = pair(CIFAR10, 16)
    path = write_cifar10_file(tmp_path / "model_best.pth.tar", reference, num_heads=4, img_size=16)
    loaded = snncompile.load_checkpoint(path)
    assert loaded.config == cfg and loaded.source == "upstream"
    assert any("args.num_heads 4 is ignored" in n for n in loaded.notes)  # upstream always builds 8 heads
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    assert torch.equal(loaded.model(x), up.run(reference, x))
    assert snncompile.load_checkpoint(path, config={"time_steps": 2}).config.time_steps == 2


def test_an_imagenet_checkpoint_needs_the_heads_its_edited_factory_hides(tmp_path):
    cfg, reference, _ = pair(IMAGENET, 32)
    path = write_imagenet_file(tmp_path / "checkpoint-299.pth", reference)
    with pytest.raises(CheckpointError, match=r"cannot tell the model's num_heads .* config=\{'num_heads': \.\.\.\}"):
        snncompile.load_checkpoint(path)
    loaded = snncompile.load_checkpoint(path, config={"num_heads": 8})
    assert loaded.config == cfg
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    assert torch.equal(loaded.model(x), up.run(reference, x))


def test_an_imagenet_factory_name_gives_heads_and_must_match_the_weights(tmp_path):
    _, reference, _ = pair(IMAGENET, 32)
    path = write_imagenet_file(tmp_path / "checkpoint.pth", reference, model="QKFormer_10_384")
    with pytest.raises(CheckpointError, match="args.model 'QKFormer_10_384' builds dim=384, the weights have dim=64"):
        snncompile.load_checkpoint(path)
    from snncompile.zoo.upstream_qkformer import _guess_imagenet
    state = {k: v for k, v in build_model(ModelConfig(**{**IMAGENET, "dim": 384, "layers": 10, "num_heads": 6},
                                                      img_size=32)).state_dict().items()}
    guess = _guess_imagenet(path, {}, {"model": "QKFormer_10_384", "time_step": 4, "input_size": 224}, state, [])
    assert {k: guess.fields[k] for k in ("dim", "num_heads", "layers", "time_steps", "img_size")} == \
        {"dim": 384, "num_heads": 6, "layers": 10, "time_steps": 4, "img_size": 224}


# -- the IR and the integer graph ---------------------------------------------------------------

@pytest.mark.parametrize("sizes, img_size", [(CIFAR10, 16), (IMAGENET, 64)], ids=["cifar10", "imagenet"])
def test_the_export_reproduces_every_spike_and_the_logits_to_float_rounding(sizes, img_size):
    _, _, ours = pair(sizes, img_size)
    graph = export(ours)
    types = {n.op.type_name() for n in graph.nodes.values()}
    assert {"HeadChannelSum", "HeadTokenMask", "BlockLinearAttention", "MaxPool2d"} <= types
    x = torch.rand(3, 3, img_size, img_size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad(), record_spikes(ours) as spikes:
        logits = ours(x)
    values = run_graph(graph, {"input": x}, keep="all")
    for name, s in spikes.items():
        assert torch.equal(values[name].reshape(s.shape), s), name
    # upstream averages over T before the head, the graph after it (the quantised readout's order)
    torch.testing.assert_close(values[graph.outputs[0]], logits, rtol=0, atol=1e-5)


# -- end to end on a tiny config ----------------------------------------------------------------

TINY = {"qkformer-cifar10": (8, 3), "qkformer-imagenet": (16, 4)}  # backbone -> (img_size, layers)
_COMPILED: dict = {}


def tiny_compiled(backbone: str):
    """A tiny random model of ``backbone`` (stages 4/8/16 wide, 2 heads, T = 2), its float graph, the compiled
    integer graph (calibrated on 8 random images, placed for loihi2) and 4 test images (cached per module)."""
    if backbone not in _COMPILED:
        from snncompile.job import CompileRecord, ModelSource, steps
        img, layers = TINY[backbone]
        cfg = ModelConfig(backbone=backbone, dim=16, num_heads=2, layers=layers, img_size=img, time_steps=2)
        graph = export(randomise_(build_model(cfg), 1))
        g = torch.Generator().manual_seed(1)
        train = [(torch.rand(3, img, img, generator=g), 0) for _ in range(8)]
        compiled = steps.compile_graph(graph, train, CompileRecord(ModelSource("tiny"), "loihi2", len(train)))
        _COMPILED[backbone] = graph, compiled, torch.rand(4, 3, img, img, generator=g)
    return _COMPILED[backbone]


@pytest.mark.parametrize("backbone", TINY)
def test_the_integer_graph_places_within_the_design_rules_and_is_counted_and_priced(backbone):
    from snncompile.job import steps
    from snncompile.targets import load_target
    graph, compiled, x = tiny_compiled(backbone)
    integer, chip = compiled.graph, load_target("loihi2")
    assert steps.check_rules(compiled, chip) == []
    # Token-QK attention stays integer: channel count -> fraction bits -> Loihi LIF -> AND mask
    for name in (n for n in integer.nodes if n.endswith("tssa.attn_lif")):
        shift = integer.nodes[name].inputs[0]
        assert integer.op(name).type_name() == "LoihiLIF" and integer.op(shift).type_name() == "IntShift"
        assert integer.op(integer.nodes[shift].inputs[0]).type_name() == "HeadChannelSum"
    assert {"HeadTokenMask", "SpikeScores", "MaxPool2d"} <= {n.op.type_name() for n in integer.nodes.values()}
    counts = steps.count(compiled, chip, x)
    totals = counts.table["totals"]
    assert totals["attention_accumulates"] > 0 and totals["spikes"] > 0
    assert totals["MACs"] > 0  # SEW residuals are spike counts: graded inputs to the next synapses
    estimate = steps.price(counts, chip)
    assert estimate.energy["loihi2"].total_pj > 0 and estimate.latency.per_sample_ns > 0
    rows = steps.compare_spikes(graph, integer, x)
    assert len(rows) == len([n for n in graph.nodes if graph.op(n).ROLE == "neuron"])
    assert min(r["agreement"] for r in rows) > 0.95
    assert all(r["integer_rate"] > 0 for r in rows if r["float_rate"] > 0)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("granularity", ["per_op", "fused"])
@pytest.mark.parametrize("backbone", TINY)
def test_the_tiny_integer_graph_on_lava_equals_the_reference_simulator(backbone, granularity):
    pytest.importorskip("lava.magma")
    from snncompile.backends.lava.runner import run_lava_session
    from snncompile.sim.dataset import graph_feeds
    _, compiled, x = tiny_compiled(backbone)
    integer = compiled.graph
    feeds = graph_feeds(integer, x[:2])
    run = run_lava_session(integer, feeds, granularity=granularity, expose="all" if granularity == "fused" else None,
                           timeout=600)
    ref = run_graph(run.plan.graph, feeds, keep="all")  # per_op: the graph with its synapse biases moved
    assert set(integer.outputs) <= set(run.values) and len(run.values) > 20
    for name, value in run.values.items():
        assert torch.equal(value.to(torch.float64), ref[name].to(torch.float64)), name
    assert any(ref[n].sum() > 0 for n in run.values if n.endswith("attn_lif"))


# -- the shipped digits model -------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_shipped_digits_model_keeps_its_accuracy_as_integers_and_runs_on_lava_as_the_reference():
    """qkformer-digits (360 test digits, calibrated on 64 training samples): its graph has the torch model's spikes;
    the integer graph within one point of the float one; 8 test digits on Lava (fused) equal to the reference
    simulator, every node."""
    pytest.importorskip("lava.magma")
    from snncompile.backends.lava.runner import run_lava_session
    from snncompile.sim.dataset import evaluate_graph
    from zoo_lowering import lowered_zoo_model
    model = lowered_zoo_model("qkformer-digits", calibration=64)
    torch_model = snncompile.load_checkpoint(find_entry("qkformer-digits").checkpoint).model
    x = torch.stack([model.test[i][0] for i in range(24)])
    with torch.no_grad(), record_spikes(torch_model) as spikes:
        logits = torch_model(x)
    values = run_graph(model.graph, {"input": x}, keep="all")
    assert all(torch.equal(values[n].reshape(s.shape), s) for n, s in spikes.items())
    torch.testing.assert_close(values[model.graph.outputs[0]], logits, rtol=0, atol=1e-5)
    float_acc = evaluate_graph(model.graph, model.test, progress=False).accuracy
    int_acc = evaluate_graph(model.integer, model.test, progress=False).accuracy
    print(f"\nqkformer-digits: float {float_acc:.4f} integer {int_acc:.4f} ({model.integer.time_steps} steps)")
    assert float_acc >= 0.95 and float_acc - int_acc <= 0.01
    feeds = model.test_feeds(8)
    ref = run_graph(model.integer, feeds, keep="all")
    run = run_lava_session(model.integer, feeds, granularity="fused", expose="all", timeout=600)
    for name, value in run.values.items():
        assert torch.equal(value.to(torch.float64), ref[name].to(torch.float64)), name

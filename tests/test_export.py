"""Structural torch -> IR export (``snncompile.frontend.export``) and graph validation.

Every exported graph must reproduce its torch model bit for bit in the float interpreter: the logits
(``torch.equal``) and the spikes of every neuron module (node name = module path). Models are "live":
BN statistics come from a train-mode pass and the Q/K/V BN biases are raised, so neurons fire at rates
strictly between 0 and 1 (asserted), otherwise equal spikes would prove nothing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from snncompile import load_checkpoint
from snncompile.config import ATTENTION_MODES, DataConfig, ModelConfig
from snncompile.data import load_dataset
from snncompile.frontend import ExportError, export
from snncompile.ir import FLOAT32, SPIKE, Graph, GraphError, Node, TensorType, run_graph
from snncompile.ir.ops import (LIF, Add, BatchNorm, BlockLinearAttention, Conv2d, Input, Linear, LUTAttention,
                               MaxPool2d, Output, Repeat, SpikeColumnSum, SumPool2d, TemporalWindow, TernaryLIF,
                               TimeMean)
from snncompile.nn.neurons import MultiStepLIF, MultiStepParametricLIF
from snncompile.nn.record import record_spikes
from snncompile.nn.sdt import MLP, Block, SpikeDrivenTransformer, SpikingPatchSplitting, SpikingSelfAttention
from snncompile.nn.seq import PerStep

ROOT = Path(__file__).resolve().parents[1]
IMG, T = 16, 4


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------

def small_cfg(mode="STAtten", dvs=False, **kw) -> ModelConfig:
    base = dict(attention=mode, img_size=IMG, in_channels=2 if dvs else 3, num_classes=10, dim=32, num_heads=4,
                layers=2, time_steps=T, chunk_size=2, pooling_stat="0011", dvs_mode=dvs)
    base.update(kw)
    return ModelConfig(**base)


def model_input(cfg: ModelConfig, batch=3, seed=1, events=None) -> torch.Tensor:
    """The torch model's input: ``[B, C, H, W]`` static or ``[B, T, C, H, W]`` events."""
    g = torch.Generator().manual_seed(seed)
    events = cfg.dvs_mode if events is None else events
    shape = (batch, cfg.time_steps) if events else (batch,)
    return torch.rand(*shape, cfg.in_channels, cfg.img_size, cfg.img_size, generator=g) * 2


def make_live(model: nn.Module, x: torch.Tensor, seed=0) -> nn.Module:
    """Randomise the learnable neuron/attention parameters, raise Q/K/V BN biases, set BN stats, eval."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, MultiStepParametricLIF):
                m.w.fill_(float(torch.randn((), generator=g)) * 0.5)
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None  # cumulative average over the one pass
                if name.split(".")[-1] in ("q_bn", "k_bn", "v_bn"):
                    m.bias.fill_(1.0)
            if isinstance(m, SpikingSelfAttention) and m.mode == "DS2TA":
                m.lut.table.add_(torch.randn(m.lut.table.shape, generator=g) * 0.3)  # a non-identity LUT
                for w in ("q", "k", "v", "proj"):
                    getattr(m, f"{w}_window").log_tau.add_(float(torch.randn((), generator=g)) * 0.3)
        model.train()
        model(x)
    return model.eval()


def live_model(mode="STAtten", dvs=False, seed=0, **kw) -> SpikeDrivenTransformer:
    torch.manual_seed(seed)
    model = SpikeDrivenTransformer(small_cfg(mode, dvs, **kw))
    return make_live(model, model_input(model.cfg, batch=4, seed=seed + 1000), seed)


def assert_matches(model: nn.Module, graph: Graph, x: torch.Tensor, feed: torch.Tensor) -> dict:
    """Logits and every neuron's spikes equal; returns the torch spikes by module path."""
    with torch.no_grad(), record_spikes(model) as spikes:
        logits = model(x)
    values = run_graph(graph, {"input": feed}, keep="all")
    assert torch.equal(values["output"], logits)
    neuron_nodes = {n for n, node in graph.nodes.items() if isinstance(node.op, LIF)}
    assert neuron_nodes == set(spikes), "neuron nodes and neuron modules differ"
    for name, s in spikes.items():
        v = values[name]
        # same elements in the same row-major order; SDSA's mask neuron is [T,B,H,1,d] in torch, [T,B,C] here
        assert v.numel() == s.numel() and torch.equal(v, s.reshape(v.shape)), name
    return dict(spikes)


def assert_live(spikes: dict, names) -> None:
    for name in names:
        rate = spikes[name].abs().mean().item()
        assert 0 < rate < 1, f"{name} fires at rate {rate}: the model is not live"


def check_zoo(model: SpikeDrivenTransformer, events=None, seed=1) -> tuple[Graph, dict]:
    cfg = model.cfg
    events = cfg.dvs_mode if events is None else events
    graph = export(model, events=None if events == cfg.dvs_mode else events)
    assert graph.validate() is graph
    x = model_input(cfg, seed=seed, events=events)
    spikes = assert_matches(model, graph, x, x.transpose(0, 1) if events else x)
    return graph, spikes


def key_neurons(cfg: ModelConfig) -> list[str]:
    core = "talking_heads_lif" if cfg.attention == "SDT" else "attn_lif"
    v = "v_ternary" if cfg.attention == "A2OS2A" else "v_lif"
    last = f"block.{cfg.layers - 1}"
    return ["patch_embed.proj_lif", "patch_embed.proj_lif3", "block.0.attn.q_lif", f"block.0.attn.{v}",
            f"block.0.attn.{core}", f"{last}.attn.{core}", f"{last}.mlp.fc1_lif", "head_lif"]


# ------------------------------------------------------------------------------------------------
# the zoo model: every attention mode x static/dvs x lif/plif, and variants
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spike_mode", ["lif", "plif"])
@pytest.mark.parametrize("dvs", [False, True], ids=["static", "dvs"])
@pytest.mark.parametrize("mode", ATTENTION_MODES)
def test_zoo_model_exports_and_matches_torch(mode, dvs, spike_mode):
    model = live_model(mode, dvs, spike_mode=spike_mode)
    graph, spikes = check_zoo(model)
    assert_live(spikes, key_neurons(model.cfg))
    logits = run_graph(graph, {"input": model_input(model.cfg, events=dvs).transpose(0, 1) if dvs
                               else model_input(model.cfg)})["output"]
    assert not torch.equal(logits[0], logits[1]), "different inputs give equal logits: dead model"


@pytest.mark.parametrize("mode,kw", [
    ("STAtten", dict(tet=True)),
    ("SDT", dict(tet=True, dvs=True, spike_mode="plif")),
    ("STAtten", dict(mlp_ratio=1)),
    ("SDT", dict(mlp_ratio=1, spike_mode="plif")),
    ("A2OS2A", dict(mlp_ratio=1, dvs=True, tet=True)),
    ("DS2TA", dict(mlp_ratio=1, dvs=True)),
    ("STAtten", dict(pooling_stat="1111")),
    ("SSA", dict(pooling_stat="0101", dvs=True)),
    ("SDT", dict(pooling_stat="1000")),
    ("STAtten", dict(chunk_size=4, dvs=True)),
    ("STAtten", dict(chunk_size=1, layers=1)),
    ("DS2TA", dict(ds2ta_window=2, layers=1, spike_mode="plif")),
], ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={x}" for k, x in v.items()))
def test_zoo_variants(mode, kw):
    kw = dict(kw)
    model = live_model(mode, kw.pop("dvs", False), **kw)
    graph, spikes = check_zoo(model)
    assert_live(spikes, key_neurons(model.cfg))
    types = graph.types()
    cfg = model.cfg
    if cfg.tet:
        assert "time_mean" not in graph.nodes and types["output"] == TensorType((10,), FLOAT32, "stream")
    else:
        assert isinstance(graph.op("time_mean"), TimeMean) and types["output"].time == "static"
    for i in range(cfg.layers):
        assert (f"block.{i}.mlp.inner_add" in graph.nodes) == (cfg.mlp_ratio == 1)
    pools = [n for n in graph.nodes if n.startswith("patch_embed.maxpool")]
    assert len(pools) == cfg.pooling_stat.count("1")
    assert types["block.0.attn.q_lif"].shape == (cfg.dim, cfg.token_grid, cfg.token_grid)


def test_zoo_input_forms_static_and_events():
    """A static-mode model also takes events and a DVS-mode model static images: ``events`` picks."""
    static_model, dvs_model = live_model("STAtten"), live_model("SDT", dvs=True)
    g_static, _ = check_zoo(static_model)
    assert g_static.op("input").time == "static" and g_static.nodes["input.repeat"].inputs == ("input",)
    assert g_static.op("input.repeat").time_steps == T
    g_events, _ = check_zoo(static_model, events=True)
    assert g_events.op("input").time == "stream" and "input.repeat" not in g_events.nodes
    assert g_events.nodes["patch_embed.proj_conv"].inputs == ("input",)
    assert export(dvs_model).op("input").time == "stream"  # default follows cfg.dvs_mode
    check_zoo(dvs_model, events=False)


def test_zoo_graph_structure_and_parameters():
    """Node types and fields follow the modules (spot checks of each family)."""
    model = live_model("STAtten", dvs=True, spike_mode="plif")
    cfg, g = model.cfg, export(model)
    assert isinstance(g.op("patch_embed.proj_conv"), Conv2d) and isinstance(g.op("patch_embed.proj_bn"), BatchNorm)
    np.testing.assert_array_equal(g.op("patch_embed.proj_conv").weight, model.patch_embed.proj_conv.weight.detach())
    np.testing.assert_array_equal(g.op("block.0.attn.q_bn").running_var, model.block[0].attn.q_bn.running_var)
    assert g.op("patch_embed.maxpool2").mode == "or" and g.op("patch_embed.maxpool3").mode == "max"
    assert g.nodes["patch_embed.proj_lif3"].inputs == ("patch_embed.maxpool3",)
    assert g.nodes["patch_embed.add"].inputs == ("patch_embed.maxpool3", "patch_embed.rpe_bn")
    core = g.op("block.0.attn.core")
    assert isinstance(core, BlockLinearAttention)
    assert (core.heads, core.block, core.scale, core.scale_position) == (4, 2, cfg.statten_scale, "kv")
    assert g.nodes["block.0.attn.core"].inputs == tuple(f"block.0.attn.{n}_lif.erode" for n in "qkv")
    assert g.nodes["block.0.attn.mix_mul"].inputs == ("block.0.attn.attn_lif", "block.0.attn.shortcut_lif.erode")
    assert g.nodes["block.0.attn.add"].inputs == ("patch_embed.add", "block.0.attn.proj_bn")
    erode = g.op("block.0.attn.k_lif.erode")
    assert (erode.kernel, erode.stride, erode.padding, erode.mode) == ((3, 3), (1, 1), (1, 1), "or")
    fc1 = g.op("block.0.mlp.fc1_lif")  # plif: multiply by the float32 sigmoid(w)
    assert fc1.leak_encoding == "multiply_by_rate" and fc1.leak == float(torch.sigmoid(model.block[0].mlp.fc1_lif.w))
    q = g.op("block.0.attn.q_lif")  # STAtten's attention neurons stay LIF under plif
    assert (q.leak, q.leak_encoding, q.v_threshold, q.threshold_cmp, q.reset) == \
        (2.0, "divide_by_tau", 1.0, ">=", "hard")
    assert g.op("block.0.attn.attn_lif").v_threshold == 0.5
    assert isinstance(g.op("head"), Linear) and isinstance(g.op("output"), Output)
    entry = g.history[-1]
    assert entry.name == "export" and entry.options["input"] == "stream"
    assert entry.options["dropped"] == ("block.0.attn.talking_heads.weight", "block.1.attn.talking_heads.weight")


@pytest.mark.parametrize("mode", ["SSA", "A2OS2A", "DS2TA", "SDT"])
def test_zoo_attention_nodes(mode):
    model = live_model(mode, dvs=True)
    g, attn, cfg = export(model), model.block[0].attn, model.cfg
    if mode == "SSA":
        core = g.op("block.0.attn.core")
        assert (core.block, core.scale, core.scale_position) == (1, cfg.ssa_scale, "out")
    elif mode == "A2OS2A":
        core = g.op("block.0.attn.core")
        assert (core.block, core.scale, core.scale_position) == (1, 1.0, "out")
        assert isinstance(g.op("block.0.attn.v_ternary"), TernaryLIF)
        assert g.types()["block.0.attn.v_ternary"].dtype.kind == "ternary"
        assert g.op("block.0.attn.v_ternary.erode").mode == "max" and g.op("block.0.attn.k_relu.erode").mode == "max"
    elif mode == "DS2TA":
        lut = g.op("block.0.attn.lut")
        assert isinstance(lut, LUTAttention) and lut.scale == cfg.ds2ta_scale
        np.testing.assert_array_equal(lut.table, attn.lut.table.detach())
        for w in ("q", "k", "v", "proj"):
            op = g.op(f"block.0.attn.{w}_window")
            assert isinstance(op, TemporalWindow) and op.weights.dtype == np.float32
            np.testing.assert_array_equal(op.weights, getattr(attn, f"{w}_window").weights().detach())
    else:
        assert isinstance(g.op("block.0.attn.column_sum"), SpikeColumnSum) and g.op("block.0.attn.column_sum").erode
        assert g.op("block.0.attn.mask").erode and "block.0.attn.q_lif.erode" not in g.nodes
        assert g.op("block.0.attn.talking_heads_lif").v_threshold == 0.5


def test_shipped_checkpoint_matches_on_real_digits():
    loaded = load_checkpoint(ROOT / "models" / "statten_digits.pt")
    data = load_dataset(DataConfig(dataset="digits"), loaded.config, "test")
    x = torch.stack([data[i][0] for i in range(48)])
    y = torch.stack([data[i][1] for i in range(48)])
    graph = export(loaded.model)
    spikes = assert_matches(loaded.model, graph, x, x)
    assert_live(spikes, key_neurons(loaded.config))
    logits = run_graph(graph, {"input": x})["output"]
    assert (logits.argmax(1) == y).float().mean() > 0.9


# ------------------------------------------------------------------------------------------------
# user models: nn.Sequential chains
# ------------------------------------------------------------------------------------------------

def conv_net(bare: bool) -> nn.Sequential:
    """A small conv SNN; ``bare`` puts the stateless layers directly in the Sequentials."""
    torch.manual_seed(3)
    wrap = (lambda *layers: nn.Sequential(*layers)) if bare else (lambda *layers: PerStep(*layers))
    return nn.Sequential(
        wrap(nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8)),
        MultiStepLIF(),
        wrap(nn.MaxPool2d(2)),
        nn.Sequential(wrap(nn.Conv2d(8, 8, 3, padding="same", bias=False), nn.BatchNorm2d(8), nn.Identity()),
                      MultiStepParametricLIF(v_threshold=0.8)),
        wrap(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 32), nn.BatchNorm1d(32), nn.Dropout(0.3)),
        MultiStepLIF(tau=3.0),
        nn.Linear(32, 10),
    )


def test_sequential_conv_net_matches_torch():
    model = make_live(conv_net(bare=False), torch.rand(T, 4, 2, IMG, IMG) * 2)
    with torch.no_grad():
        model[4][3].bias.fill_(1.5)  # BatchNorm1d: drive the tau-3 neuron above threshold
    graph = export(model, input_shape=(2, IMG, IMG), time_steps=T)
    x = torch.rand(T, 3, 2, IMG, IMG, generator=torch.Generator().manual_seed(5)) * 2
    spikes = assert_matches(model, graph, x, x)
    assert_live(spikes, ["1", "3.1", "5"])
    assert graph.op("input").time == "stream" and graph.types()["output"] == TensorType((10,), FLOAT32)
    assert graph.op("2.0").mode == "or" and graph.op("3.1").leak_encoding == "multiply_by_rate"
    assert graph.op("5").leak == 3.0 and graph.op("3.1").v_threshold == pytest.approx(0.8)
    assert graph.op("3.0.0").padding == (1, 1) and graph.op("3.0.0").bias is None
    assert isinstance(graph.op("4.0.sum"), SumPool2d) and graph.op("4.0").scale == 0.25  # exact average
    # bare stateless layers read per timestep: the same graph as with PerStep
    bare = conv_net(bare=True)
    bare.load_state_dict(model.state_dict())
    bare_graph = export(bare.eval(), input_shape=(2, IMG, IMG), time_steps=T)
    assert list(bare_graph.nodes) == list(graph.nodes)
    assert torch.equal(run_graph(bare_graph, {"input": x})["output"], run_graph(graph, {"input": x})["output"])


def test_sequential_of_zoo_blocks_static_input():
    cfg = small_cfg("SDT", spike_mode="plif", mlp_ratio=1)
    torch.manual_seed(4)
    model = nn.Sequential(SpikingPatchSplitting(cfg), Block(cfg),
                          nn.Sequential(SpikingSelfAttention(small_cfg("A2OS2A")), MLP(small_cfg("DS2TA"))),
                          PerStep(nn.MaxPool2d(2, 2), nn.ReLU(), nn.Flatten()), MultiStepLIF(), nn.Linear(32 * 4, 10))
    images = torch.rand(3, 3, IMG, IMG, generator=torch.Generator().manual_seed(6)) * 2
    repeat = lambda x: x.unsqueeze(0).repeat(T, 1, 1, 1, 1)  # noqa: E731
    model = make_live(model, repeat(torch.rand(4, 3, IMG, IMG) * 2))
    graph = export(model, input_shape=(3, IMG, IMG), time_steps=T, events=False)
    assert graph.op("input").time == "static" and isinstance(graph.op("input.repeat"), Repeat)
    spikes = assert_matches(model, graph, repeat(images), images)
    assert_live(spikes, ["0.proj_lif", "1.attn.q_lif", "1.attn.talking_heads_lif", "2.0.attn_lif",
                         "2.0.v_ternary", "2.1.fc1_lif", "4"])
    assert graph.op("3.0").mode == "max"  # on a real membrane stream
    assert "1.mlp.inner_add" in graph.nodes
    assert graph.history[-1].options["dropped"] == ("1.attn.talking_heads.weight", "2.0.talking_heads.weight")


def test_shared_layer_runs_twice():
    """A module instance at two places of a Sequential runs twice in torch, so it becomes two nodes."""
    torch.manual_seed(7)
    lif, lin = MultiStepLIF(v_threshold=0.5), nn.Linear(6, 6)
    with torch.no_grad():
        lin.bias.fill_(0.4)
    model = nn.Sequential(lin, lif, lin, lif)
    graph = export(model, input_shape=(6,), time_steps=T)
    assert [n for n, node in graph.nodes.items() if isinstance(node.op, LIF)] == ["1", "3"]
    x = torch.randn(T, 3, 6) * 2
    out = run_graph(graph, {"input": x}, keep="all")
    assert torch.equal(out["output"], model(x)) and 0 < out["1"].mean() < 1 and 0 < out["3"].mean() < 1


def test_single_layer_models_export():
    graph = export(MultiStepLIF(tau=4.0), input_shape=(5,), time_steps=3)
    assert list(graph.nodes) == ["input", "model", "output"] and graph.op("model").leak == 4.0
    x = torch.randn(3, 2, 5) * 3
    assert torch.equal(run_graph(graph, {"input": x})["output"], MultiStepLIF(tau=4.0)(x))


# ------------------------------------------------------------------------------------------------
# refusals: every unsupported module named by path and class, all at once
# ------------------------------------------------------------------------------------------------

class Custom(nn.Module):
    def forward(self, x):
        return x * 2


class MyConv(nn.Conv2d):
    def forward(self, x):
        return super().forward(x) + 1


def test_unsupported_modules_all_named_in_one_error():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Softmax(dim=1),
                          nn.Sequential(MultiStepLIF(), Custom(), nn.Dropout(0.5)),
                          nn.AvgPool2d(3), MyConv(4, 4, 1), PerStep(nn.Conv2d(4, 4, 1), MultiStepLIF()),
                          nn.Flatten(start_dim=2))
    model[2][2].train()
    with pytest.raises(ExportError) as err:
        export(model, input_shape=(2, 8, 8), time_steps=T)
    text = str(err.value)
    for expected in ["cannot export model.1 (torch.nn.Softmax): not a supported layer",
                     "model.2.1 (test_export.Custom): not a supported layer",
                     "model.2.2 (torch.nn.Dropout): in training mode",
                     "model.3 (torch.nn.AvgPool2d): a window of 9 elements",
                     "model.4 (test_export.MyConv): not a supported layer",
                     "model.5.1 (snncompile.nn.neurons.MultiStepLIF): inside PerStep",
                     "model.6 (torch.nn.Flatten): Flatten(start_dim=2, end_dim=-1)",
                     "supported: torch.nn.Sequential"]:
        assert expected in text
    assert len(err.value.problems) == 7 and isinstance(err.value, ValueError)
    assert "model.0 " not in text and "model.2.0 " not in text


def test_training_mode_and_missing_shape_are_refused():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), MultiStepLIF())  # train mode by default
    with pytest.raises(ExportError, match=r"model\.1 \(torch\.nn\.BatchNorm2d\): in training mode"):
        export(model, input_shape=(2, 8, 8), time_steps=T)
    with pytest.raises(ExportError, match="needs input_shape"):
        export(model.eval())
    with pytest.raises(ExportError, match=r"model\.2 \(torch\.nn\.Linear\): Linear expects last axis 7"):
        export(nn.Sequential(nn.Flatten(), MultiStepLIF(), nn.Linear(7, 2)), input_shape=(2, 3), time_steps=T)


def test_zoo_model_refusals():
    model = live_model("SSA")
    model.block[1].attn.q_lif = nn.Softmax(dim=1)
    model.head_lif = Custom()
    with pytest.raises(ExportError) as err:
        export(model)
    assert "model.block.1.attn.q_lif (torch.nn.Softmax)" in str(err.value)
    assert "model.head_lif (test_export.Custom)" in str(err.value)
    with pytest.raises(ExportError, match="in training mode"):
        export(live_model("SDT").train())
    with pytest.raises(ExportError, match="time_steps=8 differs"):
        export(live_model("SDT"), time_steps=8)

    class Subclass(SpikeDrivenTransformer):
        def forward(self, x):
            return super().forward(x) * 2
    with pytest.raises(ExportError, match=r"model \(test_export\..*Subclass\): not a supported layer"):
        export(Subclass(small_cfg()).eval())


# ------------------------------------------------------------------------------------------------
# graph validation: every problem at once, each naming its node
# ------------------------------------------------------------------------------------------------

def _bn(c=4, var=1.0):
    one = np.ones(c, np.float32)
    return BatchNorm(weight=one, bias=0 * one, running_mean=0 * one, running_var=var * one)


def test_graph_problems_reported_all_at_once():
    conv = Conv2d(weight=np.zeros((4, 2, 3, 3), np.float32), padding=(1, 1))
    nodes = {
        "x": Node(Input(shape=(2, 8, 8))),
        "conv": Node(conv, ("x",)),
        "dangling": Node(LIF(), ("nowhere",)),                                     # dangling edge
        "arity": Node(Add(), ()),                                                  # needs >= 1 input
        "mul": Node(MaxPool2d(), ("conv", "x")),                                   # takes 1 input
        "shape": Node(Linear(weight=np.zeros((3, 5), np.float32)), ("conv",)),     # last axis 8 != 5
        "params": Node(_bn(var=-1.0), ("conv",)),                                  # negative variance
        "lif": Node(LIF(leak=0.0), ("conv",)),                                     # tau 0
        "a": Node(Add(), ("conv", "c")),                                           # cycle a -> b -> c -> a
        "b": Node(LIF(), ("a",)),
        "c": Node(Add(), ("b",)),
        "after": Node(LIF(), ("c",)),                                              # behind the cycle: no type
        "or": Node(MaxPool2d(mode="or"), ("conv",)),                               # 'or' on real values
        "rep": Node(Repeat(time_steps=2), ("x",)),                                 # x is a stream; T differs
        "out": Node(Output(), ("lif",)),
    }
    graph = Graph(nodes, outputs=("out", "missing"), time_steps=T)
    problems = graph.problems()
    expected = ["'dangling' (LIF): input 'nowhere' does not exist",
                "'arity' (Add) needs at least one input",
                "'mul' (MaxPool2d) takes 1 input(s), has 2",
                "'shape' (Linear): Linear expects last axis 5",
                "'params' (BatchNorm): running_var has negative entries",
                "'lif' (LIF): leak (tau) must be > 0",
                "cycle: a -> b -> c -> a",
                "'or' (MaxPool2d): MaxPool2d mode 'or' needs binary spikes",
                "'rep' (Repeat): time_steps=2 differs from the graph's 4",
                "'rep' (Repeat): Repeat needs a static input",
                "graph output 'missing' is not a node"]
    for text in expected:
        assert sum(text in p for p in problems) == 1, (text, problems)
    assert len(problems) == len(expected)
    with pytest.raises(GraphError) as err:
        graph.validate()
    assert err.value.problems == problems


def test_graph_problems_edge_cases():
    x = Node(Input(shape=(4,), dtype=SPIKE))
    ok = Graph({"x": x, "l": Node(LIF(), ("x",)), "o": Node(Output(), ("l",))}, ("o",), T)
    assert ok.problems() == [] and ok.validate() is ok
    assert Graph({"x": x}, (), 0).problems() == ["time_steps must be >= 1, got 0", "graph has no outputs"]
    loop = Graph({"x": x, "s": Node(Add(), ("x", "s")), "o": Node(Output(), ("s",))}, ("o",), T)
    assert loop.problems() == ["cycle: s -> s"]
    bad_input = Graph({"x": Node(Input(shape=(0, 2), time="later")), "o": Node(Output(), ("x",))}, ("o",), T)
    assert len(bad_input.problems()) == 2 and all("'x' (Input)" in p for p in bad_input.problems())
    static_bn = Graph({"x": Node(Input(shape=(2, 8, 8), time="static")),
                       "c": Node(BatchNorm(weight=np.ones(2, np.float32), bias=np.zeros(2, np.float32),
                                           running_mean=np.zeros(2, np.float32),
                                           running_var=np.ones(2, np.float32)), ("x",)),
                       "o": Node(Output(), ("c",))}, ("o",), T)
    assert static_bn.problems() == ["node 'c' (BatchNorm): input must be a per-timestep stream, got a static "
                                    "value static float32[2, 8, 8]"]
    # a static image's convolution is computed once: static in, static out, the same values per image
    static_conv = Graph({"x": Node(Input(shape=(2, 8, 8), time="static")),
                         "c": Node(Conv2d(weight=np.ones((4, 2, 1, 1), np.float32)), ("x",)),
                         "o": Node(Output(), ("c",))}, ("o",), T).validate()
    assert static_conv.types()["c"].time == "static"
    image = torch.rand(3, 2, 8, 8)
    assert torch.equal(run_graph(static_conv, {"x": image})["o"], image.sum(1, keepdim=True).expand(3, 4, 8, 8))

"""Passes and pipelines (``snncompile.passes``): the pipeline contract (history, purity, start/stop,
validation, fixpoints, dumps, verification) and BatchNorm folding, on hand-built graphs with
hand-computed weights and on live zoo models and the shipped checkpoint with real digits.

The folding tests print per-layer spike agreement; run with ``-s`` (or ``-rP``) to see the figures.
"""
from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snncompile
from snncompile.config import ATTENTION_MODES, ModelConfig
from snncompile.data import load_dataset
from snncompile.frontend import export
from snncompile.ir import SPIKE, TERNARY, Graph, Node
from snncompile.ir import io as ir_io
from snncompile.ir.ops import LIF, BatchNorm, Conv2d, Input, Linear, MaxPool2d, Output
from snncompile.nn.neurons import MultiStepLIF
from snncompile.nn.backbones import build_model
from snncompile.nn.seq import PerStep
from snncompile.passes import (PIPELINES, Pass, PassContext, PassError, Reported, RewriteError, as_pass,
                               fold_batchnorm, rewrite_graph, run_pipeline, to_fixpoint)
from snncompile.passes.fold_batchnorm import fold_blocker
from snncompile.passes.rewrite import Edit
from snncompile.sim import run_graph
from snncompile.zoo.registry import find_entry

CTX = PassContext()
U = 2.0 ** -24  # float32 unit roundoff


# ------------------------------------------------------------------------------------------------
# hand-built graphs and toy passes
# ------------------------------------------------------------------------------------------------

def f32(*values) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def bn(gamma, beta, mean, var, eps=1.0, **kw) -> BatchNorm:
    return BatchNorm(weight=f32(*gamma), bias=f32(*beta), running_mean=f32(*mean), running_var=f32(*var),
                     eps=eps, **kw)


# channel 0: s = 2 / sqrt(3 + 1) = 1; channel 1: s = 0.5 / sqrt(0 + 1) = 0.5 (all exact in binary)
BN2 = dict(gamma=(2.0, 0.5), beta=(0.5, 1.0), mean=(1.0, -2.0), var=(3.0, 0.0))
CONV_W = np.arange(2 * 2 * 3 * 3, dtype=np.float32).reshape(2, 2, 3, 3) / 8 - 2


def conv_graph(*, bias=True, conv_fields=None, bn_fields=None, extra=None) -> Graph:
    """input [2, 5, 5] -> conv (2 -> 2, 3x3, pad 1) -> bn -> lif -> out."""
    conv = Conv2d(weight=CONV_W, bias=f32(3.0, 4.0) if bias else None, padding=(1, 1), **(conv_fields or {}))
    nodes = {"x": Node(Input(shape=(2, 5, 5))), "conv": Node(conv, ("x",)),
             "bn": Node(bn(**BN2, **(bn_fields or {})), ("conv",)), "lif": Node(LIF(), ("bn",)),
             "out": Node(Output(), ("lif",))}
    nodes.update(extra or {})
    return Graph(nodes, ("out",), time_steps=3)


def stream(graph: Graph, batch=4, seed=0) -> dict:
    (name,) = graph.inputs()
    shape = graph.op(name).shape
    return {name: torch.rand(graph.time_steps, batch, *shape, generator=torch.Generator().manual_seed(seed)) * 2}


@as_pass()
def scale_linear(graph: Graph, ctx: PassContext) -> Graph:
    """Toy pass: multiply every Linear weight by ``factor`` (option, default 2)."""
    factor = ctx.options_for(scale_linear).get("factor", 2.0)
    nodes = {n: Node(dataclasses.replace(node.op, weight=node.op.weight * np.float32(factor)), node.inputs)
             if isinstance(node.op, Linear) else node for n, node in graph.nodes.items()}
    return dataclasses.replace(graph, nodes=nodes)


@as_pass()
def do_nothing(graph: Graph, ctx: PassContext) -> Graph:
    return graph


def linear_graph() -> Graph:
    w = f32(1.0, 2.0, 0.5, -1.0).reshape(2, 2)
    return Graph({"x": Node(Input(shape=(2,))), "fc": Node(Linear(weight=w), ("x",)),
                  "bn": Node(bn((1.0, 4.0), (0.0, 1.0), (0.5, 0.0), (0.0, 3.0)), ("fc",)),
                  "y": Node(Output(), ("bn",))}, ("y",), time_steps=2)


# ------------------------------------------------------------------------------------------------
# the pipeline
# ------------------------------------------------------------------------------------------------

def test_pipeline_records_history_with_the_digest_of_every_intermediate():
    graph, steps = linear_graph(), [fold_batchnorm, scale_linear, do_nothing]
    ctx = PassContext(options={"scale_linear": {"factor": 3.0}})
    out = run_pipeline(graph, steps, ctx)
    expected, g = [], graph
    for p in steps:
        g = p(g, ctx)
        expected.append(ir_io.graph_digest(g))
    assert [h.name for h in out.history] == ["fold_batchnorm", "scale_linear", "do_nothing"]
    assert [h.digest for h in out.history] == expected
    assert out.history[-1].digest == ir_io.graph_digest(out)
    assert out.history[1].options == {"factor": 3.0}
    assert out.history[0].options == {"folded": {"bn": "fc"}, "kept": {}}
    assert out.history[2].options == {}
    np.testing.assert_array_equal(out.op("fc").weight, g.op("fc").weight)


def test_passes_and_the_pipeline_leave_their_input_alone():
    graph = conv_graph()
    before, nodes = ir_io.graph_digest(graph), dict(graph.nodes)
    out = run_pipeline(graph, PIPELINES["float"], CTX)
    assert out is not graph and "bn" not in out.nodes
    assert ir_io.graph_digest(graph) == before and graph.history == () and dict(graph.nodes) == nodes
    assert all(graph.nodes[n] is nodes[n] for n in nodes)
    assert fold_batchnorm(graph, CTX) is not graph and ir_io.graph_digest(graph) == before
    assert do_nothing(graph, CTX) is graph


def test_start_and_stop_select_passes_by_name():
    steps = [fold_batchnorm, scale_linear, do_nothing]
    names = lambda g: [h.name for h in g.history]  # noqa: E731
    assert names(run_pipeline(linear_graph(), steps, CTX, start="scale_linear")) == ["scale_linear", "do_nothing"]
    assert names(run_pipeline(linear_graph(), steps, CTX, stop="scale_linear")) == ["fold_batchnorm",
                                                                                    "scale_linear"]
    only = run_pipeline(linear_graph(), steps, CTX, start="scale_linear", stop="scale_linear")
    assert names(only) == ["scale_linear"] and "bn" in only.nodes
    with pytest.raises(ValueError, match=r"start='fold_bn' is not a pass of this pipeline \(its passes: "
                                         r"fold_batchnorm, scale_linear, do_nothing\)"):
        run_pipeline(linear_graph(), steps, CTX, start="fold_bn")
    with pytest.raises(ValueError, match="stop='nope' is not a pass"):
        run_pipeline(linear_graph(), steps, CTX, stop="nope")
    with pytest.raises(ValueError, match="comes after"):
        run_pipeline(linear_graph(), steps, CTX, start="do_nothing", stop="fold_batchnorm")
    with pytest.raises(ValueError, match="ambiguous"):
        run_pipeline(linear_graph(), [do_nothing, do_nothing], CTX, start="do_nothing")
    with pytest.raises(ValueError, match=r"options given for \['scale_lin'\]"):
        run_pipeline(linear_graph(), steps, PassContext(options={"scale_lin": {"factor": 1}}))


def test_a_pass_that_breaks_the_graph_is_named():
    @as_pass()
    def drop_input(graph: Graph, ctx: PassContext) -> Graph:
        return dataclasses.replace(graph, nodes={n: v for n, v in graph.nodes.items() if n != "x"})

    with pytest.raises(PassError, match=r"pass 'drop_input': produced an invalid graph:(.|\n)*"
                                        r"input 'x' does not exist \(dangling edge\)") as e:
        run_pipeline(linear_graph(), [fold_batchnorm, drop_input], CTX)
    assert e.value.pass_name == "drop_input"


def test_a_pass_that_raises_or_rewrites_history_is_named():
    @as_pass()
    def explode(graph: Graph, ctx: PassContext) -> Graph:
        raise KeyError("boom")

    @as_pass()
    def forge(graph: Graph, ctx: PassContext) -> Graph:
        return dataclasses.replace(graph, history=())

    with pytest.raises(PassError, match=r"pass 'explode': failed: KeyError") as e:
        run_pipeline(linear_graph(), [explode], CTX)
    assert isinstance(e.value.__cause__, KeyError)
    with pytest.raises(PassError, match="pass 'forge': changed the graph's history"):
        run_pipeline(linear_graph(), [fold_batchnorm, forge], CTX)
    with pytest.raises(PassError, match="pass 'fold_batchnorm': failed: ValueError: fold_batchnorm takes no "
                                        "options"):
        run_pipeline(linear_graph(), [fold_batchnorm], PassContext(options={"fold_batchnorm": {"x": 1}}))


def test_verify_runs_after_every_step_and_its_failure_names_the_pass():
    seen = []

    def verify(step, before, after):
        seen.append((step.name, after.history[-1].name, len(before.history)))

    run_pipeline(linear_graph(), [fold_batchnorm, do_nothing], CTX, verify=verify)
    assert seen == [("fold_batchnorm", "fold_batchnorm", 0), ("do_nothing", "do_nothing", 1)]

    def strict(step, before, after):
        x = stream(before)
        if not torch.equal(run_graph(before, x)["y"], run_graph(after, x)["y"]):
            raise AssertionError("outputs differ")

    with pytest.raises(PassError, match="pass 'scale_linear': verification failed: AssertionError: outputs "
                                        "differ"):
        run_pipeline(linear_graph(), [do_nothing, scale_linear], CTX, verify=strict)


def test_to_fixpoint_stops_when_unchanged_and_raises_when_it_never_settles():
    calls = []

    def shrink(graph: Graph, ctx: PassContext) -> Graph:  # halves the weights three times, then settles
        calls.append(1)
        return scale_linear(graph, PassContext(options={"scale_linear": {"factor": 0.5}})) if len(calls) <= 3 \
            else graph

    out = to_fixpoint(Pass(shrink))(linear_graph(), CTX)
    assert len(calls) == 4
    np.testing.assert_array_equal(out.op("fc").weight, linear_graph().op("fc").weight / 8)

    def churn(graph: Graph, ctx: PassContext) -> Graph:  # always a new object: never converges
        return dataclasses.replace(graph)

    wrapped = to_fixpoint(Pass(churn), max_iter=5)
    assert wrapped.name == "churn"
    with pytest.raises(PassError, match=r"pass 'churn': did not reach a fixpoint in 5 iterations"):
        run_pipeline(linear_graph(), [wrapped], CTX)
    with pytest.raises(PassError, match="in 32 iterations"):
        to_fixpoint(Pass(churn))(linear_graph(), CTX)
    folded = to_fixpoint(fold_batchnorm)
    assert folded.name == "fold_batchnorm" and folded.report is fold_batchnorm.report
    assert folded.__doc__ == fold_batchnorm.__doc__ and folded.__doc__.startswith("Fold every BatchNorm")
    assert run_pipeline(linear_graph(), [folded], CTX).history[0].options["folded"] == {"bn": "fc"}


def test_dumps_every_step_and_the_times(tmp_path):
    graph = linear_graph()
    out = run_pipeline(graph, [fold_batchnorm, scale_linear], CTX, dump_dir=tmp_path / "dump")
    files = sorted(p.name for p in (tmp_path / "dump").iterdir())
    assert files == ["00_input.snnir", "01_fold_batchnorm.snnir", "02_scale_linear.snnir", "time_per_pass.json"]
    assert ir_io.graph_digest(ir_io.load(tmp_path / "dump" / "00_input.snnir")) == ir_io.graph_digest(graph)
    for i, name in enumerate(["fold_batchnorm", "scale_linear"]):
        loaded = ir_io.load(tmp_path / "dump" / f"{i + 1:02d}_{name}.snnir")
        assert ir_io.graph_digest(loaded) == loaded.history[-1].digest == out.history[i].digest
        assert loaded.history == out.history[: i + 1]  # options (the fold report) round-trip too
    times = json.loads((tmp_path / "dump" / "time_per_pass.json").read_text())
    assert list(times) == ["01_fold_batchnorm", "02_scale_linear"] and all(t >= 0 for t in times.values())


def test_pipelines_are_lists_of_passes():
    assert PIPELINES["float"] == (fold_batchnorm,)
    assert all(isinstance(p, Pass) for steps in PIPELINES.values() for p in steps)
    loihi = {p.name: p for p in PIPELINES["loihi"]}
    assert {n for n, p in loihi.items() if p.exact} == {"split_fan_in", "prove_ranges", "schedule"}
    assert {n for n, p in loihi.items() if p.align} == {"normalize_neurons", "lower_levels", "quantize", "schedule"}
    assert [n for n, p in loihi.items() if p.float_view] == ["quantize"]
    with pytest.raises(TypeError, match="pipeline steps must be Pass objects"):
        run_pipeline(linear_graph(), [do_nothing.run], CTX)


def test_the_passes_families_are_queries_of_the_op_registry():
    from snncompile.ir.ops import (BlockSum, Delay, IntAdd, IntConv2d, IntDense, IntShift, KVOuterAccumulate,
                                   LevelScores, LevelScoreValue, LoihiLIF, LoihiTernaryLIF, QMAccumulate, ScoreValueAccumulate,
                                   SpikeScores, TernaryLIF)
    from snncompile.passes.float_view import INTEGER_OPERANDS, NEURONS as VIEWED_NEURONS, SYNAPSES as VIEWED_SYNAPSES
    from snncompile.passes.normalize_neurons import NEURON_TYPES
    from snncompile.passes.prove_ranges import DENDRITIC, NEURONS, SYNAPSES
    assert NEURON_TYPES == (LIF, TernaryLIF)
    assert set(NEURONS) == set(VIEWED_NEURONS) == {LoihiLIF, LoihiTernaryLIF}
    assert set(SYNAPSES) == set(VIEWED_SYNAPSES) == {IntDense, IntConv2d}
    assert set(DENDRITIC) == {IntAdd, IntShift, Delay, BlockSum}
    assert set(INTEGER_OPERANDS) == {KVOuterAccumulate, QMAccumulate, SpikeScores, ScoreValueAccumulate, LevelScores,
                                     LevelScoreValue}


def test_rewrite_rules_that_never_settle_raise():
    def swap(graph, name):
        return Edit(replace={name: Node(dataclasses.replace(graph.op(name)), graph.nodes[name].inputs)})

    with pytest.raises(RewriteError, match="do not settle"):
        rewrite_graph(linear_graph(), [(lambda g, n: n == "fc", swap)])
    graph = linear_graph()
    assert rewrite_graph(graph, [(lambda g, n: False, swap)]) is graph


def test_a_reporting_pass_cannot_shadow_its_options():
    @as_pass(report=lambda before, after: {"factor": "reported"})
    def noisy(graph, ctx):
        return graph

    with pytest.raises(PassError, match="clash with its option names"):
        run_pipeline(linear_graph(), [noisy], PassContext(options={"noisy": {"factor": 1}}))


def test_a_pass_can_return_its_report_with_its_graph():
    @as_pass()
    def decides(graph, ctx):  # what it decided is known only while it runs
        return Reported(graph, {"chosen": [ctx.seed, 2]})

    out = run_pipeline(linear_graph(), [decides], PassContext(seed=7, options={"decides": {"factor": 1}}))
    assert out.history[-1].name == "decides" and out.history[-1].options == {"factor": 1, "chosen": [7, 2]}
    with pytest.raises(PassError, match="clash with its option names"):
        run_pipeline(linear_graph(), [decides], PassContext(options={"decides": {"chosen": 1}}))


# ------------------------------------------------------------------------------------------------
# fold_batchnorm on hand-built graphs
# ------------------------------------------------------------------------------------------------

def test_folds_conv_batchnorm_into_hand_computed_weights():
    graph = conv_graph()
    out = run_pipeline(graph, [fold_batchnorm], CTX)
    assert list(out.nodes) == ["x", "conv", "lif", "out"] and out.nodes["lif"].inputs == ("conv",)
    conv = out.op("conv")
    # W' = W * s, s = (1, 0.5); b' = beta + (b - mean) * s = (0.5 + (3 - 1) * 1, 1 + (4 + 2) * 0.5)
    np.testing.assert_array_equal(conv.weight, np.stack([CONV_W[0], CONV_W[1] * 0.5]))
    np.testing.assert_array_equal(conv.bias, f32(2.5, 4.0))
    assert conv.weight.dtype == conv.bias.dtype == np.float32
    assert (conv.padding, conv.stride) == ((1, 1), (1, 1))
    assert out.history[0].options == {"folded": {"bn": "conv"}, "kept": {}}
    x = stream(graph)
    a, b = run_graph(graph, x, keep="all"), run_graph(out, x, keep="all")
    torch.testing.assert_close(b["conv"], a["bn"], rtol=0, atol=1e-5)
    assert torch.equal(a["out"], b["out"])


def test_folds_linear_without_bias_and_a_batchnorm_chain():
    out = fold_batchnorm(linear_graph(), CTX)
    # s = (1 / sqrt(0 + 1), 4 / sqrt(3 + 1)) = (1, 2); b' = beta - mean * s = (-0.5, 1)
    np.testing.assert_array_equal(out.op("fc").weight, f32(1.0, 2.0, 1.0, -2.0).reshape(2, 2))
    np.testing.assert_array_equal(out.op("fc").bias, f32(-0.5, 1.0))
    assert out.nodes["y"].inputs == ("fc",)

    chain = conv_graph(extra={"bn2": Node(bn((4.0, 1.0), (0.0, -1.0), (0.5, 0.0), (3.0, 0.0)), ("bn",)),
                              "lif": Node(LIF(), ("bn2",))})
    out = run_pipeline(chain, [fold_batchnorm], CTX)
    assert not any(isinstance(n.op, BatchNorm) for n in out.nodes.values())
    assert out.history[0].options["folded"] == {"bn": "conv", "bn2": "conv"}
    # second BN: s2 = (4 / 2, 1); W'' = W * (1 * 2, 0.5 * 1); b'' = (0 + (2.5 - 0.5) * 2, -1 + 4.0)
    np.testing.assert_array_equal(out.op("conv").weight, np.stack([CONV_W[0] * 2, CONV_W[1] * 0.5]))
    np.testing.assert_array_equal(out.op("conv").bias, f32(4.0, 3.0))


def test_batchnorm_delay_moves_to_the_producer():
    graph = conv_graph(bn_fields={"delay": 2})
    out = fold_batchnorm(graph, CTX)
    assert out.op("conv").delay == 2
    x = stream(graph)
    torch.testing.assert_close(run_graph(out, x, keep="all")["conv"], run_graph(graph, x, keep="all")["bn"],
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("case, reason", [
    ("fan_out", r"its producer 'conv' also feeds 'probe'"),
    ("graph_output", r"its producer 'conv' also feeds the graph outputs"),
    ("not_synaptic", r"its producer 'pool' is a MaxPool2d, not a Conv2d or Linear"),
    ("producer_delay", r"its producer 'conv' has delay=1"),
    ("infinite_scale", r"running_var \+ eps is 0"),
    ("token_linear", r"normalises axis 0 of 'fc''s output \(3, 2\), not the Linear's output features"),
])
def test_batchnorms_that_cannot_fold_stay_and_are_reported(case, reason):
    if case == "fan_out":
        graph = conv_graph(extra={"probe": Node(LIF(), ("conv",)), "out2": Node(Output(), ("probe",))})
        graph = dataclasses.replace(graph, outputs=("out", "out2"))
    elif case == "graph_output":
        graph = dataclasses.replace(conv_graph(), outputs=("out", "conv"))
    elif case == "not_synaptic":
        graph = conv_graph(extra={"pool": Node(MaxPool2d(kernel=(1, 1), stride=(1, 1), padding=(0, 0)), ("conv",)),
                                  "bn": Node(bn(**BN2), ("pool",))})
    elif case == "producer_delay":
        graph = conv_graph(conv_fields={"delay": 1})
    elif case == "infinite_scale":
        graph = conv_graph(bn_fields={"eps": 0.0})  # channel 1 has var 0
    else:
        w = f32(1.0, 2.0, 0.5, -1.0).reshape(2, 2)
        graph = Graph({"x": Node(Input(shape=(3, 2))), "fc": Node(Linear(weight=w), ("x",)),
                       "bn": Node(bn((1, 1, 1), (0, 0, 0), (0, 0, 0), (1, 1, 1)), ("fc",)),
                       "y": Node(Output(), ("bn",))}, ("y",), time_steps=2)
    assert fold_batchnorm(graph, CTX) is graph  # nothing matched: the input itself
    assert fold_blocker(graph, "bn") is not None
    out = run_pipeline(graph, [fold_batchnorm], CTX)
    assert "bn" in out.nodes and out.history[0].options["folded"] == {}
    (kept,) = out.history[0].options["kept"].items()
    assert kept[0] == "bn"
    assert re.search(reason, kept[1]), kept[1]


# ------------------------------------------------------------------------------------------------
# fold_batchnorm on live zoo models and the shipped checkpoint, with real digits
# ------------------------------------------------------------------------------------------------

def digits(n: int | None = None) -> torch.Tensor:
    entry = find_entry("statten-digits")
    test = load_dataset(entry.data, entry.model, "test")
    n = len(test) if n is None else n
    return torch.stack([test[i][0] for i in range(n)])


def live_zoo_model(mode: str, x: torch.Tensor, seed=0) -> nn.Module:
    """A small zoo model whose BatchNorms are not the identity: random affine parameters, statistics of one
    train-mode forward on ``x``, and raised Q/K/V biases so attention neurons fire."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(attention=mode, img_size=16, in_channels=1, dim=32, num_heads=4))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None  # running statistics = the statistics of the one batch
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2
                             + (1.0 if name.split(".")[-1] in ("q_bn", "k_bn", "v_bn") else 0.0))
        model.train()
        model(x)
    return model.eval()


def local_fold_error(graph: Graph, folded: Graph, values: dict) -> float:
    """Largest ``|folded - unfolded| / (u * M)`` over every folded node and element, each folded node run on
    the unfolded graph's own input (``M`` as in the ``fold_batchnorm`` docstring); asserts the documented
    bound ``2 * gamma_(K+6) * M``."""
    worst = 0.0
    for bn_name, into in folded.history[-1].options["folded"].items():
        op, old, norm = folded.op(into), graph.op(into), graph.op(bn_name)
        x = values[graph.nodes[into].inputs[0]]
        diff = (op.run(x).double() - values[bn_name].double()).abs()
        s = np.abs(norm.weight / np.sqrt(norm.running_var.astype(np.float64) + norm.eps))
        b = np.zeros_like(s) if old.bias is None else np.abs(old.bias)
        extra = torch.from_numpy(s * (b + np.abs(norm.running_mean)) + np.abs(norm.bias))
        w = torch.from_numpy(np.abs(op.weight).astype(np.float64))
        frames = x.abs().double().flatten(0, 1)
        m = (F.conv2d(frames, w, None, op.stride, op.padding, op.dilation, op.groups) if isinstance(op, Conv2d)
             else F.linear(frames, w)).reshape(diff.shape) + extra.reshape(-1, *[1] * (diff.dim() - 3))
        k = op.weight[0].size + 6
        assert (diff <= 2 * k * U / (1 - k * U) * m).all(), f"{into}: folding error above the documented bound"
        worst = max(worst, (diff / (U * m)).max().item())
    return worst


def compare_folded(label: str, graph: Graph, x: torch.Tensor) -> dict:
    """Fold, run both graphs on ``x`` and print per-layer spike agreement; returns the figures."""
    folded = run_pipeline(graph, PIPELINES["float"], CTX)
    assert not any(isinstance(n.op, BatchNorm) for n in folded.nodes.values())
    assert folded.history[-1].options["kept"] == {}
    assert len(folded.history[-1].options["folded"]) == sum(isinstance(n.op, BatchNorm) for n in graph.nodes.values())
    (name,) = graph.inputs()
    a, b = run_graph(graph, {name: x}, keep="all"), run_graph(folded, {name: x}, keep="all")
    types = graph.types()
    neurons = [n for n, t in types.items() if t.dtype in (SPIKE, TERNARY) and type(graph.op(n)).__module__
               == "snncompile.ir.ops.neuron"]
    assert neurons
    same = total = 0
    print(f"\n{label}: {x.shape[0]} digits, {len(neurons)} neuron nodes")
    for n in neurons:
        eq, count = int((a[n] == b[n]).sum()), a[n].numel()
        same, total = same + eq, total + count
        print(f"  {n:32s} agreement {eq / count:.6f}  rate {a[n].abs().mean().item():.3f}")
    la, lb = a[graph.outputs[0]], b[folded.outputs[0]]
    figures = {"spike_agreement": same / total, "flipped": total - same,
               "logit_max_diff": (la - lb).abs().max().item(), "logit_scale": la.abs().max().item(),
               "prediction_agreement": (la.argmax(-1) == lb.argmax(-1)).double().mean().item(),
               "local_error_ulps": local_fold_error(graph, folded, a)}
    print("  " + ", ".join(f"{k} {v:.6g}" for k, v in figures.items()))
    assert figures["spike_agreement"] >= 0.999
    assert figures["prediction_agreement"] >= 0.99
    # measured: identical logits (no spike flips on these models, and the head reads spikes only); the
    # tolerance leaves room for float rounding, not for a flipped head spike (that would be a finding)
    assert figures["logit_max_diff"] <= 1e-5 * figures["logit_scale"]
    return figures


@pytest.fixture(scope="module")
def digit_images() -> torch.Tensor:
    return digits()


@pytest.mark.parametrize("mode", ATTENTION_MODES)
def test_folding_keeps_every_zoo_attention_mode(mode, digit_images):
    x = digit_images[:96]
    model = live_zoo_model(mode, x[:64])
    graph = export(model)
    figures = compare_folded(f"{mode} (random, live)", graph, x)
    assert figures["spike_agreement"] >= 0.999


@pytest.mark.slow
def test_folding_keeps_the_shipped_statten_digits_model(digit_images):
    entry = find_entry("statten-digits")
    model = snncompile.load_checkpoint(entry.checkpoint).model
    figures = compare_folded("statten_digits.pt", export(model), digit_images)
    assert figures["prediction_agreement"] >= 0.99


def test_folds_linear_batchnorm1d_of_a_user_model():
    torch.manual_seed(0)
    model = nn.Sequential(PerStep(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8)), MultiStepLIF(),
                          PerStep(nn.Linear(8, 3)))
    with torch.no_grad():
        model[0][2].momentum = None
        model.train()
        model(torch.randn(4, 5, 1, 4, 4))
    graph = export(model.eval(), input_shape=(1, 4, 4), time_steps=4)
    x = torch.rand(4, 6, 1, 4, 4) * 2
    folded = fold_batchnorm(graph, CTX)
    assert not any(isinstance(n.op, BatchNorm) for n in folded.nodes.values())
    a, b = run_graph(graph, {"input": x}, keep="all"), run_graph(folded, {"input": x}, keep="all")
    assert folded.nodes["1"].inputs == ("0.1",) and "0.2" not in folded.nodes
    torch.testing.assert_close(b["0.1"], a["0.2"], rtol=1e-5, atol=1e-6)
    assert torch.equal(a["output"], b["output"])

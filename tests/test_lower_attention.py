"""The ``lower_attention`` pass: hand-built attention graphs for every variant (STAtten, SSA, A2OS2A, DS2TA),
compared with the float node they replace at the strongest level that holds (bit-identical, or within the
derived quantisation and rounding bounds), the association choice and its options, the refusals, and the
shipped zoo checkpoints after ``fold_batchnorm``.

The zoo test prints per-attention-layer spike agreement; run with ``-s`` (or ``-rP``) to see the figures.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import snncompile
from snncompile.data import load_dataset
from snncompile.frontend import export
from snncompile.ir import FLOAT32, SPIKE, TERNARY, Graph, Node
from snncompile.ir.ops import (BlockLinearAttention, Input, KVOuterAccumulate, LUTAttention, Output, QMAccumulate,
                               Quantize, ReLU, Scale, ScoreLUT, SpikeColumnSum, SpikeMask)
from snncompile.nn.attention import merge_heads, split_heads
from snncompile.passes import PassContext, PassError, fold_batchnorm, run_pipeline
from snncompile.passes.lower_attention import lower_attention
from snncompile.sim import run_graph
from snncompile.sim.dataset import graph_feeds, logits_of
from snncompile.zoo.registry import find_entry

U = 2.0 ** -24  # float32 unit roundoff
SHAPE = (8, 2, 3)  # C, Hs, Ws: N = 6 tokens


def same(a, b) -> bool:
    """Equal node types and fields (ops compare by identity)."""
    return repr(a) == repr(b)


def gamma(k: int) -> float:
    return k * U / (1 - k * U)


def attention_graph(op, shape=SHAPE, k_dtype=SPIKE, v_dtype=SPIKE, time_steps=4) -> Graph:
    """Inputs q (spikes), k, v -> ``op`` -> output; a real K (``k_dtype`` float32) passes a ReLU first (A2OS2A)."""
    nodes = {"q": Node(Input(shape=shape, dtype=SPIKE)), "k": Node(Input(shape=shape, dtype=k_dtype)),
             "v": Node(Input(shape=shape, dtype=v_dtype))}
    k = "k"
    if k_dtype == FLOAT32:
        nodes["k_relu"] = Node(ReLU(), ("k",))
        k = "k_relu"
    nodes["attn"] = Node(op, ("q", k, "v"))
    nodes["out"] = Node(Output(), ("attn",))
    return Graph(nodes, ("out",), time_steps=time_steps).validate()


def feeds(graph: Graph, batch=16, seed=0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    values = {}
    for name in graph.inputs():
        op, shape = graph.op(name), (graph.time_steps, batch, *graph.op(name).shape)
        if op.dtype == SPIKE:
            values[name] = (torch.rand(shape, generator=g) < 0.4).float()
        elif op.dtype == TERNARY:
            values[name] = torch.randint(-1, 2, shape, generator=g).float()
        else:
            values[name] = torch.randn(shape, generator=g) * 3
    return values


def lower(graph: Graph, calibration=None, **options) -> Graph:
    ctx = PassContext(options={"lower_attention": options} if options else {}, calibration=calibration)
    return run_pipeline(graph, [lower_attention], ctx)


def outputs(graph: Graph, lowered: Graph, x: dict) -> tuple[torch.Tensor, torch.Tensor]:
    return run_graph(graph, x)["out"], run_graph(lowered, x)["out"]


def report(lowered: Graph) -> dict:
    return lowered.history[-1].options["lowered"]["attn"]


def head_counts(x: torch.Tensor, heads: int, axis: int) -> torch.Tensor:
    """Non-zeros per token row (``axis=-1``: ``q_n``) or per channel column (``axis=-2``: ``v_j``) of each head."""
    return split_heads(x, heads).abs().sum(axis)


def per_element(bound: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-head ``[T, B, H, N, d]`` bound in the ``[T, B, C, Hs, Ws]`` layout of ``like``."""
    return merge_heads(bound).reshape(like.shape)


# ------------------------------------------------------------------------------------------------
# STAtten and SSA: spike operands, exact integer accumulates
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("block", [1, 2, 4])
def test_statten_is_bit_identical_with_a_power_of_two_scale(block):
    graph = attention_graph(BlockLinearAttention(heads=2, block=block, scale=0.25, scale_position="kv", delay=1))
    lowered = lower(graph)
    assert [n for n in lowered.nodes if n.startswith("attn")] == ["attn.kv", "attn.qm", "attn"]
    assert same(lowered.op("attn.kv"), KVOuterAccumulate(heads=2, block=block))
    assert same(lowered.op("attn.qm"), QMAccumulate(heads=2)) and same(lowered.op("attn"), Scale(scale=0.25, delay=1))
    assert [lowered.nodes[n].inputs for n in ("attn.kv", "attn.qm", "attn")] == [("k", "v"), ("q", "attn.kv"),
                                                                                 ("attn.qm",)]
    a, b = outputs(graph, lowered, feeds(graph))
    assert torch.equal(a, b)  # alpha = 2^-2: neither side rounds


@pytest.mark.parametrize("association", ["q(kv)", "(qk)v"])
def test_scale_out_is_bit_identical_for_any_scale(association):
    """SSA's ``scale * (Q K^T V)``: the float node rounds the exact integer product once, as the Scale does."""
    graph = attention_graph(BlockLinearAttention(heads=2, scale=0.1, scale_position="out"))
    lowered = lower(graph, association=association)
    assert report(lowered)["association"] == association
    a, b = outputs(graph, lowered, feeds(graph))
    assert torch.equal(a, b)


def test_kv_scale_differs_only_by_the_float_nodes_rounding():
    """``alpha = 1/14`` applied to ``K^T V`` (STAtten's order): the float node rounds ``alpha * M`` and its sums;
    the lowered integer accumulate is exact and rounds once."""
    op = BlockLinearAttention(heads=2, block=2, scale=1 / 14, scale_position="kv")
    graph = attention_graph(op)
    lowered = lower(graph)
    x = feeds(graph)
    values = run_graph(lowered, x, keep="all")
    exact = BlockLinearAttention(heads=2, block=2).run(*(x[n].double() for n in ("q", "k", "v")))
    assert torch.equal(values["attn.qm"].double(), exact)  # the integer accumulate O, exactly
    a, b = run_graph(graph, x)["out"], values["out"]
    d = SHAPE[0] // 2
    diff = (a.double() - b.double()).abs()
    assert (diff <= gamma(d + 2) * op.scale * exact).all()  # spikes: sum_i Q |M| = O
    assert torch.equal(b, (exact * np.float32(op.scale)).float())  # fl32(alpha * O)
    worst = (diff[exact > 0] / (U * op.scale * exact[exact > 0])).max().item()
    print(f"\nalpha = 1/14, block 2: {int((diff > 0).sum())} of {diff.numel()} outputs differ, "
          f"at most by {worst:.2f} u * alpha * O")


@pytest.mark.parametrize("shape, heads, expected", [
    ((4, 2, 2), 2, "q(kv)"),   # d = 2 < N = 4
    ((16, 2, 2), 1, "(qk)v"),  # d = 16 > N = 4
    ((8, 2, 2), 2, "q(kv)"),   # d = 4 = N: a tie takes q(kv)
])
def test_auto_association_takes_the_cheaper_order(shape, heads, expected):
    graph = attention_graph(BlockLinearAttention(heads=heads, scale=0.125, scale_position="out"), shape)
    lowered = lower(graph)
    C, n = shape[0], shape[1] * shape[2]
    assert report(lowered) == {"association": expected, "scale": 0.125,
                               "ops_per_step": {"q(kv)": 2 * n * C * (C // heads), "(qk)v": 2 * n * n * C}}
    names = {"q(kv)": ["attn.kv", "attn.qm"], "(qk)v": ["attn.scores", "attn.sv"]}[expected]
    assert [n for n in lowered.nodes if n.startswith("attn.")] == names
    a, b = outputs(graph, lowered, feeds(graph))
    assert torch.equal(a, b)
    other = "(qk)v" if expected == "q(kv)" else "q(kv)"
    forced = lower(graph, association=other)
    assert report(forced)["association"] == other and torch.equal(run_graph(forced, feeds(graph))["out"], a)


def test_blocks_and_integer_k_always_take_q_kv():
    block = attention_graph(BlockLinearAttention(heads=1, block=2), (16, 2, 2))  # (qk)v would be cheaper per step
    assert report(lower(block))["association"] == "q(kv)"
    ternary_k = attention_graph(BlockLinearAttention(heads=1), (16, 2, 2), k_dtype=TERNARY)
    assert report(lower(ternary_k))["association"] == "q(kv)"
    with pytest.raises(PassError, match=r"node 'attn' \(BlockLinearAttention\): association '\(qk\)v' needs "
                                        r"per-step scores of binary K .* block=2"):
        lower(block, association="(qk)v")


@pytest.mark.parametrize("options, message", [
    ({"associativity": "auto"}, r"no options \['associativity'\]"),
    ({"association": "kv"}, "association must be one of"),
    ({"k_bits": 0}, "k_bits must be an int in 1..32"),
    ({"lut_bits": 1}, "lut_bits must be an int in 2..32"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises(PassError, match=message):
        lower(attention_graph(BlockLinearAttention(heads=2)), **options)


# ------------------------------------------------------------------------------------------------
# A2OS2A: real K, quantised from calibration data
# ------------------------------------------------------------------------------------------------

def a2os2a_graph(scale=1.0) -> Graph:
    return attention_graph(BlockLinearAttention(heads=2, scale=scale, scale_position="out"), k_dtype=FLOAT32,
                           v_dtype=TERNARY)


@pytest.mark.parametrize("k_bits", [8, 4])
def test_a2os2a_is_within_the_k_quantisation_bound(k_bits):
    graph, heads, (C, Hs, Ws) = a2os2a_graph(scale=0.5), 2, SHAPE
    x = feeds(graph)
    lowered = lower(graph, calibration=x, k_bits=k_bits)
    k = torch.relu(x["k"])
    s_k = float(np.float32(k.max().item() / (2 ** k_bits - 1)))
    assert same(lowered.op("attn.k_quant"), Quantize(scale=s_k, bits=k_bits, signed=False))
    assert lowered.nodes["attn.kv"].inputs == ("attn.k_quant", "v")
    assert report(lowered) == {"association": "q(kv)", "s_K": s_k, "scale": 0.5 * s_k,
                               "ops_per_step": {"q(kv)": 2 * 6 * C * (C // heads), "(qk)v": 2 * 6 * 6 * C}}
    a, b = outputs(graph, lowered, x)
    # K = s_K k + e, |e| <= s_K / 2 + u max K: the output moves by alpha * |e| per (Q, V) pair selected,
    # plus both sides' float32 rounding (reference: gamma_(N+d+1); lowered: 2u), each <= pairs * (max K + s_K)
    n, d, k_max = Hs * Ws, C // heads, k.max().item()
    per_pair = s_k / 2 + U * k_max + gamma(n + d + 4) * (k_max + s_k)
    pairs = head_counts(x["q"], heads, -1)[..., :, None] * head_counts(x["v"], heads, -2)[..., None, :]
    bound = per_element(0.5 * per_pair * pairs, a)
    diff = (a - b).abs()
    assert (diff <= bound).all()
    print(f"\nA2OS2A k_bits={k_bits}: s_K {s_k:.4g}, max error {diff.max().item():.4g}, "
          f"at most {(diff / bound.clamp(min=1e-30)).max().item():.3f} of the bound")


def test_a2os2a_needs_calibration_data():
    with pytest.raises(PassError, match=r"attention node\(s\) 'attn' take a real-valued K, .* pass calibration data"):
        lower(a2os2a_graph())


def test_a2os2a_k_never_positive_gives_no_scale():
    graph = a2os2a_graph()
    x = feeds(graph)
    x["k"] = -x["k"].abs()
    with pytest.raises(PassError, match="'attn': K \\('k_relu'\\) is never positive on the calibration data"):
        lower(graph, calibration=x)


# ------------------------------------------------------------------------------------------------
# DS2TA: a quantised denoiser table
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lut_bits", [8, 5])
def test_ds2ta_is_within_the_table_quantisation_bound(lut_bits):
    heads, (C, Hs, Ws) = 2, SHAPE
    table = np.random.default_rng(0).normal(size=(heads, C // heads + 1)).astype(np.float32) * 3
    graph = attention_graph(LUTAttention(heads=heads, table=table, scale=0.125), v_dtype=TERNARY)
    lowered = lower(graph, lut_bits=lut_bits)
    assert [n for n in lowered.nodes if n.startswith("attn")] == ["attn.scores", "attn.lut", "attn.sv", "attn"]
    top = 2 ** (lut_bits - 1) - 1
    s_f = np.abs(table.astype(np.float64)).max() / top
    assert isinstance(lowered.op("attn.lut"), ScoreLUT)
    codes = lowered.op("attn.lut").table
    assert np.abs(codes).max() == top and np.array_equal(codes, np.round(table / s_f))
    e_f = np.abs(table - s_f * codes).max()
    n = Hs * Ws
    assert report(lowered) == {"association": "(qk)v", "s_f": s_f, "table_error": e_f, "scale": 0.125 * s_f,
                               "ops_per_step": {"(qk)v": 2 * n * n * C}}
    assert e_f <= s_f / 2
    x = feeds(graph)
    a, b = outputs(graph, lowered, x)
    # each selected V adds f(A) once: |f - s_f code| <= e_f, plus float32 rounding of both sides
    per_value = e_f + gamma(n + 3) * (np.abs(table).max() + e_f)
    v_j = head_counts(x["v"], heads, -2)[..., None, :].expand(-1, -1, -1, n, -1)
    bound = per_element(0.125 * per_value * v_j, a)
    diff = (a - b).abs()
    assert (diff <= bound).all() and diff.max() > 0
    print(f"\nDS2TA lut_bits={lut_bits}: s_f {s_f:.4g}, table error {e_f:.4g}, max error {diff.max().item():.4g}, "
          f"at most {(diff / bound.clamp(min=1e-30)).max().item():.3f} of the bound")


# ------------------------------------------------------------------------------------------------
# what the pass refuses or leaves
# ------------------------------------------------------------------------------------------------

def test_unlowerable_nodes_are_all_named_with_their_reason():
    graph = attention_graph(BlockLinearAttention(heads=2), v_dtype=FLOAT32)
    nodes = dict(graph.nodes)
    nodes["k_real"] = Node(Input(shape=SHAPE))
    nodes["attn2"] = Node(BlockLinearAttention(heads=2), ("q", "k_real", "v"))
    nodes["out2"] = Node(Output(), ("attn2",))
    graph = Graph(nodes, ("out", "out2"), time_steps=4)
    with pytest.raises(PassError) as err:
        lower(graph)
    message = str(err.value)
    assert "node 'attn' (BlockLinearAttention): V ('v') must be spikes or ternary" in message
    assert "node 'attn2' (BlockLinearAttention): V ('v') must be spikes or ternary" in message
    fixed = dict(nodes, attn2=Node(BlockLinearAttention(heads=2), ("q", "k_real", "q")))
    with pytest.raises(PassError, match=r"node 'attn2' .*: K \('k_real'\) is real-valued .* not a ReLU output"):
        lower(Graph(fixed, ("out2",), time_steps=4))


def test_sdsa_stays_and_a_graph_without_attention_is_returned_as_is():
    nodes = {"q": Node(Input(shape=SHAPE, dtype=SPIKE)), "sum": Node(SpikeColumnSum(heads=2), ("q", "q")),
             "m": Node(Input(shape=(8,), dtype=SPIKE)), "mask": Node(SpikeMask(heads=2), ("q", "m")),
             "out": Node(Output(), ("mask",)), "out_sum": Node(Output(), ("sum",))}
    graph = Graph(nodes, ("out", "out_sum"), time_steps=2)
    assert lower_attention(graph, PassContext()) is graph
    assert lower(graph).history[-1].options == {"lowered": {}}


# ------------------------------------------------------------------------------------------------
# the shipped zoo checkpoints, after fold_batchnorm, on real digits
# ------------------------------------------------------------------------------------------------

EXACT = {"statten-digits", "ssa-digits", "statten-event-digits"}  # spike K: bit-identical


def samples(entry, split: str, count: int) -> torch.Tensor:
    data = load_dataset(entry.data, entry.model, split)
    return torch.stack([data[i][0] for i in range(count)])


@pytest.mark.parametrize("name", ["statten-digits", "ssa-digits", "a2os2a-digits", "ds2ta-digits",
                                  "statten-event-digits"])
def test_lowering_keeps_the_shipped_zoo_models(name):
    entry = find_entry(name)
    graph = export(snncompile.load_checkpoint(entry.checkpoint).model)
    folded = run_pipeline(graph, [fold_batchnorm])
    calibration = graph_feeds(graph, samples(entry, "train", 64))  # A2OS2A's s_K, from other data than tested
    lowered = run_pipeline(folded, [lower_attention], PassContext(calibration=calibration))
    x = graph_feeds(graph, samples(entry, "test", 64))
    a, b = run_graph(folded, x, keep="all"), run_graph(lowered, x, keep="all")
    attention = list(lowered.history[-1].options["lowered"])
    assert attention and all(isinstance(lowered.op(n), Scale) for n in attention)
    print(f"\n{name}: 64 test digits")
    for n in attention:
        (neuron,) = folded.consumers(n)
        agreement = (a[neuron] == b[neuron]).double().mean().item()
        print(f"  {neuron:28s} spike agreement {agreement:.6f}  ({int((a[neuron] != b[neuron]).sum())} of "
              f"{a[neuron].numel()} differ)")
        assert agreement >= 0.99
        if name in EXACT:
            assert torch.equal(a[n], b[n]) and agreement == 1.0
    out = graph.outputs[0]
    assert torch.equal(logits_of(a[out], graph).argmax(1), logits_of(b[out], graph).argmax(1))

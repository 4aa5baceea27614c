"""The per_op plan's level quantisers on Lava's own LIF (backends/lava/level_neurons.py): one stateless LIF per
level at vth = threshold - 1 (the exact ties), the quantiser the sum of their spikes at its readers' ports, an
input beyond Lava's 24-bit current saturated first, thresholds a LIF cannot hold left to the custom process; the
rewritten graph equal to the original on every step, the stock share crediting the LIFs, and Lava equal to the
reference with the quantiser exposed and read by a stock synapse."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from snncompile.ir import Graph, Node
from snncompile.ir.ops import Input, IntAdd, IntDense, LevelThreshold, LoihiLIF, Output
from snncompile.ir.timing import data_steps
from snncompile.ir.types import SPIKE, int_type
from snncompile.sim import run_graph

pytest.importorskip("lava")  # the plans import Lava's processes
from snncompile.backends.lava.fidelity import plan_classes, stock_share  # noqa: E402
from snncompile.backends.lava.level_neurons import split_level_neurons  # noqa: E402
from snncompile.backends.lava.mapping import plan_lava  # noqa: E402

THRESHOLDS = np.array([3, 6, 11, 14], dtype=np.int64)  # half-levels of scale 1/4, ties to even (multilevel.py)
W = 2 * np.array([[3, -5, 7], [-2, 1, 4]], dtype=np.int64)  # even: Lava keeps mixed-sign 8-bit weights so


def level_graph(bits: int = 8, thresholds=THRESHOLDS, steps: int = 3) -> Graph:
    """x (int<bits>, ``steps`` steps) -> LevelThreshold q -> IntDense d (delay 1, Lava's) -> y."""
    nodes = {"x": Node(Input(shape=(3,), dtype=int_type(bits), time="stream")),
             "q": Node(LevelThreshold(thresholds=np.asarray(thresholds, np.int64)), ("x",)),
             "d": Node(IntDense(weight=W, out_bits=12, delay=1), ("q",)),
             "y": Node(Output(), ("d",))}
    return Graph(nodes, ("y",), time_steps=steps).validate()


def _every_input(lo: int, hi: int, steps: int = 3) -> torch.Tensor:
    """Every integer in ``lo .. hi`` (ties included) as [steps, B, 3] (the first step silent)."""
    x = torch.arange(lo, hi + 1)
    x = torch.cat([x, x.new_zeros((-len(x)) % 3)]).reshape(1, -1, 3)
    return torch.cat([torch.zeros_like(x), x, x.flip(1)])[:steps]


def test_each_level_is_a_stateless_lif_firing_from_its_threshold_on():
    graph = level_graph()
    split, chip, levels = split_level_neurons(graph, ("q", "d"))
    assert levels == {"q": ("q.level1", "q.level2", "q.level3", "q.level4")}
    assert chip == ("q.level1", "q.level2", "q.level3", "q.level4", "q", "d")
    lifs = [split.op(n) for n in levels["q"]]
    assert all(type(op) is LoihiLIF and op.current_decay == op.voltage_decay == 4096 and op.bias_mant == 0
               for op in lifs)
    assert [op.vth for op in lifs] == [2, 5, 10, 13]  # v = a << 6 > vth << 6: a >= threshold
    assert isinstance(split.op("q"), IntAdd) and split.nodes["q"].inputs == levels["q"]
    assert "q.clamp" not in split.nodes  # int8 never folds Lava's u
    x = {"x": _every_input(-8, 20)}
    want, got = run_graph(graph, x, keep="all"), run_graph(split, x, keep="all")
    assert torch.equal(got["q"], want["q"]) and torch.equal(got["d"], want["d"])  # on every step
    assert want["q"][0].sum() == 0 and want["q"].max() == 4  # silent stays silent; every level reached
    for k, lif in enumerate(levels["q"]):  # the k-th LIF: a >= thresholds[k], by hand
        assert torch.equal(got[lif], (x["x"] >= THRESHOLDS[k]).to(got[lif].dtype)), lif


def test_a_wide_input_is_saturated_first_and_a_threshold_a_lif_cannot_hold_keeps_the_quantiser():
    wide = level_graph(bits=20, thresholds=[5, 900, 40000, 65535], steps=2)
    split, _, levels = split_level_neurons(wide, ("q", "d"))
    clamp = split.op("q.clamp")
    assert (clamp.out_bits, clamp.overflow) == (17, "saturate") and split.nodes["q.level1"].inputs == ("q.clamp",)
    x = torch.tensor([-(1 << 19), -(1 << 16) - 1, 4, 5, 899, 900, 39999, 40000, 65534, 65535, 65536, (1 << 19) - 1])
    x = torch.stack([torch.zeros_like(x), x]).reshape(2, 4, 3)
    assert torch.equal(run_graph(split, {"x": x})["y"], run_graph(wide, {"x": x})["y"])
    assert levels and split_level_neurons(level_graph(thresholds=[0, 6, 11, 14]), ("q", "d"))[2] == {}  # a = 0 fires
    too_high = level_graph(bits=20, thresholds=[3, 6, 11, 1 << 16])  # beyond what the 17-bit saturation keeps
    assert split_level_neurons(too_high, ("q", "d"))[2] == {}
    held = level_graph(bits=17, thresholds=[3, 6, 11, 1 << 17])  # no saturation: vth = 2^17 - 1, the widest
    assert split_level_neurons(held, ("q", "d"))[2] and not split_level_neurons(
        level_graph(bits=17, thresholds=[3, 6, 11, (1 << 17) + 1]), ("q", "d"))[2]


def test_the_plan_runs_the_levels_on_lifs_and_the_quantiser_as_converging_spikes():
    graph = level_graph()
    plan = plan_lava(graph, granularity="per_op", expose=["q"])
    assert plan.executed_by == {"q": tuple(f"q.level{k}" for k in range(1, 5))}
    assert {plan.stock[n] for n in plan.executed_by["q"]} == {"LIF"} and plan.stock["d"] == "Dense"
    assert "q" in plan.converging and "q" in plan.recorded and "q" not in {p[0] for p in plan.processes()}
    assert plan_classes(plan)["q"] == "4 x LIF"
    share = stock_share(plan, {"q": {"neuron_updates_active": 3, "neuron_updates_inactive": 6}, "d": {"MACs": 6}})
    assert share["neuron_updates"] == {"stock": 9, "total": 9, "fraction": 1.0}
    assert share["synaptic_ops"]["fraction"] == 1.0
    assert plan_lava(graph, granularity="fused").executed_by == {}  # the fused processes run the graph's own nodes


@pytest.mark.timeout(300)
def test_lava_runs_the_level_lifs_bit_exactly():
    """Lava's LIF and Dense against the reference on every step, the quantiser exposed (its extractor sums the
    four LIFs' spikes) and read by Lava's Dense (its port sums them into the graded level)."""
    from snncompile.backends.lava.runner import run_lava_session
    graph = level_graph()
    x = {"x": _every_input(-8, 20)}
    run = run_lava_session(graph, x, granularity="per_op", expose=["q", "d"], timeout=240)
    want = run_graph(graph, x, keep="all")
    assert set(run.plan.stock.values()) == {"LIF", "Dense"}
    for name in ("q", "d", "y"):
        assert torch.equal(run.values[name].to(torch.int64), want[name].to(torch.int64)), name
    assert want["q"].max() == 4


def biased_levels(steps: int = 6, tokens: tuple[int, ...] = ()) -> Graph:
    """x (spikes, ``[*tokens, 4]``) -> IntDense s with a bias (below the first threshold: no early spike) -> q ->
    IntDense d -> y, scheduled."""
    from test_lava_synapse_biases import _scheduled
    rng = np.random.default_rng(7)
    nodes = {"x": (Input(shape=(*tokens, 4), dtype=SPIKE),),
             "s": (IntDense(weight=2 * rng.integers(-6, 7, (3, 4)), bias=np.array([2, -7, 1]), delay=0, out_bits=12),
                   "x"),
             "q": (LevelThreshold(thresholds=THRESHOLDS), "s"),
             "d": (IntDense(weight=W, delay=0, out_bits=12), "q"), "y": (Output(), "d")}
    return _scheduled(nodes, ("y",), steps)


@pytest.mark.parametrize("tokens", [(), (2,)])
def test_the_levels_of_a_quantiser_only_synapses_read_merge_into_one_lif(tokens):
    """The synapse's bias moves into the four LIFs, which then merge: one LIF of 3 x 4 neurons, neuron c * 4 + k
    level k of channel c, its bias b_c + (vth + 1 - t_k) (by hand), the synapse's rows and the reader's columns
    repeated 4 times; the output unchanged, the levels on their data window (the LIFs keep the bias after it)."""
    graph = biased_levels(tokens=tokens)
    plan = plan_lava(graph, granularity="per_op")
    assert plan.executed_by == {"q": ("q.levels",)} and "q" not in plan.graph.nodes
    assert (plan.stock["s"], plan.stock["q.levels"], plan.stock["d"]) == ("Dense", "LIFReset", "Dense")
    lif = plan.graph.op("q.levels")
    # t = (3, 6, 11, 14) on a + b, b = (2, -7, 1): vth + 1 = 1, offsets 1 - t = (-2, -5, -10, -13)
    assert lif.vth == 0 and lif.bias_exp == 6 and lif.reset_at == graph.schedule.latency["q"]
    by_hand = [0, -3, -8, -11, -9, -12, -17, -20, -1, -4, -9, -12]  # per token: the features' levels
    assert np.array_equal(lif.bias_mant, np.broadcast_to(by_hand, (*tokens, 12)))
    assert np.array_equal(plan.graph.op("s").weight, np.repeat(graph.op("s").weight, 4, axis=0))
    assert np.array_equal(plan.graph.op("d").weight, np.repeat(W, 4, axis=1))
    assert plan_classes(plan)["q"] == "LIFReset"
    feeds = {"x": (torch.rand(graph.time_steps, 2, *tokens, 4, generator=torch.Generator().manual_seed(0))
                   < 0.6).float()}
    want, got = run_graph(graph, feeds, keep="all"), run_graph(plan.graph, feeds, keep="all")
    assert torch.equal(got["y"], want["y"]) and want["q"].max() == 4
    levels = got["q.levels"].reshape(*got["q.levels"].shape[:-1], 3, 4).sum(-1)  # neuron c * 4 + k of a token
    window = slice(graph.schedule.latency["q"], graph.schedule.latency["q"] + data_steps(graph))
    assert torch.equal(levels[window].to(torch.int64), want["q"][window].to(torch.int64))


@pytest.mark.timeout(300)
def test_lava_runs_a_merged_level_lif_bit_exactly():
    from snncompile.backends.lava.runner import run_lava_session
    graph = biased_levels()
    feeds = {"x": (torch.rand(graph.time_steps, 2, 4, generator=torch.Generator().manual_seed(1)) < 0.6).float()}
    run = run_lava_session(graph, feeds, granularity="per_op", timeout=240)
    assert run.plan.executed_by == {"q": ("q.levels",)}
    want = run_graph(graph, feeds, keep="all")
    assert torch.equal(run.values["y"], want["y"]) and torch.equal(run.values["d"].to(torch.int64),
                                                                   want["d"].to(torch.int64))

"""Placement of lowered graphs onto target cores (snncompile/backends/placement.py) and the design rules
(snncompile/backends/design_rules.py): the default model on Loihi 2 and Loihi 1, a hand-built graph that
breaks many rules at once on a tiny target, receptive fields against brute force, and the JSON file."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from snncompile.ir import SPIKE, Graph, Node
from snncompile.ir.ops import (Input, IntAdd, IntConv2d, IntDense, IntShift, KVOuterAccumulate, LoihiLIF, MaxPool2d, Output,
                               QMAccumulate, ScoreValueAccumulate, SpikeScores, SumPool2d, TokenSum)
from snncompile.backends.design_rules import RULES, DesignRuleError, check, check_or_raise
from snncompile.backends.placement import (Placement, PlacementError, compartment_order, core_lower_bound, core_views,
                                           load_placement, place, placement_path, save_placement)
from snncompile.targets import SCHEMA, load_target

RULE_NAMES = {r.__name__ for r in RULES}


@pytest.fixture(scope="module")
def integer() -> Graph:
    """The default model lowered to its integer graph (as the CLI's compile does)."""
    from snncompile.data import load_dataset
    from snncompile.frontend import export
    from snncompile.passes import lower_to_loihi
    from snncompile.sim.dataset import graph_feeds
    from snncompile.zoo.checkpoint import load_checkpoint
    from snncompile.zoo.registry import DEFAULT_MODEL, find_entry
    entry = find_entry(DEFAULT_MODEL)
    loaded = load_checkpoint(entry.checkpoint)
    graph = export(loaded.model)
    train = load_dataset(entry.data, loaded.config, "train")
    return lower_to_loihi(graph, graph_feeds(graph, torch.stack([train[i][0] for i in range(16)])))


@pytest.fixture(scope="module")
def on_loihi2(integer) -> Placement:
    return place(integer, "loihi2")


def assert_well_formed(graph: Graph, p: Placement, target) -> None:
    """Every chip node is a unit or attached to one; every unit's compartments are covered exactly once by its
    slices; cores are numbered 0.. with one slice each; every core's totals are within the target's limits."""
    attached = {m for u in p.nodes.values() for m in u.attached}
    assert set(graph.nodes) == set(p.host_nodes) | set(p.nodes) | attached
    assert not set(p.host_nodes) & (set(p.nodes) | attached)
    assert [c.core for c in p.cores] == list(range(p.cores_used))
    for name, unit in p.nodes.items():
        bounds = [(s.start, s.stop) for s in unit.slices]
        assert bounds[0][0] == 0 and bounds[-1][1] == unit.neurons, name
        assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(bounds, bounds[1:] + [(unit.neurons, None)])), name
        for s in unit.slices:
            c = p.cores[s.core]
            assert (c.node, c.start, c.stop, c.neurons) == (name, s.start, s.stop, s.stop - s.start)
    assert sum(u.neurons for u in p.nodes.values()) == sum(c.neurons for c in p.cores)
    for c in p.cores:
        assert c.chip == c.core // target.cores_per_chip.value
        assert c.neurons <= target.neurons_per_core.value
        assert c.synaptic_bytes <= target.synaptic_memory_per_core.value * 1024
        assert c.fan_in_axons <= target.fan_in_axons_per_core.value
        assert c.fan_out_axons <= target.fan_out_axons_per_core.value


# -- the default model -----------------------------------------------------------------------------------------------

def test_default_model_places_on_loihi2_without_violations(integer, on_loihi2):
    p, target = on_loihi2, load_target("loihi2")
    assert check(integer, p, target) == []
    check_or_raise(integer, p, target)
    assert (p.cores_used, p.chips_used, len(p.nodes)) == (38, 1, 33)
    assert p.host_nodes == ("input", "patch_embed.proj_conv.host", "patch_embed.proj_conv.quant",
                            "patch_embed.proj_conv", "time_mean.int", "time_mean", "output")
    assert_well_formed(integer, p, target)
    # synapses live with their postsynaptic compartments, their kernel rows counted there
    add = p.nodes["patch_embed.add"]
    assert set(add.attached) == {"patch_embed.rpe_conv", "patch_embed.maxpool3.delay1"}
    assert p.cores[add.slices[0].core].synaptic_bits == 64 * 64 * 3 * 3 * 9
    assert p.nodes["block.0.attn.q_lif"].attached == ("block.0.attn.q_conv",)
    # a pool after a synapse holds one accumulator per synaptic sum
    assert p.nodes["patch_embed.maxpool3"].neurons == 64 * 8 * 8
    # the 8192 neurons of a layer fit one Loihi 2 core, but their 8192 output axons do not: two slices
    assert [(s.start, s.stop) for s in p.nodes["patch_embed.proj_lif2"].slices] == [(0, 4096), (4096, 8192)]
    # the residual sum after a 256-channel 1x1 convolution: two boxes of all 64 channels at 2 x 4 positions
    mlp = p.nodes["block.0.mlp.add"]
    assert mlp.order == "boxes:64x2x4/64x4x4" and [(s.start, s.stop) for s in mlp.slices] == [(0, 512), (512, 1024)]
    assert p.cores[mlp.slices[0].core].fan_in_axons == 8 * 256 + 512  # 8 tokens of fc2_lif + the residual
    # the classifier is read by the host: its synapse is a unit of its own (readout compartments)
    assert p.nodes["head"].neurons == 10 and p.cores[-1].fan_out_axons == 10
    graded = {m.src for m in p.messages if m.graded}
    assert {"patch_embed.proj_conv", "block.0.attn.core.kv", "token_mean"} <= graded


def test_default_model_on_loihi1_reports_its_graded_messages(integer):
    target = load_target("loihi1")
    p = place(integer, target)
    assert (p.cores_used, p.chips_used) == (56, 1)
    assert_well_formed(integer, p, target)
    found = check(integer, p, target)
    assert {v.rule for v in found} == {"graded_messages_supported"}  # Loihi 1 has binary spikes only
    assert [v.node for v in found] == [
        "patch_embed.proj_conv", "patch_embed.maxpool3", "patch_embed.add", "block.0.attn.core.kv",
        "block.0.attn.core.qm", "block.0.attn.add", "block.0.mlp.add", "block.1.attn.core.kv",
        "block.1.attn.core.qm", "block.1.attn.add", "block.1.mlp.add", "token_mean.sum", "token_mean"]
    assert "binary spikes only" in found[3].message and "'block.0.attn.core.qm'" in found[3].message
    with pytest.raises(DesignRuleError, match="13 design rule violation"):
        check_or_raise(integer, p, target)


def test_a_loihi2_placement_checked_against_loihi1(integer, on_loihi2):
    found = check(integer, on_loihi2, load_target("loihi1"))
    rules = [v.rule for v in found]
    assert rules.count("placement_is_for_this_target") == 1
    crowded = {v.node for v in found if v.rule == "neurons_per_core_within_limit"}
    assert crowded == {"patch_embed.proj_lif", "patch_embed.proj_lif1", "patch_embed.proj_lif2",
                       "patch_embed.maxpool3", "block.0.mlp.fc2_lif", "block.1.mlp.fc2_lif"}
    assert rules.count("graded_messages_supported") == 13


def test_energy_conventions_have_no_cores(integer):
    with pytest.raises(PlacementError, match="no cores"):
        place(integer, "cmos45")


# -- a graph that breaks many rules at once --------------------------------------------------------------------------

TINY = {"neurons_per_core": 16, "synaptic_memory_per_core": 1, "fan_in_axons_per_core": 64,
        "fan_out_axons_per_core": 2, "cores_per_chip": 4, "tiles_per_chip": 1, "cores_per_tile": 4,
        "weight_bits": 4, "weight_exponent_min": -2, "weight_exponent_max": 2, "decay_bits": 8,
        "state_bits": 16, "threshold_bits": 8, "bias_mantissa_bits": 8, "bias_exponent_bits": 2,
        "synaptic_delay_bits": 2, "graded_spike_payload_bits": 0}


def tiny_target(tmp_path):
    """A hypothetical chip: Loihi 1's figures with tiny limits."""
    return changed_target(tmp_path, "loihi1", "tiny", TINY)


def changed_target(tmp_path, base: str, name: str, changes: dict):
    """A hypothetical chip: ``base``'s figures with ``changes``."""
    lines = [f'name = "{name}"', 'kind = "chip"', 'description = "a hypothetical chip with changed limits"']
    for key, fig in load_target(base).figures().items():
        value = changes.get(key, fig.value)
        lines += [f"[{SCHEMA[key].section}.{key}]", f"value = {value!r}", f"unit = {json.dumps(fig.unit)}",
                  f"source = {json.dumps('test: ' + fig.source)}", f"status = {json.dumps(fig.status)}"]
        if fig.note:
            lines.append(f"note = {json.dumps(fig.note)}")
    path = tmp_path / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return load_target(path)


def rule_breaker() -> Graph:
    """x (1000 spikes) -> big (IntDense, 9-bit weights, exponent 5) -> lif_big (vth, bias, decays too wide)
    -> fc2 (delay 5) -> lif2 -> double (IntAdd of lif2 with itself: an integer message) -> lif3 -> y."""
    rng = np.random.default_rng(0)
    lif = dict(current_decay=4096, voltage_decay=2048, vth=10)
    nodes = {
        "x": Node(Input(shape=(1000,), dtype=SPIKE, time="stream")),
        "big": Node(IntDense(weight=rng.integers(-300, 301, (20, 1000)), weight_bits=10, weight_exp=5), ("x",)),
        "lif_big": Node(LoihiLIF(**{**lif, "vth": 1000, "voltage_decay": 4096}, bias_mant=200), ("big",)),
        "fc2": Node(IntDense(weight=rng.integers(-15, 16, (40, 20)), weight_bits=5, delay=5), ("lif_big",)),
        "lif2": Node(LoihiLIF(**lif), ("fc2",)),
        "double": Node(IntAdd(out_bits=12), ("lif2", "lif2")),
        "lif3": Node(LoihiLIF(**lif), ("double",)),
        "y": Node(Output(), ("lif3",)),
    }
    return Graph(nodes, ("y",), time_steps=4).validate()


def test_every_violation_is_listed_by_node_and_rule(tmp_path):
    graph, target = rule_breaker(), tiny_target(tmp_path)
    p = place(graph, target)
    # lif_big: 20 neurons in slices of at most 16; the others send one axon per neuron (to the next unit or
    # the host) and are cut in slices of 2 to keep within 2 output axons per core: 2 + 3 x 20 cores
    assert [[s.stop - s.start for s in u.slices] for u in p.nodes.values()] == [[16, 4]] + [[2] * 20] * 3
    assert p.cores_used == 62
    assert p.nodes["lif_big"].attached == ("big",) and p.nodes["lif2"].attached == ("fc2",)
    found = check(graph, p, target)
    pairs = {(v.rule, v.node) for v in found}
    assert pairs == {
        ("weights_fit_weight_bits", "big"), ("weight_exponents_in_target_range", "big"),
        ("synaptic_memory_per_core_within_limit", "lif_big"),   # one neuron's 1000 x 10-bit weights > 1 KiB
        ("fan_in_axons_per_core_within_limit", "lif_big"),      # one neuron reads 1000 axons > 64
        ("fan_out_axons_per_core_within_limit", "lif_big"),     # each neuron feeds lif2's 20 cores > 2 axons
        ("cores_fit_on_max_chips", "lif2"), ("cores_fit_on_max_chips", "double"), ("cores_fit_on_max_chips", "lif3"),
        ("state_fits_state_bits", "lif_big"), ("state_fits_state_bits", "lif2"), ("state_fits_state_bits", "lif3"),
        ("thresholds_fit_threshold_bits", "lif_big"), ("biases_fit_bias_bits", "lif_big"),
        ("decays_fit_decay_bits", "lif_big"), ("decays_fit_decay_bits", "lif2"), ("decays_fit_decay_bits", "lif3"),
        ("delays_fit_delay_bits", "fc2"), ("graded_messages_supported", "double"),
    }
    assert all(v.rule in RULE_NAMES and v.node in graph.nodes for v in found)
    per_core = [v for v in found if v.rule == "fan_in_axons_per_core_within_limit"]
    assert len(per_core) == 2 and "1000 input axons" in per_core[0].message  # both cores of lif_big
    chips = [v for v in found if v.rule == "cores_fit_on_max_chips"]
    assert "needs 62 cores (16 chips)" in chips[0].message
    with pytest.raises(DesignRuleError) as error:
        check_or_raise(graph, p, target)
    assert error.value.violations == found
    assert str(error.value).count("\n  - ") == len(found)
    for v in found:
        assert f"[{v.rule}] node {v.node!r}: {v.message}" in str(error.value)
    # 16 chips hold the 62 cores
    assert not [v for v in check(graph, p, target, max_chips=16) if v.rule == "cores_fit_on_max_chips"]


def test_the_partitioner_respects_limits_it_can_meet(tmp_path):
    target = tiny_target(tmp_path)
    graph = rule_breaker()
    nodes = dict(graph.nodes)
    nodes["x"] = Node(Input(shape=(60,), dtype=SPIKE, time="stream"))
    nodes["big"] = Node(IntDense(weight=np.ones((20, 60), np.int64)), ("x",))
    p = place(Graph(nodes, graph.outputs, graph.time_steps), target)
    # 60 inputs x 9 bits = 540 bits per neuron: 15 neurons fill 1 KiB; the fan-in (60 <= 64) fits; the fan-out
    # limit (2 axons) cannot be met by one neuron feeding 20 cores: not partitioned for, reported
    big = [p.cores[s.core] for s in p.nodes["lif_big"].slices]
    assert [(c.neurons, c.fan_in_axons, c.synaptic_bits, c.fan_out_axons) for c in big] == [
        (15, 60, 15 * 540, 15 * 20), (5, 60, 5 * 540, 5 * 20)]
    rules = {v.rule for v in check(Graph(nodes, graph.outputs, graph.time_steps), p, target) if v.node == "lif_big"}
    assert rules == {"fan_out_axons_per_core_within_limit", "state_fits_state_bits", "thresholds_fit_threshold_bits",
                     "biases_fit_bias_bits", "decays_fit_decay_bits"}


def test_core_lower_bound_per_unit_and_resource(tmp_path, integer, on_loihi2):
    target = tiny_target(tmp_path)
    graph = rule_breaker()
    nodes = dict(graph.nodes)
    nodes["x"] = Node(Input(shape=(60,), dtype=SPIKE, time="stream"))
    nodes["big"] = Node(IntDense(weight=np.ones((20, 60), np.int64)), ("x",))
    graph = Graph(nodes, graph.outputs, graph.time_steps)
    bound = core_lower_bound(graph, target)
    # units lif_big (20 neurons / 16; 20 x 60 x 9 bits / 8192; 60 axons / 64; each neuron to one core of lif2,
    # whose 40 rows of 20 x 5 bits fit one core: 20 axons / 2), lif2 (40 / 16; 40 x 20 x 5 bits; 20 axons; 40
    # axons to double / 2), double and lif3 (40 / 16; no synapses; 40 axons; 40 to lif3 or the host / 2)
    assert bound.by_resource == {"neurons": 2 + 3 + 3 + 3, "synaptic memory": 2 + 1 + 0 + 0, "input axons": 4,
                                 "output axons": 10 + 20 + 20 + 20, "kernels and windows": 0,
                                 "rows and columns": 0}
    assert bound.cores == 10 + 20 + 20 + 20
    # (the placement itself breaks the fan-out limit, which one lif_big neuron alone exceeds: a bound holds for
    # placements that fit)
    assert core_lower_bound(integer, "loihi2").cores <= on_loihi2.cores_used


# -- receptive fields -------------------------------------------------------------------------------------------------

def brute_reads(op, inputs: list[torch.Tensor], out_mask: np.ndarray) -> list[np.ndarray]:
    """Which input elements change the marked outputs: perturb each one (a spike 1 -> 0, an integer + 1000)."""
    base = op.run(*[x[None, None] for x in inputs])[0, 0]
    masks = []
    for i, x in enumerate(inputs):
        found = np.zeros(x.numel(), bool)
        for e in range(x.numel()):
            y = x.clone().reshape(-1)
            y[e] = 0 if op_is_spike(x) else y[e] + 1000
            args = [a[None, None] for a in inputs]
            args[i] = y.reshape(x.shape)[None, None]
            changed = (op.run(*args)[0, 0] != base).numpy()
            found[e] = bool((changed & out_mask).any())
        masks.append(found.reshape(x.shape))
    return masks


def op_is_spike(x: torch.Tensor) -> bool:
    return x.dtype == torch.float32


SPIKES = lambda *shape: torch.ones(shape)  # noqa: E731
INTS = lambda *shape: torch.randint(1, 5, shape, generator=torch.Generator().manual_seed(1))  # noqa: E731
CASES = {
    "conv": (IntConv2d(weight=np.ones((4, 2, 3, 3), np.int64), stride=(2, 1), padding=(1, 1), dilation=(1, 2),
                       groups=2), [SPIKES(4, 7, 6)]),
    "maxpool": (MaxPool2d(kernel=(3, 3), stride=(2, 2), padding=(1, 1)), [INTS(2, 7, 7) * 10 +
                                                                          torch.arange(49).reshape(7, 7)]),
    "sumpool": (SumPool2d(kernel=(2, 2), stride=(2, 2)), [INTS(2, 4, 6)]),
    "dense": (IntDense(weight=np.ones((3, 5), np.int64)), [SPIKES(2, 5)]),
    "tokensum": (TokenSum(), [INTS(3, 2, 2)]),
    "kv": (KVOuterAccumulate(heads=2), [INTS(4, 2, 2), SPIKES(4, 2, 2)]),
    "qm": (QMAccumulate(heads=2), [SPIKES(4, 2, 2), INTS(2, 2, 2)]),
    "scores": (SpikeScores(heads=2), [SPIKES(4, 2, 2), SPIKES(4, 2, 2)]),
    "score_value": (ScoreValueAccumulate(heads=2), [INTS(2, 4, 4), SPIKES(4, 2, 2)]),
}


@pytest.mark.parametrize("case", CASES)
def test_receptive_fields_equal_brute_force(case):
    op, inputs = CASES[case]
    out_shape = tuple(op.run(*[x[None, None] for x in inputs]).shape[2:])
    rng = np.random.default_rng(2)
    for _ in range(3):
        out = rng.random(out_shape) < 0.3
        expected = brute_reads(op, inputs, out)
        got = op.reads(out, [tuple(x.shape) for x in inputs])
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e)


def test_compartment_orders():
    assert compartment_order((2, 1, 3), "channel").tolist() == [0, 1, 2, 3, 4, 5]
    assert compartment_order((2, 1, 3), "position").tolist() == [0, 3, 1, 4, 2, 5]
    # boxes of 2 channels x 1 x 1 positions of a [4, 2, 2] tensor: each box one position of 2 channels
    assert compartment_order((4, 2, 2), "boxes:2x1x1/4x2x2").tolist() == [0, 4, 1, 5, 2, 6, 3, 7,
                                                                           8, 12, 9, 13, 10, 14, 11, 15]
    # ragged last blocks: channels [0, 2) then [2, 3), columns [0, 2) then [2, 3)
    assert compartment_order((3, 1, 3), "boxes:2x1x2/3x1x3").tolist() == [0, 3, 1, 4, 2, 5, 6, 7, 8]
    # a member twice the reference grid per axis: its box is the reference box scaled
    order = compartment_order((6, 2, 6), "boxes:2x1x2/3x1x3")
    assert sorted(order.tolist()) == list(range(6 * 2 * 6))
    first = np.unravel_index(order[:32], (6, 2, 6))  # the first box: channels 0-3, rows 0-1, columns 0-3
    assert set(first[0]) == {0, 1, 2, 3} and set(first[1]) == {0, 1} and set(first[2]) == {0, 1, 2, 3}


def recounted(graph: Graph, p: Placement) -> list[tuple[int, int]]:
    """Every core's (input axons, output axons) counted from element masks (``core_views``), independently of
    the box arithmetic the partitioner used."""
    views = core_views(graph, p)
    readers = {}  # source -> per element, the cores that read it
    for v in views:
        for src, mask in v.reads.items():
            readers.setdefault(src, np.zeros(mask.size, np.int64))
            readers[src] += mask.reshape(-1)
    host = set(p.host_nodes)
    to_host = {u for u in p.nodes if u in graph.outputs or any(c in host for c in graph.consumers(u))}
    return [(int(sum(m.sum() for m in v.reads.values())),
             int(readers.get(v.unit, np.zeros(1 + v.owned[v.unit].max(), np.int64))[v.owned[v.unit]].sum()
                 + (v.owned[v.unit].size if v.unit in to_host else 0))) for v in views]


def test_box_arithmetic_equals_element_masks(tmp_path, integer, on_loihi2):
    small = changed_target(tmp_path, "loihi2", "small", {"neurons_per_core": 64, "fan_in_axons_per_core": 300,
                                                         "fan_out_axons_per_core": 200})
    graph = strided_group()
    boxed = place(graph, small)
    # the pool's group on the convolution's 10 x 10 x 10 grid: a box of conv rows covers half a pool row
    assert boxed.nodes["pool"].order.endswith("/10x10x10") and boxed.nodes["pool"].attached == ("conv",)
    assert not check(graph, boxed, small, max_chips=boxed.chips_used)
    for graph, p in ((integer, on_loihi2), (integer, place(integer, "loihi1")), (graph, boxed)):
        assert recounted(graph, p) == [(c.fan_in_axons, c.fan_out_axons) for c in p.cores]
        views = core_views(graph, p)
        for c, v in zip(p.cores, views):  # kernel memory: the output channels a box's conv elements cover
            if not p.nodes[v.unit].order.startswith("boxes:"):
                continue
            conv = [m for m in v.owned if isinstance(graph.op(m), IntConv2d)]
            assert c.synaptic_bits == sum(
                np.unique(v.owned[m] // math.prod(graph.types()[m].shape[1:])).size
                * math.prod(graph.op(m).weight.shape[1:]) * graph.op(m).weight_bits for m in conv)


def strided_group() -> Graph:
    """A stride-2 3x3 convolution into a 3x3 max pool (one group on a grid of 5 x 5 cells), a residual
    read twice."""
    rng = np.random.default_rng(3)
    lif = dict(current_decay=4096, voltage_decay=2048, vth=10)
    nodes = {"x": Node(Input(shape=(6, 20, 20), dtype=SPIKE, time="stream")),
             "lif0": Node(LoihiLIF(**lif), ("x",)),
             "conv": Node(IntConv2d(weight=rng.integers(-3, 4, (10, 6, 3, 3)), stride=(2, 2), padding=(1, 1)),
                          ("lif0",)),
             "pool": Node(MaxPool2d(kernel=(3, 3), stride=(2, 2), padding=(1, 1)), ("conv",)),
             "lif1": Node(LoihiLIF(**lif), ("pool",)),
             "sum": Node(IntAdd(out_bits=12), ("lif1", "lif1")),
             "y": Node(Output(), ("sum",))}
    return Graph(nodes, ("y",), time_steps=2).validate()


def test_tiled_cuts_use_fewer_cores_where_neither_channel_nor_position_slices_fit(monkeypatch):
    # a 3x3 convolution of 256 channels of 8 x 8 spikes into 256 neurons per position on Loihi 2: a position
    # slice stores every kernel (75 fit in 192 KiB), a channel slice reads a window of every input channel
    # (2304 axons per position); blocks of channels x tiles of positions fit both
    rng = np.random.default_rng(0)
    nodes = {"x": Node(Input(shape=(256, 8, 8), dtype=SPIKE, time="stream")),
             "conv": Node(IntConv2d(weight=rng.integers(-3, 4, (256, 256, 3, 3)), padding=(1, 1)), ("x",)),
             "lif": Node(LoihiLIF(current_decay=4096, voltage_decay=2048, vth=10), ("conv",)),
             "y": Node(Output(), ("lif",))}
    graph = Graph(nodes, ("y",), time_steps=4).validate()
    tiled = place(graph, "loihi2")
    assert tiled.nodes["lif"].order.startswith("boxes:")
    assert not check(graph, tiled, load_target("loihi2"), max_chips=tiled.chips_used)
    assert recounted(graph, tiled) == [(c.fan_in_axons, c.fan_out_axons) for c in tiled.cores]
    import snncompile.backends.placement as placement
    monkeypatch.setattr(placement, "box_unit", lambda *args: None)
    monkeypatch.setattr(placement, "_best_tiles", lambda *args: None)
    untiled = place(graph, "loihi2")
    assert untiled.nodes["lif"].order in ("channel", "position") and tiled.cores_used < untiled.cores_used
    # a core holds at most 75 channels' kernels (256 x 3 x 3 x 9 bits in 192 KiB), so each position's 256
    # channels lie on at least 4 cores, and 16 positions' windows (4096 axons / 256 channels): 64 positions x 4
    # / 16 = 16 cores, more than any one resource alone (4)
    bound = core_lower_bound(graph, "loihi2")
    assert bound.by_resource["kernels and windows"] == 16 == bound.cores <= tiled.cores_used
    assert max(v for k, v in bound.by_resource.items() if k != "kernels and windows") == 4


# -- the file --------------------------------------------------------------------------------------------------------

def test_json_round_trip_beside_the_artifact(tmp_path, integer, on_loihi2):
    artifact = tmp_path / "model.snnir"
    written = save_placement(on_loihi2, artifact)
    assert written == placement_path(artifact) == tmp_path / "model.placement.json"
    doc = json.loads(written.read_text())
    assert doc["graph_digest"] == on_loihi2.graph_digest and doc["cores_used"] == 38 and doc["target"] == "loihi2"
    assert load_placement(artifact, integer) == on_loihi2
    assert load_placement(written) == on_loihi2
    assert Placement.from_json(on_loihi2.to_json()) == on_loihi2


def test_a_changed_graph_is_refused(tmp_path, integer, on_loihi2):
    path = save_placement(on_loihi2, tmp_path / "model.snnir")
    nodes = dict(integer.nodes)
    node = nodes["head_lif"]
    nodes["head_lif"] = Node(dataclasses.replace(node.op, vth=node.op.vth + 1), node.inputs)
    changed = dataclasses.replace(integer, nodes=nodes)
    with pytest.raises(PlacementError, match=r"model\.placement\.json: placement was made for graph digest "
                                             r"[0-9a-f]{16}\.\.\., but this graph's digest is [0-9a-f]{16}\.\.\.: "
                                             r"the graph changed since it was placed; run place\(\) again"):
        load_placement(path, changed)
    found = check(changed, on_loihi2, load_target("loihi2"))
    assert [v.rule for v in found] == ["placement_is_for_this_graph"]


def test_malformed_files(tmp_path, on_loihi2):
    path = tmp_path / "bad.placement.json"
    path.write_text('{"format": "something else"}')
    with pytest.raises(PlacementError, match="not a placement file"):
        load_placement(path)
    doc = json.loads(on_loihi2.to_json())
    del doc["cores"][0]["fan_in_axons"]
    path.write_text(json.dumps(doc))
    with pytest.raises(PlacementError, match="malformed placement file: KeyError"):
        load_placement(path)
    doc["format_version"] = 99
    path.write_text(json.dumps(doc))
    with pytest.raises(PlacementError, match="format_version 99"):
        load_placement(path)


def test_grouped_convolutions_are_cut_in_blocks_within_a_group(tmp_path, monkeypatch):
    # 3 groups of 4 input channels -> 5 output channels, 3x3 on 4 x 4 spikes, 64 axons per core: one group's 5
    # channels over the whole map read its 4 channels' 16 positions (64 axons), but a block across two groups
    # reads both (128)
    target = changed_target(tmp_path, "loihi2", "axons64", {"fan_in_axons_per_core": 64})
    rng = np.random.default_rng(0)
    nodes = {"x": Node(Input(shape=(12, 4, 4), dtype=SPIKE, time="stream")),
             "conv": Node(IntConv2d(weight=rng.integers(-3, 4, (15, 4, 3, 3)), padding=(1, 1), groups=3), ("x",)),
             "lif": Node(LoihiLIF(current_decay=4096, voltage_decay=2048, vth=10), ("conv",)),
             "y": Node(Output(), ("lif",))}
    graph = Graph(nodes, ("y",), time_steps=2).validate()
    p = place(graph, target)
    assert p.nodes["lif"].order == "boxes:5x4x4/15x4x4" and p.cores_used == 3
    assert [c.fan_in_axons for c in p.cores] == [64] * 3 and not check(graph, p, target)
    import snncompile.backends.placement as placement
    blind = placement.box_unit
    monkeypatch.setattr(placement, "box_unit", lambda *args: dataclasses.replace(blind(*args), group_channels=None))
    assert place(graph, target).cores_used > 3

"""The SANA-FE reference harness (tests/sanafe_reference.py) on a small chain graph, 16 inputs -> 32 -> 10
Loihi LIF neurons over 8 steps: SANA-FE's spike trains and synaptic events equal our simulator's and
count_activity's, its energy is the sum of its per-unit parts priced per event, its neurons count as updated by
its own rule, its step latency bounds its core phases plus the barrier, and hops appear when the input sits on
another tile."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sanafe_reference import ENERGY_UNITS, SanafeHarnessError, chain_layers, run_sanafe
from snncompile.backends.placement import place
from snncompile.ir import SPIKE, Graph, Node, int_type
from snncompile.ir.ops import Input, IntDense, LoihiLIF, Output
from snncompile.report import count_activity
from snncompile.report.cores import tile_position
from snncompile.sim import run_graph
from snncompile.targets import load_target

STEPS = 8


def chain(current_decay: int = 4096, voltage_decay: int = 512, bias: int = 0, delay: int = 1,
          dtype=SPIKE) -> Graph:
    rng = np.random.default_rng(0)
    w1, w2 = rng.integers(-4, 9, (32, 16)), rng.integers(-4, 9, (10, 32))
    # extra zero weights: they are not synapses, in SANA-FE as in our synaptic-op count
    w1[rng.random(w1.shape) < 0.25] = 0
    w2[rng.random(w2.shape) < 0.25] = 0
    lif = dict(current_decay=current_decay, voltage_decay=voltage_decay, vth=10)
    return Graph(nodes={"x": Node(Input(shape=(16,), dtype=dtype)),
                        "fc1": Node(IntDense(weight=w1, delay=delay), ("x",)),
                        "lif1": Node(LoihiLIF(**lif, bias_mant=bias), ("fc1",)),
                        "fc2": Node(IntDense(weight=w2), ("lif1",)),
                        "lif2": Node(LoihiLIF(**lif), ("fc2",)),
                        "out": Node(Output(), ("lif2",))}, outputs=("out",), time_steps=STEPS).validate()


def spikes_in() -> torch.Tensor:
    rng = np.random.default_rng(1)
    return torch.from_numpy((rng.random((STEPS, 1, 16)) < 0.4).astype(np.float32))


@pytest.fixture(scope="module")
def run():
    graph = chain()
    placement = place(graph, "loihi1")
    feeds = {"x": spikes_in()}
    return graph, placement, feeds, run_sanafe(graph, placement, feeds), count_activity(graph, feeds)


def test_spike_trains_and_synaptic_events_equal_ours(run):
    graph, placement, feeds, r, act = run
    assert r.mode == "model"  # SANA-FE's own LIF, not forced: the spike trains below are its own
    assert r.cores == {"x": (2,), "lif1": (0,), "lif2": (1,)}  # our cores 0, 1; the input on the next one
    assert r.spikes["x"] == tuple(int(v) for v in feeds["x"].sum((1, 2)))
    for lif in ("lif1", "lif2"):
        assert r.spikes[lif] == act.spikes[lif].spikes == r.reference_spikes[lif]
    assert sum(r.spikes["lif2"]) > 0 and sum(r.spikes["lif1"]) > 0
    for fc in ("fc1", "fc2"):
        assert r.synaptic_events[fc] == act.synapses[fc].ops
    # one message per spike and destination core: lif1 feeds one core, lif2 only the host (no message)
    assert r.messages == {"x": r.spikes["x"], "lif1": r.spikes["lif1"], "lif2": (0,) * STEPS}


def test_energy_is_the_sum_of_its_parts_priced_per_event(run):
    _, _, _, r, _ = run
    f, e = r.figures, r.energy_pj
    assert (f.synapse_energy, f.access_energy, f.update_energy, f.spike_out_energy, f.message_out_energy) == \
        pytest.approx((35.5, 51.2, 21.6, 69.3, 111.0))
    assert sum(e[k] for k in ENERGY_UNITS) == pytest.approx(e["total"], rel=1e-12)
    assert e["total"] == pytest.approx(r.energy_reported_pj["total"], rel=1e-12)
    assert r.energy_reported_pj["soma"] == pytest.approx(e["soma_access"] + e["soma_update"] + e["soma_spike_out"])
    assert e["synapse"] == pytest.approx(sum(map(sum, r.synaptic_events.values())) * f.synapse_energy)
    assert e["soma_access"] == pytest.approx((32 + 10) * STEPS * f.access_energy)  # idle neurons pay it too
    assert e["soma_update"] == pytest.approx(sum(map(sum, r.neurons_updated.values())) * f.update_energy)
    assert e["soma_spike_out"] == pytest.approx((sum(r.spikes["lif1"]) + sum(r.spikes["lif2"])) * f.spike_out_energy)
    assert e["message_out"] == pytest.approx(sum(map(sum, r.messages.values())) * f.message_out_energy)
    assert e["dendrite"] == e["message_in"] == e["hops_ew"] == e["hops_ns"] == 0  # one tile: no hops
    for k in ENERGY_UNITS:
        assert sum(r.energy_per_step_pj[k]) == pytest.approx(e[k])


def test_updated_neurons_follow_sanafe_rule(run):
    """SANA-FE charges the update energy to a neuron whose potential carried in is non-zero, or that received
    any synaptic event in the previous step (even if the weights cancel), or that has a bias; unlike our
    count, a current carried in from the previous step does not make it active."""
    graph, _, feeds, r, act = run
    values = run_graph(graph, feeds, keep="all")
    _, layers = chain_layers(graph)
    for layer in layers:
        _, _, v = layer.lif.simulate(values[layer.synapse])
        v_before = torch.zeros_like(v[:, 0])
        v_before[1:] = v[:-1, 0]
        pre = (values[layer.source][:, 0] != 0).double()
        arrived = torch.zeros_like(pre[:, :1].expand(-1, layer.weight.shape[0]), dtype=torch.bool)
        arrived[1:] = (pre[:-1] @ torch.from_numpy((layer.weight != 0).T.astype(np.float64))) > 0
        expected = (v_before != 0) | arrived
        assert r.neurons_updated[layer.neuron] == tuple(int(n) for n in expected.sum(1))
        assert r.neurons_mapped[layer.neuron] == act.neurons[layer.neuron].neurons


def test_latency_bounds_and_simple_model(run):
    graph, placement, feeds, r, _ = run
    assert r.mapped_tiles == 1 and r.sync_ns == pytest.approx(600.0)  # the table's 1-tile entry
    for lat, gen, rec in zip(r.latency_per_step_ns, r.neuron_phase_max_ns, r.receive_phase_max_ns):
        assert lat - r.sync_ns >= max(gen, rec) - 1e-6  # each core's work is serial within the step
    # the simple timing model is exactly the larger core phase plus the barrier; energy does not depend on it
    simple = run_sanafe(graph, placement, feeds, timing_model="simple", input_core=37)
    assert simple.mapped_tiles == 2 and simple.sync_ns == pytest.approx(1000.0)
    for lat, gen, rec in zip(simple.latency_per_step_ns, simple.neuron_phase_max_ns, simple.receive_phase_max_ns):
        assert lat == pytest.approx(max(gen, rec) + simple.sync_ns)
    # the input on our core 37 (tile 9 at x=1, y=1 in our row-major mesh) reaches core 0 (tile 0 at x=0, y=0) one
    # hop west and one south; SANA-FE numbers its tiles column by column, so that is its tile 5, core 21
    assert simple.sanafe_cores["x"] == (21,) and simple.cores["x"] == (37,)
    target = load_target("loihi1-sanafe")
    assert [tile_position(c, target) for c in (37, 0)] == [(0, 1, 1), (0, 0, 0)]
    same = run_sanafe(graph, placement, feeds, timing_model="simple", input_core=21, layout="sanafe")
    assert same.sanafe_cores == simple.sanafe_cores and same.hops == simple.hops
    f = simple.figures
    assert simple.hops["west"] == simple.hops["south"] == r.spikes["x"]
    assert simple.energy_pj["hops_ew"] == pytest.approx(sum(r.spikes["x"]) * f.hop_energy["west"])
    assert simple.energy_pj["hops_ns"] == pytest.approx(sum(r.spikes["x"]) * f.hop_energy["south"])
    assert simple.input_share_pj["hops"] == pytest.approx(simple.energy_pj["hops_ew"] + simple.energy_pj["hops_ns"])
    assert simple.energy_pj["total"] == pytest.approx(r.energy_pj["total"] + simple.input_share_pj["hops"])


def test_current_decay_sanafe_cannot_model_is_forced():
    graph = chain(current_decay=1024, bias=3)
    placement = place(graph, "loihi1")
    with pytest.raises(SanafeHarnessError, match="current_decay 0 or 4096"):
        run_sanafe(graph, placement, {"x": spikes_in()}, mode="model")
    r = run_sanafe(graph, placement, {"x": spikes_in()})
    assert r.mode == "forced"
    act = count_activity(graph, {"x": spikes_in()})
    for lif in ("lif1", "lif2"):
        assert r.spikes[lif] == act.spikes[lif].spikes
    assert r.neurons_updated["lif1"] == (32,) * STEPS  # a bias: every neuron updates every step


def test_unsupported_graphs_are_refused():
    graph = chain()
    with pytest.raises(SanafeHarnessError, match="delay 0"):
        chain_layers(chain(delay=0))
    with pytest.raises(SanafeHarnessError, match="1-D spike stream"):
        chain_layers(chain(dtype=int_type(8)))
    with pytest.raises(SanafeHarnessError, match="another graph"):
        run_sanafe(graph, place(chain(voltage_decay=0), "loihi1"), {"x": spikes_in()})
    with pytest.raises(SanafeHarnessError, match="batch 1"):
        run_sanafe(graph, place(graph, "loihi1"), {"x": spikes_in().expand(-1, 2, -1)})


def test_target_file_carries_sanafe_figures(run):
    """targets/loihi1-sanafe.toml against the figures the harness reads from SANA-FE's installed arch file."""
    f, t = run[3].figures, load_target("loihi1-sanafe")
    v = {k: fig.value for k, fig in t.figures().items()}
    assert v["synaptic_op_energy"] == pytest.approx(f.synapse_energy)
    assert v["neuron_update_energy_inactive"] == pytest.approx(f.access_energy)
    assert v["neuron_update_energy_active"] == pytest.approx(f.access_energy + f.update_energy)
    assert v["spike_energy_within_tile"] == pytest.approx(f.spike_out_energy)
    assert v["message_energy"] == pytest.approx(f.message_out_energy + f.message_in_energy)
    assert (v["tile_hop_energy_ew"], v["tile_hop_energy_ns"]) == pytest.approx(
        (f.hop_energy["east"], f.hop_energy["north"]))
    assert v["synaptic_op_time"] == pytest.approx(f.synapse_latency)
    assert v["neuron_update_time_inactive"] == pytest.approx(f.access_latency)
    assert v["neuron_update_time_active"] == pytest.approx(f.access_latency + f.update_latency)
    assert v["spike_latency_within_tile"] == pytest.approx(f.spike_out_latency)
    assert (v["message_time"], v["message_receive_time"]) == pytest.approx((f.message_out_latency,
                                                                            f.message_in_latency))
    assert (v["tile_hop_latency_ew"], v["tile_hop_latency_ns"]) == pytest.approx(
        (f.hop_latency["west"], f.hop_latency["south"]))
    assert (v["barrier_sync_time_one_tile"], v["barrier_sync_time_full_chip"]) == pytest.approx(
        (f.sync_ns(1), f.sync_ns(v["tiles_per_chip"])))
    assert v["barrier_sync_time_by_tiles"] == pytest.approx(dict(f.sync_table_ns))
    assert (v["mesh_columns"], v["tiles_per_chip"] // v["mesh_columns"]) == f.mesh
    assert (v["cores_per_tile"], v["neurons_per_core"]) == (f.cores_per_tile, f.neurons_per_core)

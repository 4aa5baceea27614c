"""Per-core activity (report.cores) and the cycle-approximate latency model (report.latency), against hand
computations on small graphs and, on the default zoo model, against the whole-graph counts."""
import json
import re

import numpy as np
import pytest
import torch

from test_placement import changed_target, tiny_target
from zoo_lowering import lowered_zoo_model
from snncompile.backends.placement import core_views, place
from snncompile.ir import SPIKE, Graph, Node
from snncompile.ir.ops import Input, IntDense, LoihiLIF, Output
from snncompile.report.core_map import core_map
from snncompile.report.cores import COUNTS, CoreActivity, core_activity, count_streamed, tile_position
from snncompile.report.counts import count_activity, trace_run
from snncompile.report.latency import barrier_ns, core_times, estimate_latency
from snncompile.targets import load_target
from snncompile.zoo.registry import DEFAULT_MODEL

# outputs are rows; the tiny target (2 neurons a core, 4 cores a tile) puts lif1's outputs 0-1 on core 0, 2-3 on core 1
W1 = np.array([[1, 0, 2, 0], [0, 3, 0, 0], [1, 1, 1, 1], [0, 0, 0, 5]])
W2 = np.array([[1, 1, 1, 0]])
# du = 4096 and vth = 0: u is this step's input, so a neuron spikes at every step its input is positive;
# a synapse delivers one step later (IntDense delay 1)
FIRING = dict(current_decay=4096, voltage_decay=4096, vth=0)


def two_layer_graph() -> Graph:
    return Graph(nodes={"x": Node(Input(shape=(4,), dtype=SPIKE)),
                        "fc1": Node(IntDense(weight=W1), ("x",)), "lif1": Node(LoihiLIF(**FIRING), ("fc1",)),
                        "fc2": Node(IntDense(weight=W2), ("lif1",)), "lif2": Node(LoihiLIF(**FIRING), ("fc2",)),
                        "y": Node(Output(), ("lif2",))}, outputs=("y",), time_steps=3).validate()


@pytest.fixture
def small(tmp_path):
    target = tiny_target(tmp_path)
    graph = two_layer_graph()
    x = torch.tensor([[[1, 0, 1, 0]], [[0, 0, 0, 1]], [[0, 0, 0, 0]]], dtype=torch.float32)
    placement = place(graph, target)
    trace = trace_run(graph, {"x": x})
    return graph, target, placement, trace, core_activity(graph, placement, trace, target)


def test_each_core_counts_the_synaptic_ops_of_its_own_outputs(small):
    graph, _, placement, trace, cores = small
    assert [(v.core, v.unit, v.owned["lif1"].tolist() if "lif1" in v.owned else None) for v in
            core_views(graph, placement)] == [(0, "lif1", [0, 1]), (1, "lif1", [2, 3]), (2, "lif2", None)]
    # t0, x = [1,0,1,0]: core 0 (rows 0-1): input 0 hits W1[0,0]; input 2 hits W1[0,2] -> 2.
    #                    core 1 (rows 2-3): inputs 0 and 2 hit W1[2,0], W1[2,2] -> 2.
    # t1, x = [0,0,0,1]: core 0: column 3 of rows 0-1 is zero -> 0; core 1: W1[2,3], W1[3,3] -> 2
    assert cores.synaptic_ops[0, :, 0].tolist() == [2, 0, 0]
    assert cores.synaptic_ops[1, :, 0].tolist() == [2, 2, 0]
    # a dense synapse's core receives every input element (an axon per input, zero weights or not)
    assert cores.host_messages_in[:2, :, 0].tolist() == [[2, 1, 0], [2, 1, 0]]


def test_messages_and_hops_follow_the_spikes_to_the_cores_that_read_them(small):
    graph, target, _, trace, cores = small
    lif1 = trace.values["lif1"][:, 0]
    # lif1 spikes one step after W1 x > 0: t1 outputs 0 (core 0) and 2 (core 1); t2 outputs 2 and 3 (core 1)
    assert lif1.tolist() == [[0, 0, 0, 0], [1, 0, 1, 0], [0, 0, 1, 1]]
    # the tiny target has 4 cores a tile: every message stays on tile 0 and hops nowhere
    assert [tile_position(c, target) for c in (0, 1, 2)] == [(0, 0, 0)] * 3
    # each lif1 spike is one message to lif2's core (core 2); lif2's own spike (t2) goes to the host only
    assert cores.messages_out[:, :, 0].tolist() == [[0, 1, 0], [0, 1, 2], [0, 0, 0]]
    assert cores.events_out[:, :, 0].tolist() == [[0, 1, 0], [0, 1, 2], [0, 0, 1]]
    assert not cores.hops_ew.any() and not cores.hops_ns.any()
    act = count_activity(graph, trace=trace)
    assert cores.synaptic_ops.sum() == act.totals["ACs"]
    assert cores.neuron_updates_active.sum() == act.totals["neuron_updates_active"]
    assert cores.neuron_updates_inactive.sum() == act.totals["neuron_updates_inactive"]


def test_messages_between_tiles_count_their_hops(tmp_path):
    """The tiny chip with one core a tile, 4 tiles as a 2 x 2 mesh: cores 0, 1, 2 at (0,0), (1,0), (0,1)."""
    path = tiny_target(tmp_path).path
    text = path.read_text()
    for key, value in (("cores_per_tile", 1), ("tiles_per_chip", 4), ("mesh_columns", 2)):
        text = re.sub(rf"(\[chip\.{key}\]\nvalue = )\d+", rf"\g<1>{value}", text)
    path.write_text(text)
    target = load_target(path)
    graph = two_layer_graph()
    x = torch.tensor([[[1, 0, 1, 0]], [[0, 0, 0, 1]], [[0, 0, 0, 0]]], dtype=torch.float32)
    placement = place(graph, target)
    cores = core_activity(graph, placement, trace_run(graph, {"x": x}), target)
    assert [tile_position(c, target) for c in (0, 1, 2)] == [(0, 0, 0), (0, 1, 0), (0, 0, 1)]
    # the messages of the test above: core 0 sends 1 (t1) to core 2, one hop north-south; core 1 sends 1 (t1)
    # and 2 (t2), each one hop east-west and one north-south
    assert cores.hops_ew[:, :, 0].tolist() == [[0, 0, 0], [0, 1, 2], [0, 0, 0]]
    assert cores.hops_ns[:, :, 0].tolist() == [[0, 1, 0], [0, 1, 2], [0, 0, 0]]
    assert estimate_latency(cores, target).barrier_ns == pytest.approx(113 + (465 - 113) * 2 / 3)


def test_hops_count_manhattan_distance_between_tiles():
    t = load_target("loihi1")  # 4 cores a tile, 8 tiles a row
    assert [tile_position(c, t) for c in (0, 3, 4, 31, 32, 127, 128)] == [
        (0, 0, 0), (0, 0, 0), (0, 1, 0), (0, 7, 0), (0, 0, 1), (0, 7, 3), (1, 0, 0)]


def synthetic(**counts) -> CoreActivity:
    shape = np.asarray(next(iter(counts.values()))).shape
    arrays = {k: np.asarray(counts.get(k, np.zeros(shape)), dtype=np.float64) for k in COUNTS}
    return CoreActivity(tuple(range(shape[0])), **arrays)


def test_step_time_is_the_slowest_core_plus_the_barrier():
    t = load_target("loihi1")
    # 2 cores, 2 steps, 1 sample; Table 2: 3.5 ns a synaptic op (input side), 8.4 / 5.3 ns an active / idle
    # update and 2.1 ns a spike (output side); loihi1 gives no per-message times
    cores = synthetic(synaptic_ops=[[[10], [0]], [[0], [40]]], neuron_updates_active=[[[2], [0]], [[0], [1]]],
                      neuron_updates_inactive=[[[1], [3]], [[3], [2]]], events_out=[[[3], [0]], [[0], [0]]],
                      messages_out=[[[3], [0]], [[0], [0]]])
    est = estimate_latency(cores, t)
    # core 0: step 0 receive 35.0 vs send 2*8.4 + 5.3 + 3*2.1 = 28.4; step 1 send 3*5.3 = 15.9
    # core 1: step 0 send 15.9; step 1 receive 140.0 vs send 8.4 + 2*5.3 = 19.0
    busy = {0: [35.0, 15.9], 1: [15.9, 140.0]}
    assert est.barrier_ns == 113.0  # both cores on tile 0
    assert est.step_ns == pytest.approx([35.0 + 113, 140.0 + 113])
    assert est.per_sample_ns == pytest.approx(35.0 + 140.0 + 226)
    assert est.slowest_core == [0, 1]
    assert est.core_busy_ns == pytest.approx({c: sum(b) for c, b in busy.items()})
    assert est.throughput_samples_per_s == pytest.approx(1e9 / est.per_sample_ns)
    # static: 104 mW x 1 chip x latency (mW x ns = pJ)
    assert est.energy_pj["static"] == pytest.approx(104 * est.per_sample_ns)
    assert "messages" not in est.energy_pj  # loihi1 prices spikes, not messages
    assert est.figures["synaptic_op_time"]["status"] == "pre-silicon"
    json.dumps(est.to_dict())


def test_per_message_times_and_energy_where_the_target_gives_them():
    t = load_target("loihi1-sanafe")  # 16 ns a message received, 5.1 ns a message sent, 111 pJ a message
    cores = synthetic(synaptic_ops=[[[10]]], messages_in=[[[2]]], host_messages_in=[[[1]]],
                      neuron_updates_inactive=[[[20]]], events_out=[[[1]]], messages_out=[[[4]]])
    est = estimate_latency(cores, t)
    receive, send = 2 * 16 + 10 * 3.8, 20 * 6.0 + 1 * 30.0 + 4 * 5.1   # 70.0, 170.4
    assert est.step_ns == pytest.approx([max(receive, send) + 600])
    assert est.energy_pj["messages"] == pytest.approx((4 + 1) * 111.0)  # sent core to core and from the host
    assert "static" not in est.energy_pj and est.not_modelled == ("static power (the target gives no figure)",)


def test_barrier_grows_with_the_tiles_in_use_and_hops_are_priced():
    t = load_target("loihi1")
    assert barrier_ns(1, t, {}) == 113 and barrier_ns(32, t, {}) == 465
    assert barrier_ns(16, t, {}) == pytest.approx(113 + 352 * 15 / 31)
    table = load_target("loihi1-sanafe")  # SANA-FE's step table {1: 600, 2: 1000, 4: 1400, 29: 1800}
    assert [barrier_ns(n, table, {}) for n in (1, 2, 3, 4, 28, 29, 32)] == [600, 1000, 1000, 1400, 1400, 1800, 1800]
    cores = synthetic(hops_ew=[[[4], [0]]], hops_ns=[[[1], [2]]])
    assert estimate_latency(cores, t).energy_pj["hops_ew"] == pytest.approx(4 * 3.0)
    assert estimate_latency(cores, t).energy_pj["hops_ns"] == pytest.approx(3 * 4.0)
    with pytest.raises(ValueError, match="latency needs a chip target"):
        estimate_latency(cores, "cmos45")


@pytest.mark.slow
def test_default_zoo_model_core_counts_add_up_to_the_graph_counts():
    model = lowered_zoo_model(DEFAULT_MODEL)
    target = load_target("loihi1")
    placement = place(model.integer, target)
    trace = trace_run(model.integer, model.test_feeds(4))
    act, cores = count_activity(model.integer, trace=trace), core_activity(model.integer, placement, trace, target)
    totals = act.totals
    assert cores.synaptic_ops.sum() == totals["ACs"] + totals["MACs"]
    assert cores.neuron_updates_active.sum() == totals["neuron_updates_active"]
    assert cores.neuron_updates_inactive.sum() == totals["neuron_updates_inactive"]
    assert cores.attention_accumulates.sum() == totals["attention_accumulates"] > 0
    # every neuron spike leaves its core for at least one reader, except the readout's (read by the host)
    assert 0 < cores.events_out.sum() <= cores.messages_out.sum() + cores.events_out[-1].sum()
    assert cores.hops_ew.sum() > 0 and len(cores.cores) == placement.cores_used
    feeds, types = model.test_feeds(4), model.integer.types()
    halves = [core_activity(model.integer, placement, trace_run(model.integer, {
        k: v[:, part] if types[k].time == "stream" else v[part] for k, v in feeds.items()}), target)
        for part in (slice(0, 2), slice(2, 4))]
    both = halves[0] + halves[1]
    assert all(np.array_equal(getattr(both, k), getattr(cores, k)) for k in COUNTS)
    est = estimate_latency(cores, target)
    assert est.per_sample_ns_min <= est.per_sample_ns <= est.per_sample_ns_max
    assert len(est.step_ns) == model.integer.time_steps


@pytest.mark.slow
def test_streamed_counts_over_batches_equal_the_counts_of_one_whole_run(tmp_path):
    """The default zoo model on a chip with small cores (many box and greedy slices): counting batch by batch
    while the graph runs, values freed, equals counting one recorded run of all the samples, per node and per
    core; and the core map's elements are core_views' (box arithmetic, and one unit's views at a time)."""
    model = lowered_zoo_model(DEFAULT_MODEL)
    target = changed_target(tmp_path, "loihi2", "small", {"neurons_per_core": 256})
    placement = place(model.integer, target)
    views, found = core_views(model.integer, placement), core_map(model.integer, placement)
    assert len(views) == placement.cores_used > 2 * len(placement.nodes)
    for row, v in enumerate(views):
        for member, outputs in v.owned.items():
            owned = found.owned[(v.unit, member)]
            assert sorted(np.flatnonzero(owned.local == list(owned.rows).index(row))) == sorted(outputs)
        for src, mask in v.reads.items():
            pairs = found.pairs[src]
            assert sorted(pairs.matrix[pairs.reader == row].indices) == np.flatnonzero(mask).tolist()
    feeds, types = model.test_feeds(5), model.integer.types()
    whole = trace_run(model.integer, feeds)
    batches = [{k: v[:, part] if types[k].time == "stream" else v[part] for k, v in feeds.items()}
               for part in (slice(0, 2), slice(2, 3), slice(3, 5))]
    activity, cores = count_streamed(model.integer, placement, target, batches)
    assert activity.to_dict() == count_activity(model.integer, trace=whole).to_dict()
    expected = core_activity(model.integer, placement, whole, target)
    assert cores.cores == expected.cores and all(np.array_equal(getattr(cores, k), getattr(expected, k)) for k in COUNTS)
    assert cores.messages_in.sum() > 0 and cores.hops_ew.sum() + cores.hops_ns.sum() > 0
    # keeping only what the latency reads of each batch gives the latency of all the counts
    _, times = count_streamed(model.integer, placement, target, batches, lambda per_core: core_times(per_core, target))
    assert times.samples == 5 and estimate_latency(times, target) == estimate_latency(expected, target)

"""schedule: target delays, delay lines on the shorter paths, aligned blocks, biases and output windows.
The contract is exact: every node's scheduled values, read from its latency on, are its unscheduled ones."""
import dataclasses

import numpy as np
import pytest
import torch

import snncompile
from snncompile.data import load_dataset
from snncompile.frontend import export
from snncompile.ir import SPIKE, Graph, Node
from snncompile.ir.ops import (Delay, Input, IntAdd, IntDense, KVOuterAccumulate, LoihiLIF, Output, QMAccumulate,
                               Repeat, TimeMean)
from snncompile.ir.io import graph_digest
from snncompile.ir.graph import Schedule
from snncompile.ir.timing import data_steps, latencies, output_window, unschedule
from snncompile.passes import PIPELINES, PassContext, run_pipeline, schedule
from snncompile.sim import run_graph
from snncompile.sim.dataset import graph_feeds
from snncompile.zoo.registry import find_entry

T = 4


def lif() -> LoihiLIF:
    return LoihiLIF(current_decay=4096, voltage_decay=2048, vth=1)


def dense(n_out: int, n_in: int, seed: int, bias: bool = False) -> IntDense:
    rng = np.random.default_rng(seed)
    return IntDense(weight=rng.integers(-6, 7, (n_out, n_in)), delay=0,
                    bias=rng.integers(-20, 20, n_out) if bias else None)


def residual_graph(bias: bool = True) -> Graph:
    """x -> fc1 -> lif1 -> fc2 -+-> sum -> lif2 -> fc3 -> mean
          \\---- skip ---------/   (the skip path is two synapse hops shorter)"""
    nodes = {"x": Node(Input(shape=(8,), dtype=SPIKE)),
             "skip": Node(dense(8, 8, 0, bias), ("x",)),
             "fc1": Node(dense(8, 8, 1, bias), ("x",)), "lif1": Node(lif(), ("fc1",)),
             "fc2": Node(dense(8, 8, 2, bias), ("lif1",)),
             "sum": Node(IntAdd(), ("skip", "fc2")), "lif2": Node(lif(), ("sum",)),
             "fc3": Node(dense(3, 8, 3, bias), ("lif2",)), "mean": Node(TimeMean(), ("fc3",)),
             "out": Node(Output(), ("mean",))}
    return Graph(nodes=nodes, outputs=("out",), time_steps=T).validate()


def assert_aligned(before: Graph, after: Graph, feeds) -> None:
    a, b, lat = run_graph(before, feeds, keep="all"), run_graph(after, feeds, keep="all"), latencies(after)
    types = before.types()
    for n in before.nodes:
        x = b[n][lat[n]:lat[n] + before.time_steps] if types[n].time == "stream" else b[n]
        assert torch.equal(a[n].double(), x.double()), n


def spikes(shape, seed=0, steps=T) -> torch.Tensor:
    return (torch.rand(steps, *shape, generator=torch.Generator().manual_seed(seed)) < 0.5).float()


def test_delay_lines_balance_converging_paths():
    g = residual_graph()
    s = run_pipeline(g, [schedule])
    lat = latencies(s)
    assert (lat["skip"], lat["fc2"], lat["sum"], lat["fc3"]) == (1, 2, 2, 3)
    assert isinstance(s.op("skip.delay1"), Delay) and s.op("skip.delay1").delay == 1
    assert s.nodes["sum"].inputs == ("skip.delay1", "fc2")
    assert s.time_steps == T + 3 and s.op("mean").start == 3 and s.op("mean").steps == T
    report = s.history[-1].options
    assert report["end_to_end"] == 3 and report["delay_lines"] == {"skip.delay1": 1}
    feeds = {"x": spikes((16, 8))}
    assert_aligned(g, s, feeds)
    assert torch.equal(run_graph(g, feeds)["out"], run_graph(s, feeds)["out"])


def test_bias_starts_with_its_data():
    """Without bias_start the later synapses would add their bias to the empty leading steps."""
    g, feeds = residual_graph(bias=True), {"x": spikes((16, 8), seed=1)}
    s = run_pipeline(g, [schedule])
    assert s.op("fc2").bias_start == 1 and s.op("fc3").bias_start == 2 and s.op("skip").bias_start == 0
    assert_aligned(g, s, feeds)
    nodes = dict(s.nodes)
    nodes["fc2"] = Node(dataclasses.replace(s.op("fc2"), bias_start=0), s.nodes["fc2"].inputs)
    broken = Graph(nodes=nodes, outputs=s.outputs, time_steps=s.time_steps, history=s.history)
    with pytest.raises(AssertionError):
        assert_aligned(g, broken, feeds)


def test_a_biased_neuron_restarts_when_its_data_arrive():
    """A neuron bias charges from step 0: the scheduled neuron restarts at its arrival (reset_at), else it would
    carry the charge of the empty leading steps into its data."""
    g = residual_graph(bias=False)
    nodes = dict(g.nodes)
    nodes["lif2"] = Node(LoihiLIF(current_decay=4096, voltage_decay=512, vth=100, bias_mant=40, bias_exp=6), ("sum",))
    g, feeds = Graph(nodes=nodes, outputs=g.outputs, time_steps=T).validate(), {"x": spikes((16, 8), seed=2)}
    s = run_pipeline(g, [schedule])
    assert s.op("lif2").reset_at == latencies(s)["lif2"] == 2 and s.op("lif1").reset_at == 0
    assert not s.op("lif2").fires_before_restart((8,))
    assert_aligned(g, s, feeds)
    nodes = dict(s.nodes)
    nodes["lif2"] = Node(dataclasses.replace(s.op("lif2"), reset_at=0), s.nodes["lif2"].inputs)
    with pytest.raises(AssertionError):
        assert_aligned(g, Graph(nodes=nodes, outputs=s.outputs, time_steps=s.time_steps, history=s.history), feeds)


def test_static_inputs_repeat_for_the_data_steps_only():
    nodes = {"img": Node(Input(shape=(8,), dtype=SPIKE, time="static")),
             "rep": Node(Repeat(time_steps=T), ("img",)),
             "fc": Node(dense(8, 8, 4), ("rep",)), "lif": Node(lif(), ("fc",)), "out": Node(Output(), ("lif",))}
    g = Graph(nodes=nodes, outputs=("out",), time_steps=T).validate()
    s = run_pipeline(g, [schedule])
    assert s.op("rep").time_steps == T + 1 and s.op("rep").data_steps == T
    x = (torch.rand(8, 8) < 0.5).float()
    assert not run_graph(s, {"img": x}, keep="all")["rep"][T:].any()  # the pipeline drains on zeros
    assert_aligned(g, s, {"img": x})


def test_block_accumulator_waits_for_its_block_and_q_waits_with_it():
    """STAtten: KᵀV of a block is answered block-1 steps after its first input; Q is delayed to match."""
    q, k, v = (Node(Input(shape=(4, 2, 2), dtype=SPIKE)) for _ in range(3))
    nodes = {"q": q, "k": k, "v": v,
             "kfc": Node(IntDense(weight=np.eye(2, dtype=np.int64), delay=0), ("k",)),
             "kl": Node(lif(), ("kfc",)),
             "kv": Node(KVOuterAccumulate(heads=2, block=2), ("kl", "v")),
             "qm": Node(QMAccumulate(heads=2), ("q", "kv")), "out": Node(Output(), ("qm",))}
    g = Graph(nodes=nodes, outputs=("out",), time_steps=T).validate()
    s = run_pipeline(g, [schedule])
    lat = latencies(s)
    assert s.op("kv").delay == 1 and s.op("kv").block_offset == 1 and lat["kv"] == 2
    assert s.nodes["qm"].inputs == ("q.delay2", "kv") and s.nodes["kv"].inputs == ("kl", "v.delay1")
    feeds = {n: spikes((8, 4, 2, 2), seed=i) for i, n in enumerate("qkv")}
    assert_aligned(g, s, feeds)


def test_scheduling_twice_is_refused():
    s = run_pipeline(residual_graph(), [schedule])
    with pytest.raises(Exception, match="scheduled already"):
        run_pipeline(s, [schedule])


@pytest.mark.parametrize("name", ["statten-digits", "sdsa-digits", "a2os2a-digits", "ds2ta-digits",
                                  "statten-event-digits"])
def test_zoo_models_schedule_exactly(name):
    entry = find_entry(name)
    loaded = snncompile.load_checkpoint(entry.checkpoint)
    graph = export(loaded.model)
    data = load_dataset(entry.data, loaded.config, "test")
    feeds = graph_feeds(graph, torch.stack([data[i][0] for i in range(8)]))
    unscheduled = run_pipeline(graph, PIPELINES["loihi"][:-1], PassContext(calibration=feeds))
    scheduled = run_pipeline(unscheduled, [schedule])
    assert scheduled.history[-1].options["end_to_end"] > 0
    assert_aligned(unscheduled, scheduled, feeds)
    assert graph_digest(unschedule(scheduled)) == graph_digest(unscheduled)


def test_the_schedule_is_a_field_of_the_graph_not_of_its_history():
    g = residual_graph()
    s = run_pipeline(g, [schedule])
    assert s.schedule == Schedule(data_steps=T, latency=latencies(s), delay_lines=("skip.delay1",))
    assert s.schedule.latency["fc3"] == 3 and s.schedule.run_steps == s.time_steps == T + 3
    bare = dataclasses.replace(s, history=())  # provenance gone: the timing stays
    assert data_steps(bare) == T and output_window(bare, "fc3") == (3, T)
    assert graph_digest(unschedule(bare)) == graph_digest(g)
    assert g.schedule is None and data_steps(g) == T and output_window(g, "fc3") == (0, T)


def test_a_delay_line_has_its_sources_scale_and_unschedule_drops_it():
    g = dataclasses.replace(residual_graph(), scales={"skip": 0.5, "fc2": 0.25})
    s = run_pipeline(g, [schedule])
    assert s.scales == {"skip": 0.5, "fc2": 0.25, "skip.delay1": 0.5}
    assert unschedule(s).scales == g.scales


def test_unschedule_is_the_exact_inverse():
    g = residual_graph()
    s = run_pipeline(g, [schedule])
    back = unschedule(s)
    assert graph_digest(back) == graph_digest(g) and back.history == g.history
    assert unschedule(g) is g

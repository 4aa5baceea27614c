"""report.counts: exact activity counts, each checked against a hand computation; the default zoo model's
compiled graph counted end to end (spikes equal the simulator's, batches merge)."""
import json

import numpy as np
import pytest
import torch

from zoo_lowering import lowered_zoo_model
from snncompile.ir import SPIKE, Graph, Node, int_type
from snncompile.ir.ops import (Conv2d, Input, IntAdd, IntConv2d, IntDense, KVOuterAccumulate, LoihiLIF, Output,
                               QMAccumulate, ScoreValueAccumulate, SpikeColumnSum, SpikeScores)
from snncompile.report import count_activity, merge
from snncompile.sim import simulate
from snncompile.zoo.registry import DEFAULT_MODEL


def graph_of(nodes: dict, outputs=("out",), time_steps=3) -> Graph:
    return Graph(nodes=nodes, outputs=outputs, time_steps=time_steps).validate()


DENSE_W = np.array([[1, 0, 2], [3, -1, 0]])  # column non-zeros: 2, 1, 1


def dense_graph(dtype=SPIKE) -> Graph:
    return graph_of({"x": Node(Input(shape=(3,), dtype=dtype)),
                     "fc": Node(IntDense(weight=DENSE_W), ("x",)),
                     "out": Node(Output(), ("fc",))})


def test_dense_synaptic_ops_per_step():
    # sample 0: t0 [1,0,0] -> 2; t1 [0,1,1] -> 1+1; t2 [1,1,1] -> 4. sample 1: only t2 [0,0,1] -> 1
    x = torch.tensor([[[1, 0, 0], [0, 0, 0]], [[0, 1, 1], [0, 0, 0]], [[1, 1, 1], [0, 0, 1]]], dtype=torch.float32)
    c = count_activity(dense_graph(), {"x": x}).synapses["fc"]
    assert (c.kind, c.static, c.samples, c.connections) == ("AC", False, 2, 6)  # every weight, zeros too
    assert c.ops == (2, 2, 5) and c.total == 9


def test_per_node_totals_and_the_ann_equivalent():
    x = torch.tensor([[[1, 0, 0]], [[0, 1, 1]], [[1, 1, 1]]], dtype=torch.float32)
    act = count_activity(dense_graph(), {"x": x})
    assert act.node_totals() == {"fc": {"ACs": 2 + 2 + 4}}
    assert act.ann_macs() == 6  # one pass over all 6 weights (dense storage), whatever the spikes


def test_graded_input_counts_as_mac_not_ac():
    x = torch.tensor([[[2, 0, -3]], [[0, 0, 0]], [[0, 7, 0]]], dtype=torch.float32)  # 2 + 1 ; 0 ; 1
    act = count_activity(dense_graph(int_type(8)), {"x": x})
    assert act.synapses["fc"].kind == "MAC" and act.synapses["fc"].ops == (3, 0, 1)
    assert act.totals["MACs"] == 4 and act.totals["ACs"] == 0


def test_ternary_minus_one_is_an_event():
    x = torch.tensor([[[-1, 0, 0]], [[0, 0, 0]], [[0, 0, 0]]], dtype=torch.float32)
    assert count_activity(dense_graph(), {"x": x}).synapses["fc"].ops == (2, 0, 0)


def test_padded_conv_border_inputs_reach_fewer_outputs():
    w = np.ones((1, 1, 3, 3), dtype=np.int64)
    w[0, 0, 0, 0] = 0  # the top-left tap: input (r, c) reaches output (r+1, c+1) through it
    # fan-out with all weights: corner 4, edge 6, centre 9; minus the zero tap where (r+1, c+1) exists
    assert IntConv2d(weight=w, padding=(1, 1)).fan_out((1, 3, 3))[0, 0].tolist() == [[3, 5, 4], [5, 8, 6], [4, 6, 4]]
    g = graph_of({"x": Node(Input(shape=(1, 3, 3), dtype=SPIKE)),
                  "conv": Node(IntConv2d(weight=w, padding=(1, 1)), ("x",)),
                  "out": Node(Output(), ("conv",))}, time_steps=2)
    x = torch.zeros(2, 1, 1, 3, 3)
    x[0, 0, 0, 0, 0] = x[0, 0, 0, 1, 1] = x[0, 0, 0, 2, 2] = 1  # corner 3 + centre 8 + far corner 4
    x[1, 0, 0, 0, 1] = 1  # top edge 5
    c = count_activity(g, {"x": x}).synapses["conv"]
    # connections: every (output, tap) pair inside the input, the zero tap too: 4 + 6 + 4 + 6 + 9 + 6 + 4 + 6 + 4
    assert c.ops == (15, 5) and c.connections == 49
    # the same number the NeuroBench way: binarised input through the binarised layer, outputs summed
    binary = torch.nn.functional.conv2d(x[0], torch.from_numpy((w != 0).astype(np.float32)), padding=1)
    assert int(binary.sum()) == 15


def test_static_host_conv_counts_macs_once_per_sample():
    rng = np.random.default_rng(0)
    w = rng.uniform(0.5, 1.0, (4, 2, 3, 3)).astype(np.float32)  # no zero weight
    g = graph_of({"img": Node(Input(shape=(2, 5, 5), time="static")),
                  "conv.host": Node(Conv2d(weight=w), ("img",)),
                  "out": Node(Output(), ("conv.host",))}, time_steps=4)
    img = torch.rand(2, 2, 5, 5) + 0.5  # no zero pixel
    act = count_activity(g, {"img": img})
    c = act.synapses["conv.host"]
    assert c.static and c.kind == "MAC" and c.samples == 2
    assert c.ops == (2 * 4 * 3 * 3 * 2 * 3 * 3,)  # B x C_out x H_out x W_out x C_in x k x k
    assert act.totals["host_MACs"] == 1296 and act.totals["MACs"] == 0


def test_attention_accumulates_one_head():
    # C = d = 2, one head, tokens N = 2 (Hs=1, Ws=2); per token n the row is X[:, 0, n]
    k = torch.tensor([[1, 1], [1, 0]]).T.reshape(1, 1, 2, 1, 2).float()  # K_0 = [1,1], K_1 = [1,0]
    v = torch.tensor([[1, 0], [1, 1]]).T.reshape(1, 1, 2, 1, 2).float()  # V_0 = [1,0], V_1 = [1,1]
    q = torch.tensor([[1, 1], [1, 0]]).T.reshape(1, 1, 2, 1, 2).float()  # 3 events
    spike = Input(shape=(2, 1, 2), dtype=SPIKE)
    g = graph_of({"q": Node(spike), "k": Node(spike), "v": Node(spike),
                  "kv": Node(KVOuterAccumulate(heads=1), ("k", "v")),
                  "qm": Node(QMAccumulate(heads=1), ("q", "kv")),
                  "s": Node(SpikeScores(heads=1), ("q", "k")),
                  "sv": Node(ScoreValueAccumulate(heads=1), ("s", "v")),
                  "o1": Node(Output(), ("qm",)), "o2": Node(Output(), ("sv",))}, outputs=("o1", "o2"), time_steps=1)
    act = count_activity(g, {"q": q, "k": k, "v": v})
    assert act.attention["kv"].accumulates == (2 * 1 + 1 * 2,)   # sum_n nnz(K_n) nnz(V_n)
    assert act.attention["qm"].accumulates == (3 * 2,)           # nnz(Q) * d
    assert act.attention["s"].accumulates == (2 * 2 + 1 * 1,)    # sum_j nnz(Q[:, j]) nnz(K[:, j])
    assert act.attention["sv"].accumulates == (3 * 2,)           # nnz(V) * N
    assert act.totals["attention_accumulates"] == 4 + 6 + 5 + 6
    # per output element: M[i, j] = sum_n K_n,i V_n,j; QM out[c, n] = nnz(Q row n); A[n, m] = sum_j Q_n,j K_m,j;
    # SV out[c, n] = nnz(V column c)
    assert g.op("kv").work([k, v])[0, 0, 0].tolist() == [[2, 1], [1, 0]]
    assert g.op("s").work([q, k])[0, 0, 0].tolist() == [[2, 1], [1, 1]]
    unused = torch.zeros(1, 1, 1, 2, 2)  # M and S: the work depends on Q's and V's events only
    qm = g.op("qm").work([q, unused])[0, 0].reshape(2, 2)  # [c, n]
    sv = g.op("sv").work([unused, v])[0, 0].reshape(2, 2)
    assert qm.tolist() == [[2, 1], [2, 1]] and sv.tolist() == [[2, 2], [1, 1]]
    # every operand non-zero: KV and QM N*d*d, scores and SV N*N*d per head (the ANN-equivalent products)
    assert {n: c.connections for n, c in act.attention.items()} == {"kv": 2 * 2 * 2, "qm": 2 * 2 * 2,
                                                                     "s": 2 * 2 * 2, "sv": 2 * 2 * 2}


def lif_graph(**kw) -> Graph:
    return graph_of({"x": Node(Input(shape=(2,), dtype=int_type(8))),
                     "lif": Node(LoihiLIF(current_decay=4096, voltage_decay=0, vth=10, **kw), ("x",)),
                     "out": Node(Output(), ("lif",))}, time_steps=4)


def test_sdsa_column_sums_count_one_addition_per_and_term():
    # one head, d = 2 channels, N = 3 tokens: K AND V holds 2 terms in column 0 and 1 in column 1
    k = torch.tensor([[1, 1, 0], [1, 0, 0]]).reshape(1, 1, 2, 1, 3).float()
    v = torch.tensor([[1, 1, 1], [1, 1, 0]]).reshape(1, 1, 2, 1, 3).float()
    spike = Input(shape=(2, 1, 3), dtype=SPIKE)
    g = graph_of({"k": Node(spike), "v": Node(spike), "cs": Node(SpikeColumnSum(heads=1), ("k", "v")),
                  "out": Node(Output(), ("cs",))}, time_steps=1)
    c = count_activity(g, {"k": k, "v": v}).attention["cs"]
    assert c.accumulates == (2 + 1,) and c.connections == 2 * 3  # every token of every column


class Undeclared(IntAdd):
    """An integer sum whose type forgot to declare the work it does."""

    WORK = None


def test_work_none_counts_nothing_and_an_undeclared_work_is_an_error():
    x = torch.tensor([[[1, 0, 2]]], dtype=torch.float32)

    def summed(op):
        return graph_of({"x": Node(Input(shape=(3,), dtype=int_type(8))), "sum": Node(op, ("x", "x")),
                         "out": Node(Output(), ("sum",))}, time_steps=1)

    act = count_activity(summed(IntAdd()), {"x": x})
    assert IntAdd.WORK == "none" and not (act.synapses or act.attention or act.neurons)
    with pytest.raises(ValueError, match="node 'sum': op type Undeclared declares WORK=None"):
        count_activity(summed(Undeclared()), {"x": x})


def test_neuron_updates_active_and_inactive():
    # neuron 0: input 5 at t1 -> v = 320 < 640 stays (no leak): active t1 (input), t2 and t3 (state);
    # neuron 1 never gets input: inactive throughout
    x = torch.zeros(4, 1, 2)
    x[1, 0, 0] = 5
    act = count_activity(lif_graph(), {"x": x})
    n = act.neurons["lif"]
    assert (n.neurons, n.samples, n.active, n.inactive) == (2, 1, (0, 1, 1, 1), (2, 1, 1, 1))
    assert act.spikes["lif"].spikes == (0, 0, 0, 0)
    # a bias charges every neuron every step
    assert count_activity(lif_graph(bias_mant=1), {"x": x}).neurons["lif"].active == (2, 2, 2, 2)


@pytest.fixture(scope="module")
def zoo_model():
    model = lowered_zoo_model(DEFAULT_MODEL)
    return model.integer, model.test_feeds(6)


def test_default_zoo_model_counts_match_the_simulator(zoo_model):
    graph, feeds = zoo_model
    act = count_activity(graph, feeds)
    sim = simulate(graph, feeds)
    assert act.spikes == sim.counts and act.spikes
    totals = act.totals
    assert min(totals["ACs"], totals["spikes"], totals["neuron_updates_active"], totals["attention_accumulates"]) > 0
    assert {c.op for c in act.attention.values()} == {"KVOuterAccumulate", "QMAccumulate"}
    host = [c for n, c in act.synapses.items() if n.endswith(".host")]
    assert host and all(c.static and c.kind == "MAC" and c.samples == 6 for c in host)
    assert totals["host_MACs"] == sum(c.total for c in host)
    json.dumps(act.to_dict())  # JSON-ready
    # batch by batch: the merged counts equal those of the whole batch
    stream = {k: graph.types()[k].time == "stream" for k in feeds}
    halves = [count_activity(graph, {k: (v[:, part] if stream[k] else v[part]) for k, v in feeds.items()})
              for part in (slice(0, 3), slice(3, 6))]
    assert merge(halves).to_dict() == act.to_dict()

"""Backends found by name behind one protocol: the reference simulator and Lava give the same values and the
same evaluation on a small integer graph; unknown names and settings are one clear error."""
import numpy as np
import pytest
import torch

from snncompile.backends.protocol import BACKENDS_BY_NAME, BackendError, LavaBackend, ReferenceBackend, get_backend
from snncompile.ir import SPIKE, Graph, Node
from snncompile.ir.ops import LIF, Input, IntDense, LoihiLIF, Output
from snncompile.sim import run_graph

T = 6


def integer_graph() -> Graph:
    nodes = {"x": Node(Input(shape=(4,), dtype=SPIKE), ()),
             "d": Node(IntDense(weight=np.array([[2, -4, 6, 8], [8, 6, -4, 2], [4, 4, 4, -8]]),
                                bias=np.array([1, 2, 3])), ("x",)),
             "n": Node(LoihiLIF(current_decay=4096, voltage_decay=0, vth=4), ("d",)),
             "y": Node(Output(), ("n",))}
    return Graph(nodes, ("y",), time_steps=T)


def data_set(samples: int = 5) -> list[tuple[torch.Tensor, int]]:
    g = torch.Generator().manual_seed(1)
    return [((torch.rand(T, 4, generator=g) < 0.5).float(), i % 3) for i in range(samples)]


def test_backends_are_found_by_name_with_the_settings_they_take():
    assert set(BACKENDS_BY_NAME) == {"ref", "lava"}
    assert isinstance(get_backend("ref", granularity="per_op"), ReferenceBackend)  # a Lava setting left out
    lava = get_backend("lava", granularity="per_op", timeout=30.0, progress=False)
    assert isinstance(lava, LavaBackend) and (lava.granularity, lava.timeout) == ("per_op", 30.0)
    with pytest.raises(BackendError, match=r"^unknown backend 'loihi'; known: ref, lava$"):
        get_backend("loihi")
    with pytest.raises(BackendError, match=r"^'per_block' is not one of per_op, fused, fused_model$"):
        get_backend("lava", granularity="per_block")


def test_the_reference_backend_returns_outputs_and_exposed_nodes():
    graph, x = integer_graph(), torch.stack([s[0] for s in data_set()]).transpose(0, 1)
    everything = run_graph(graph, {"x": x}, keep="all")
    ref = get_backend("ref")
    assert ref.run(graph, {"x": x}).keys() == {"y"}
    values = ref.run(graph, {"x": x}, expose=["d"])
    assert values.keys() == {"y", "d"} and torch.equal(values["d"], everything["d"])
    assert ref.run(graph, {"x": x}, expose="all").keys() == everything.keys()
    with pytest.raises(BackendError, match="cannot expose 'nope'"):
        ref.run(graph, {"x": x}, expose=["nope"])


def test_lava_refuses_a_graph_that_is_not_compiled():
    graph = integer_graph()
    graph = Graph({**graph.nodes, "n": Node(LIF(v_threshold=1.0, leak=2.0), ("d",))}, ("y",), time_steps=T)
    with pytest.raises(BackendError, match="runs a compiled integer graph"):
        get_backend("lava").evaluate(graph, data_set())


@pytest.mark.timeout(300)
def test_lava_and_the_reference_agree_through_the_protocol():
    graph, samples = integer_graph(), data_set()
    x = torch.stack([s[0] for s in samples]).transpose(0, 1)
    ref, lava = get_backend("ref", progress=False), get_backend("lava", granularity="per_op", timeout=240.0)
    on_lava = lava.run(graph, {"x": x}, expose=["n"])
    assert on_lava.keys() == {"y", "n"} and on_lava["n"].abs().sum() > 0
    assert all(torch.equal(v, ref.run(graph, {"x": x}, expose=["n"])[k]) for k, v in on_lava.items())
    expected = ref.evaluate(graph, samples, indices=range(1, 5))
    found = lava.evaluate(graph, samples, indices=range(1, 5))
    assert found.indices == expected.indices == [1, 2, 3, 4] and found.predictions == expected.predictions
    assert found.details == {"identical_to_reference": 4, "granularity": "per_op"}
    assert "spike_counts" in expected.to_dict() and found.to_dict()["accuracy"] == expected.accuracy
    assert found.summary.startswith("Lava (per_op), outputs identical to the reference simulator on 4/4")

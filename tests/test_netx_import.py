"""lava-dl netx HDF5 networks into the IR (snncompile/frontend/netx_import.py): Intel's trained networks read as
netx builds them, hand-computed spikes of a hand-written file, refusals naming the block, a round trip through
our netx export, and the integer graph against ``netx.hdf5.Network`` run in Lava (``fixed_pt``): every block's
spikes, and the last block's voltage, equal at every step.
"""
from __future__ import annotations

import re

import h5py
import numpy as np
import pytest
import torch

from conftest import shared_path
from snncompile.backends.lava import run_netx, write_netx
from snncompile.frontend import netx_import
from snncompile.frontend.netx_import import NetxImportError, read_netx
from snncompile.ir import SPIKE, Graph, Node
from snncompile.ir.io import load, save
from snncompile.ir.ops import Flatten, Input, IntConv2d, IntDense, LoihiLIF, Output
from snncompile.ir.ops.int_synapse import lava_effective_weights
from snncompile.passes import PassContext, run_pipeline, schedule
from snncompile.sim import run_graph

NETWORKS = ("pilotnet_lif", "oxford", "mnist")


def _write(path, blocks: list[dict], steps: int | None = None):
    """A netx file: one ``layer/<i>`` group per dict (``neuron`` a nested dict), as slayer writes them."""
    with h5py.File(path, "w") as f:
        for i, block in enumerate(blocks):
            g = f.create_group(f"layer/{i}")
            for key, value in block.items():
                if key == "neuron":
                    for k, v in value.items():
                        g[f"neuron/{k}"] = np.bytes_(v) if isinstance(v, str) else v
                elif key == "type":
                    g["type"] = np.array([value.encode()], dtype="S10")
                else:
                    g[key] = value
        if steps is not None:
            f["simulation/tSample"] = steps
    return path


CUBA = {"type": "CUBA", "iDecay": 4096, "vDecay": 0, "vThMant": 2, "refDelay": 1}


def _dense(w, neuron=CUBA, **extra) -> dict:
    w = np.asarray(w, dtype=np.float32)
    return {"type": "dense", "shape": np.array([w.shape[0]]), "inFeatures": w.shape[1], "outFeatures": w.shape[0],
            "weight": w, "neuron": neuron, **extra}


# -- reading -------------------------------------------------------------------------------------------------------

def test_pilotnet_reads_as_netx_builds_it():
    path = shared_path("data", "netx", "pilotnet_lif.net")
    g = read_netx(path)
    types = g.types()
    with h5py.File(path, "r") as f:
        for i in range(11):
            block = f[f"layer/{i}"]
            if block["type"][0] == b"flatten":
                assert isinstance(g.op(f"layer{i}"), Flatten) and types[f"layer{i}"].shape == (2560,)
                continue
            lif = g.op(f"layer{i}")  # every block's shape (C, H, W) is its neuron's, and its parameters the file's
            shape = tuple(block["shape"][()]) if block["type"][0] != b"dense" else (block["shape"][()].prod(),)
            assert types[f"layer{i}"].shape == shape and types[f"layer{i}"].dtype == SPIKE  # dense: [N, 1, 1]
            neuron = block["neuron"]
            assert (lif.current_decay, lif.voltage_decay, lif.vth, lif.bias_exp) == (
                neuron["iDecay"][()], neuron["vDecay"][()], neuron["vThMant"][()], 6)
    assert g.op("input").shape == (3, 66, 200) and g.op("input").dtype.bits == 16
    assert g.nodes["layer0"].inputs == ("input",) and g.op("layer0").bias_mant == 0  # the input block's bias is
    assert g.history[0].options == {"file": "pilotnet_lif.net", "data_steps": 16,  # the host's image transform
                                    "reset_offset": None, "input_weight": 40, "input_bias": 36}
    conv = g.op("layer4.synapse")  # the file's (rows, columns): stride 2 down, 1 across, one padding row
    assert isinstance(conv, IntConv2d) and (conv.stride, conv.padding, conv.delay) == ((2, 1), (1, 0), 1)
    with h5py.File(path, "r") as f:
        bias, w10 = f["layer/1/bias"][()], f["layer/10/weight"][()]
    assert np.array_equal(g.op("layer1").bias_mant[:, 5, 7], bias) and bias.min() < 0  # per channel
    dense = g.op("layer10.synapse")  # a 1-D weight of one output; netx scales it by 4, Lava shifts the sum back
    assert isinstance(dense, IntDense) and dense.weight.shape == (1, 10) and dense.weight_exp == -2
    assert np.array_equal(dense.weight[0], w10.astype(int) << 2)
    assert g.time_steps == 16 + 9 and [n for n in g.nodes if g.op(n).delay] == [
        f"layer{i}.synapse" for i in (1, 2, 3, 4, 5, 7, 8, 9, 10)]  # the input block has no synapse: 9 hops


def test_an_imported_network_saves_and_loads_as_snnir(tmp_path):
    g = read_netx(shared_path("data", "netx", "mnist.net"), time_steps=4, reset_offset=1)
    save(g, tmp_path / "mnist.snnir")
    back = load(tmp_path / "mnist.snnir")
    assert back.history == g.history and [back.op(f"layer{i}").reset_at for i in range(3)] == [1, 2, 3]
    x = (torch.rand(4, 3, 784, generator=torch.Generator().manual_seed(2)) < 0.2).float()
    a, b = run_graph(g, {"input": x}, keep="all"), run_graph(back, {"input": x}, keep="all")
    assert all(torch.equal(a[n], b[n]) for n in a) and a["layer1"].sum() > 0


def test_dense_networks_take_spikes_and_the_given_steps():
    for name, sizes in (("oxford", [200, 256, 200]), ("mnist", [784, 128, 64, 10])):
        g = read_netx(shared_path("data", "netx", f"{name}.net"), time_steps=5)
        types = g.types()
        assert types["input"].dtype == SPIKE and [types[n].shape[0] for n in g.nodes if "." not in n
                                                  and n != "output"] == sizes
        assert g.time_steps == 5 + len(sizes) - 1


def test_a_hand_written_file_gives_the_hand_computed_spikes(tmp_path):
    """One dense synapse [[4, -2]] into a CUBA neuron (instantaneous current, no leak, vth 2 << 6 = 128).
    netx scales the weights by 2^5 ([128, -64], 3 weight bits) and Lava shifts the sum right by 5: the
    synapse computes 4 x0 - 2 x1, one step later; u = a << 6; v integrates u."""
    g = read_netx(_write(tmp_path / "one.net", [_dense([[4, -2]])]), time_steps=4)
    syn = g.op("layer0.synapse")
    assert np.array_equal(syn.weight, [[128, -64]]) and syn.weight_exp == -5
    x = torch.tensor([[1, 1], [1, 0], [0, 1], [0, 0]], dtype=torch.float32)[:, None]  # [T, B=1, 2]
    values = run_graph(g, {"input": x}, keep="all")
    # step 1: a = 2, v = 128 (not > 128); step 2: a = 4, v = 128 + 256 > 128 fires, v = 0; step 3: a = -2, v = -128
    assert values["layer0.synapse"][:, 0, 0].tolist() == [0, 2, 4, -2, 0]
    assert values["output"][:, 0, 0].tolist() == [0, 0, 1, 0, 0]
    _, _, v = g.op("layer0").simulate(values["layer0.synapse"])
    assert v[:, 0, 0].tolist() == [0, 128, 0, -128, -128]


def test_refusals_name_the_file_and_the_block(tmp_path, monkeypatch):
    w = np.array([[4, -2]])
    cases = [
        ([_dense(w), {"type": "pool", "shape": np.array([1])}], "layer/1 (pool): lava-dl 0.6.0's netx cannot"),
        ([_dense(w, neuron={**CUBA, "type": "SDNN"})], "layer/0 (dense): neuron type 'SDNN'"),
        ([_dense(w, delay=np.array([1]))], "layer/0 (dense): per-synapse delays"),
        ([{k: v for k, v in _dense(w).items() if k != "neuron"}], "layer/0 (dense): no 'neuron' group"),
        ([_dense(w, neuron={**CUBA, "vThMant": 1 << 17})], "vth must lie in"),
        ([{"type": "input", "shape": np.array([1, 4, 4])}, _dense(np.ones((2, 16)) * 2)],
         "layer/1 (dense): a dense layer after a [1, 4, 4] map needs a flatten"),
        ([_dense(np.full((1, 2), np.nan))], "'weight' holds NaN"),
        ([_dense(np.zeros((1, 2)))], "all dense weights are zero"),
    ]
    for i, (blocks, message) in enumerate(cases):
        path = _write(tmp_path / f"bad{i}.net", blocks)
        with pytest.raises(NetxImportError, match=re.escape(message)) as e:
            read_netx(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)
    with h5py.File(tmp_path / "linked.net", "w") as f:  # a link would make h5py open another file: refused
        f["layer/0/type"], f["layer/0/inFeatures"] = np.array([b"dense"], dtype="S10"), 2
        f["layer/0/shape"] = np.array([1])
        f["layer/0/weight"] = h5py.ExternalLink(str(tmp_path / "bad0.net"), "/layer/0/weight")
    with pytest.raises(NetxImportError, match="'weight' is a ExternalLink: links are not followed"):
        read_netx(tmp_path / "linked.net")
    with h5py.File(tmp_path / "flat.net", "w") as f:
        f["layer/0"] = np.zeros(3)
    with pytest.raises(NetxImportError, match="'0' must be a group"):
        read_netx(tmp_path / "flat.net")
    (tmp_path / "text.net").write_text("not hdf5")
    with pytest.raises(NetxImportError, match="not an HDF5 file"):
        read_netx(tmp_path / "text.net")
    monkeypatch.setattr(netx_import, "MAX_ELEMENTS", 1)
    with pytest.raises(NetxImportError, match="'weight' has 2 elements, more than the 1 accepted"):
        read_netx(_write(tmp_path / "big.net", [_dense(w)]))


def test_our_netx_export_reads_back_as_the_same_network(tmp_path):
    """An unbiased chain exported with write_netx and read back gives the same spikes at every step."""
    rng = np.random.default_rng(3)
    w1, _ = lava_effective_weights(rng.integers(-90, 130, (24, 16)))
    w2, _ = lava_effective_weights(rng.integers(-110, 150, (10, 24)))
    nodes = {"x": Node(Input(shape=(16,), dtype=SPIKE)), "d1": Node(IntDense(weight=w1, delay=0), ("x",)),
             "l1": Node(LoihiLIF(current_decay=410, voltage_decay=128, vth=120), ("d1",)),
             "d2": Node(IntDense(weight=w2, delay=0), ("l1",)),
             "l2": Node(LoihiLIF(current_decay=0, voltage_decay=2048, vth=400), ("d2",)), "y": Node(Output(), ("l2",))}
    original = run_pipeline(Graph(nodes, ("y",), time_steps=12), [schedule], PassContext())
    back = read_netx(write_netx(original, tmp_path / "mlp.net").path, time_steps=12)
    assert back.time_steps == original.time_steps == 14
    x = (torch.rand(12, 6, 16, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    a, b = run_graph(original, {"x": x}, keep="all"), run_graph(back, {"input": x}, keep="all")
    for ours, theirs in (("l1", "layer1"), ("l2", "layer2")):
        assert torch.equal(a[ours], b[theirs]) and a[ours].sum() > 0


# -- against lava-dl's netx in Lava ---------------------------------------------------------------------------------

RATES = {"pilotnet_lif": None, "oxford": 0.02, "mnist": 0.2}  # oxford's weights are mostly inhibitory: sparse input


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name, reset_offset", [(n, None) for n in NETWORKS] + [("pilotnet_lif", 0)],
                         ids=[*NETWORKS, "pilotnet_lif-restarting"])
def test_shipped_networks_equal_netx_in_lava_at_every_block_and_step(name, reset_offset):
    """``netx.hdf5.Network`` of the file in ``Loihi2SimCfg(select_tag="fixed_pt")`` (through run_netx: an isolated,
    timed, always stopped session) against the IR on the same input, all 16 data steps plus the pipeline's: every
    block's spikes and the last block's voltage equal. PilotNet gets graded frames in its input transform's
    range (int(2 * 40 * x - 40 + 36) for pixels x in [0, 1]) into its input block's neuron, as Intel's tutorial
    feeds it; the dense networks get random spikes. ``restarting``: netx's ``reset_offset=0`` (Intel's pipelined
    PilotNet), every block restarting when its data arrive."""
    pytest.importorskip("lava.lib.dl.netx")
    path = shared_path("data", "netx", f"{name}.net")
    g = read_netx(path, reset_offset=reset_offset)
    if reset_offset is not None:  # block k restarts at step k: the input block at 0 (a no-op), conv1 at 1 ...
        assert [g.op(f"layer{i}").reset_at for i in (0, 1, 5, 7, 10)] == [0, 1, 5, 6, 9]
    data_steps, shape = g.history[0].options["data_steps"], g.op("input").shape
    gen = torch.Generator().manual_seed(11)
    batch = 1 if name == "pilotnet_lif" else 2
    if RATES[name] is None:
        x = torch.randint(-4, 77, (data_steps, batch, *shape), generator=gen)
    else:
        x = (torch.rand(data_steps, batch, *shape, generator=gen) < RATES[name]).float()
    values = run_graph(g, {"input": x}, keep="all")
    frames = np.zeros((batch, g.time_steps, *shape), dtype=np.int64)
    frames[:, :data_steps] = x.transpose(0, 1).numpy()
    run = run_netx(path, frames, timeout=600, output_voltage=True, reset_offset=reset_offset)
    assert run.stragglers == 0
    neurons = [n for n in g.nodes if isinstance(g.op(n), LoihiLIF)]
    assert len(run.spikes) == len(neurons)
    for n, lava in zip(neurons, run.spikes):
        ours = values[n].transpose(0, 1).numpy().astype(np.int8)
        assert np.array_equal(ours, lava), f"{name} {n}: {int((ours != lava).sum())} spikes differ"
        readout = n == neurons[-1] and name == "pilotnet_lif"  # vth 131071: a voltage readout that never fires
        assert (ours.sum() == 0) if readout else (ours.sum() > 0), f"{name} {n}: the comparison would be vacuous"
    _, _, v = g.op(neurons[-1]).simulate(values[g.nodes[neurons[-1]].inputs[0]])
    assert np.array_equal(v.transpose(0, 1).numpy(), run.output_voltage) and np.any(run.output_voltage)


@pytest.mark.slow
def test_dense_weights_are_what_netx_and_lava_compute_with():
    """Each shipped dense block's IntDense weight and exponent against netx's optimize_weight_bits and Lava's
    Dense weight processing (clip, truncate) run on the file's weights."""
    netx = pytest.importorskip("lava.lib.dl.netx")
    from lava.utils import weightutils as wu

    checked = 0
    for name in NETWORKS:
        path = shared_path("data", "netx", f"{name}.net")
        g = read_netx(path)
        with h5py.File(path, "r") as f:
            for i in range(len(f["layer"])):
                if f[f"layer/{i}/type"][0] != b"dense":
                    continue
                syn = g.op(f"layer{i}.synapse")
                w = f[f"layer/{i}/weight"][()].astype(int).reshape(syn.weight.shape)
                scaled, bits, exp, _ = netx.utils.optimize_weight_bits(w)
                mode = wu.determine_sign_mode(scaled)
                lava = wu.truncate_weights(wu.clip_weights(scaled, mode, num_bits=8), mode, bits)
                assert syn.weight_exp == exp and np.array_equal(syn.weight, lava), f"{name} layer {i}"
                checked += 1
    assert checked == 4 + 2 + 3


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_imported_network_runs_on_our_lava_backend_as_on_the_reference():
    """The imported MNIST network through snncompile's own Lava backend (``simulate --backend lava``): every
    block's spikes equal the reference simulator's."""
    pytest.importorskip("lava.magma")
    from snncompile.backends.protocol import get_backend

    g = read_netx(shared_path("data", "netx", "mnist.net"), time_steps=6)
    x = (torch.rand(6, 2, 784, generator=torch.Generator().manual_seed(0)) < 0.2).float()
    blocks = ["layer0", "layer1", "layer2"]
    ref = run_graph(g, {"input": x}, keep="all")
    lava = get_backend("lava").run(g, {"input": x}, expose=blocks)
    for n in blocks:
        assert torch.equal(lava[n].float(), ref[n].float()) and ref[n].sum() > 0, n

"""The ``.snnir`` format (snncompile/ir/io.py): exact round trips of every op, the digest, and hostile files."""
from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from snncompile.ir import io as irio
from snncompile.ir.graph import Graph, GraphError, HistoryEntry, Node
from snncompile.ir.io import IRFileError, from_bytes, graph_digest, load, save, to_bytes
from snncompile.ir.ops import (LI, LIF, OPS, Add, BatchNorm, BlockLinearAttention, BlockSum, Conv2d, CubaLIF, Flatten,
                               GradedRelay, Input,
                               Linear, LUTAttention, MaxPool2d, Mul, Output, ReLU, Repeat, Scale, SpikeColumnSum,
                               SpikeMask, SumPool2d, TemporalWindow, TernaryLIF, TimeMean, TokenMean, IntConv2d,
                               IntDense, LoihiLIF, LoihiTernaryLIF, Quantize, IntAdd, IntShift, Delay, TokenSum,
                               KVOuterAccumulate, QMAccumulate, SpikeScores, ScoreLUT, ScoreValueAccumulate)
from snncompile.ir.ops import (BorderPad, HeadChannelSum, HeadTokenMask, LevelScores, LevelScoreValue, LevelThreshold, MultiLevelAttention,
                               MultiLevelSpike)
from snncompile.ir.types import FLOAT32, SPIKE, TERNARY, DType, int_type
from snncompile.sim import run_graph

T = 4


# ------------------------------------------------------------------------------------------------
# Graphs
# ------------------------------------------------------------------------------------------------

def f32(rng, *shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


def every_op_graph(seed: int = 0) -> Graph:
    """A valid, runnable graph holding every op type in OPS (and a 0-d-parameter branch)."""
    rng = np.random.default_rng(seed)
    n = {}

    def add(name, op, *inputs):
        n[name] = Node(op, tuple(inputs))

    add("img", Input(shape=(3, 8, 8), dtype=FLOAT32, time="static"))
    add("rep", Repeat(time_steps=T), "img")
    add("conv", Conv2d(weight=f32(rng, 4, 3, 3, 3), bias=f32(rng, 4), padding=(1, 1)), "rep")
    add("bn", BatchNorm(weight=f32(rng, 4), bias=f32(rng, 4), running_mean=f32(rng, 4),
                        running_var=f32(rng, 4, lo=0.5, hi=2.0), eps=1e-5), "conv")
    add("lif", LIF(v_threshold=f32(rng, 4, 8, 8, lo=0.1, hi=0.6), leak=2.0, v_rest=-0.0, v_reset=0.0,
                   reset="subtract"), "bn")
    add("pool", MaxPool2d(kernel=(2, 2), stride=(2, 2), padding=(0, 0), mode="or"), "lif")
    add("csum", SpikeColumnSum(heads=2), "pool", "pool")
    add("mlif", LIF(leak_encoding="none", v_threshold=1.0, threshold_cmp=">"), "csum")
    add("mask", SpikeMask(heads=2, erode=True), "pool", "mlif")
    add("bla", BlockLinearAttention(heads=2, block=2, scale=0.1, scale_position="kv"), "mask", "pool", "pool")
    add("lut", LUTAttention(heads=2, table=f32(rng, 2, 3), scale=1 / 3), "pool", "pool", "pool")
    add("relu", ReLU(), "lut")
    add("tlif", TernaryLIF(v_threshold=0.05, leak=0.75, leak_encoding="multiply_by_rate", decay_input=False),
        "bla")
    add("win", TemporalWindow(weights=np.exp(-np.arange(3) / 2.0).astype(np.float32)), "tlif")
    add("add", Add(), "win", "relu", "bla")
    add("mul", Mul(), "add", "pool")
    add("sum", SumPool2d(kernel=(2, 2), stride=(2, 2)), "mul")
    add("tok", TokenMean(), "sum")
    add("flat", Flatten(), "mul")
    add("fc", Linear(weight=f32(rng, 10, 64)), "flat")
    p10 = {k: f32(rng, 10, lo=0.5, hi=2.0) for k in ("tau_syn", "tau_mem", "r", "w_in")}
    add("cuba", CubaLIF(**p10, v_leak=np.zeros(10, np.float32), v_threshold=np.full(10, 0.1, np.float32),
                        v_reset=np.zeros(10, np.float32), dt=0.5), "fc")
    add("mean", TimeMean(), "cuba")
    add("out", Output(), "mean")
    add("scale", Scale(scale=f32(rng, 10)), "fc")
    add("li", LI(leak=f32(rng, 10, lo=1.0, hi=4.0), decay_input=False, v_rest=0.25), "scale")
    add("scale2", Scale(scale=-0.5), "li")
    add("out_li", Output(), "scale2")
    add("out_tok", Output(), "tok")
    # 0-d parameter arrays (NIR's HDF5 writer failed on these)
    add("s", Input(shape=(), dtype=int_type(8), time="stream"))
    scalars = {k: np.array(v, np.float32) for k, v in
               dict(tau_syn=2.0, tau_mem=4.0, r=1.0, v_leak=0.0, v_threshold=0.5, v_reset=0.0, w_in=1.5).items()}
    add("cuba0", CubaLIF(**scalars, dt=1.0, threshold_cmp=">="), "s")
    add("out0", Output(), "cuba0")
    # the Loihi integer family: int arrays, int64 streams
    add("iconv", IntConv2d(weight=rng.integers(-256, 256, (4, 2, 3, 3)).astype(np.int16), weight_exp=1, out_bits=16,
                           overflow="saturate", padding=(1, 1), groups=2), "pool")
    add("llif", LoihiLIF(current_decay=1024, voltage_decay=256, vth=20, bias_exp=3,
                         bias_mant=rng.integers(-50, 50, (4, 4, 4)).astype(np.int16)), "iconv")
    add("iflat", Flatten(), "llif")
    add("idense", IntDense(weight=rng.integers(-256, 255, (5, 64)).astype(np.int32), weight_exp=-1, delay=2), "iflat")
    add("tlif2", LoihiTernaryLIF(current_decay=4096, voltage_decay=0, vth_hi=3, vth_lo=-3, bias_mant=-2), "idense")
    add("out_int", Output(), "tlif2")
    add("out_acc", Output(), "idense")
    # integer plumbing of the lowering
    add("q", Quantize(scale=0.25, bits=8), "img")
    add("qrep", Repeat(time_steps=T, data_steps=T - 1), "q")
    add("ibias", IntConv2d(weight=rng.integers(-8, 8, (3, 3, 1, 1)).astype(np.int8), bias=np.array([1, -2, 3]),
                           out_bits=12), "qrep")
    add("irelay", GradedRelay(), "ibias")  # a sum relayed to its receiving compartment (split_fan_in)
    add("iblocks", BlockSum(blocks=1, shift=-1, bias=np.array([4, 0, -4]), out_bits=12), "irelay")
    add("isum", IntAdd(out_bits=12, overflow="wrap"), "ibias", "iblocks")
    add("ishift", IntShift(shift=-1), "isum")
    add("idelay", Delay(delay=2), "ishift")
    add("itok", TokenSum(out_bits=20), "idelay")
    add("out_itok", Output(), "itok")
    # integer attention (what lower_attention produces)
    add("ikv", KVOuterAccumulate(heads=2, block=2, block_offset=1, out_bits=8, overflow="saturate"), "pool", "tlif")
    add("iqm", QMAccumulate(heads=2), "pool", "ikv")
    add("iscores", SpikeScores(heads=2), "pool", "pool")
    add("ilut", ScoreLUT(table=rng.integers(-20, 20, (2, 3)).astype(np.int16)), "iscores")
    add("isv", ScoreValueAccumulate(heads=2, out_bits=12, overflow="wrap"), "ilut", "tlif")
    add("iattn", IntAdd(), "iqm", "isv")
    add("out_iattn", Output(), "iattn")
    add("bpad", BorderPad(pad=1, value=np.arange(4, dtype=np.float32)), "bn")  # sdt-v2's BN-and-pad
    add("mls", MultiLevelSpike(), "bn")  # sdt-v3's levels, float and integer
    add("mla", MultiLevelAttention(heads=2, scale=0.5), "mls", "mls", "mls")
    add("lthr", LevelThreshold(thresholds=np.array([-2, 1, 3, 7])), "ishift")
    add("lsc", LevelScores(heads=1), "lthr", "lthr")
    add("lsv", LevelScoreValue(heads=1), "lsc", "lthr")
    add("hcs", HeadChannelSum(heads=2), "pool")  # QKFormer's Token-QK attention
    add("htm", HeadTokenMask(heads=4), "pool", "pool")
    history = (HistoryEntry("import_torch", {"source": "STAtten", "t": T, "erode": (True, False),
                                             "lr": 1e-3, "tags": ["a", "b"], "nested": {"x": None}}, "0" * 64),
               HistoryEntry("fold_batchnorm", {}, "f" * 64))
    return Graph(nodes=n, outputs=("out", "out_tok", "out0", "out_li", "out_int", "out_acc", "out_itok",
                                   "out_iattn"), time_steps=T,
                 history=history).validate()


def small_graph() -> Graph:
    w = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    return Graph(nodes={"x": Node(Input(shape=(4,))), "fc": Node(Linear(weight=w), ("x",)),
                        "y": Node(Output(), ("fc",))}, outputs=("y",), time_steps=2).validate()


# ------------------------------------------------------------------------------------------------
# Exact comparison (bit-level for floats and arrays, type-exact for everything else)
# ------------------------------------------------------------------------------------------------

def same_value(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.dtype.str == b.dtype.str
                and a.shape == b.shape and a.tobytes() == b.tobytes())
    if isinstance(a, float):
        if type(b) is not float:
            return False
        return (math.isnan(a) and math.isnan(b)) or struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return (type(b) is dict and list(a) == list(b)
                and all(same_value(a[k], b[k]) for k in a))
    return type(a) is type(b) and a == b


def assert_same_graph(g: Graph, h: Graph) -> None:
    assert list(g.nodes) == list(h.nodes)
    for name in g.nodes:
        a, b = g.nodes[name], h.nodes[name]
        assert type(a.op) is type(b.op), name
        assert a.inputs == b.inputs and type(b.inputs) is tuple, name
        for f in dataclasses.fields(a.op):
            va, vb = getattr(a.op, f.name), getattr(b.op, f.name)
            assert same_value(va, vb), f"{name}.{f.name}: {va!r} != {vb!r}"
    assert g.outputs == h.outputs and type(h.outputs) is tuple
    assert g.time_steps == h.time_steps
    assert g.schedule == h.schedule and g.scales == h.scales
    assert len(g.history) == len(h.history)
    for x, y in zip(g.history, h.history):
        assert x.name == y.name and x.digest == y.digest
        assert same_value(dict(x.options), y.options), (x.options, y.options)


def test_same_value_is_strict():
    """The comparison the round-trip tests rely on does tell values apart."""
    assert not same_value(0.0, -0.0)
    assert not same_value(1, 1.0) and not same_value(True, 1)
    assert not same_value((1, 2), [1, 2])
    assert not same_value(np.zeros(2, np.float32), np.zeros(2, np.float64))
    assert not same_value(np.zeros(2, "<f4"), np.zeros(2, ">f4"))
    assert not same_value(np.zeros((2, 1)), np.zeros((1, 2)))
    assert same_value(float("nan"), float("nan"))


# ------------------------------------------------------------------------------------------------
# Round trip
# ------------------------------------------------------------------------------------------------

def test_field_annotations_resolve():
    """The load-time value check needs every op's field annotations; an unresolvable one would skip it."""
    for cls in OPS:
        hints = irio._field_hints(cls)
        assert all(f.name in hints for f in dataclasses.fields(cls)), cls.__name__


def test_every_op_is_covered():
    """A new op in OPS without a round-trip instance here fails this test."""
    g = every_op_graph()
    assert {type(node.op) for node in g.nodes.values()} == set(OPS)


def test_round_trip_every_op(tmp_path):
    g = every_op_graph()
    path = save(g, tmp_path / "model.snnir")
    h = load(path)
    assert_same_graph(g, h)
    assert graph_digest(h) == graph_digest(g)
    assert h.types() == g.types()
    for node in h.nodes.values():  # arrays are owned and read-only, as Op guarantees
        for a in node.op.arrays().values():
            assert not a.flags.writeable
    # and the loaded graph computes the same, bit for bit
    torch.manual_seed(0)
    feeds = {"img": torch.rand(2, 3, 8, 8), "s": torch.randint(-3, 4, (T, 2)).float()}
    ya, yb = run_graph(g, feeds), run_graph(h, feeds)
    for k in g.outputs:
        assert ya[k].dtype == yb[k].dtype and torch.equal(ya[k], yb[k]), k


def test_files_are_deterministic_and_canonical(tmp_path):
    data = to_bytes(every_op_graph())
    assert to_bytes(every_op_graph()) == data  # independently built equal graph: same bytes
    assert to_bytes(from_bytes(data)) == data   # load -> save is a fixpoint
    save(every_op_graph(), tmp_path / "a.snnir")
    assert (tmp_path / "a.snnir").read_bytes() == data
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        assert names == sorted(names) and "graph.json" in names
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
        assert zf.testzip() is None


def test_graph_json_layout():
    data = to_bytes(every_op_graph())
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        doc = json.loads(zf.read("graph.json"))
        entries = set(zf.namelist())
    assert list(doc) == ["format", "format_version", "time_steps", "outputs", "nodes", "schedule", "scales",
                         "history", "arrays"]
    assert doc["schedule"] is None and doc["scales"] is None  # neither scheduled nor quantised
    assert doc["format"] == "snncompile-ir" and doc["format_version"] == irio.FORMAT_VERSION
    assert doc["time_steps"] == T and doc["outputs"] == ["out", "out_tok", "out0", "out_li", "out_int", "out_acc",
                                                         "out_itok", "out_iattn"]
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert [n["name"] for n in doc["nodes"]] == list(every_op_graph().nodes)
    assert nodes["conv"]["type"] == "Conv2d" and nodes["conv"]["inputs"] == ["rep"]
    assert nodes["conv"]["fields"]["stride"] == [1, 1] and nodes["conv"]["fields"]["groups"] == 1
    assert nodes["s"]["fields"]["dtype"] == {"dtype": "int8"}
    assert nodes["fc"]["fields"]["bias"] is None
    ref = nodes["cuba0"]["fields"]["tau_mem"]["array"]
    assert doc["arrays"][ref]["shape"] == [] and doc["arrays"][ref]["dtype"] == "<f4"
    assert set(doc["arrays"]) | {"graph.json"} == entries
    assert doc["history"][0]["options"]["erode"] == [True, False]
    assert doc["history"][0]["options"]["tags"] == {"list": ["a", "b"]}
    # every node records its output type, exactly as inference gives it
    assert all(list(n) == ["name", "type", "inputs", "out", "fields"] for n in doc["nodes"])
    types = every_op_graph().types()
    for name, n in nodes.items():
        t = types[name]
        assert n["out"] == {"shape": list(t.shape), "dtype": str(t.dtype), "time": t.time}, name
        assert list(n["out"]) == ["shape", "dtype", "time"]
    assert nodes["img"]["out"] == {"shape": [3, 8, 8], "dtype": "float32", "time": "static"}
    assert nodes["rep"]["out"] == {"shape": [3, 8, 8], "dtype": "float32", "time": "stream"}
    assert nodes["lif"]["out"] == {"shape": [4, 8, 8], "dtype": "spike", "time": "stream"}
    assert nodes["tlif"]["out"]["dtype"] == "ternary"
    assert nodes["csum"]["out"]["dtype"].startswith("uint")
    assert nodes["s"]["out"] == {"shape": [], "dtype": "int8", "time": "stream"}
    assert nodes["fc"]["out"] == {"shape": [10], "dtype": "float32", "time": "stream"}


EXTREME_FLOATS = [0.1, 1 / 3, -0.0, 0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
                  -1e-7, 123456789.123456789, float("inf"), float("-inf"), float("nan")]


@pytest.mark.parametrize("value", EXTREME_FLOATS, ids=repr)
def test_floats_round_trip_exactly(value):
    lif = LIF(v_threshold=1.0, leak=2.0, v_rest=value, v_reset=value)
    g = Graph(nodes={"x": Node(Input(shape=(2,))), "n": Node(lif, ("x",)), "y": Node(Output(), ("n",))},
              outputs=("y",), time_steps=1, history=(HistoryEntry("p", {"v": value, "t": (value,)}, ""),))
    h = from_bytes(to_bytes(g))
    assert_same_graph(g, h)
    assert graph_digest(h) == graph_digest(g)


def test_history_options_round_trip():
    options = {"int": 2 ** 70, "neg": -3, "bool": False, "none": None, "str": "ünï\u2603 \"q\"",
               "tuple": (1, (2, 3.5)), "list": [1, [2, (3,)]], "dict": {"a": {"b": [None]}}, "empty": (),
               "emptylist": [], "dtype": DType.parse("uint12"), "inf": float("-inf")}
    g = dataclasses.replace(small_graph(), history=(HistoryEntry("quantize", options, "ab" * 32),))
    assert_same_graph(g, from_bytes(to_bytes(g)))


def test_load_nonexistent_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope.snnir")


# ------------------------------------------------------------------------------------------------
# Digest
# ------------------------------------------------------------------------------------------------

def _replace_op(g: Graph, name: str, **changes) -> Graph:
    nodes = dict(g.nodes)
    nodes[name] = Node(dataclasses.replace(g.nodes[name].op, **changes), g.nodes[name].inputs)
    return dataclasses.replace(g, nodes=nodes)


def test_digest_covers_content_but_not_history():
    g = small_graph()
    d = graph_digest(g)
    assert len(d) == 64 and d == graph_digest(small_graph())
    assert graph_digest(dataclasses.replace(g, history=(HistoryEntry("x", {}, d),))) == d
    w = g.op("fc").weight
    changed = [
        dataclasses.replace(g, time_steps=3),
        dataclasses.replace(g, nodes=dict(reversed(list(g.nodes.items())))),           # node order
        dataclasses.replace(g, nodes={("X" if k == "x" else k): v for k, v in g.nodes.items()}),  # a name
        _replace_op(g, "fc", weight=w.astype(np.float64)),                                # dtype
        _replace_op(g, "fc", weight=w.view(np.int32)),                                    # same bytes, dtype
        _replace_op(g, "fc", weight=w.reshape(4, 3)),                                     # same bytes, shape
        _replace_op(g, "fc", weight=w.astype(">f4")),                                     # byte order
        _replace_op(g, "fc", bias=np.zeros(3, np.float32)),                               # None -> array
        _replace_op(g, "x", shape=(4, 1)),
        _replace_op(g, "x", dtype=SPIKE),
        _replace_op(g, "x", time="static"),
    ]
    flipped = w.copy()
    flipped.reshape(-1).view(np.uint8)[5] ^= 1
    changed.append(_replace_op(g, "fc", weight=flipped))
    digests = [graph_digest(c) for c in changed]
    assert d not in digests and len(set(digests)) == len(digests)
    lif = small_lif_graph(1.0)
    assert graph_digest(small_lif_graph(1)) != graph_digest(lif)  # int 1 vs float 1.0
    assert graph_digest(small_lif_graph(-0.0)) != graph_digest(small_lif_graph(0.0))


def test_digest_ignores_recorded_types(monkeypatch):
    """The ``out`` records are derived data: the digest neither includes them nor runs inference."""
    g = every_op_graph()
    d = graph_digest(g)
    h = from_bytes(to_bytes(g))

    def no_inference(self):
        raise AssertionError("graph_digest ran type inference")
    monkeypatch.setattr(Graph, "types", no_inference)
    assert graph_digest(g) == graph_digest(h) == d
    broken = _replace_op(small_graph(), "x", shape=(5,))  # Linear expects 4: no types can be inferred
    assert len(graph_digest(broken)) == 64


def small_lif_graph(v_reset) -> Graph:
    return Graph(nodes={"x": Node(Input(shape=(2,))), "n": Node(LIF(v_reset=v_reset), ("x",)),
                        "y": Node(Output(), ("n",))}, outputs=("y",), time_steps=1)


def test_digest_input_order_matters():
    nodes = {"a": Node(Input(shape=(2,))), "b": Node(Input(shape=(2,))), "s": Node(Add(), ("a", "b")),
             "y": Node(Output(), ("s",))}
    g = Graph(nodes=nodes, outputs=("y",), time_steps=1)
    swapped = dict(nodes, s=Node(Add(), ("b", "a")))
    assert graph_digest(g) != graph_digest(dataclasses.replace(g, nodes=swapped))


# ------------------------------------------------------------------------------------------------
# Property-style: random Conv2d/LIF chains with arrays of many dtypes
# ------------------------------------------------------------------------------------------------

ARRAY_DTYPES = [np.float32, np.float64, np.float16, np.int8, np.int16, np.int32, np.int64, np.uint8,
                np.uint16, np.bool_, np.complex64, ">f4", ">i2"]


def random_array(rng, shape) -> np.ndarray:
    dt = np.dtype(ARRAY_DTYPES[rng.integers(len(ARRAY_DTYPES))])
    if dt.kind == "b":
        return rng.integers(0, 2, size=shape).astype(dt)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dt.newbyteorder("="))\
            .astype(dt)
    a = rng.standard_normal(shape) * 10.0 ** rng.integers(-5, 5)
    if dt.kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    a = np.asarray(a).astype(dt)
    flat = a.reshape(-1)
    if flat.size and rng.random() < 0.5:  # special values
        flat[rng.integers(flat.size)] = rng.choice([np.nan, np.inf, -np.inf, -0.0])
    return a


def random_float(rng) -> float:
    return float(rng.choice([rng.standard_normal(), -0.0, 0.1, 1 / 3, 1e-300, 2.0 ** -1074, 1e300,
                             np.inf, -np.inf, np.nan, float(rng.integers(-5, 5))]))


def random_chain(seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    c, h, w = (int(v) for v in rng.integers(1, 5, size=3) * (1, 3, 3))
    in_dtype = [FLOAT32, SPIKE, TERNARY, int_type(8), int_type(16, False)][rng.integers(5)]
    nodes = {"x": Node(Input(shape=(c, h, w), dtype=in_dtype, time="stream"))}
    prev = "x"
    for i in range(int(rng.integers(1, 4))):
        while True:
            groups = int(rng.choice([g for g in range(1, c + 1) if c % g == 0]))
            c_out = groups * int(rng.integers(1, 3))
            k = tuple(int(v) for v in rng.integers(1, 4, size=2))
            stride, padding, dilation = (tuple(int(v) for v in rng.integers(lo, hi, size=2))
                                         for lo, hi in ((1, 3), (0, 3), (1, 3)))
            size = [(s + 2 * padding[j] - dilation[j] * (k[j] - 1) - 1) // stride[j] + 1
                    for j, s in enumerate((h, w))]
            if min(size) >= 1:
                break
        bias = random_array(rng, (c_out,)) if rng.random() < 0.6 else None
        nodes[f"conv{i}"] = Node(Conv2d(weight=random_array(rng, (c_out, c // groups, *k)), bias=bias,
                                        stride=stride, padding=padding, dilation=dilation, groups=groups),
                                 (prev,))
        c, h, w = c_out, *size
        cls = TernaryLIF if rng.random() < 0.3 else LIF
        encoding = ["divide_by_tau", "multiply_by_rate", "none"][rng.integers(3)]
        lo, hi = (0.0, 1.0) if encoding == "multiply_by_rate" else (1.0, 5.0)  # a rate, or tau
        leak = (float(rng.uniform(lo, hi)) if rng.random() < 0.5
                else rng.uniform(lo, hi, size=(c, h, w)).astype(rng.choice([np.float32, np.float64])))
        threshold = random_float(rng) if rng.random() < 0.5 else random_array(rng, (c, h, w))
        nodes[f"lif{i}"] = Node(cls(v_threshold=threshold, leak=leak, leak_encoding=encoding,
                                    decay_input=bool(rng.random() < 0.5), v_rest=random_float(rng),
                                    v_reset=random_float(rng), threshold_cmp=[">=", ">"][rng.integers(2)],
                                    reset="hard" if cls is TernaryLIF else ["hard", "subtract"][rng.integers(2)]),
                                (f"conv{i}",))
        prev = f"lif{i}"
    nodes["flat"] = Node(Flatten(), (prev,))
    n_out = int(rng.integers(1, 6))
    nodes["fc"] = Node(Linear(weight=random_array(rng, (n_out, c * h * w)),
                              bias=random_array(rng, (n_out,)) if rng.random() < 0.5 else None), ("flat",))
    nodes["y"] = Node(Output(), ("fc",))
    history = tuple(HistoryEntry(f"pass{j}", {"seed": seed, "x": random_float(rng), "k": (j, "s")},
                                 f"{rng.integers(2 ** 63):064x}") for j in range(int(rng.integers(0, 3))))
    return Graph(nodes=nodes, outputs=("y",), time_steps=int(rng.integers(1, 9)), history=history).validate()


@pytest.mark.parametrize("seed", range(40))
def test_random_chains_round_trip(seed):
    g = random_chain(seed)
    data = to_bytes(g)
    h = from_bytes(data)
    assert_same_graph(g, h)
    d = graph_digest(g)
    assert graph_digest(h) == d
    assert to_bytes(h) == data
    # the digest sees a single flipped bit in any array
    rng = np.random.default_rng(1000 + seed)
    arrays = [(name, field, a) for name, node in g.nodes.items() for field, a in node.op.arrays().items()
              if a.size]
    name, field, a = arrays[rng.integers(len(arrays))]
    b = np.array(a, copy=True)
    raw = b.reshape(-1).view(np.uint8)
    raw[rng.integers(raw.size)] ^= 1 << int(rng.integers(8))
    mutated = _replace_op(g, name, **{field: b})
    assert graph_digest(mutated) != d
    assert graph_digest(from_bytes(to_bytes(_replace_op(mutated, name, **{field: a})))) == d


# ------------------------------------------------------------------------------------------------
# Saving refuses what it cannot store exactly
# ------------------------------------------------------------------------------------------------

def test_save_refuses_invalid_graph(tmp_path):
    g = small_graph()
    bad = dataclasses.replace(g, nodes=dict(g.nodes, y=Node(Output(), ("missing",))))
    with pytest.raises(GraphError, match="dangling"):
        save(bad, tmp_path / "bad.snnir")
    assert list(tmp_path.iterdir()) == []  # no file, no temporary left behind


@pytest.mark.parametrize("node,changes,message", [
    ("x", {"shape": [4]}, r"node 'x' \(Input\) field 'shape': expected tuple\[int, \.\.\.\], got list"),
    ("x", {"shape": (np.int64(4),)}, r"node 'x' \(Input\) field 'shape'"),
    ("x", {"time": "sometimes"}, r"field 'time': expected Literal"),
    ("x", {"dtype": DType("float", 32, False)}, r"field 'dtype'.*no string form"),
    ("fc", {"weight": np.array([[None]], dtype=object)}, r"node 'fc' \(Linear\) field 'weight'.*object"),
    ("fc", {"bias": 3}, r"field 'bias': expected np.ndarray \| None, got int"),
])
def test_save_refuses_unstorable_values(tmp_path, node, changes, message):
    g = _replace_op(small_graph(), node, **changes)
    with pytest.raises(IRFileError, match=message) as e:
        save(g, tmp_path / "g.snnir")
    assert str(tmp_path / "g.snnir") in str(e.value)


def test_save_refuses_unregistered_op():
    @dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
    class Mystery(Linear):
        pass
    g = small_graph()
    g = dataclasses.replace(g, nodes=dict(g.nodes, fc=Node(Mystery(weight=g.op("fc").weight), ("x",))))
    with pytest.raises(IRFileError, match="not a registered op"):
        to_bytes(g)


# ------------------------------------------------------------------------------------------------
# Hostile and broken files
# ------------------------------------------------------------------------------------------------

def read_entries(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def write_entries(entries, compress_type=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compress_type) as zf:
        for name, data in (entries.items() if isinstance(entries, dict) else entries):
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=compress_type)
    return buf.getvalue()


def tamper(data: bytes, doc_fn=None, entries_fn=None) -> bytes:
    entries = read_entries(data)
    if doc_fn is not None:
        doc = json.loads(entries["graph.json"])
        doc_fn(doc)
        entries["graph.json"] = json.dumps(doc).encode()
    if entries_fn is not None:
        result = entries_fn(entries)
        entries = result if isinstance(result, dict) else entries
    return write_entries(entries)


def node_of(doc, name):
    return next(n for n in doc["nodes"] if n["name"] == name)


def array_entry(doc, node, field):
    return node_of(doc, node)["fields"][field]["array"]


@pytest.fixture(scope="module")
def good() -> bytes:
    return to_bytes(every_op_graph())


def expect_error(tmp_path, data: bytes, pattern: str) -> IRFileError:
    """Writes ``data`` to a file, loads it, and checks the IRFileError names the file and matches."""
    path = tmp_path / "bad.snnir"
    path.write_bytes(data)
    with pytest.raises(IRFileError) as e:
        load(path)
    assert str(e.value).startswith(f"{path}: "), str(e.value)
    assert e.value.source == str(path)
    assert re.search(pattern, str(e.value), re.S), str(e.value)
    return e.value


def test_good_fixture_loads(good):
    assert graph_digest(from_bytes(good)) == graph_digest(every_op_graph())


def test_not_a_zip(tmp_path):
    expect_error(tmp_path, b"", "not a zip archive")
    expect_error(tmp_path, b"hello, this is plain text\n" * 10, "not a zip archive")
    expect_error(tmp_path, json.dumps({"format": "snncompile-ir"}).encode(), "not a zip archive")


def test_truncated_files(tmp_path, good):
    for cut in (1, 4, 30, 100, len(good) // 3, len(good) // 2, len(good) - 100, len(good) - 22,
                len(good) - 21, len(good) - 1):
        expect_error(tmp_path, good[:cut], "not a zip archive, or truncated")


def test_corrupt_entry_data(tmp_path, good):
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        info = zf.getinfo("graph.json")
    offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
    bad = bytearray(good)
    bad[offset] ^= 0xFF
    expect_error(tmp_path, bytes(bad), "entry 'graph.json' is corrupt")


def test_every_single_byte_flip_is_caught_or_harmless():
    """A corrupted file never loads as a different graph, and never fails with a foreign exception."""
    data = to_bytes(small_graph())
    digest = graph_digest(small_graph())
    caught = 0
    for i in range(len(data)):
        for mask in (0x01, 0xFF):
            bad = bytearray(data)
            bad[i] ^= mask
            try:
                g = from_bytes(bytes(bad), "flipped")
            except IRFileError:
                caught += 1
                continue
            assert graph_digest(g) == digest, (i, mask)
    assert caught > len(data)  # most flips are detected


def test_sampled_byte_flips_in_a_large_file(good):
    digest = graph_digest(every_op_graph())
    rng = np.random.default_rng(7)
    for i in rng.choice(len(good), size=300, replace=False):
        bad = bytearray(good)
        bad[i] ^= int(rng.integers(1, 256))
        try:
            g = from_bytes(bytes(bad), "flipped")
        except IRFileError:
            continue
        assert graph_digest(g) == digest, i


def test_missing_graph_json(tmp_path, good):
    expect_error(tmp_path, tamper(good, entries_fn=lambda e: {k: v for k, v in e.items() if k != "graph.json"}),
                 "missing graph.json")


@pytest.mark.parametrize("text,pattern", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe{}", "not valid JSON"),
    (b"[]", "must hold a JSON object"),
    (b'{"format": "snncompile-ir", "format": "snncompile-ir"}', "duplicated key 'format'"),
    (b'{"format": "snncompile-ir", "format_version": 1, "time_steps": NaN}', "non-standard JSON constant NaN"),
    pytest.param(b"[" * 100000 + b"]" * 100000, "nested too deeply|must hold a JSON object|not valid JSON",
                 id="deep-nesting"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_json(tmp_path, good, text, pattern):
    expect_error(tmp_path, tamper(good, entries_fn=lambda e: e.update({"graph.json": text})), pattern)


def test_wrong_magic(tmp_path, good):
    expect_error(tmp_path, tamper(good, lambda d: d.update(format="nir")), "not a snncompile IR file")
    expect_error(tmp_path, tamper(good, lambda d: d.pop("format")), "not a snncompile IR file")


N = irio.FORMAT_VERSION
READS = f"this snncompile reads format_versions 1 to {N}"


def test_newer_format_version(tmp_path, good):
    err = expect_error(tmp_path, tamper(good, lambda d: d.update(format_version=N + 1)),
                       f"format_version {N + 1} was written by a newer snncompile")
    assert READS in str(err)


@pytest.mark.parametrize("version", [0, -1])
def test_older_format_version_without_upgrade(tmp_path, good, version):
    expect_error(tmp_path, tamper(good, lambda d: d.update(format_version=version)),
                 f"format_version {version} is older than {N} and there is no upgrade step from {version} to "
                 f"{version + 1}; {READS}")


@pytest.mark.parametrize("version", ["1", 1.0, True, None])
def test_format_version_must_be_an_integer(tmp_path, good, version):
    expect_error(tmp_path, tamper(good, lambda d: d.update(format_version=version)),
                 "format_version must be an integer")


def test_upgrade_steps_carry_old_files_forward(tmp_path, good, monkeypatch):
    """Simulate format N + 1, in which LIF's 'leak' was called 'tau' in format N (a made-up history)."""
    def as_old(doc):
        for n in doc["nodes"]:
            if n["type"] in ("LIF", "TernaryLIF"):
                n["fields"]["tau"] = n["fields"].pop("leak")

    old = tamper(good, as_old)
    calls = []

    def upgrade(doc):
        calls.append(doc["format_version"])
        for n in doc["nodes"]:
            if n["type"] in ("LIF", "TernaryLIF"):
                n["fields"]["leak"] = n["fields"].pop("tau")
        return doc

    monkeypatch.setattr(irio, "FORMAT_VERSION", N + 1)
    monkeypatch.setattr(irio, "UPGRADES", {})
    expect_error(tmp_path, old, f"no upgrade step from {N} to {N + 1}; this snncompile reads format_version {N + 1}")
    monkeypatch.setattr(irio, "UPGRADES", {N: upgrade})
    assert irio.readable_versions() == [N, N + 1]
    path = tmp_path / "old.snnir"
    path.write_bytes(old)
    h = load(path)
    assert calls == [N]
    assert_same_graph(every_op_graph(), h)
    assert json.loads(read_entries(to_bytes(h))["graph.json"])["format_version"] == N + 1
    expect_error(tmp_path, tamper(good, lambda d: d.update(format_version=N + 2)),
                 f"this snncompile reads format_versions {N} to {N + 1}")


def test_every_released_version_has_an_upgrade_path():
    assert irio.readable_versions() == list(range(1, N + 1))


def test_unknown_node_type(tmp_path, good):
    expect_error(tmp_path, tamper(good, lambda d: node_of(d, "relu").update(type="GELU")),
                 r"node 'relu': unknown node type 'GELU' \(known: Input, ")


def test_unknown_and_missing_fields(tmp_path, good):
    expect_error(tmp_path, tamper(good, lambda d: node_of(d, "conv")["fields"].update(latency=1)),
                 r"node 'conv' \(Conv2d\) field 'latency': unknown field for Conv2d \(its fields: delay, overflow, weight, bias")
    expect_error(tmp_path, tamper(good, lambda d: node_of(d, "conv")["fields"].pop("groups")),
                 r"node 'conv' \(Conv2d\) field 'groups': missing field")
    expect_error(tmp_path, tamper(good, lambda d: node_of(d, "relu")["fields"].update(inplace=True)),
                 r"node 'relu' \(ReLU\) field 'inplace': unknown field for ReLU \(its fields: delay, overflow\)")


@pytest.mark.parametrize("node,field,value,pattern", [
    ("conv", "stride", [1], r"field 'stride': expected tuple\[int, int\], got tuple \(1,\)"),
    ("conv", "stride", "11", r"field 'stride': expected tuple\[int, int\], got str"),
    ("conv", "groups", True, r"field 'groups': expected int, got bool"),
    ("conv", "groups", 1.0, r"field 'groups': expected int, got float"),
    ("bn", "eps", "1e-5", r"field 'eps': expected float, got str"),
    ("lif", "reset", "soft", r"field 'reset': expected Literal\['hard', 'subtract'\]"),
    ("img", "dtype", "float32", r"field 'dtype': expected DType, got str"),
    ("img", "dtype", {"dtype": "bfloat"}, r"field 'dtype': unknown dtype 'bfloat'"),
    ("conv", "bias", {"pickle": "x"}, r"field 'bias': unknown value encoding"),
    ("conv", "bias", {"float": "1.5"}, r"field 'bias': .* must be 'inf', '-inf' or 'nan'"),
    ("conv", "stride", [{"array": "arrays/0002.weight.npy"}, 1], r"arrays are allowed only as the direct value"),
    ("conv", "weight", {"array": "arrays/nowhere.npy"}, r"field 'weight': array entry 'arrays/nowhere.npy' is not "
                                                        r"in the array manifest"),
])
def test_wrong_field_values(tmp_path, good, node, field, value, pattern):
    err = expect_error(tmp_path, tamper(good, lambda d: node_of(d, node)["fields"].update({field: value})),
                       pattern)
    assert f"node {node!r}" in str(err)


@pytest.mark.parametrize("mutate,pattern", [
    (lambda d: d.update(time_steps="4"), "time_steps must be an integer"),
    (lambda d: d.update(outputs="out"), "outputs must be a list of node names"),
    (lambda d: d.update(nodes={}), "nodes must be a list"),
    (lambda d: d.update(extra=1), r"graph.json: unknown key\(s\) 'extra'"),
    (lambda d: d.pop("history"), r"graph.json: missing key\(s\) 'history'"),
    (lambda d: d["nodes"][0].update(comment="x"), r"nodes\[0\]: unknown key\(s\) 'comment'"),
    (lambda d: d["nodes"][0].pop("inputs"), r"nodes\[0\]: missing key\(s\) 'inputs'"),
    (lambda d: d["nodes"][1].update(inputs="img"), "inputs must be a list of node names"),
    (lambda d: d["history"][0].pop("digest"), r"history\[0\]: missing key"),
    (lambda d: d["history"][0]["options"].update(bad={"set": [1]}), r"history\[0\] \(import_torch\) option 'bad'"),
])
def test_malformed_document(tmp_path, good, mutate, pattern):
    expect_error(tmp_path, tamper(good, mutate), pattern)


def test_duplicated_node_names(tmp_path, good):
    def dup(d):
        d["nodes"].insert(3, json.loads(json.dumps(node_of(d, "relu"))))
    expect_error(tmp_path, tamper(good, dup), "node name 'relu' is used by more than one node")


def test_invalid_graph_reports_graph_problems(tmp_path, good):
    def break_it(d):
        node_of(d, "mul")["inputs"] = ["add", "ghost"]
        d["time_steps"] = 0
    err = expect_error(tmp_path, tamper(good, break_it), "the file describes an invalid graph")
    assert "time_steps must be >= 1, got 0" in str(err)
    assert re.search(r"node 'mul'.*: input 'ghost' does not exist \(dangling edge\)", str(err)), str(err)
    # a type error found by inference (Linear expects 64 inputs) is reported too
    expect_error(tmp_path, tamper(good, lambda d: node_of(d, "fc").update(inputs=["tok"])),
                 r"invalid graph.*node 'fc' \(Linear\): Linear expects last axis 64")


@pytest.mark.parametrize("node,change,recorded,inferred,differ", [
    ("conv", {"shape": [4, 8, 9]}, r"float32\[4, 8, 9\] \(stream\)", r"float32\[4, 8, 8\] \(stream\)", "shape"),
    ("conv", {"shape": [4, 8]}, r"float32\[4, 8\] \(stream\)", r"float32\[4, 8, 8\] \(stream\)", "shape"),
    ("s", {"shape": [1]}, r"int8\[1\] \(stream\)", r"int8\[\] \(stream\)", "shape"),
    ("lif", {"dtype": "float32"}, r"float32\[4, 8, 8\] \(stream\)", r"spike\[4, 8, 8\] \(stream\)", "dtype"),
    ("s", {"dtype": "uint8"}, r"uint8\[\] \(stream\)", r"int8\[\] \(stream\)", "dtype"),
    ("tlif", {"dtype": "spike"}, r"spike\[", r"ternary\[", "dtype"),
    ("img", {"time": "stream"}, r"float32\[3, 8, 8\] \(stream\)", r"float32\[3, 8, 8\] \(static\)", "time"),
    ("rep", {"time": "static"}, r"float32\[3, 8, 8\] \(static\)", r"float32\[3, 8, 8\] \(stream\)", "time"),
    ("fc", {"shape": [9], "dtype": "spike", "time": "static"}, r"spike\[9\] \(static\)",
     r"float32\[10\] \(stream\)", "shape, dtype, time differ"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_recorded_types_must_match_inference(tmp_path, good, node, change, recorded, inferred, differ):
    err = expect_error(tmp_path, tamper(good, lambda d: node_of(d, node)["out"].update(change)),
                       rf"node {node!r} \(\w+\): the recorded output type {recorded}.* differs from the inferred "
                       rf"type {inferred}.* \({differ}")
    assert "\n" not in str(err)


def test_field_edit_without_its_recorded_type_is_caught(tmp_path, good):
    """Editing a field that changes a type, but not the ``out`` records, is refused."""
    expect_error(tmp_path, tamper(good, lambda d: node_of(d, "s")["fields"].update(dtype={"dtype": "int16"})),
                 r"node 's' \(Input\): the recorded output type int8\[\] \(stream\) differs from the inferred "
                 r"type int16\[\] \(stream\) \(dtype differs")
    # changing fields and every affected record consistently gives a (different) valid graph
    def consistent(d):
        node_of(d, "s")["fields"]["dtype"] = {"dtype": "int16"}
        node_of(d, "s")["out"]["dtype"] = "int16"
    h = from_bytes(tamper(good, consistent))
    assert h.types()["s"].dtype == int_type(16)


def test_recorded_types_are_checked_after_graph_validity(tmp_path, good):
    """An invalid graph is reported as such (types cannot be inferred), not as a type mismatch."""
    def break_it(d):
        node_of(d, "fc").update(inputs=["tok"])
        node_of(d, "fc")["out"]["shape"] = [99]
    err = expect_error(tmp_path, tamper(good, break_it), r"invalid graph.*Linear expects last axis 64")
    assert "recorded output type" not in str(err)


@pytest.mark.parametrize("mutate,pattern", [
    (lambda n: n.pop("out"), r"nodes\[\d+\]: missing key\(s\) 'out'"),
    (lambda n: n.update(out=None), r"node 'conv' \(Conv2d\) out must be a JSON object, got None"),
    (lambda n: n.update(out="float32[4, 8, 8]"), r"node 'conv' \(Conv2d\) out must be a JSON object"),
    (lambda n: n.update(out=[[4, 8, 8], "float32", "stream"]), r"node 'conv' \(Conv2d\) out must be a JSON object"),
    (lambda n: n["out"].pop("time"), r"node 'conv' \(Conv2d\) out: missing key\(s\) 'time'"),
    (lambda n: n["out"].pop("shape"), r"node 'conv' \(Conv2d\) out: missing key\(s\) 'shape'"),
    (lambda n: n["out"].update(layout="NCHW"), r"node 'conv' \(Conv2d\) out: unknown key\(s\) 'layout'"),
    (lambda n: n["out"].update(shape="4,8,8"), r"out: shape must be a list of non-negative integers, got '4,8,8'"),
    (lambda n: n["out"].update(shape=[4, -8, 8]), r"out: shape must be a list of non-negative integers"),
    (lambda n: n["out"].update(shape=[4, 8.0, 8]), r"out: shape must be a list of non-negative integers"),
    (lambda n: n["out"].update(shape=[4, True, 8]), r"out: shape must be a list of non-negative integers"),
    (lambda n: n["out"].update(shape={"list": [4, 8, 8]}), r"out: shape must be a list of non-negative integers"),
    (lambda n: n["out"].update(dtype={"dtype": "float32"}), r"out: dtype must be a string"),
    (lambda n: n["out"].update(dtype=None), r"out: dtype must be a string"),
    (lambda n: n["out"].update(dtype="bfloat16"), r"out: unknown dtype 'bfloat16'"),
    (lambda n: n["out"].update(dtype="<f4"), r"out: unknown dtype '<f4'"),
    (lambda n: n["out"].update(dtype="float032"), r"out: dtype 'float032' is not in canonical form 'float32'"),
    (lambda n: n["out"].update(dtype="float0"), r"out: dtype bits must be >= 1"),
    (lambda n: n["out"].update(time="Stream"), r"out: time must be 'stream' or 'static', got 'Stream'"),
    (lambda n: n["out"].update(time=None), r"out: time must be 'stream' or 'static', got None"),
])
def test_malformed_recorded_types(tmp_path, good, mutate, pattern):
    expect_error(tmp_path, tamper(good, lambda d: mutate(node_of(d, "conv"))), pattern)


def test_array_entry_missing(tmp_path, good):
    doc = json.loads(read_entries(good)["graph.json"])
    entry = array_entry(doc, "conv", "weight")
    expect_error(tmp_path, tamper(good, entries_fn=lambda e: e.pop(entry)),
                 f"array entry '{entry}' is listed in the manifest but missing from the archive")


def test_array_manifest_mismatches(tmp_path, good):
    doc = json.loads(read_entries(good)["graph.json"])
    w = array_entry(doc, "conv", "weight")
    expect_error(tmp_path, tamper(good, lambda d: d["arrays"][w].update(shape=[4, 3, 9])),
                 r"\.npy shape \(4, 3, 3, 3\) differs from the manifest's \(4, 3, 9\)")
    expect_error(tmp_path, tamper(good, lambda d: d["arrays"][w].update(dtype="<f8")),
                 r"\.npy dtype '<f4' differs from the manifest's '<f8'")
    expect_error(tmp_path, tamper(good, lambda d: d["arrays"][w].update(dtype="float32")),
                 r"not in numpy's canonical form '<f4'")
    expect_error(tmp_path, tamper(good, lambda d: d["arrays"][w].update(shape=[-1])),
                 "shape must be a list of non-negative integers")
    expect_error(tmp_path, tamper(good, lambda d: d["arrays"][w].update(sha256="00")),
                 "sha256 must be 64 lowercase hex digits")
    expect_error(tmp_path, tamper(good, lambda d: d["arrays"][w].update(sha256="0" * 64)),
                 f"array entry '{w}': sha256 mismatch")
    expect_error(tmp_path, tamper(good, lambda d: d["arrays"][w].pop("sha256")),
                 rf"manifest of array entry '{w}': missing key\(s\) 'sha256'")


def test_tampered_array_bytes(tmp_path, good):
    """Flip one byte inside an .npy entry and rewrite the zip (so the zip's CRC is valid again)."""
    doc = json.loads(read_entries(good)["graph.json"])
    w = array_entry(doc, "fc", "weight")

    def flip(entries):
        raw = bytearray(entries[w])
        raw[-5] ^= 0x10
        entries[w] = bytes(raw)
    expect_error(tmp_path, tamper(good, entries_fn=flip),
                 f"array entry '{w}': sha256 mismatch \\(the array bytes were changed or corrupted\\)")
    expect_error(tmp_path, tamper(good, entries_fn=lambda e: e.update({w: e[w] + b"\0\0\0\0"})),
                 f"array entry '{w}': .* bytes, but its header describes")
    expect_error(tmp_path, tamper(good, entries_fn=lambda e: e.update({w: e[w][:-4]})),
                 f"array entry '{w}': .* bytes, but its header describes")
    expect_error(tmp_path, tamper(good, entries_fn=lambda e: e.update({w: b"not an npy file at all"})),
                 f"array entry '{w}': not a valid .npy header")


_PICKLE_CALLS: list[str] = []


def _pickle_payload():  # what an unpickler would call
    _PICKLE_CALLS.append("called")
    return 0


class _Bomb:
    def __reduce__(self):
        return (_pickle_payload, ())


def test_object_arrays_are_refused_without_unpickling(tmp_path, good):
    buf = io.BytesIO()
    np.save(buf, np.array([_Bomb(), _Bomb()], dtype=object), allow_pickle=True)
    bomb = buf.getvalue()
    assert b"_pickle_payload" in bomb
    doc = json.loads(read_entries(good)["graph.json"])
    w = array_entry(doc, "win", "weights")
    # the manifest tells the truth: refused from the manifest alone
    expect_error(tmp_path, tamper(good, lambda d: d["arrays"][w].update(dtype="|O", shape=[2]),
                                  lambda e: e.update({w: bomb})),
                 f"array entry '{w}': array dtype '\\|O' .* is not allowed")
    # the manifest lies: refused from the .npy header, before any data is read
    expect_error(tmp_path, tamper(good, entries_fn=lambda e: e.update({w: bomb})),
                 f"array entry '{w}': array dtype '\\|O' .* is not allowed")
    assert _PICKLE_CALLS == []
    structured = io.BytesIO()
    np.save(structured, np.zeros(3, dtype=[("a", "<f4")]))
    expect_error(tmp_path, tamper(good, entries_fn=lambda e: e.update({w: structured.getvalue()})),
                 "is not allowed")


def test_package_never_unpickles():
    source = "\n".join(p.read_text() for p in Path(irio.__file__).parent.glob("*.py"))
    assert "import pickle" not in source and "torch.load" not in source
    code = [line for line in source.splitlines() if "np.load(" in line and "``" not in line]
    assert all("allow_pickle=False" in line for line in code) and "np.frombuffer(data, dtype" in source


def test_manifest_and_entries_must_agree(tmp_path, good):
    doc = json.loads(read_entries(good)["graph.json"])
    w = array_entry(doc, "conv", "weight")
    expect_error(tmp_path, tamper(good, entries_fn=lambda e: e.update({"arrays/extra.npy": e[w]})),
                 "unexpected entry 'arrays/extra.npy'")
    expect_error(tmp_path, tamper(good, entries_fn=lambda e: e.update({"README": b"hi"})),
                 "unexpected entry 'README'")

    def unreferenced(d):
        d["arrays"]["arrays/extra.npy"] = d["arrays"][w]
    expect_error(tmp_path, tamper(good, unreferenced, lambda e: e.update({"arrays/extra.npy": e[w]})),
                 "array entry 'arrays/extra.npy' is in the manifest but no field references it")


@pytest.mark.parametrize("name", ["../evil.npy", "/etc/evil.npy", "arrays/../../evil.npy", "arrays//x.npy",
                                  "arrays\\x.npy", "./x.npy", "C:/x.npy"])
def test_unsafe_entry_names(tmp_path, good, name):
    doc = json.loads(read_entries(good)["graph.json"])
    w = array_entry(doc, "conv", "weight")
    # only as a zip entry
    expect_error(tmp_path, tamper(good, entries_fn=lambda e: e.update({name: b"x"})), "unsafe entry name")

    # renamed consistently in the zip, the manifest and the reference
    def rename_doc(d):
        d["arrays"][name] = d["arrays"].pop(w)
        node_of(d, "conv")["fields"]["weight"] = {"array": name}

    def rename_entries(e):
        e[name] = e.pop(w)
    expect_error(tmp_path, tamper(good, rename_doc, rename_entries), "unsafe (array )?entry name")

    # only in the manifest and the reference
    def manifest_only(d):
        d["arrays"][name] = d["arrays"][w]
    expect_error(tmp_path, tamper(good, manifest_only), "unsafe array entry name")


def test_duplicate_zip_entries(tmp_path, good):
    entries = list(read_entries(good).items())
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = write_entries(entries + [entries[-1]])
    expect_error(tmp_path, data, f"entry '{entries[-1][0]}' appears more than once")


def test_only_stored_and_deflate_entries(tmp_path, good):
    expect_error(tmp_path, write_entries(read_entries(good), zipfile.ZIP_BZIP2), "compression method 12")
    # stored (uncompressed) entries are fine
    assert graph_digest(from_bytes(write_entries(read_entries(good), zipfile.ZIP_STORED))) == \
        graph_digest(every_op_graph())


def _patch_central_size(data: bytes, entry: str, size: int) -> bytes:
    """Rewrite the declared uncompressed size of ``entry`` in the central directory."""
    name = entry.encode()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        pos = zf.start_dir  # offset of the central directory
    while True:
        assert data[pos:pos + 4] == b"PK\x01\x02"
        n_len, e_len, c_len = struct.unpack("<HHH", data[pos + 28:pos + 34])
        if data[pos + 46:pos + 46 + n_len] == name:
            return data[:pos + 24] + struct.pack("<I", size) + data[pos + 28:]
        pos += 46 + n_len + e_len + c_len


def test_declared_size_limits(tmp_path, good, monkeypatch):
    # a declared 4 GiB graph.json: refused from the directory alone, nothing is decompressed
    expect_error(tmp_path, _patch_central_size(good, "graph.json", 0xFFFFFFF0),
                 r"entry 'graph.json' declares 4294967280 uncompressed bytes, more than the limit of 2147483648")
    monkeypatch.setattr(irio, "MAX_JSON_BYTES", 1000)
    expect_error(tmp_path, good, r"entry 'graph.json' declares \d+ bytes, more than the limit of 1000")
    monkeypatch.undo()
    monkeypatch.setattr(irio, "MAX_TOTAL_BYTES", 10_000)
    expect_error(tmp_path, good, r"entries declare \d+ uncompressed bytes in all, more than the limit of 10000")
    monkeypatch.undo()
    monkeypatch.setattr(irio, "MAX_ENTRY_BYTES", 500)
    expect_error(tmp_path, good, r"declares \d+ uncompressed bytes, more than the limit of 500")


def test_entries_over_a_mib_are_deflated_at_level_1_the_others_at_6():
    """The container's compression: each entry's compressed size is zlib's at its level."""
    weights = np.random.default_rng(0).integers(-256, 255, 1 << 18).astype(np.float32)  # 1 MiB + the .npy header
    big = Graph(nodes={"x": Node(Input(shape=(1 << 18,))), "w": Node(TemporalWindow(weights=weights), ("x",)),
                       "y": Node(Output(), ("w",))}, outputs=("y",), time_steps=1)
    levels = {}
    with zipfile.ZipFile(io.BytesIO(to_bytes(big))) as zf:
        for info in zf.infolist():
            raw = zf.read(info)
            levels[info.filename] = level = 1 if len(raw) > 1 << 20 else 6
            deflate = zlib.compressobj(level, zlib.DEFLATED, -15)
            assert info.compress_size == len(deflate.compress(raw) + deflate.flush()), (info.filename, level)
    assert levels == {"graph.json": 6, "arrays/0001.weights.npy": 1}


def test_compression_ratio_bomb(tmp_path, monkeypatch):
    big = Graph(nodes={"x": Node(Input(shape=(1 << 19,))),
                       "w": Node(TemporalWindow(weights=np.zeros(1 << 19, np.float32)), ("x",)),
                       "y": Node(Output(), ("w",))}, outputs=("y",), time_steps=1)
    data = to_bytes(big)  # 2 MiB of zeros deflate about 1000:1, within the default limit
    assert graph_digest(from_bytes(data)) == graph_digest(big)
    monkeypatch.setattr(irio, "MAX_RATIO", 100)
    expect_error(tmp_path, data, r"compression ratio of \d+:1 .* above the limit of 100:1 \(a zip bomb\?\)")
    # a small declared size with a tiny compressed body is not a bomb: checked only above RATIO_MIN_BYTES
    monkeypatch.setattr(irio, "RATIO_MIN_BYTES", 1 << 30)
    assert graph_digest(from_bytes(data)) == graph_digest(big)
    # a lie in the directory (declared size larger than the data) is caught when reading
    monkeypatch.undo()
    expect_error(tmp_path, _patch_central_size(good_small := to_bytes(small_graph()), "graph.json",
                                               len(read_entries(good_small)["graph.json"]) + 10),
                 r"entry 'graph.json' has \d+ bytes, its header says \d+")


def test_error_is_a_value_error_with_source():
    with pytest.raises(ValueError) as e:
        from_bytes(b"junk", source="memory:model")
    assert isinstance(e.value, IRFileError)
    assert e.value.source == "memory:model" and str(e.value).startswith("memory:model: ")


def test_save_replaces_atomically_with_normal_permissions(tmp_path):
    path = tmp_path / "m.snnir"
    path.write_bytes(b"old")
    assert save(small_graph(), str(path)) == path
    assert graph_digest(load(path)) == graph_digest(small_graph())
    assert [p.name for p in tmp_path.iterdir()] == ["m.snnir"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# ------------------------------------------------------------------------------------------------
# The schedule and the scales (format version 3)
# ------------------------------------------------------------------------------------------------

def lowered_graph(fc1_bias: np.ndarray | None = None) -> Graph:
    """A small float residual graph through the whole integer lowering: quantised and scheduled, with one
    delay line (the skip path is a synapse hop shorter)."""
    from snncompile.passes import PIPELINES, run_pipeline
    rng = np.random.default_rng(3)
    nodes = {"x": Node(Input(shape=(6,), dtype=SPIKE)),
             "fc1": Node(Linear(weight=rng.normal(0, 1, (6, 6)).astype(np.float32), bias=fc1_bias), ("x",)),
             "lif1": Node(LIF(), ("fc1",)),
             "fc2": Node(Linear(weight=rng.normal(0, 1, (6, 6)).astype(np.float32)), ("lif1",)),
             "skip": Node(Linear(weight=rng.normal(0, 1, (6, 6)).astype(np.float32)), ("x",)),
             "sum": Node(Add(), ("skip", "fc2")), "lif2": Node(LIF(), ("sum",)), "out": Node(Output(), ("lif2",))}
    return run_pipeline(Graph(nodes, ("out",), time_steps=4), PIPELINES["loihi"])


def as_version_5(doc: dict) -> None:
    """A version-6 document as version 5 wrote it: no ``bias_steps`` on the synapses and sums."""
    for node in doc["nodes"]:
        if node["type"] in ("IntDense", "IntConv2d", "IntAdd"):
            node["fields"].pop("bias_steps")
    doc["format_version"] = 5


def as_version_4(doc: dict) -> None:
    """A version-6 document as version 4 wrote it: that of version 5, no ``bias``/``bias_start`` on the IntAdd
    sums."""
    as_version_5(doc)
    for node in doc["nodes"]:
        if node["type"] == "IntAdd":
            assert node["fields"].pop("bias") is None and node["fields"].pop("bias_start") == 0
    doc["format_version"] = 4


def as_version_3(doc: dict) -> None:
    """A version-6 document as version 3 wrote it: that of version 4, no ``reset_at`` on the LoihiLIF neurons."""
    as_version_4(doc)
    for node in doc["nodes"]:
        if node["type"] == "LoihiLIF":
            assert node["fields"].pop("reset_at") == 0
    doc["format_version"] = 3


def as_version_2(doc: dict) -> None:
    """A version-6 document as version 2 wrote it: that of version 3, without schedule or scales records (the
    schedule and quantize history entries, which the passes still write, were version 2's only record of them)."""
    as_version_3(doc)
    del doc["schedule"], doc["scales"]
    doc["format_version"] = 2


def test_a_version_3_file_loads_with_neurons_that_never_restart():
    g = lowered_graph()
    neurons = [n for n in g.nodes if g.op(n).type_name() == "LoihiLIF"]
    assert neurons and all(g.op(n).reset_at == 0 for n in neurons)
    old = tamper(to_bytes(g), as_version_3)
    written = [n for n in json.loads(read_entries(old)["graph.json"])["nodes"] if n["type"] == "LoihiLIF"]
    assert len(written) == len(neurons) and not any("reset_at" in n["fields"] for n in written)
    h = from_bytes(old)
    assert all(h.op(n).reset_at == 0 for n in neurons) and graph_digest(h) == graph_digest(g)
    restarted = dict(g.nodes)
    restarted[neurons[0]] = Node(dataclasses.replace(g.op(neurons[0]), reset_at=2), g.nodes[neurons[0]].inputs)
    assert graph_digest(dataclasses.replace(g, nodes=restarted)) != graph_digest(g)  # a restart is in the digest


def test_a_version_4_file_loads_with_sums_that_add_no_bias():
    g = lowered_graph()
    sums = [n for n in g.nodes if g.op(n).type_name() == "IntAdd"]
    assert sums and all(g.op(n).bias is None for n in sums)
    old = tamper(to_bytes(g), as_version_4)
    written = [n for n in json.loads(read_entries(old)["graph.json"])["nodes"] if n["type"] == "IntAdd"]
    assert len(written) == len(sums) and not any("bias" in n["fields"] for n in written)
    h = from_bytes(old)
    assert all(h.op(n).bias is None and h.op(n).bias_start == 0 for n in sums) and graph_digest(h) == graph_digest(g)
    biased = dict(g.nodes)
    shape = g.types()[sums[0]].shape
    biased[sums[0]] = Node(dataclasses.replace(g.op(sums[0]), bias=np.full(shape, 3), bias_start=1),
                           g.nodes[sums[0]].inputs)
    moved = dataclasses.replace(g, nodes=biased)
    assert graph_digest(moved) != graph_digest(g)  # a bias is in the digest
    assert from_bytes(to_bytes(moved)).op(sums[0]).bias.tolist() == np.full(shape, 3).tolist()


def test_a_version_5_file_loads_with_biases_to_the_end_of_the_run():
    """Version 6 stops a scheduled bias after its data window; a version-5 bias acted to the end of the run, and
    still does: the same values in the window, the bias after it."""
    g = lowered_graph(fc1_bias=np.linspace(-2, 2, 6).astype(np.float32))
    steps = g.schedule.data_steps
    assert g.op("fc1").bias is not None and g.op("fc1").bias_steps == steps and g.time_steps > steps
    old = tamper(to_bytes(g), as_version_5)
    assert "bias_steps" not in node_of(json.loads(read_entries(old)["graph.json"]), "fc1")["fields"]
    h = from_bytes(old)
    assert h.op("fc1").bias_steps == 0 and graph_digest(h) != graph_digest(g)
    assert graph_digest(from_bytes(to_bytes(g))) == graph_digest(g)
    x = (torch.rand(steps, 1, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    new, was = (run_graph(graph, {"x": x}, keep="all")["fc1"] for graph in (g, h))
    start = g.schedule.latency["fc1"]
    assert torch.equal(new[:start + steps], was[:start + steps])
    assert not new[start + steps:].any() and was[start + steps:].any()


def test_schedule_and_scales_round_trip_in_node_order():
    g = lowered_graph()
    assert g.schedule.delay_lines == ("skip.delay1",) and g.scales["skip.delay1"] == g.scales["skip"]
    data = to_bytes(g)
    doc = json.loads(read_entries(data)["graph.json"])
    assert doc["schedule"] == {"data_steps": 4, "latency": {n: g.schedule.latency[n] for n in g.nodes},
                               "delay_lines": ["skip.delay1"]}
    assert list(doc["schedule"]["latency"]) == list(g.nodes)
    assert list(doc["scales"]) == [n for n in g.nodes if n in g.scales]
    h = from_bytes(data)
    assert_same_graph(g, h)
    assert graph_digest(h) == graph_digest(g) and to_bytes(h) == data


def test_digest_covers_the_schedule_and_the_scales():
    g = lowered_graph()
    latency = {**g.schedule.latency, "out": g.schedule.latency["out"]}
    variants = [dataclasses.replace(g, schedule=None), dataclasses.replace(g, scales=None),
                dataclasses.replace(g, scales={**g.scales, "fc1": g.scales["fc1"] * 2}),
                dataclasses.replace(g, schedule=dataclasses.replace(g.schedule, delay_lines=())),
                dataclasses.replace(g, schedule=dataclasses.replace(g.schedule, latency=latency))]
    digests = [graph_digest(v) for v in variants]
    assert digests[-1] == graph_digest(g)  # the same latencies: the same graph
    assert graph_digest(g) not in digests[:-1] and len(set(digests[:-1])) == 4


def test_a_version_2_file_loads_with_its_schedule_and_scales(tmp_path):
    g = lowered_graph()
    old = tamper(to_bytes(g), as_version_2)
    assert json.loads(read_entries(old)["graph.json"])["format_version"] == 2
    h = from_bytes(old)
    assert h.schedule == g.schedule and h.scales == g.scales  # the delay line's scale recovered too
    assert graph_digest(h) == graph_digest(g)
    from snncompile.ir.timing import data_steps, unschedule
    assert data_steps(h) == 4 and graph_digest(unschedule(h)) == graph_digest(unschedule(g))
    # a version-2 graph that was never scheduled or quantised has neither
    plain = from_bytes(tamper(to_bytes(small_graph()), as_version_2))
    assert plain.schedule is None and plain.scales is None


def test_a_version_2_history_that_does_not_describe_the_graph_is_refused(tmp_path):
    def stale(doc):
        as_version_2(doc)
        schedule = next(h for h in doc["history"] if h["name"] == "schedule")
        del schedule["options"]["latency"]["dict"]["skip.delay1"]

    expect_error(tmp_path, tamper(to_bytes(lowered_graph()), stale),
                 r"invalid graph:.*schedule: latencies must name every node once; missing \['skip.delay1'\]")


@pytest.mark.parametrize("mutate, pattern", [
    (lambda d: d.pop("schedule"), r"graph.json: missing key\(s\) 'schedule'"),
    (lambda d: d["schedule"].pop("delay_lines"), r"schedule: missing key"),
    (lambda d: d["schedule"].update(data_steps="4"), r"schedule: data_steps must be an integer, got '4'"),
    (lambda d: d["schedule"]["latency"].update(fc1=1.5), r"schedule: latency must be an object of node name -> "
                                                         r"integer"),
    (lambda d: d["schedule"].update(delay_lines="skip.delay1"), r"schedule: delay_lines must be a list"),
    (lambda d: d["schedule"].update(delay_lines=["fc1"]), r"schedule: delay lines \['fc1'\] are not Delay nodes"),
    (lambda d: d["schedule"].update(data_steps=3), r"schedule: data_steps 3 \+ largest latency 2 = 5 steps, but "
                                                   r"the graph runs 6"),
    (lambda d: d["scales"].update(fc1=True), r"scales must be an object of node name -> number"),
    (lambda d: d["scales"].update(gone=1.0), r"scales: \['gone'\] are not nodes of the graph"),
    (lambda d: d["scales"].update(fc1=-1.0), r"scales: must be finite numbers > 0, got \{'fc1': -1.0\}"),
])
def test_malformed_schedule_or_scales(tmp_path, mutate, pattern):
    expect_error(tmp_path, tamper(to_bytes(lowered_graph()), mutate), pattern)


def test_loads_a_version_1_file():
    """A file written by format version 1 (tests/data, made by the version-1 code) loads and runs: the new
    fields get their meaning-preserving defaults and its spike SumPool2d becomes an integer sum."""
    g = load(Path(__file__).parent / "data" / "format_v1.snnir")
    assert g.op("rep").data_steps == 0 and (g.op("mean").start, g.op("mean").steps) == (0, 0)
    assert g.op("dense").bias is None and g.op("iconv").bias is None
    assert str(g.types()["pool"].dtype) == "uint3"
    out = run_graph(g, {"img": torch.rand(2, 1, 4, 4) * 4})
    assert out["out"].shape == (2, 2) and out["out_pool"].shape == (3, 2, 2, 2, 2)
    assert load(save(g, Path(__file__).parent / "data" / "_tmp.snnir")).types() == g.types()
    (Path(__file__).parent / "data" / "_tmp.snnir").unlink()

"""Hostile ``.snnir`` files: a linear format-1 upgrade, bounded nesting and widths, arrays that cannot
allocate past the limits (issue 15)."""
from __future__ import annotations

import io
import json
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

from snncompile.ir import io as irio
from snncompile.ir.graph import Graph, Node
from snncompile.ir.io import IRFileError, from_bytes, graph_digest, to_bytes, upgrades
from snncompile.ir.ops import Input, Output, TemporalWindow


def node(name, op_type, inputs, out_shape, out_dtype, **fields) -> dict:
    return {"name": name, "type": op_type, "inputs": inputs,
            "out": {"shape": out_shape, "dtype": out_dtype, "time": "stream"},
            "fields": {"delay": 0, "overflow": "none", **fields}}


def v1_chain(n: int, reverse: bool = False) -> dict:
    """A format-1 document: spikes -> SumPool2d (float32 in version 1) -> ``n`` Flatten -> Output; listed
    backwards with ``reverse``, so that a sweep in file order carries a change one node further."""
    nodes = [node("x", "Input", [], [1, 2, 2], "spike", shape=[1, 2, 2], dtype={"dtype": "spike"}, time="stream"),
             node("p", "SumPool2d", ["x"], [1, 2, 2], "float32", kernel=[1, 1], stride=[1, 1], padding=[0, 0])]
    nodes += [node(f"f{i}", "Flatten", [f"f{i - 1}" if i else "p"], [4], "float32") for i in range(n)]
    nodes.append(node("out", "Output", [f"f{n - 1}"], [4], "float32"))
    return {"format": "snncompile-ir", "format_version": 1, "time_steps": 2, "outputs": ["out"],
            "nodes": nodes[::-1] if reverse else nodes, "history": [], "arrays": {}}


def archive(doc: dict | bytes, entries: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("graph.json", doc if isinstance(doc, bytes) else json.dumps(doc))
        for name, data in (entries or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def file_error(data: bytes, one_line: bool = True) -> str:
    """The problem the loader reports for ``data``; one line unless it lists a graph's problems."""
    with pytest.raises(IRFileError) as e:
        from_bytes(data, source="hostile.snnir")
    assert str(e.value).startswith("hostile.snnir: ") and ("\n" not in str(e.value) or not one_line), str(e.value)
    return e.value.problem


# -- the format-1 upgrade ---------------------------------------------------------------------------

def test_format_1_upgrade_retypes_each_node_once(monkeypatch):
    # the reported file: a 20,000-node chain listed backwards (about 120 KB) kept the fixpoint sweeping
    # once per node, 20,000 sweeps of 20,000 nodes
    visits = []
    retyped = upgrades._retyped
    monkeypatch.setattr(upgrades, "_retyped", lambda n, source_out: visits.append(n["name"]) or retyped(n, source_out))
    data = archive(v1_chain(20_000, reverse=True))
    assert len(data) < 150_000
    graph = from_bytes(data)  # listed backwards it is still a valid graph
    assert len(graph.nodes) == 20_003
    assert len(visits) == len(set(visits)) == 20_002  # every node with an input, once


def test_format_1_upgrade_is_the_same_in_any_order():
    forward, backward = v1_chain(50), v1_chain(50, reverse=True)
    upgrades.upgrade_v1_to_v2(forward)
    upgrades.upgrade_v1_to_v2(backward)
    assert {n["name"]: n["out"]["dtype"] for n in forward["nodes"]} == \
        {n["name"]: n["out"]["dtype"] for n in backward["nodes"]} == {"x": "spike", **{
            n["name"]: "uint1" for n in forward["nodes"][1:]}}
    graph = from_bytes(archive(v1_chain(50)))
    assert str(graph.types()["out"].dtype) == "uint1"


def test_format_1_upgrade_of_a_cycle_ends():
    doc = v1_chain(3)
    doc["nodes"][1]["inputs"] = ["f2"]  # p <- f2 <- f1 <- f0 <- p
    assert "cycle" in file_error(archive(doc), one_line=False)


# -- nesting and widths ------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["field", "history"])
@pytest.mark.parametrize("depth", [500, 5000, 200_000])
def test_deep_nesting_is_one_error(where, depth):
    doc = v1_chain(1)
    deep = "[" * depth + "]" * depth
    if where == "field":
        doc["nodes"][1]["fields"]["kernel"] = "DEEP"
    else:
        doc["history"] = [{"name": "p", "options": {"o": "DEEP"}, "digest": ""}]
    text = json.dumps(doc).replace('"DEEP"', deep).encode()
    assert "graph.json is nested too deeply (arrays and objects more than 100 deep)" in file_error(archive(text))


def test_nesting_within_the_limit_reaches_the_field_check():
    doc = v1_chain(1)
    doc["nodes"][1]["fields"]["kernel"] = json.loads("[" * 90 + "]" * 90)
    assert "node 'p' (SumPool2d) field 'kernel'" in file_error(archive(doc))


def test_dtype_widths_are_bounded():
    # DType.min and .max are powers of two of the width: int99999999999 would never finish
    doc = v1_chain(1)
    doc["nodes"][0]["fields"]["dtype"] = {"dtype": "int99999999999"}
    assert "dtype 'int99999999999' is wider than the limit of 256 bits" in file_error(archive(doc))
    doc = v1_chain(1)
    doc["nodes"][0]["out"]["dtype"] = "int99999999999"  # what the upgrade sizes a SumPool2d from
    assert "wider than the limit of 256 bits" in file_error(archive(doc))


def test_node_count_is_bounded(monkeypatch):
    monkeypatch.setattr(irio, "MAX_NODES", 10)
    assert file_error(archive(v1_chain(20))) == "23 nodes, more than the limit of 10"


# -- arrays -------------------------------------------------------------------------------------------

def zeros_graph(numel: int) -> Graph:
    return Graph(nodes={"x": Node(Input(shape=(numel,))),
                        "w": Node(TemporalWindow(weights=np.zeros(numel, np.float32)), ("x",)),
                        "y": Node(Output(), ("w",))}, outputs=("y",), time_steps=1)


def test_npy_declaring_more_than_the_limit_is_refused_before_reading():
    entries = {}
    with zipfile.ZipFile(io.BytesIO(to_bytes(zeros_graph(4)))) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    doc = json.loads(entries.pop("graph.json"))
    (name,) = doc["arrays"]
    doc["arrays"][name]["shape"] = [2 ** 40]
    bomb = io.BytesIO()
    np.lib.format.write_array_header_1_0(bomb, {"descr": "<f4", "fortran_order": False, "shape": (2 ** 40,)})
    entries[name] = b"\x93NUMPY\x01\x00" + bomb.getvalue()[8:]
    tracemalloc.start()
    try:
        problem = file_error(archive(doc, entries))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert problem == (f"array entry {name!r}: shape [1099511627776] of '<f4' holds 4398046511104 bytes, more than "
                       f"the limit of {irio.MAX_ENTRY_BYTES}") and peak < 1024 ** 2


def test_an_array_within_the_limits_is_read_once():
    # the reported bomb within the limits took 3 copies while reading (the entry's bytes, np.load's array,
    # tobytes for the hash); now the array is a view of the one buffer the entry is decompressed into
    numel = 2 * 1024 ** 2  # 8 MiB of zeros: a 37 KB file (an entry over 1 MiB is deflated at level 1)
    data = to_bytes(zeros_graph(numel))
    assert len(data) < 40_000
    tracemalloc.start()
    try:
        graph = from_bytes(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert graph_digest(graph) == graph_digest(zeros_graph(numel))
    # the buffer, and the node's own frozen copy (ir.ops.base) while the buffer is still referenced
    assert 2 * 4 * numel < peak < 2.25 * 4 * numel


def overlapping(data: bytes, entry: str, copies: int) -> bytes:
    """``data`` with ``copies`` more central-directory records of ``entry``, each under a new name of the
    same length, all pointing at its one compressed body (a zip bomb made of overlapping entries)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        start, count = zf.start_dir, len(zf.infolist())
    end = data.rindex(b"PK\x05\x06")
    directory, records, pos = data[start:end], [], 0
    while pos < len(directory):
        n_len, e_len, c_len = struct.unpack("<HHH", directory[pos + 28:pos + 34])
        records.append(directory[pos:pos + 46 + n_len + e_len + c_len])
        pos += len(records[-1])
    (record,) = [r for r in records if r[46:46 + len(entry)] == entry.encode()]
    stem = entry.rsplit("/", 1)[0]
    extra = [record[:46] + f"{stem}/{i:0{len(entry) - len(stem) - 1}d}".encode() + record[46 + len(entry):]
             for i in range(copies)]
    new_directory = b"".join(records + extra)
    total = count + copies
    return (data[:start] + new_directory + b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, total, total,
                                                                       len(new_directory), start, 0))


def test_overlapping_entries_are_refused_by_the_archive_ratio():
    data = to_bytes(zeros_graph(512 * 1024))  # one 2 MiB entry, deflated at level 1: about 230:1
    (name,) = [n for n in zipfile.ZipFile(io.BytesIO(data)).namelist() if n.endswith(".npy")]
    bomb = overlapping(data, name, 500)  # 1 GB declared from 45 KB, each entry within the per-entry ratio
    assert len(bomb) < 50_000
    assert "above the limit of 1100:1 (a zip bomb?)" in file_error(bomb)
    assert "entries declare" in file_error(bomb)


def test_format_1_upgrade_leaves_malformed_nodes_to_the_loader():
    doc = v1_chain(2)
    doc["nodes"][1]["type"] = {"a": 1}  # unhashable where the upgrade looks up a type's new fields
    doc["nodes"][2]["inputs"] = [{"dtype": "int8"}]
    doc["nodes"][0]["out"]["dtype"] = 7
    assert file_error(archive(doc)).startswith("node 'x' (Input) out: dtype must be a string")

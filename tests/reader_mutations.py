"""Seeded mutations of ``.snnir`` files and torch checkpoints for tests/test_fuzz_readers.py.

Each mutation is a function ``(rng, data) -> (data, description)`` on a file's bytes. The ``.snnir`` ones work on
the raw bytes, on graph.json's document and on the ``.npy`` entries, re-zipping with valid CRCs so that the
reader's checks past the zip layer are reached; the checkpoint ones on the raw bytes, on data.pkl's opcodes,
on the zip records, and on the unpickled object (re-saved with torch.save).
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
import pickle
import pickletools
import random
import re
import warnings
import zipfile
from typing import Any, Callable

import numpy as np
import torch

from hostile_files import glob, integer, ints, tensor, text

Mutation = Callable[[random.Random, bytes], tuple[bytes, str]]


def entries_of(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def zipped(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


# -- values and places ----------------------------------------------------------------------------------

def nested(rng: random.Random) -> str:
    """A marker that ``dumped`` writes as arrays nested 50 to 3000 deep (deeper than json can build)."""
    return f"\0DEEP{rng.choice([50, 99, 150, 600, 3000])}\0"


def dumped(doc: Any) -> bytes:
    """``doc`` as JSON, with the markers of ``nested`` written out."""
    return re.sub(r'"\\u0000DEEP(\d+)\\u0000"', lambda m: "[" * int(m[1]) + "]" * int(m[1]),
                  json.dumps(doc)).encode()


def odd_value(rng: random.Random) -> Any:
    """A JSON value of the kinds a hostile file uses: extreme numbers, wrong types, huge or deep containers."""
    return rng.choice([
        lambda: None, lambda: True, lambda: 0, lambda: -1, lambda: 2 ** 63, lambda: 10 ** 400, lambda: -(10 ** 30),
        lambda: 1e308, lambda: -0.0, lambda: 0.5, lambda: "", lambda: "x" * rng.randint(1, 5000),
        lambda: "int99999999999", lambda: "uint0", lambda: "float", lambda: "../../etc/passwd", lambda: [],
        lambda: [2 ** 40, 2 ** 40], lambda: list(range(rng.randint(1, 40))), lambda: {}, lambda: {"float": "nan"},
        lambda: {"list": [1, 2]}, lambda: {"dict": {"a": 1}}, lambda: {"dtype": "int99999999999"},
        lambda: {"array": "arrays/missing.npy"}, lambda: {"array": "../x"}, lambda: {"a": 1, "b": 2},
        lambda: nested(rng), lambda: [1] * 33,
    ])()


def places(doc: Any, path: tuple = ()) -> list[tuple]:
    """Every path into a JSON document (keys and indices)."""
    found = [path]
    if isinstance(doc, dict):
        for k, v in doc.items():
            found += places(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found += places(v, path + (i,))
    return found


def at(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


# -- .snnir mutations -----------------------------------------------------------------------------------

def flip_bytes(rng, data):
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out), "flipped bits"


def truncate(rng, data):
    cut = rng.randrange(len(data))
    return data[:cut], f"cut at {cut}"


def _with_doc(rng, data, edit: Callable[[random.Random, dict], str]) -> tuple[bytes, str]:
    entries = entries_of(data)
    doc = json.loads(entries["graph.json"])
    what = edit(rng, doc)
    entries["graph.json"] = dumped(doc)
    return zipped(entries), what


def _replace_value(rng, doc):
    path = rng.choice(places(doc)[1:])
    value = odd_value(rng)
    parent = at(doc, path[:-1])
    parent[path[-1]] = value
    return f"{'/'.join(map(str, path))} = {str(value)[:40]}"


def _delete_or_add_key(rng, doc):
    dicts = [p for p in places(doc) if isinstance(at(doc, p), dict) and at(doc, p)]
    path = rng.choice(dicts)
    target = at(doc, path)
    if rng.random() < 0.5:
        key = rng.choice(list(target))
        del target[key]
        return f"deleted {'/'.join(map(str, path + (key,)))}"
    target["extra"] = odd_value(rng)
    return f"added {'/'.join(map(str, path))}/extra"


def _restructure_nodes(rng, doc):
    nodes = doc.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        return "no nodes"
    kind = rng.choice(["reverse", "duplicate", "drop", "cycle", "rename", "self-input", "old version"])
    if kind == "reverse":
        nodes.reverse()
    elif kind == "duplicate":
        nodes.insert(rng.randrange(len(nodes)), copy.deepcopy(rng.choice(nodes)))
    elif kind == "drop":
        nodes.pop(rng.randrange(len(nodes)))
    elif kind == "cycle":
        a, b = rng.sample(range(len(nodes)), 2) if len(nodes) > 1 else (0, 0)
        nodes[a]["inputs"] = [nodes[b]["name"]]
        nodes[b]["inputs"] = [nodes[a]["name"]]
    elif kind == "rename":
        rng.choice(nodes)["name"] = rng.choice(nodes)["name"]
    elif kind == "self-input":
        n = rng.choice(nodes)
        n["inputs"] = [n["name"]]
    else:
        doc["format_version"] = rng.choice([1, 2])
    return f"nodes: {kind}"


def _retype(rng, doc):
    nodes = [n for n in doc.get("nodes", []) if isinstance(n, dict) and isinstance(n.get("out"), dict)]
    if not nodes:
        return "no nodes"
    n = rng.choice(nodes)
    key = rng.choice(["dtype", "shape", "time"])
    n["out"][key] = rng.choice({"dtype": ["int99999999999", "uint1", "int0", "float16", "spike", 7],
                                "shape": [[2 ** 62], [-1], [1] * 40, [], "x"],
                                "time": ["static", "stream", "later"]}[key])
    return f"{n.get('name')} out.{key}"


def json_value(rng, data):
    return _with_doc(rng, data, _replace_value)


def json_keys(rng, data):
    return _with_doc(rng, data, _delete_or_add_key)


def json_nodes(rng, data):
    return _with_doc(rng, data, _restructure_nodes)


def json_types(rng, data):
    return _with_doc(rng, data, _retype)


def _npy(shape, descr: str, fortran: bool = False, body: bytes = b"") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": fortran, "shape": shape})
    return buf.getvalue() + body


def npy_entry(rng, data):
    entries = entries_of(data)
    doc = json.loads(entries["graph.json"])
    names = [n for n in entries if n.endswith(".npy")]
    if not names:
        return json_value(rng, data)
    name = rng.choice(names)
    meta = doc["arrays"].get(name, {})
    array = np.load(io.BytesIO(entries[name]), allow_pickle=False)
    kind = rng.choice(["header shape", "manifest shape", "bomb", "dtype", "fortran", "bytes", "resealed bytes",
                       "short", "object"])
    if kind == "header shape":
        entries[name] = _npy((2 ** 31,) + array.shape, array.dtype.str, body=array.tobytes())
    elif kind == "manifest shape":
        meta["shape"] = [2 ** 33] + list(array.shape)
    elif kind == "bomb":  # within the limits: zeros that deflate 1000:1, manifest and digest consistent
        bomb = np.zeros(rng.choice([1, 4, 16]) * 2 ** 18, array.dtype)
        entries[name] = _npy(bomb.shape, bomb.dtype.str, body=bomb.tobytes())
        meta.update(shape=list(bomb.shape), sha256=hashlib.sha256(bomb.tobytes()).hexdigest())
    elif kind == "dtype":
        meta["dtype"] = rng.choice(["<f8", "|O", "<U4", "|V8", ">f4", "f4"])
    elif kind == "fortran" and array.ndim > 1:
        entries[name] = _npy(array.shape, array.dtype.str, True, np.asfortranarray(array).tobytes(order="F"))
    elif kind in ("bytes", "resealed bytes") and array.size:
        raw = bytearray(array.tobytes())
        raw[rng.randrange(len(raw))] ^= 0xFF
        entries[name] = _npy(array.shape, array.dtype.str, body=bytes(raw))
        if kind == "resealed bytes":
            meta["sha256"] = hashlib.sha256(bytes(raw)).hexdigest()
    elif kind == "short":
        entries[name] = entries[name][:rng.randrange(len(entries[name]))]
    else:
        entries[name] = _npy(array.shape, "|O", body=pickle.dumps([1]))
    entries["graph.json"] = json.dumps(doc).encode()
    return zipped(entries), f"{name}: {kind}"


def zip_layer(rng, data):
    entries = entries_of(data)
    kind = rng.choice(["stored", "bzip2", "extra entry", "unsafe name", "no graph.json", "duplicate"])
    if kind == "stored":
        return zipped(entries, zipfile.ZIP_STORED), kind
    if kind == "bzip2":
        return zipped(entries, zipfile.ZIP_BZIP2), kind
    if kind == "extra entry":
        entries[rng.choice(["x.bin", "arrays/9999.w.npy"])] = b"\0" * 100
    elif kind == "unsafe name":
        entries[rng.choice(["../evil", "/abs", "a//b", "a\\b"])] = b"x"
    elif kind == "no graph.json":
        del entries["graph.json"]
    else:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Duplicate name": the point
            for name, body in list(entries.items()) + [("graph.json", entries["graph.json"])]:
                zf.writestr(name, body)
        return buf.getvalue(), kind
    return zipped(entries), kind


SNNIR_MUTATIONS: list[Mutation] = [flip_bytes, truncate, json_value, json_value, json_keys, json_nodes, json_types,
                                   npy_entry, npy_entry, zip_layer]


# -- checkpoint mutations -----------------------------------------------------------------------------------

def _pickle_name(entries: dict[str, bytes]) -> str:
    return next(n for n in entries if n.endswith("/data.pkl"))


def _ops(pkl: bytes) -> list[tuple[int, int]]:
    """(start, end) of every opcode of a pickle, arguments included."""
    spans, prev = [], None
    for _, _, pos in pickletools.genops(pkl):
        if prev is not None:
            spans.append((prev, pos))
        prev = pos
    return spans + [(prev, len(pkl))]


# opcodes a hostile pickle inserts: the object-modifying ones, odd integers and containers, tensors over
# forged storage records (missing, empty, of the wrong size), a forbidden global
_SNIPPETS = [
    pickle.BUILD, pickle.SETITEM, pickle.SETITEMS, pickle.APPEND, pickle.APPENDS, pickle.ADDITEMS, pickle.MARK,
    pickle.TUPLE, pickle.POP, pickle.DUP, pickle.EMPTY_DICT, pickle.EMPTY_LIST, pickle.NONE, pickle.NEWTRUE,
    pickle.BINGET + b"\x00", pickle.BINGET + b"\x07", pickle.REDUCE, pickle.EMPTY_TUPLE, integer(2 ** 62),
    integer(-1), integer(0), ints((2 ** 40,)), pickle.EMPTY_SET,
    pickle.MARK + tensor("0", 0, (0,), (1,)) + integer(0) + ints((64,)) + ints((1,)) + pickle.TUPLE + pickle.BUILD,
    tensor("0", 2 ** 30, (2 ** 30,), (1,)), tensor("zz", 4, (4,), (1,)), tensor("0", 1, (2 ** 40,), (0,)),
    tensor("0", 1, (3,), (1,), storage="DoubleStorage"), glob("os", "system"), glob("torch", "load"),
    glob("numpy", "dtype") + text("O") + pickle.NEWFALSE + pickle.NEWTRUE + pickle.TUPLE3 + pickle.REDUCE,
]


def pickle_ops(rng, data):
    entries = entries_of(data)
    name = _pickle_name(entries)
    pkl = entries[name]
    spans = _ops(pkl)
    kind = rng.choice(["delete", "duplicate", "swap", "insert", "argument"])
    i = rng.randrange(len(spans) - 1)  # never the final STOP
    a, b = spans[i]
    if kind == "delete":
        pkl = pkl[:a] + pkl[b:]
    elif kind == "duplicate":
        pkl = pkl[:b] + pkl[a:b] + pkl[b:]
    elif kind == "swap":
        c, d = spans[rng.randrange(len(spans) - 1)]
        if c > a:
            a, b, c, d = c, d, a, b
        pkl = pkl[:c] + pkl[a:b] + pkl[d:a] + pkl[c:d] + pkl[b:] if d <= a else pkl
    elif kind == "insert":
        pkl = pkl[:a] + rng.choice(_SNIPPETS) + pkl[a:]
    elif b - a > 1:  # a new value for the opcode's argument bytes (integers, lengths, memo indices)
        pkl = pkl[:a + 1] + bytes(rng.randrange(256) for _ in range(b - a - 1)) + pkl[b:]
    entries[name] = pkl
    return zipped(entries, zipfile.ZIP_STORED), f"data.pkl: {kind} at {a}"


def records(rng, data):
    entries = entries_of(data)
    prefix = _pickle_name(entries).split("/")[0]
    keys = [n for n in entries if "/data/" in n]
    kind = rng.choice(["drop", "shorten", "lengthen", "byteorder", "bomb", "deflate", "two prefixes", "torchscript"])
    if kind == "drop" and keys:
        del entries[rng.choice(keys)]
    elif kind == "shorten" and keys:
        key = rng.choice(keys)
        entries[key] = entries[key][:rng.randrange(len(entries[key]) + 1)]
    elif kind == "lengthen" and keys:
        entries[rng.choice(keys)] += b"\0" * rng.choice([1, 4, 4096])
    elif kind == "byteorder":
        entries[f"{prefix}/byteorder"] = rng.choice([b"big", b"little", b"middle", b"\0" * 10 ** 6])
    elif kind == "bomb" and keys:
        key = rng.choice(keys)
        entries[key] = b"\0" * (len(entries[key]) * rng.choice([1, 1000, 10 ** 5]))
        return zipped(entries, zipfile.ZIP_DEFLATED), f"{key}: zeros, deflated"
    elif kind == "deflate":
        return zipped(entries, zipfile.ZIP_DEFLATED), kind
    elif kind == "two prefixes":
        entries["other/data.pkl"] = entries[_pickle_name(entries)]
    elif kind == "torchscript":
        entries[f"{prefix}/constants.pkl"] = b""
    return zipped(entries, zipfile.ZIP_STORED), f"records: {kind}"


def _resaved(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _state_dict(obj: Any) -> dict:
    return obj["state_dict"] if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) else obj


def content(rng, data, read: Callable[[bytes], Any]):
    """A semantic edit of what the file holds, written back by torch.save: keys, shapes, dtypes, arguments."""
    obj = read(data)
    sd = _state_dict(obj)
    keys = [k for k in sd if isinstance(sd.get(k), torch.Tensor)] if isinstance(sd, dict) else []
    kind = rng.choice(["block key", "shape", "dtype", "drop key", "not a tensor", "args", "config", "nest",
                       "stride 0", "huge value", "odd key"])
    if kind == "block key":
        sd[f"block.{rng.choice([2, 63, 64, 10 ** 7, 10 ** 30])}.x"] = torch.zeros(1)
    elif kind == "shape" and keys:
        k = rng.choice(keys)
        sd[k] = torch.zeros([rng.choice([0, 1, 3, 8]) for _ in range(rng.randint(0, 4))])
    elif kind == "dtype" and keys:
        k = rng.choice(keys)
        sd[k] = sd[k].to(rng.choice([torch.float64, torch.int64, torch.bool, torch.complex64, torch.float16]))
    elif kind == "drop key" and keys:
        del sd[rng.choice(keys)]
    elif kind == "not a tensor" and keys:
        sd[rng.choice(keys)] = rng.choice([1, "x", None, [torch.zeros(1)]])
    elif kind == "args" and isinstance(obj, dict) and "args" in obj:
        field = rng.choice(["dim", "layer", "num_heads", "time_steps", "img_size", "mlp_ratio", "num_classes",
                            "chunk_size", "pooling_stat", "dataset", "attention_mode", "TET", "in_channels"])
        setattr(obj["args"], field, rng.choice([0, -8, 2 ** 40, 4096, 7.5, float("inf"), "x", [1], None,
                                                 torch.zeros(20), True, {"a": [1]}, "line\nbreak"]))
    elif kind == "config" and isinstance(obj, dict) and isinstance(obj.get("config"), dict):
        field = rng.choice(list(obj["config"]))
        obj["config"][field] = rng.choice([0, 2 ** 40, 4096, -1, "x", None, float("nan"), [1], torch.zeros(20)])
    elif kind == "nest" and isinstance(obj, dict):
        depth = rng.choice([50, 150, 400])  # what torch.save's pickler can write
        obj["extra"] = json.loads("[" * depth + "]" * depth)
    elif kind == "stride 0" and keys:
        k = rng.choice(keys)
        sd[k] = torch.zeros(1).expand(rng.choice([10, 2 ** 20]))
    elif kind == "odd key" and isinstance(sd, dict):
        sd[rng.choice([3, None, ("a", 1), "head.weight\nhead.bias", "x" * 10_000, torch.zeros(2)])] = torch.zeros(1)
    elif kind == "huge value" and isinstance(obj, dict):
        obj["epoch"], obj["metric"] = rng.choice([(10 ** 5000, float("nan")), (-1, 1e308)])
    return _resaved(obj), f"content: {kind}"


def checkpoint_mutations(read: Callable[[bytes], Any]) -> list[Mutation]:
    """The checkpoint mutations; ``read`` unpickles a trusted seed file (for the semantic edits)."""
    def content_edit(rng, data):
        return content(rng, data, read)
    return [flip_bytes, truncate, pickle_ops, pickle_ops, pickle_ops, records, content_edit, content_edit]

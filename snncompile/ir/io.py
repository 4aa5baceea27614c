"""The ``.snnir`` file format: the one way a :class:`~snncompile.ir.graph.Graph` is written and read.

This docstring is the specification of the format. Only this module knows it.

API
---
- ``save(graph, path) -> Path`` and ``load(path) -> Graph``. ``to_bytes(graph)`` and
  ``from_bytes(data, source=...)`` do the same in memory.
- ``graph_digest(graph) -> str``: the sha256 of the graph's content (see *Digest*). The pass pipeline
  stores it in ``HistoryEntry.digest``.
- ``IRFileError(ValueError)``: any file this module cannot read or write. The message starts with the
  file (or ``source``) and then says what is wrong, naming the node and field where there is one. A file
  that does not exist raises the usual ``FileNotFoundError``.

Container (format_version 1)
----------------------------
A zip archive (``.snnir``) with these entries, in sorted name order. Every entry has the timestamp
1980-01-01 00:00:00, Unix mode 0644 and deflate compression (level 6), so equal graphs give byte-equal
files. The entries are:

- ``graph.json``: the document below, UTF-8 JSON with ASCII escapes.
- ``arrays/<node index, 4+ digits>.<field>.npy``: one entry per parameter array, written by
  ``numpy.save`` in C order, ``.npy`` format version 1.0 or 2.0. Only bool, int, uint, float and
  complex dtypes are allowed, never object or structured dtypes.

There are no other entries. ``graph.json`` is an object with exactly these keys:

.. code-block:: text

    {"format": "snncompile-ir",          # magic
     "format_version": 1,                # integer, independent of the package version
     "time_steps": 4,
     "outputs": ["out"],
     "nodes": [                          # in graph order (the order is meaningful)
       {"name": "conv1", "type": "Conv2d",          # type: the class name in OPS_BY_NAME
        "inputs": ["x"],                             # producer names, in input-port order
        "out": {"shape": [8, 32, 32], "dtype": "float32", "time": "stream"},  # the output type
        "fields": {"weight": {"array": "arrays/0001.weight.npy"}, "bias": null,
                   "stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1}}, ...],
     "history": [{"name": "fold_batchnorm", "options": {...values...}, "digest": "<hex>"}, ...],
     "arrays": {"arrays/0001.weight.npy": {"dtype": "<f4", "shape": [8, 3, 3, 3], "sha256": "<hex>"}}}

Each node entry has exactly the keys ``name``, ``type``, ``inputs``, ``out`` and ``fields`` (written in
that order).

``out`` records the node's output type (:class:`~snncompile.ir.types.TensorType`), as
``Graph.types()`` infers it, so that a reader sees every tensor's shape, dtype and time layout without
running inference. It is an object with exactly these keys: ``shape``, the per-sample, per-timestep shape
as a list of non-negative integers (``[]`` for a scalar); ``dtype``, the ``DType`` in its canonical
``str`` form (``"float32"``, ``"spike"``, ``"ternary"``, ``"int8"``, ``"uint5"``; ``DType.parse`` reads
it back); ``time``, ``"stream"`` or ``"static"``. ``out`` is derived data: ``save`` writes what inference
gives, and ``load`` checks that every recorded ``out`` equals the type inferred from the loaded graph.

``fields`` holds every init field of the node's dataclass, no more and no fewer. The ``arrays``
manifest lists every array entry: ``dtype`` is numpy's ``dtype.str`` (byte order included), and
``sha256`` is over the array's raw bytes in C order. Each entry is referenced at least once.

Values
------
Field values and history option values use one tagged JSON encoding, the same for every node type:

==================================  ==================================================
Python                              JSON
==================================  ==================================================
``None``, ``bool``, ``int``, ``str``  ``null``, ``true``/``false``, integer, string
finite ``float``                    JSON number, written by ``repr`` (exact round trip)
``inf``, ``-inf``, ``nan``          ``{"float": "inf"}``, ``{"float": "-inf"}``, ``{"float": "nan"}``
``tuple``                           JSON array (JSON arrays always read back as tuples)
``list``                            ``{"list": [...]}``
``dict`` with str keys              ``{"dict": {...}}``
:class:`~snncompile.ir.types.DType` ``{"dtype": "int8"}`` (``str``/``DType.parse``)
``numpy.ndarray`` (field level)     ``{"array": "<entry name>"}``
==================================  ==================================================

Every JSON object inside a value has exactly one of these tag keys. Arrays are allowed only as the
direct value of a node field, not nested inside other values and not in history options. A field's
value must also match the field's type annotation: ``tuple[int, int]``, ``Literal[...]``,
``float | np.ndarray``, ``DType`` and so on. ``float`` accepts ints. ``save`` and ``load`` both check
this.

Reading
-------
``load`` never runs code from the file: it uses JSON, and ``np.load(..., allow_pickle=False)`` on bytes
whose ``.npy`` header has already been checked. It refuses each of these with an ``IRFileError``:

- not a zip, or truncated or corrupt (bad CRC);
- encrypted entries, compression other than stored or deflate, duplicate entry names;
- an entry name that is absolute or contains ``..``, a backslash, or an empty component;
- an entry with a declared size over ``MAX_ENTRY_BYTES`` (2 GiB);
- entries whose sizes add up to more than ``MAX_TOTAL_BYTES`` (4 GiB);
- a ``graph.json`` over ``MAX_JSON_BYTES``;
- an entry over ``RATIO_MIN_BYTES`` whose compression ratio is above ``MAX_RATIO`` (deflate
  cannot go beyond about 1032:1, so such an entry is a bomb or a lie);
- a missing ``graph.json``, JSON that does not parse, a duplicated JSON key, or ``NaN``/``Infinity``
  literals;
- the wrong magic, or a ``format_version`` that is newer than this package or has no upgrade path;
- an unknown node type, an unknown or missing field, a value of the wrong type, or an unknown tag;
- a duplicated node name;
- a node's ``out`` that is missing, is not an object with exactly the keys ``shape``, ``dtype`` and
  ``time``, has a shape that is not a list of non-negative integers, a dtype that is unknown or not in
  canonical form, or a time layout other than ``stream``/``static``;
- an array missing from the manifest or from the zip, a manifest entry no field references, or an
  unexpected entry;
- a ``.npy`` header whose dtype or shape differs from the manifest, a size that does not match the
  header, an object or structured dtype, or a sha256 mismatch;
- a graph that is well-formed but invalid: the ``Graph.problems()`` list is reported;
- a valid graph in which a node's recorded ``out`` differs from its inferred type: the message names the
  node, the recorded type, the inferred type and which of shape, dtype and time differ. This check comes
  after the ``Graph.problems()`` check, since types can only be inferred for a valid graph.

Versions and upgrades
---------------------
``FORMAT_VERSION`` is the version this package writes. A file with a higher version is refused, and the
message names the versions this package reads. A file with a lower version ``v`` is carried forward by
``UPGRADES[v]``, then ``UPGRADES[v + 1]``, and so on, before any other check. A missing step is an
error. Each step is a function ``doc -> doc`` on the decoded ``graph.json`` object. After each step the
loader sets ``format_version``. Array entries stay as they are: a step may rename, re-point or drop
``{"array": ...}`` references and their manifest entries. It cannot create array data.

To change the format, for example when an op gains, loses or renames a field (any change to an op's
dataclass fields changes the format), do all of the following. A change to an op's type inference that
changes the output type of existing files' nodes changes the format too (``load`` would refuse those
files' ``out`` records); its upgrade step rewrites the affected ``out`` records.

1. Bump ``FORMAT_VERSION`` to ``N + 1`` and add a line to the changelog below.
2. Write ``def upgrade_vN_to_vN1(doc: dict) -> dict`` that rewrites a version-``N`` document into
   version ``N + 1``. For a new field ``LIF.delay: int = 0``, it sets ``node["fields"]["delay"] = 0``
   for every node whose ``type`` is ``"LIF"``.
3. Register it with ``UPGRADES[N] = upgrade_vN_to_vN1``.
4. Commit a version-``N`` file under ``tests/data/`` and a test that loads it.

Changelog: version 1, the first format. (Before version 1 was first released, node entries gained the
``out`` record; as no version-1 file without it was ever released, that needed no version bump.)

Digest
------
``graph_digest(graph)`` is the sha256 of the compact, key-sorted, ASCII JSON encoding of
``{"scheme": "snncompile-ir-digest/1", "time_steps", "outputs", "nodes": [[name, type, inputs,
fields], ...]}``. Values use the encoding above, except that an array becomes ``{"array": {"dtype":
dtype.str, "shape": [...], "sha256": <raw C-order bytes>}}``. It covers structure, node order, every
field, and array bytes, dtypes and shapes. It leaves out ``history``, so that a pass can store the
digest of its result in that result's history, and the recorded ``out`` types, which are derived from
the rest (so ``graph_digest`` never runs type inference and works on invalid graphs too). It does not
depend on the file format version or on entry names. Equal graphs have equal digests. ``load(save(g))``
has the digest of ``g``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import secrets
import types
import typing
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .graph import Graph, HistoryEntry, Node
from .ops import OPS_BY_NAME, Op
from .types import DType, TensorType

MAGIC = "snncompile-ir"
FORMAT_VERSION = 1
SUFFIX = ".snnir"
DIGEST_SCHEME = "snncompile-ir-digest/1"

GRAPH_ENTRY = "graph.json"
MAX_ENTRY_BYTES = 2 * 1024 ** 3
MAX_TOTAL_BYTES = 4 * 1024 ** 3
MAX_JSON_BYTES = 256 * 1024 ** 2
MAX_ENTRIES = 100_000
MAX_RATIO = 1100
RATIO_MIN_BYTES = 1024 ** 2

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_COMPRESSLEVEL = 6
_ARRAY_KINDS = "biufc"  # bool, int, uint, float, complex
_TAGS = ("float", "list", "dict", "dtype", "array")
_DOC_KEYS = ("format", "format_version", "time_steps", "outputs", "nodes", "history", "arrays")
_NODE_KEYS = ("name", "type", "inputs", "out", "fields")
_OUT_KEYS = ("shape", "dtype", "time")
_TIME_LAYOUTS = ("stream", "static")
_HISTORY_KEYS = ("name", "options", "digest")
_MANIFEST_KEYS = ("dtype", "shape", "sha256")


class IRFileError(ValueError):
    """A ``.snnir`` file cannot be read or written; the message names the file and the problem."""

    def __init__(self, source: str, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class _Problem(Exception):
    """Internal: a problem without the file name; the public functions turn it into IRFileError."""


# Upgrade steps: UPGRADES[v] turns a format_version-v graph.json document into version v + 1.
# Empty while version 1 is the only format; see "Versions and upgrades" in the module docstring.
Upgrade = Callable[[dict], dict]
UPGRADES: dict[int, Upgrade] = {}


def readable_versions() -> list[int]:
    """The format versions this package loads: ``FORMAT_VERSION`` and every version with an upgrade path."""
    versions = [FORMAT_VERSION]
    v = FORMAT_VERSION - 1
    while v in UPGRADES:
        versions.insert(0, v)
        v -= 1
    return versions


def _describe_versions(versions: list[int]) -> str:
    if len(versions) == 1:
        return f"format_version {versions[0]}"
    return f"format_versions {versions[0]} to {versions[-1]}"


# ------------------------------------------------------------------------------------------------
# Values: one generic encoding for every field of every node type
# ------------------------------------------------------------------------------------------------

def _c_order(a: np.ndarray) -> np.ndarray:
    """``a`` in C order, keeping 0-d arrays 0-d (``np.ascontiguousarray`` makes them 1-d)."""
    return a if a.flags.c_contiguous else np.array(a, order="C", copy=True)


def _array_sha256(a: np.ndarray) -> str:
    return hashlib.sha256(_c_order(a).tobytes()).hexdigest()


def _check_array_dtype(dtype: np.dtype, where: str) -> None:
    if dtype.hasobject or dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or dtype.subdtype:
        raise _Problem(f"{where}: array dtype {dtype.str!r} ({dtype}) is not allowed "
                       f"(only bool, int, uint, float and complex; never object or structured)")


def _encode(value: Any, where: str, array_ref: Callable[[np.ndarray], Any] | None) -> Any:
    """``value`` as tagged JSON; ``array_ref`` encodes a field-level array (``None``: arrays refused)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        value = float(value)
        if math.isfinite(value):
            return value
        return {"float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, tuple):
        return [_encode(v, f"{where}[{i}]", None) for i, v in enumerate(value)]
    if isinstance(value, list):
        return {"list": [_encode(v, f"{where}[{i}]", None) for i, v in enumerate(value)]}
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise _Problem(f"{where}: dict keys must be strings, got {bad[0]!r}")
        return {"dict": {k: _encode(v, f"{where}[{k!r}]", None) for k, v in value.items()}}
    if isinstance(value, DType):
        text = str(value)
        try:
            same = DType.parse(text) == value
        except ValueError:
            same = False
        if not same:
            raise _Problem(f"{where}: {value!r} has no string form that reads back as itself")
        return {"dtype": text}
    if isinstance(value, np.ndarray):
        if array_ref is None:
            raise _Problem(f"{where}: arrays are allowed only as the direct value of a node field")
        _check_array_dtype(value.dtype, where)
        return {"array": array_ref(value)}
    raise _Problem(f"{where}: cannot store a value of type {type(value).__module__}.{type(value).__qualname__} "
                   f"({value!r}); fields hold None, bool, int, float, str, tuples, DType or numpy arrays")


def _decode(j: Any, where: str, array_get: Callable[[str], np.ndarray] | None) -> Any:
    if j is None or isinstance(j, (bool, int, str)):
        return j
    if isinstance(j, float):
        return j
    if isinstance(j, list):
        return tuple(_decode(v, f"{where}[{i}]", None) for i, v in enumerate(j))
    if isinstance(j, dict):
        if len(j) != 1 or next(iter(j)) not in _TAGS:
            raise _Problem(f"{where}: unknown value encoding {_short(j)} (a one-key object tagged "
                           f"{', '.join(_TAGS)})")
        tag, body = next(iter(j.items()))
        if tag == "float":
            if body not in ("inf", "-inf", "nan"):
                raise _Problem(f"{where}: {{'float': ...}} must be 'inf', '-inf' or 'nan', got {_short(body)}")
            return float(body)
        if tag == "list":
            if not isinstance(body, list):
                raise _Problem(f"{where}: {{'list': ...}} needs a JSON array, got {_short(body)}")
            return [_decode(v, f"{where}[{i}]", None) for i, v in enumerate(body)]
        if tag == "dict":
            if not isinstance(body, dict):
                raise _Problem(f"{where}: {{'dict': ...}} needs a JSON object, got {_short(body)}")
            return {k: _decode(v, f"{where}[{k!r}]", None) for k, v in body.items()}
        if tag == "dtype":
            if not isinstance(body, str):
                raise _Problem(f"{where}: {{'dtype': ...}} needs a string, got {_short(body)}")
            try:
                return DType.parse(body)
            except ValueError as e:
                raise _Problem(f"{where}: {e}") from None
        if array_get is None:
            raise _Problem(f"{where}: arrays are allowed only as the direct value of a node field")
        if not isinstance(body, str):
            raise _Problem(f"{where}: {{'array': ...}} needs an entry name, got {_short(body)}")
        return array_get(body)
    raise _Problem(f"{where}: unexpected JSON value {_short(j)}")  # pragma: no cover (json gives no other)


def _short(j: Any, limit: int = 80) -> str:
    text = repr(j)
    return text if len(text) <= limit else text[:limit] + "..."


# -- field type annotations: checked on save and on load, generically ----------------------------

@lru_cache(maxsize=None)
def _field_hints(cls: type) -> dict[str, Any]:
    """Resolved annotations of ``cls``'s fields (``{}`` for any that cannot be resolved)."""
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an unresolvable annotation: the value check is skipped for that class
        return {}


def _init_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init]


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(_matches(value, h) for h in args)
    if origin is typing.Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        if args == ((),):
            return value == ()
        return not args or (len(value) == len(args) and all(_matches(v, h) for v, h in zip(value, args)))
    if hint is type(None) or hint is None:
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is not None and isinstance(origin, type):
        return isinstance(value, origin)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # an annotation form this check does not know: accept


def _hint_text(hint: Any) -> str:
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return hint.__name__
    return str(hint).replace("typing.", "").replace("numpy.", "np.")


def _check_field(cls: type, field: str, value: Any, where: str) -> None:
    hint = _field_hints(cls).get(field)
    if hint is not None and not _matches(value, hint):
        raise _Problem(f"{where}: expected {_hint_text(hint)}, got {type(value).__name__} {_short(value)}")


# ------------------------------------------------------------------------------------------------
# Graph -> document
# ------------------------------------------------------------------------------------------------

def _where(name: str, op_type: str, field: str | None = None) -> str:
    return f"node {name!r} ({op_type})" + (f" field {field!r}" if field else "")


def _encode_nodes(graph: Graph, array_ref: Callable[[int, str, np.ndarray], Any]) -> list[dict]:
    if not isinstance(graph, Graph):
        raise _Problem(f"expected a Graph, got {type(graph).__name__}")
    nodes = []
    for index, (name, node) in enumerate(graph.nodes.items()):
        if not isinstance(name, str) or not isinstance(node, Node) or not isinstance(node.op, Op):
            raise _Problem(f"node {name!r}: nodes must map str names to Node(op: Op, inputs)")
        cls = type(node.op)
        type_name = cls.type_name()
        if OPS_BY_NAME.get(type_name) is not cls:
            raise _Problem(f"{_where(name, type_name)}: {cls.__module__}.{cls.__qualname__} is not a "
                           f"registered op (OPS_BY_NAME)")
        if not all(isinstance(s, str) for s in node.inputs):
            raise _Problem(f"{_where(name, type_name)}: inputs must be node names, got {node.inputs!r}")
        fields = {}
        for f in _init_fields(cls):
            where = _where(name, type_name, f.name)
            value = getattr(node.op, f.name)
            _check_field(cls, f.name, value, where)
            fields[f.name] = _encode(value, where, lambda a, f=f.name, i=index: array_ref(i, f, a))
        nodes.append({"name": name, "type": type_name, "inputs": list(node.inputs), "fields": fields})
    return nodes


def _check_header(graph: Graph) -> None:
    if not isinstance(graph.time_steps, int) or isinstance(graph.time_steps, bool):
        raise _Problem(f"time_steps must be an int, got {graph.time_steps!r}")
    if not all(isinstance(o, str) for o in graph.outputs):
        raise _Problem(f"outputs must be node names, got {graph.outputs!r}")


def graph_digest(graph: Graph) -> str:
    """sha256 (hex) of the graph's content: structure, node order, fields, array bytes/dtypes/shapes.

    History is not included (see the module docstring, *Digest*). The graph need not be valid.
    """
    try:
        _check_header(graph)

        def array_ref(index: int, field: str, a: np.ndarray) -> dict:
            return {"dtype": a.dtype.str, "shape": list(a.shape), "sha256": _array_sha256(a)}

        nodes = _encode_nodes(graph, array_ref)
    except _Problem as e:
        raise IRFileError("<graph_digest>", str(e)) from None
    doc = {"scheme": DIGEST_SCHEME, "time_steps": graph.time_steps, "outputs": list(graph.outputs),
           "nodes": [[n["name"], n["type"], n["inputs"], n["fields"]] for n in nodes]}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _encode_type(t: Any, where: str) -> dict:
    """The ``out`` record of an inferred output type: ``{"shape", "dtype", "time"}``."""
    if not isinstance(t, TensorType):
        raise _Problem(f"{where}: type inference gave {_short(t)}, not a TensorType")
    shape = t.shape
    if not isinstance(shape, tuple) or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                                               and d >= 0 for d in shape):
        raise _Problem(f"{where}: inferred shape {_short(shape)} is not a tuple of non-negative integers")
    dtype = _encode(t.dtype, f"{where} dtype", None) if isinstance(t.dtype, DType) else None
    if dtype is None:
        raise _Problem(f"{where}: inferred dtype {_short(t.dtype)} is not a DType")
    if t.time not in _TIME_LAYOUTS:
        raise _Problem(f"{where}: inferred time layout {_short(t.time)} is not 'stream' or 'static'")
    return {"shape": [int(d) for d in shape], "dtype": dtype["dtype"], "time": t.time}


def _decode_type(j: Any, where: str) -> TensorType:
    """The TensorType an ``out`` record states (strict keys, canonical dtype text)."""
    _keys(j, _OUT_KEYS, where)
    shape, dtype_text, time = j["shape"], j["dtype"], j["time"]
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise _Problem(f"{where}: shape must be a list of non-negative integers, got {_short(shape)}")
    if not isinstance(dtype_text, str):
        raise _Problem(f"{where}: dtype must be a string such as 'float32', 'spike' or 'uint5', "
                       f"got {_short(dtype_text)}")
    try:
        dtype = DType.parse(dtype_text)
    except ValueError as e:
        raise _Problem(f"{where}: {e}") from None
    if str(dtype) != dtype_text:
        raise _Problem(f"{where}: dtype {dtype_text!r} is not in canonical form {str(dtype)!r}")
    if not isinstance(time, str) or time not in _TIME_LAYOUTS:
        raise _Problem(f"{where}: time must be 'stream' or 'static', got {_short(time)}")
    return TensorType(tuple(shape), dtype, time)


def _type_text(t: TensorType) -> str:
    return f"{t.dtype}[{', '.join(map(str, t.shape))}] ({t.time})"


def _document(graph: Graph) -> tuple[dict, dict[str, bytes]]:
    """The ``graph.json`` document and the array entries of ``graph`` (which must be valid)."""
    _check_header(graph)
    blobs: dict[str, bytes] = {}
    manifest: dict[str, dict] = {}

    def array_ref(index: int, field: str, a: np.ndarray) -> str:
        entry = f"arrays/{index:04d}.{field}.npy"
        a = _c_order(a)
        buf = io.BytesIO()
        np.save(buf, a, allow_pickle=False)
        blobs[entry] = buf.getvalue()
        manifest[entry] = {"dtype": a.dtype.str, "shape": list(a.shape), "sha256": _array_sha256(a)}
        return entry

    nodes = _encode_nodes(graph, array_ref)  # checks every value's type first, so validate() sees sane fields
    types = graph.types()  # validates first: GraphError for an invalid graph
    for n in nodes:  # key order: name, type, inputs, out, fields
        fields = n.pop("fields")
        n["out"] = _encode_type(types[n["name"]], _where(n["name"], n["type"]) + " out")
        n["fields"] = fields
    history = []
    for i, h in enumerate(graph.history):
        if not isinstance(h, HistoryEntry) or not isinstance(h.name, str) or not isinstance(h.digest, str) \
                or not isinstance(h.options, Mapping):
            raise _Problem(f"history[{i}]: expected HistoryEntry(name: str, options: Mapping, digest: str), "
                           f"got {_short(h)}")
        bad = [k for k in h.options if not isinstance(k, str)]
        if bad:
            raise _Problem(f"history[{i}] ({h.name}): option names must be strings, got {bad[0]!r}")
        options = {k: _encode(v, f"history[{i}] ({h.name}) option {k!r}", None) for k, v in h.options.items()}
        history.append({"name": h.name, "options": options, "digest": h.digest})
    doc = {"format": MAGIC, "format_version": FORMAT_VERSION, "time_steps": graph.time_steps,
           "outputs": list(graph.outputs), "nodes": nodes, "history": history, "arrays": manifest}
    return doc, blobs


def _write_zip(fileobj, graph: Graph) -> None:
    doc, blobs = _document(graph)
    try:
        text = json.dumps(doc, indent=1, ensure_ascii=True, allow_nan=False)
    except ValueError as e:  # e.g. an int beyond Python's int/str conversion limit
        raise _Problem(f"cannot encode graph.json: {e}") from None
    entries = dict(blobs)
    entries[GRAPH_ENTRY] = (text + "\n").encode("ascii")
    with zipfile.ZipFile(fileobj, "w", allowZip64=True) as zf:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            zf.writestr(info, entries[name], compresslevel=_COMPRESSLEVEL)


def to_bytes(graph: Graph) -> bytes:
    """The ``.snnir`` file of ``graph`` as bytes (deterministic). Raises GraphError if it is invalid."""
    buf = io.BytesIO()
    try:
        _write_zip(buf, graph)
    except _Problem as e:
        raise IRFileError("<bytes>", f"cannot write: {e}") from None
    return buf.getvalue()


def save(graph: Graph, path: str | os.PathLike) -> Path:
    """Write ``graph`` to ``path`` (atomically: a temporary file then a rename) and return the path.

    The graph must be valid (``GraphError`` otherwise); an unstorable field value raises IRFileError.
    """
    path = Path(path)
    try:
        data = to_bytes(graph)
    except IRFileError as e:
        raise IRFileError(str(path), e.problem) from None
    # a fresh name opened with "x" (not mkstemp, whose 0600 mode would ignore the umask)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


# ------------------------------------------------------------------------------------------------
# Document -> graph
# ------------------------------------------------------------------------------------------------

def _check_entry_name(name: Any, what: str = "entry") -> str:
    if not isinstance(name, str) or not name:
        raise _Problem(f"{what} name must be a non-empty string, got {_short(name)}")
    parts = name.split("/")
    if (name.startswith("/") or "\\" in name or "\x00" in name or ":" in parts[0]
            or any(p in ("", ".", "..") for p in parts)):
        raise _Problem(f"unsafe {what} name {name!r} (absolute, '..', '.', empty component, backslash "
                       f"or drive)")
    return name


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    out = {}
    for k, v in pairs:
        if k in out:
            raise _Problem(f"graph.json: duplicated key {k!r} in one JSON object")
        out[k] = v
    return out


def _reject_constant(text: str):
    raise _Problem(f"graph.json: non-standard JSON constant {text} (non-finite floats are written "
                   f"as {{'float': ...}})")


def _parse_json(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)
    except _Problem:
        raise
    except (UnicodeDecodeError, ValueError) as e:
        raise _Problem(f"graph.json is not valid JSON: {e}") from None
    except RecursionError:
        raise _Problem("graph.json is nested too deeply") from None


def _keys(obj: Any, keys: tuple[str, ...], what: str) -> dict:
    if not isinstance(obj, dict):
        raise _Problem(f"{what} must be a JSON object, got {_short(obj)}")
    missing = [k for k in keys if k not in obj]
    unknown = [k for k in obj if k not in keys]
    if missing or unknown:
        raise _Problem(f"{what}: " + "; ".join(
            ([f"missing key(s) {', '.join(map(repr, missing))}"] if missing else [])
            + ([f"unknown key(s) {', '.join(map(repr, unknown))}"] if unknown else [])))
    return obj


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _upgrade(doc: dict) -> dict:
    version = doc.get("format_version")
    if not _is_int(version):
        raise _Problem(f"format_version must be an integer, got {_short(version)}")
    readable = _describe_versions(readable_versions())
    if version > FORMAT_VERSION:
        raise _Problem(f"format_version {version} was written by a newer snncompile; this snncompile reads "
                       f"{readable} (upgrade snncompile to read this file)")
    while version < FORMAT_VERSION:
        step = UPGRADES.get(version)
        if step is None:
            raise _Problem(f"format_version {version} is older than {FORMAT_VERSION} and there is no upgrade "
                           f"step from {version} to {version + 1}; this snncompile reads {readable}")
        doc = step(doc)
        if not isinstance(doc, dict):
            raise _Problem(f"upgrade step {version} -> {version + 1} returned {type(doc).__name__}, not a dict")
        version += 1
        doc["format_version"] = version
    return doc


class _Reader:
    """Reads one archive: all entry checks, the manifest, and the array entries."""

    def __init__(self, zf: zipfile.ZipFile):
        self.zf = zf
        self.infos: dict[str, zipfile.ZipInfo] = {}
        self.arrays: dict[str, np.ndarray] = {}
        self.referenced: set[str] = set()

    def check_entries(self) -> None:
        infos = self.zf.infolist()
        if len(infos) > MAX_ENTRIES:
            raise _Problem(f"{len(infos)} entries, more than the limit of {MAX_ENTRIES}")
        total = 0
        for info in infos:
            name = _check_entry_name(info.filename)
            if name in self.infos:
                raise _Problem(f"entry {name!r} appears more than once")
            if info.flag_bits & 0x1:
                raise _Problem(f"entry {name!r} is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise _Problem(f"entry {name!r} uses compression method {info.compress_type}; only stored "
                               f"(0) and deflate (8) are allowed")
            if info.file_size > MAX_ENTRY_BYTES:
                raise _Problem(f"entry {name!r} declares {info.file_size} uncompressed bytes, more than the "
                               f"limit of {MAX_ENTRY_BYTES}")
            if info.file_size > RATIO_MIN_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
                raise _Problem(f"entry {name!r} declares a compression ratio of "
                               f"{info.file_size / max(info.compress_size, 1):.0f}:1 ({info.file_size} from "
                               f"{info.compress_size} bytes), above the limit of {MAX_RATIO}:1 (a zip bomb?)")
            total += info.file_size
            self.infos[name] = info
        if total > MAX_TOTAL_BYTES:
            raise _Problem(f"entries declare {total} uncompressed bytes in all, more than the limit of "
                           f"{MAX_TOTAL_BYTES}")

    def read(self, name: str, limit: int) -> bytes:
        info = self.infos[name]
        if info.file_size > limit:
            raise _Problem(f"entry {name!r} declares {info.file_size} bytes, more than the limit of {limit}")
        try:
            data = self.zf.read(info)
        except Exception as e:  # zipfile raises many kinds on corrupt data: all mean the same here
            raise _Problem(f"entry {name!r} is corrupt or truncated: {type(e).__name__}: {e}") from None
        if len(data) != info.file_size:
            raise _Problem(f"entry {name!r} has {len(data)} bytes, its header says {info.file_size}")
        return data

    def load_manifest(self, manifest: Any) -> None:
        if not isinstance(manifest, dict):
            raise _Problem(f"'arrays' must be a JSON object, got {_short(manifest)}")
        for name, meta in manifest.items():
            _check_entry_name(name, "array entry")
            what = f"array entry {name!r}"
            if name == GRAPH_ENTRY:
                raise _Problem(f"{what}: graph.json cannot be an array")
            _keys(meta, _MANIFEST_KEYS, f"manifest of {what}")
            dtype_text, shape, digest = meta["dtype"], meta["shape"], meta["sha256"]
            if not isinstance(dtype_text, str):
                raise _Problem(f"{what}: dtype must be a string, got {_short(dtype_text)}")
            try:
                dtype = np.dtype(dtype_text)
            except Exception:
                raise _Problem(f"{what}: unknown dtype {dtype_text!r}") from None
            _check_array_dtype(dtype, what)
            if dtype.str != dtype_text:
                raise _Problem(f"{what}: dtype {dtype_text!r} is not in numpy's canonical form {dtype.str!r}")
            if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
                raise _Problem(f"{what}: shape must be a list of non-negative integers, got {_short(shape)}")
            if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise _Problem(f"{what}: sha256 must be 64 lowercase hex digits, got {_short(digest)}")
            if name not in self.infos:
                raise _Problem(f"{what} is listed in the manifest but missing from the archive")
            self.arrays[name] = self._load_array(name, dtype, tuple(shape), digest)
        extra = sorted(set(self.infos) - set(self.arrays) - {GRAPH_ENTRY})
        if extra:
            raise _Problem(f"unexpected entry {extra[0]!r}: not graph.json and not in the array manifest")

    def _load_array(self, name: str, dtype: np.dtype, shape: tuple[int, ...], digest: str) -> np.ndarray:
        what = f"array entry {name!r}"
        data = self.read(name, MAX_ENTRY_BYTES)
        fp = io.BytesIO(data)
        try:
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                h_shape, fortran, h_dtype = np.lib.format.read_array_header_1_0(fp)
            elif version == (2, 0):
                h_shape, fortran, h_dtype = np.lib.format.read_array_header_2_0(fp)
            else:
                raise _Problem(f"{what}: .npy format version {version} is not supported (1.0, 2.0)")
        except _Problem:
            raise
        except Exception as e:
            raise _Problem(f"{what}: not a valid .npy header: {e}") from None
        _check_array_dtype(h_dtype, what)
        if h_dtype.str != dtype.str:
            raise _Problem(f"{what}: .npy dtype {h_dtype.str!r} differs from the manifest's {dtype.str!r}")
        if tuple(h_shape) != shape:
            raise _Problem(f"{what}: .npy shape {tuple(h_shape)} differs from the manifest's {shape}")
        expected = fp.tell() + math.prod(shape) * dtype.itemsize
        if len(data) != expected:
            raise _Problem(f"{what}: {len(data)} bytes, but its header describes {expected}")
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as e:
            raise _Problem(f"{what}: cannot read: {e}") from None
        array = _c_order(array)
        if _array_sha256(array) != digest:
            raise _Problem(f"{what}: sha256 mismatch (the array bytes were changed or corrupted)")
        return array

    def array(self, name: str, where: str) -> np.ndarray:
        if name not in self.arrays:
            raise _Problem(f"{where}: array entry {name!r} is not in the array manifest")
        self.referenced.add(name)
        return self.arrays[name]


def _build(doc: Any, reader: _Reader) -> Graph:
    if not isinstance(doc, dict):
        raise _Problem(f"graph.json must hold a JSON object, got {_short(doc)}")
    if doc.get("format") != MAGIC:
        raise _Problem(f"not a snncompile IR file: format is {_short(doc.get('format'))}, expected {MAGIC!r}")
    doc = _upgrade(doc)
    _keys(doc, _DOC_KEYS, "graph.json")
    time_steps, outputs = doc["time_steps"], doc["outputs"]
    if not _is_int(time_steps):
        raise _Problem(f"time_steps must be an integer, got {_short(time_steps)}")
    if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
        raise _Problem(f"outputs must be a list of node names, got {_short(outputs)}")
    reader.load_manifest(doc["arrays"])
    if not isinstance(doc["nodes"], list):
        raise _Problem(f"nodes must be a list, got {_short(doc['nodes'])}")
    nodes: dict[str, Node] = {}
    recorded: dict[str, TensorType] = {}
    for index, jn in enumerate(doc["nodes"]):
        _keys(jn, _NODE_KEYS, f"nodes[{index}]")
        name, type_name, inputs, fields = jn["name"], jn["type"], jn["inputs"], jn["fields"]
        if not isinstance(name, str):
            raise _Problem(f"nodes[{index}]: name must be a string, got {_short(name)}")
        if name in nodes:
            raise _Problem(f"node name {name!r} is used by more than one node (nodes[{index}])")
        if not isinstance(type_name, str) or type_name not in OPS_BY_NAME:
            raise _Problem(f"node {name!r}: unknown node type {_short(type_name)} "
                           f"(known: {', '.join(OPS_BY_NAME)})")
        cls = OPS_BY_NAME[type_name]
        if not isinstance(inputs, list) or not all(isinstance(s, str) for s in inputs):
            raise _Problem(f"{_where(name, type_name)}: inputs must be a list of node names, got {_short(inputs)}")
        recorded[name] = _decode_type(jn["out"], f"{_where(name, type_name)} out")
        if not isinstance(fields, dict):
            raise _Problem(f"{_where(name, type_name)}: fields must be a JSON object, got {_short(fields)}")
        expected = [f.name for f in _init_fields(cls)]
        for key in fields:
            if key not in expected:
                raise _Problem(f"{_where(name, type_name, key)}: unknown field for {type_name} "
                               f"(its fields: {', '.join(expected) or 'none'})")
        for key in expected:
            if key not in fields:
                raise _Problem(f"{_where(name, type_name, key)}: missing field")
        kwargs = {}
        for key in expected:
            where = _where(name, type_name, key)
            value = _decode(fields[key], where, lambda entry, w=where: reader.array(entry, w))
            _check_field(cls, key, value, where)
            kwargs[key] = value
        try:
            op = cls(**kwargs)
        except Exception as e:
            raise _Problem(f"{_where(name, type_name)}: cannot build the node: {type(e).__name__}: {e}") from None
        nodes[name] = Node(op, tuple(inputs))
    unreferenced = sorted(set(reader.arrays) - reader.referenced)
    if unreferenced:
        raise _Problem(f"array entry {unreferenced[0]!r} is in the manifest but no field references it")
    if not isinstance(doc["history"], list):
        raise _Problem(f"history must be a list, got {_short(doc['history'])}")
    history = []
    for i, jh in enumerate(doc["history"]):
        _keys(jh, _HISTORY_KEYS, f"history[{i}]")
        if not isinstance(jh["name"], str) or not isinstance(jh["digest"], str) or not isinstance(jh["options"], dict):
            raise _Problem(f"history[{i}]: name and digest must be strings and options an object")
        options = {k: _decode(v, f"history[{i}] ({jh['name']}) option {k!r}", None) for k, v in jh["options"].items()}
        history.append(HistoryEntry(jh["name"], options, jh["digest"]))
    graph = Graph(nodes=nodes, outputs=tuple(outputs), time_steps=time_steps, history=tuple(history))
    try:
        problems = graph.problems()
    except Exception as e:
        raise _Problem(f"the graph cannot be checked: {type(e).__name__}: {e}") from None
    if problems:
        raise _Problem("the file describes an invalid graph:\n  - " + "\n  - ".join(problems))
    try:
        inferred = graph.types()
    except Exception as e:
        raise _Problem(f"the graph's types cannot be inferred: {type(e).__name__}: {e}") from None
    for name, node in graph.nodes.items():
        rec, inf = recorded[name], inferred[name]
        if rec != inf:
            differ = [k for k in _OUT_KEYS if getattr(rec, k) != getattr(inf, k)]
            raise _Problem(f"{_where(name, node.op.type_name())}: the recorded output type {_type_text(rec)} "
                           f"differs from the inferred type {_type_text(inf)} ({', '.join(differ)} "
                           f"{'differs' if len(differ) == 1 else 'differ'}; the file was changed, or was "
                           f"written with different type inference)")
    return graph


def _load(fileobj, source: str) -> Graph:
    try:
        try:
            zf = zipfile.ZipFile(fileobj)
        except zipfile.BadZipFile as e:
            raise _Problem(f"not a zip archive, or truncated ({e})") from None
        except Exception as e:  # malformed central directories raise assorted errors
            raise _Problem(f"not a readable zip archive, or truncated ({type(e).__name__}: {e})") from None
        with zf:
            reader = _Reader(zf)
            reader.check_entries()
            if GRAPH_ENTRY not in reader.infos:
                raise _Problem(f"missing {GRAPH_ENTRY} (entries: {', '.join(sorted(reader.infos)) or 'none'})")
            doc = _parse_json(reader.read(GRAPH_ENTRY, MAX_JSON_BYTES))
            return _build(doc, reader)
    except _Problem as e:
        raise IRFileError(source, str(e)) from None


def from_bytes(data: bytes, source: str = "<bytes>") -> Graph:
    """Read a ``.snnir`` file held in memory; ``source`` names it in error messages."""
    return _load(io.BytesIO(data), source)


def load(path: str | os.PathLike) -> Graph:
    """Read a ``.snnir`` file. Raises IRFileError for anything wrong with it (see the module docstring)."""
    path = Path(path)
    with open(path, "rb") as f:
        return _load(f, str(path))


__all__ = ["IRFileError", "save", "load", "to_bytes", "from_bytes", "graph_digest", "readable_versions",
           "FORMAT_VERSION", "MAGIC", "SUFFIX", "UPGRADES"]

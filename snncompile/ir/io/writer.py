"""``.snnir`` writing: graph -> document, the digest, ``to_bytes`` and ``save``."""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import secrets
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ...config import is_int
from .. import io as ir_io  # the package: its constants are read at call time, so they can be patched
from ..graph import Graph, HistoryEntry, Node, Schedule
from ..ops import OPS_BY_NAME, Op
from ..types import DType, TensorType
from .upgrades import NEUTRAL_FIELDS
from .values import (_TIME_LAYOUTS, IRFileError, _array_sha256, _c_order, _check_field, _encode, _init_fields,
                     _Problem, _short, _where)

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_COMPRESSLEVEL = 6
# Entries above this many bytes (a large model's weights) are deflated at _LARGE_COMPRESSLEVEL: level 6 takes
# about 8x the time of level 1 on 8-bit weights stored as int32 (most of a paper-size compile's writing) for
# files about a sixth smaller.
_LARGE_ENTRY_BYTES = 1024 ** 2
_LARGE_COMPRESSLEVEL = 1


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


def _encode_schedule(schedule: Schedule | None) -> dict | None:
    """The ``schedule`` record: ``{"data_steps", "latency": {node: steps}, "delay_lines": [node, ...]}``."""
    if schedule is None:
        return None
    if not isinstance(schedule, Schedule):
        raise _Problem(f"schedule must be a Schedule, got {_short(schedule)}")
    if not is_int(schedule.data_steps):
        raise _Problem(f"schedule: data_steps must be an int, got {_short(schedule.data_steps)}")
    latency = dict(schedule.latency)
    bad = [(n, v) for n, v in latency.items() if not isinstance(n, str) or not is_int(v)]
    if bad:
        raise _Problem(f"schedule: latencies must map node names to ints, got {bad[0][0]!r}: {_short(bad[0][1])}")
    if not isinstance(schedule.delay_lines, tuple) or not all(isinstance(n, str) for n in schedule.delay_lines):
        raise _Problem(f"schedule: delay_lines must be a tuple of node names, got {_short(schedule.delay_lines)}")
    return {"data_steps": int(schedule.data_steps), "latency": {n: int(v) for n, v in latency.items()},
            "delay_lines": list(schedule.delay_lines)}


def _encode_scales(scales: Mapping[str, float] | None) -> dict | None:
    """The ``scales`` record: ``{node: real value of one integer step}``, finite floats."""
    if scales is None:
        return None
    if not isinstance(scales, Mapping):
        raise _Problem(f"scales must be a mapping, got {_short(scales)}")
    bad = [(n, s) for n, s in scales.items() if not isinstance(n, str) or isinstance(s, bool)
           or not isinstance(s, (int, float)) or not math.isfinite(s)]
    if bad:
        raise _Problem(f"scales must map node names to finite numbers, got {bad[0][0]!r}: {_short(bad[0][1])}")
    return {n: float(s) for n, s in scales.items()}


def graph_digest(graph: Graph) -> str:
    """sha256 (hex) of the graph's content: structure, node order, fields, array bytes/dtypes/shapes, and
    its schedule and scales when it has them.

    History is not included (see the module docstring, *Digest*). The graph need not be valid.
    """
    try:
        _check_header(graph)

        def array_ref(index: int, field: str, a: np.ndarray) -> dict:
            return {"dtype": a.dtype.str, "shape": list(a.shape), "sha256": _array_sha256(a)}

        nodes = _encode_nodes(graph, array_ref)
        lowering = {"schedule": _encode_schedule(graph.schedule), "scales": _encode_scales(graph.scales)}
    except _Problem as e:
        raise IRFileError("<graph_digest>", str(e)) from None
    doc = {"scheme": ir_io.DIGEST_SCHEME, "time_steps": graph.time_steps, "outputs": list(graph.outputs),
           "nodes": [[n["name"], n["type"], n["inputs"], _digested(n["type"], n["fields"])] for n in nodes]}
    doc.update((key, value) for key, value in lowering.items() if value is not None)  # absent: digest as before
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _digested(type_name: str, fields: dict) -> dict:
    """A node's fields as its digest covers them: a field added after version 3 is left out at the value
    that keeps a version-3 node's meaning (the digest is the one that version gave the graph)."""
    neutral = NEUTRAL_FIELDS.get(type_name, {})
    return {k: v for k, v in fields.items() if k not in neutral or v != neutral[k]}


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
    schedule, scales = _encode_schedule(graph.schedule), _encode_scales(graph.scales)
    if schedule is not None:  # both in node order (the graph is valid: they name its nodes)
        schedule["latency"] = {n: schedule["latency"][n] for n in graph.nodes}
    if scales is not None:
        scales = {n: scales[n] for n in graph.nodes if n in scales}
    doc = {"format": ir_io.MAGIC, "format_version": ir_io.FORMAT_VERSION, "time_steps": graph.time_steps,
           "outputs": list(graph.outputs), "nodes": nodes, "schedule": schedule, "scales": scales,
           "history": history, "arrays": manifest}
    return doc, blobs


def _write_zip(fileobj, graph: Graph) -> None:
    doc, blobs = _document(graph)
    try:
        text = json.dumps(doc, indent=1, ensure_ascii=True, allow_nan=False)
    except ValueError as e:  # e.g. an int beyond Python's int/str conversion limit
        raise _Problem(f"cannot encode graph.json: {e}") from None
    entries = dict(blobs)
    entries[ir_io.GRAPH_ENTRY] = (text + "\n").encode("ascii")
    with zipfile.ZipFile(fileobj, "w", allowZip64=True) as zf:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            data = entries[name]
            zf.writestr(info, data, compresslevel=_LARGE_COMPRESSLEVEL if len(data) > _LARGE_ENTRY_BYTES
                        else _COMPRESSLEVEL)


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

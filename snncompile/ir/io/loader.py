"""``.snnir`` loading: format upgrades, document -> graph, ``from_bytes`` and ``load``."""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

from ...config import is_int
from .. import io as ir_io  # the package: its constants are read at call time, so they can be patched
from ..graph import Graph, HistoryEntry, Node, Schedule
from ..ops import OPS_BY_NAME
from ..types import TensorType
from .reader import _parse_json, _Reader
from .values import (_TIME_LAYOUTS, IRFileError, _check_field, _decode, _init_fields, _keys, _Problem,
                     _short, _where, parse_dtype)

_DOC_KEYS = ("format", "format_version", "time_steps", "outputs", "nodes", "schedule", "scales", "history",
             "arrays")
_SCHEDULE_KEYS = ("data_steps", "latency", "delay_lines")
_NODE_KEYS = ("name", "type", "inputs", "out", "fields")
_OUT_KEYS = ("shape", "dtype", "time")
_HISTORY_KEYS = ("name", "options", "digest")


def _describe_versions(versions: list[int]) -> str:
    if len(versions) == 1:
        return f"format_version {versions[0]}"
    return f"format_versions {versions[0]} to {versions[-1]}"


def _decode_type(j: Any, where: str) -> TensorType:
    """The TensorType an ``out`` record states (strict keys, canonical dtype text)."""
    _keys(j, _OUT_KEYS, where)
    shape, dtype_text, time = j["shape"], j["dtype"], j["time"]
    if not isinstance(shape, list) or not all(is_int(d) and d >= 0 for d in shape):
        raise _Problem(f"{where}: shape must be a list of non-negative integers, got {_short(shape)}")
    dtype = parse_dtype(dtype_text, where)
    if str(dtype) != dtype_text:
        raise _Problem(f"{where}: dtype {dtype_text!r} is not in canonical form {str(dtype)!r}")
    if not isinstance(time, str) or time not in _TIME_LAYOUTS:
        raise _Problem(f"{where}: time must be 'stream' or 'static', got {_short(time)}")
    return TensorType(tuple(shape), dtype, time)


def _type_text(t: TensorType) -> str:
    return f"{t.dtype}[{', '.join(map(str, t.shape))}] ({t.time})"


def _decode_schedule(j: Any) -> Schedule | None:
    """The graph's schedule from its ``schedule`` record (null: unscheduled). That it names the graph's
    nodes is ``Graph.problems``' check."""
    if j is None:
        return None
    _keys(j, _SCHEDULE_KEYS, "schedule")
    data_steps, latency, lines = j["data_steps"], j["latency"], j["delay_lines"]
    if not is_int(data_steps):
        raise _Problem(f"schedule: data_steps must be an integer, got {_short(data_steps)}")
    if not isinstance(latency, dict) or not all(is_int(v) for v in latency.values()):
        raise _Problem(f"schedule: latency must be an object of node name -> integer, got {_short(latency)}")
    if not isinstance(lines, list) or not all(isinstance(n, str) for n in lines):
        raise _Problem(f"schedule: delay_lines must be a list of node names, got {_short(lines)}")
    return Schedule(data_steps, latency, tuple(lines))


def _decode_scales(j: Any) -> dict[str, float] | None:
    """The graph's scales from its ``scales`` record (null: not quantised)."""
    if j is None:
        return None
    if not isinstance(j, dict) or not all(isinstance(s, (int, float)) and not isinstance(s, bool)
                                          for s in j.values()):
        raise _Problem(f"scales must be an object of node name -> number, got {_short(j)}")
    return {n: float(s) for n, s in j.items()}


def _upgrade(doc: dict) -> dict:
    version = doc.get("format_version")
    if not is_int(version):
        raise _Problem(f"format_version must be an integer, got {_short(version)}")
    readable = _describe_versions(ir_io.readable_versions())
    if version > ir_io.FORMAT_VERSION:
        raise _Problem(f"format_version {version} was written by a newer snncompile; this snncompile reads "
                       f"{readable} (upgrade snncompile to read this file)")
    while version < ir_io.FORMAT_VERSION:
        step = ir_io.UPGRADES.get(version)
        if step is None:
            raise _Problem(f"format_version {version} is older than {ir_io.FORMAT_VERSION} and there is no upgrade "
                           f"step from {version} to {version + 1}; this snncompile reads {readable}")
        doc = step(doc)
        if not isinstance(doc, dict):
            raise _Problem(f"upgrade step {version} -> {version + 1} returned {type(doc).__name__}, not a dict")
        version += 1
        doc["format_version"] = version
    return doc


def _build(doc: Any, reader: _Reader) -> Graph:
    if not isinstance(doc, dict):
        raise _Problem(f"graph.json must hold a JSON object, got {_short(doc)}")
    if doc.get("format") != ir_io.MAGIC:
        raise _Problem(f"not a snncompile IR file: format is {_short(doc.get('format'))}, expected {ir_io.MAGIC!r}")
    if isinstance(doc.get("nodes"), list) and len(doc["nodes"]) > ir_io.MAX_NODES:
        raise _Problem(f"{len(doc['nodes'])} nodes, more than the limit of {ir_io.MAX_NODES}")
    doc = _upgrade(doc)
    _keys(doc, _DOC_KEYS, "graph.json")
    time_steps, outputs = doc["time_steps"], doc["outputs"]
    if not is_int(time_steps):
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
    graph = Graph(nodes=nodes, outputs=tuple(outputs), time_steps=time_steps, history=tuple(history),
                  schedule=_decode_schedule(doc["schedule"]), scales=_decode_scales(doc["scales"]))
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
            reader = _Reader(zf, fileobj.seek(0, io.SEEK_END))
            reader.check_entries()
            if ir_io.GRAPH_ENTRY not in reader.infos:
                raise _Problem(f"missing {ir_io.GRAPH_ENTRY} (entries: {', '.join(sorted(reader.infos)) or 'none'})")
            doc = _parse_json(reader.read(ir_io.GRAPH_ENTRY, ir_io.MAX_JSON_BYTES))
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

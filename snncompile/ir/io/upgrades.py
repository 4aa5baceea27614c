"""Upgrade steps between ``.snnir`` format versions (see "Versions and upgrades" in ``__init__``).

Each step rewrites a decoded ``graph.json`` document; it runs before any other check, so it leaves
anything malformed as it is for the loader to report.
"""
from __future__ import annotations

from typing import Any

from ...config import is_int
from ..types import DType
from .values import _decode, _Problem, parse_dtype

# Fields version 2 added, with the values that keep a version-1 node's meaning.
_V2_FIELDS = {"Repeat": {"data_steps": 0}, "TimeMean": {"start": 0, "steps": 0},
              "IntDense": {"bias": None, "bias_start": 0},
              "IntConv2d": {"bias": None, "bias_start": 0}}


# Fields version 4 added, with the values that keep a version-3 node's meaning (graph_digest leaves them out
# at these values, so a graph's digest is the one version 3 gave it).
V4_FIELDS = {"LoihiLIF": {"reset_at": 0}}
V5_FIELDS = {"IntAdd": {"bias": None, "bias_start": 0}}
V6_FIELDS = {t: {"bias_steps": 0} for t in ("IntDense", "IntConv2d", "IntAdd")}
# Every field added after version 3, at the value that keeps an older node's meaning.
_ADDED = (V4_FIELDS, V5_FIELDS, V6_FIELDS)
NEUTRAL_FIELDS = {t: {k: v for added in _ADDED for k, v in added.get(t, {}).items()} for added in _ADDED
                  for t in added}


def _add_fields(doc: dict, added: dict[str, dict[str, Any]]) -> list | None:
    """Give every node of a type in ``added`` the fields listed there (where it lacks them); the nodes."""
    nodes = doc.get("nodes")
    if not isinstance(nodes, list):
        return None
    for node in nodes:
        if isinstance(node, dict) and isinstance(node.get("fields"), dict) and isinstance(node.get("type"), str):
            for key, value in added.get(node["type"], {}).items():
                node["fields"].setdefault(key, value)
    return nodes


# Version-1 node types whose output dtype is their input's (a changed input dtype carries through them).
_DTYPE_PASSING = ("Output", "Flatten", "MaxPool2d")


def _sum_pool_dtype(node: dict, source_out: dict) -> str | None:
    """Version 2 types a SumPool2d of spikes or integers as the exact integer sum (it was float32)."""
    kernel = node["fields"].get("kernel") if isinstance(node.get("fields"), dict) else None
    try:
        source = parse_dtype(source_out.get("dtype"), "")
        k0, k1 = kernel
    except (_Problem, TypeError, ValueError):
        return None
    if source.kind == "float" or not is_int(k0) or not is_int(k1) or max(k0, k1) > 1 << 32:
        return None
    bound = k0 * k1 * max(abs(source.min), abs(source.max))
    return str(DType("int", bound.bit_length() + source.signed, source.signed))


def _retyped(node: dict, source_out: dict) -> str | None:
    """The version-2 ``out`` dtype of a node whose single input's ``out`` is ``source_out`` (None: unchanged)."""
    if node.get("type") == "SumPool2d":
        return _sum_pool_dtype(node, source_out)
    return source_out.get("dtype") if node.get("type") in _DTYPE_PASSING else None


def _source(node: dict, by_name: dict) -> str | None:
    inputs = node.get("inputs")
    if isinstance(inputs, list) and len(inputs) == 1 and isinstance(inputs[0], str) and inputs[0] in by_name:
        return inputs[0]
    return None


def _retype_sum_pools(nodes: list) -> None:
    """Rewrite the ``out`` dtype of integer SumPool2d nodes and of the dtype-passing nodes they feed.

    A node's new dtype follows from its single input's, so each node is retyped once, after its input,
    whatever order the file lists them in (linear in the nodes). Nodes on a cycle, which the loader
    refuses later, are left as they are.
    """
    by_name = {n["name"]: n for n in nodes
               if isinstance(n, dict) and isinstance(n.get("name"), str) and isinstance(n.get("out"), dict)}
    done: set[str] = set()
    for start in by_name:
        chain, on_chain = [], set()  # start, its input, that one's input, ... up to a node already done
        name = start
        while name is not None and name not in done and name not in on_chain:
            chain.append(name)
            on_chain.add(name)
            name = _source(by_name[name], by_name)
        cycle = set(chain[chain.index(name):]) if name in on_chain else set()
        for name in reversed(chain):
            source = _source(by_name[name], by_name)
            dtype = None if name in cycle or source is None else _retyped(by_name[name], by_name[source]["out"])
            if dtype is not None:
                by_name[name]["out"]["dtype"] = dtype
            done.add(name)


def upgrade_v1_to_v2(doc: dict) -> dict:
    """Version 2: integer-synapse biases, Repeat's ``data_steps``, TimeMean's window, integer SumPool2d."""
    nodes = _add_fields(doc, _V2_FIELDS)
    if nodes is not None:
        _retype_sum_pools(nodes)
    return doc


def _last_entry(doc: dict, name: str) -> dict | None:
    """The last well-formed history entry of pass ``name``, or None."""
    history = doc.get("history")
    entries = history if isinstance(history, list) else []
    return next((h for h in reversed(entries) if isinstance(h, dict) and h.get("name") == name
                 and isinstance(h.get("options"), dict)), None)


def _option(entry: dict, key: str) -> Any:
    """A history option's value (tagged encoding decoded), or None where absent or malformed (the
    loader reports a malformed history itself)."""
    try:
        return _decode(entry["options"][key], key, None)
    except (KeyError, _Problem):
        return None


def upgrade_v2_to_v3(doc: dict) -> dict:
    """Version 3: the schedule and the quantisation scales are records of the document; version 2 kept
    them in its history only. The schedule is the last ``schedule`` entry's ``data_steps``, ``latency`` and
    ``delay_lines`` (null without one: the graph is unscheduled); the scales are the last ``quantize``
    entry's ``scales`` (null without one), a delay line the schedule inserted having its source's scale.
    A malformed entry is carried over as it is, for the loader to report."""
    entry = _last_entry(doc, "schedule")
    schedule = None
    if entry is not None:
        lines = _option(entry, "delay_lines")
        schedule = {"data_steps": _option(entry, "data_steps"), "latency": _option(entry, "latency"),
                    "delay_lines": list(lines) if isinstance(lines, dict) else lines}
    entry = _last_entry(doc, "quantize")
    scales = None if entry is None else _option(entry, "scales")
    nodes = doc.get("nodes")
    if schedule is not None and isinstance(scales, dict) and isinstance(schedule["delay_lines"], list) \
            and isinstance(nodes, list):
        sources = {n.get("name"): n.get("inputs") for n in nodes if isinstance(n, dict)}
        for line in schedule["delay_lines"]:
            inputs = sources.get(line)
            if isinstance(inputs, list) and len(inputs) == 1 and inputs[0] in scales:
                scales[line] = scales[inputs[0]]
    doc["schedule"], doc["scales"] = schedule, scales
    return doc


def upgrade_v3_to_v4(doc: dict) -> dict:
    """Version 4: ``LoihiLIF.reset_at`` (0: the neuron never restarts, as every version-3 neuron)."""
    _add_fields(doc, V4_FIELDS)
    return doc


def upgrade_v4_to_v5(doc: dict) -> dict:
    """Version 5: ``IntAdd.bias`` and ``bias_start`` (none: a version-4 sum adds nothing of its own)."""
    _add_fields(doc, V5_FIELDS)
    return doc


def upgrade_v5_to_v6(doc: dict) -> dict:
    """Version 6: ``bias_steps`` of ``IntDense``, ``IntConv2d`` and ``IntAdd`` (0: a version-5 bias acts to the
    end of the run)."""
    _add_fields(doc, V6_FIELDS)
    return doc

"""The placement data model (units, their slices on cores, core loads, messages) and its JSON file.

:func:`snncompile.backends.placement.place` makes a :class:`Placement`; ``design_rules.check`` checks it.

``save_placement(placement, artifact)`` writes ``<stem>.placement.json`` beside ``<stem>.snnir`` (any
other path is used as given). The JSON names the ``graph_digest`` (``snncompile.ir.io``) of the graph it
was made for; ``load_placement(path, graph)`` refuses a placement whose digest differs from the graph's.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ..ir import Graph
from ..ir.io import graph_digest

FORMAT = "snncompile-placement"
FORMAT_VERSION = 1


class PlacementError(ValueError):
    """A placement cannot be made, read, or does not belong to the graph it is used with."""


@dataclass(frozen=True)
class Slice:
    """Compartments ``[start, stop)`` of one unit on ``core``."""

    core: int
    start: int
    stop: int


@dataclass(frozen=True)
class NodePlacement:
    """One unit: its compartments, the nodes attached to it, and its slices (in compartment order)."""

    node: str
    type: str
    neurons: int
    order: str                      # compartment order: "channel", "position" or "boxes:..." (compartment_order)
    attached: tuple[str, ...]
    slices: tuple[Slice, ...]


@dataclass(frozen=True)
class CoreLoad:
    """What one core holds (one slice of one unit) and its totals."""

    core: int
    chip: int
    node: str
    start: int
    stop: int
    neurons: int
    synaptic_bits: int
    fan_in_axons: int
    fan_out_axons: int

    @property
    def synaptic_bytes(self) -> int:
        return -(-self.synaptic_bits // 8)


@dataclass(frozen=True)
class Message:
    """Values sent from ``src`` (a unit or a host node) into unit ``dst``'s group, read by member ``via``;
    ``dtype`` is the source's output dtype (``int...``: a graded message)."""

    src: str
    dst: str
    via: str
    dtype: str

    @property
    def graded(self) -> bool:
        return self.dtype.startswith(("int", "uint"))


@dataclass(frozen=True)
class Placement:
    """The graph's units on a target's cores. ``nodes``: unit name -> its placement, in placement order."""

    target: str
    graph_digest: str
    cores_per_chip: int
    nodes: Mapping[str, NodePlacement]
    cores: tuple[CoreLoad, ...]
    host_nodes: tuple[str, ...]
    messages: tuple[Message, ...] = field(default=())

    @property
    def cores_used(self) -> int:
        return len(self.cores)

    @property
    def chips_used(self) -> int:
        return -(-self.cores_used // self.cores_per_chip)

    def unit_of(self, name: str) -> list[str]:
        """The units a node lives on: itself if it is one, else the units it is attached to."""
        if name in self.nodes:
            return [name]
        return [u for u, p in self.nodes.items() if name in p.attached]

    def to_json(self) -> str:
        doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "target": self.target,
               "graph_digest": self.graph_digest, "cores_per_chip": self.cores_per_chip,
               "cores_used": self.cores_used, "chips_used": self.chips_used,
               "host_nodes": list(self.host_nodes),
               "nodes": [{"node": p.node, "type": p.type, "neurons": p.neurons, "order": p.order,
                          "attached": list(p.attached),
                          "slices": [[s.core, s.start, s.stop] for s in p.slices]} for p in self.nodes.values()],
               "cores": [{"core": c.core, "chip": c.chip, "node": c.node, "start": c.start, "stop": c.stop,
                          "neurons": c.neurons, "synaptic_bits": c.synaptic_bits, "fan_in_axons": c.fan_in_axons,
                          "fan_out_axons": c.fan_out_axons} for c in self.cores],
               "messages": [[m.src, m.dst, m.via, m.dtype] for m in self.messages]}
        return json.dumps(doc, separators=(",", ":"))  # compact: json's C encoder (indenting runs in Python)

    @staticmethod
    def from_json(text: str, source: str = "<placement>") -> "Placement":
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise PlacementError(f"{source}: not a placement file (format is not {FORMAT!r})")
            if doc.get("format_version") != FORMAT_VERSION:
                raise PlacementError(f"{source}: placement format_version {doc.get('format_version')!r}; this "
                                     f"package reads version {FORMAT_VERSION}")
            nodes = {n["node"]: NodePlacement(n["node"], n["type"], int(n["neurons"]), n["order"],
                                              tuple(n["attached"]), tuple(Slice(*map(int, s)) for s in n["slices"]))
                     for n in doc["nodes"]}
            cores = tuple(CoreLoad(**{k: c[k] for k in CoreLoad.__dataclass_fields__}) for c in doc["cores"])
            messages = tuple(Message(*m) for m in doc["messages"])
            return Placement(doc["target"], doc["graph_digest"], int(doc["cores_per_chip"]), nodes, cores,
                             tuple(doc["host_nodes"]), messages)
        except PlacementError:
            raise
        except (ValueError, KeyError, TypeError) as e:
            raise PlacementError(f"{source}: malformed placement file: {type(e).__name__}: {e}") from None

    def summary(self) -> str:
        """One line per core: core, chip, node slice, neurons, synaptic bytes, fan-in, fan-out."""
        lines = [f"placement on {self.target}: {self.cores_used} cores on {self.chips_used} chip(s), "
                 f"{len(self.nodes)} units, {len(self.host_nodes)} host nodes"]
        lines += [f"  core {c.core:4d} chip {c.chip}: {c.node}[{c.start}:{c.stop}] neurons={c.neurons} "
                  f"syn={c.synaptic_bytes}B fan_in={c.fan_in_axons} fan_out={c.fan_out_axons}" for c in self.cores]
        return "\n".join(lines)


def placement_path(artifact: str | Path) -> Path:
    """``model.snnir`` -> ``model.placement.json``; any other path is the placement file itself."""
    artifact = Path(artifact)
    return artifact.with_suffix(".placement.json") if artifact.suffix == ".snnir" else artifact


def save_placement(placement: Placement, path: str | Path) -> Path:
    """Write the placement as JSON beside the artifact (see :func:`placement_path`); returns the file."""
    out = placement_path(path)
    out.write_text(placement.to_json() + "\n")
    return out


def load_placement(path: str | Path, graph: Graph | None = None) -> Placement:
    """Read a placement (the JSON, or the ``.snnir`` it sits beside); with ``graph``, check it was made for it."""
    file = placement_path(path)
    placement = Placement.from_json(file.read_text(), str(file))
    if graph is not None:
        digest = graph_digest(graph)
        if digest != placement.graph_digest:
            raise PlacementError(f"{file}: placement was made for graph digest {placement.graph_digest[:16]}..., "
                                 f"but this graph's digest is {digest[:16]}...: the graph changed since it was "
                                 f"placed; run place() again")
    return placement


__all__ = ["Placement", "NodePlacement", "Slice", "CoreLoad", "Message", "PlacementError", "placement_path",
           "save_placement", "load_placement"]

"""Lowered integer graph -> Lava process graph, in two granularities (the fused one in two sizes).

A lowered, scheduled graph splits in three parts (:func:`plan_lava`, by :mod:`snncompile.backends.host_split`,
the rule placement follows too):

- the *host input* part: ``Input`` nodes and what the host computes from them before the chip (a static
  image's first convolution ``*.host``, ``Quantize``, the ``Repeat`` that streams it); it runs with the IR's
  own ``run`` and feeds the chip through a source process (Lava's ``RingBuffer``, one step per Lava step);
- the *chip* part: every integer stream node after it, mapped to Lava processes;
- the *host output* part: what reads the chip's results (``TimeMean``, ``Scale``, ``Output``), run by the
  IR from the streams the extractors recorded.

Granularities:

- ``"per_op"``: one Process per IR node. Lava's own bit-accurate processes where their semantics equal the
  node's (:mod:`.stock`: ``LoihiLIF`` -> ``LIF``/``LIFReset``, ``LoihiTernaryLIF`` -> ``TernaryLIF``,
  ``IntDense``/``IntConv2d`` -> ``Dense``, ``Conv`` or ``Sparse`` where their bias, delay, weights, shift
  and proven range allow; the batch rides along). Every other node runs in a custom
  :class:`~.processes.UnaryNode`/:class:`~.processes.BinaryNode` (its own ``run``, stepped: see
  :mod:`.models`); an ``IntAdd`` gets all its producers on one InPort, which Lava sums (the residual
  accumulator), then wraps or saturates; where it feeds neurons and never wraps, the neurons get its producers
  on their own ports instead, converging connections Lava sums (``LavaPlan.converging``, :mod:`.converging_sums`),
  its constant term in the neurons' bias or sent by a bias source (Lava's ``RingBuffer`` and ``Dense``,
  :func:`~.stock.build_bias_source`), and its adder remains only for readers other than neurons. One Lava
  ``Extractor`` per recorded node. The zoo's lowered synapses carry a bias, BatchNorm's folded shift that
  starts with their data: where only neurons and sums read it (directly or past a max-pool or a delay line),
  the plan's graph (``LavaPlan.graph``) has it in the neurons' compartment bias and the sums' constant term
  instead, as Loihi would (:mod:`.synapse_biases`, exact on every data window), and Lava's Dense/Conv and
  LIFReset run them. A synapse whose bias can go nowhere, or whose ``out_bits`` act, splits into its bare
  sums on Lava's process and an adder ``<name>.finish`` with the bias and the fit (:mod:`.synapse_finish`,
  exact on every step; ``LavaPlan.chip`` lists the adders): a sum that converges with a bias source where its
  readers are neurons and its fit never acts, else a custom one.
  SDT-V3's level quantisers run on Lava's ``LIF`` (:mod:`.level_neurons`): one stateless LIF per level, whose
  spikes each reader's port sums into the level (the quantiser a converging sum), or one LIF of D neurons per
  element where a stock synapse alone feeds it and only synapses read it (``LavaPlan.executed_by``).
- ``"fused"``: a few :class:`~.processes.FusedNodes` processes, one per transformer block (nodes named
  ``<word>.<i>.…``), one for what comes before the first block and one for what follows the last; values
  crossing between them travel on buses (``processes.py``), the host's values too (one ``RingBuffer``
  holds them all); each bus holds only what its senders hand their readers (:func:`bus_layouts`).
  ``"fused_model"``: the whole chip part in one Process. The recorded values go to one Extractor the same
  way: each Process fills its slots of one record vector, Lava sums what arrives.

Both run ``graph.time_steps`` (``T + L``) Lava steps, step t carrying the reference trace's step t for every
node (timing: :mod:`.models`).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import snncompile.backends.lava.first_import  # noqa: F401 -- before Lava's first import (its docstring)
from lava.proc.io.extractor import Extractor
from lava.proc.io.source import RingBuffer

from snncompile.backends.lava.converging_sums import converge_sums
from snncompile.backends.lava.level_neurons import merge_level_neurons, split_level_neurons
from snncompile.backends.lava.stock import (bias_source_processes, build_bias_source, build_stock,
                                            stock_processes)
from snncompile.backends.lava.synapse_biases import move_synapse_biases
from snncompile.backends.lava.synapse_finish import split_synapse_finishes
from snncompile.backends.lava.models import FusedKernel, PortKernel, Slot, from_lava, lava_shape, stepper, to_lava
from snncompile.backends.lava.processes import BinaryNode, FusedNodes, UnaryNode
from snncompile.backends.host_split import split_host
from snncompile.backends.lava.session import LavaBackendError
from snncompile.ir import Graph, Node
from snncompile.ir.ops import BlockSum, Input, IntAdd, KVOuterAccumulate, Refused
from snncompile.ir.types import TensorType

GRANULARITIES = ("per_op", "fused", "fused_model")
_BLOCK = re.compile(r"^([A-Za-z_]\w*\.\d+)\.")


@dataclass(frozen=True)
class LavaPlan:
    """How a graph runs on Lava. ``graph``: the graph the processes compute (per-op: synapse biases moved into
    the neurons and sums where that is exact, :mod:`.synapse_biases`); ``chip``: on-chip nodes in dependency order; ``sources``: host values the chip
    reads; ``sinks``: chip values the host part reads; ``recorded``: chip nodes whose streams the extractors
    bring back (exposed ones and sinks); ``groups``: the nodes of each fused Process (per-op: one per node);
    ``stock``: per-op nodes run by one of Lava's own processes (node -> Lava class name); ``exposed_host``:
    host input nodes asked for by name (their values come from the host's own run); ``executed_by``: per-op, a
    level quantiser of the given graph -> the LIFs that compute it (:mod:`.level_neurons`)."""

    graph: Graph
    granularity: str
    batch: int
    host_in: tuple[str, ...]
    chip: tuple[str, ...]
    host_out: tuple[str, ...]
    sources: tuple[str, ...]
    sinks: tuple[str, ...]
    recorded: tuple[str, ...]
    groups: tuple[tuple[str, ...], ...]
    stock: dict[str, str] = field(default_factory=dict)
    exposed_host: tuple[str, ...] = ()
    converging: tuple[str, ...] = ()  # per-op sums of ``graph`` with no Process: producers connect to readers
    executed_by: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return self.graph.time_steps

    def processes(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """``(process name, Lava process class, IR nodes)`` of every Process the network will have."""
        out = [(f"source:{s}", "RingBuffer", (s,)) for s in self.sources] if self.granularity == "per_op" else [
            ("source", "RingBuffer", self.sources)]
        if self.granularity == "per_op":
            for name in (n for n in self.chip if n not in self.converging):
                op = self.graph.op(name)
                cls = self.stock.get(name) or ("BinaryNode" if op.ARITY == 2 else "UnaryNode")
                out.append((name, cls, (name,)))
            for name in (n for n in self.converging if self.graph.op(n).bias is not None):  # its bias source
                out += [(p, cls, (name,)) for p, cls in bias_source_processes(name, self.graph.op(name).bias)]
            out += [(f"extract:{n}", "Extractor", (n,)) for n in self.recorded]
        else:
            out += [(f"fused{i}:{g[0]}", "FusedNodes", g) for i, g in enumerate(self.groups)]
            out.append(("extract", "Extractor", self.recorded))
        return out


# -- planning ------------------------------------------------------------------------------------------------------

def _fail(graph: Graph, name: str, why: str):
    raise LavaBackendError(f"node {name!r} ({graph.op(name).type_name()}): {why}")


def _check_chip_node(graph: Graph, types: dict[str, TensorType], name: str, host_in: set[str]) -> None:
    op = graph.op(name)
    if isinstance(op.BACKENDS.lava, Refused):
        _fail(graph, name, f"no Lava mapping for this node type: {op.BACKENDS.lava.reason}")
    if op.BACKENDS.lava == "host":
        chip_inputs = [s for s in graph.nodes[name].inputs if s not in host_in]
        _fail(graph, name, f"the host computes this node type only before the chip, but it reads {chip_inputs} "
                           "from the chip")
    t = types[name]
    if t.dtype.kind == "float":
        _fail(graph, name, f"its output {t} is not an integer: only integer streams run on the chip")
    if t.dtype.kind == "int" and t.dtype.bits > 32:
        _fail(graph, name, f"its output {t} is wider than Lava's 32-bit messages")
    for src in graph.nodes[name].inputs:
        if src in host_in and types[src].dtype.kind == "float":
            _fail(graph, name, f"its input {src!r} is a real-valued host value {types[src]}; quantise it on the host")
    if isinstance(op, KVOuterAccumulate) and op.delay < op.block - 1:
        _fail(graph, name, f"delay {op.delay} < block - 1 = {op.block - 1}: a block's sum would leave before its "
                           f"last step arrives (schedule the graph)")
    if isinstance(op, IntAdd) and len(set(graph.nodes[name].inputs)) != len(graph.nodes[name].inputs):
        _fail(graph, name, "the same input twice (Lava cannot connect one port to another twice)")
    if op.ARITY not in (None, 1, 2) or (op.ARITY is None and not isinstance(op, IntAdd)):
        _fail(graph, name, f"{op.ARITY} inputs: the backend has one- and two-input node processes")


def _exposed(graph: Graph, chip: list[str], sinks: list[str], expose) -> tuple[list[str], list[str]]:
    """The chip nodes to record and the host input nodes asked for (see :func:`plan_lava`)."""
    if expose is None or expose == "neurons":
        wanted = [n for n in chip if graph.op(n).ROLE == "neuron"]
    elif expose == "all":
        wanted = list(chip)
    elif isinstance(expose, str):
        raise ValueError(f"expose must be None, 'neurons', 'all' or node names, got {expose!r}")
    else:
        wanted = list(expose)
        unknown = [n for n in wanted if n not in graph.nodes]
        if unknown:
            raise ValueError(f"expose names unknown nodes {unknown}")
    keep = set(wanted) | set(sinks) | {n for n in graph.outputs if n in chip}
    return [n for n in chip if n in keep], [n for n in wanted if n not in chip]


def fused_groups(graph: Graph, chip: list[str], whole: bool = False) -> list[tuple[str, ...]]:
    """The chip nodes of each fused Process: one group per transformer block (``<word>.<i>.`` names), the
    nodes before the first block and those after the last; all in one group when ``whole`` or when that
    grouping would make the Processes depend on each other in a cycle."""
    if whole:
        return [tuple(chip)]
    stem, head = "\0stem", "\0head"  # (no block name starts with a NUL)
    key: dict[str, str] = {}
    for name in chip:  # dependency order
        block = _BLOCK.match(name)
        if block:
            key[name] = block.group(1)
        else:  # before every block, or behind one
            key[name] = head if any(key.get(s, stem) != stem for s in graph.nodes[name].inputs) else stem
    order = list(dict.fromkeys(key[n] for n in chip))
    groups = {k: tuple(n for n in chip if key[n] == k) for k in order}
    # the group graph must be acyclic (Processes exchange values within a step)
    deps = {k: {key[s] for n in groups[k] for s in graph.nodes[n].inputs if s in key and key[s] != k} for k in order}
    done: set[str] = set()
    ordered: list[str] = []
    while len(ordered) < len(order):
        ready = [k for k in order if k not in done and deps[k] <= done]
        if not ready:
            return [tuple(chip)]
        done.add(ready[0])
        ordered.append(ready[0])
    return [groups[k] for k in ordered]


def plan_lava(graph: Graph, *, granularity: str = "fused", expose=None, batch: int = 1) -> LavaPlan:
    """Check that ``graph`` runs on Lava and decide how (raises :class:`LavaBackendError` naming the node).

    ``expose``: which chip nodes' streams come back: ``None``/``"neurons"`` (every neuron), ``"all"`` (every
    chip node) or node names (host nodes among them come from the host's own run); the chip values the host
    part reads and chip graph outputs always do."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    types = graph.types()
    split = split_host(graph, types)
    host_in, chip, host_out = list(split.before), list(split.chip), list(split.after)
    if not chip:
        raise LavaBackendError("the graph has no on-chip (integer stream) node to run on Lava")
    inside = set(host_in)
    for name in chip:
        _check_chip_node(graph, types, name, inside)
    chip_set = set(chip)
    sources = list(dict.fromkeys(s for n in chip for s in graph.nodes[n].inputs if s in inside))
    for s in sources:
        if types[s].time != "stream":
            _fail(graph, s, f"the chip reads a static host value {types[s]}; stream it with a Repeat node")
    sinks = list(dict.fromkeys(s for n in host_out for s in graph.nodes[n].inputs if s in chip_set))
    recorded, exposed_host = _exposed(graph, chip, sinks, expose)
    exposed_host = [n for n in exposed_host if n in inside]  # (host outputs always come back)
    stock: dict[str, str] = {}
    converging: tuple[str, ...] = ()
    levels: dict[str, tuple[str, ...]] = {}
    if granularity == "per_op":  # Loihi's form: biases in the neurons, what no one reads of the synapses changed
        read = {*recorded, *exposed_host}
        graph = _relayed_sums_as_synapses(graph)
        graph, chip, levels = split_level_neurons(graph, chip)  # (before the moves: its LIFs take biases too)
        graph, chip = split_synapse_finishes(move_synapse_biases(graph, keep=read), chip, keep=read, batch=batch)
        graph, converging = converge_sums(graph, keep=read)
        graph, chip, levels = merge_level_neurons(graph, chip, levels, keep=read, batch=batch)
        converging += tuple(q for q in levels if q in graph.nodes and q not in converging)  # its LIFs' spikes
        chip = list(chip)
        groups = [(n,) for n in chip]
        stock = stock_processes(graph, chip, batch)
    else:
        groups = fused_groups(graph, chip, whole=granularity == "fused_model")
    return LavaPlan(graph=graph, granularity=granularity, batch=batch, host_in=tuple(host_in), chip=tuple(chip),
                    host_out=tuple(host_out), sources=tuple(sources), sinks=tuple(sinks), recorded=tuple(recorded),
                    groups=tuple(groups), stock=stock, exposed_host=tuple(exposed_host),
                    converging=converging, executed_by=levels)


def _relayed_sums_as_synapses(graph: Graph) -> Graph:
    """``graph`` with each sum of relayed partial sums (``BlockSum``) as the synapse of its weight-1 connections
    (:meth:`~snncompile.ir.ops.BlockSum.as_synapse`, the same values), so that Lava's own synapse processes run
    it and its bias moves as any synapse's (the relays themselves run on Lava's ``GradedVec``)."""
    sums = [n for n, node in graph.nodes.items() if isinstance(node.op, BlockSum)]
    if not sums:
        return graph
    types = graph.types()
    nodes = dict(graph.nodes)
    for n in sums:
        (relay,) = graph.nodes[n].inputs
        nodes[n] = Node(graph.op(n).as_synapse(types[relay].shape), (relay,))
    return dataclasses.replace(graph, nodes=nodes)


# -- building the Lava network (in the process that runs it) -------------------------------------------------------

@dataclass
class LavaNetwork:
    """The built processes: ``anchor`` runs them all (one connected component); ``read(steps)`` returns each
    recorded node's stream ``[steps, B, *shape]`` (int64) from the extractors, after the run."""

    anchor: object
    processes: list
    readers: list = field(default_factory=list)  # (extractor, decode(list of step arrays) -> {name: array})

    def read(self, steps: int) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for extractor, decode in self.readers:
            out.update(decode([extractor.receive() for _ in range(steps)]))
        return out


def build_network(plan: LavaPlan, sources: dict[str, np.ndarray]) -> LavaNetwork:
    """Lava processes for ``plan`` fed with the host streams ``sources`` (``[steps, B, *shape]`` integers)."""
    if plan.granularity == "per_op":
        return _build_per_op(plan, sources)
    return _build_fused(plan, sources)


def _build_per_op(plan: LavaPlan, sources: dict[str, np.ndarray]) -> LavaNetwork:
    graph, batch, steps = plan.graph, plan.batch, plan.steps
    types = graph.types()
    shape = {n: tuple(types[n].shape) for n in graph.nodes}
    procs, out_ports = [], {}
    for s in plan.sources:
        data = np.moveaxis(np.asarray(sources[s]), 0, -1)  # [B, *shape, steps]
        src = RingBuffer(data=to_lava(data, shape[s]).astype(np.int32))
        procs.append(src)
        out_ports[s] = [src.s_out]
    members = {*plan.chip, *plan.converging}  # (a new converging sum beside an adder is no node of the chip's)
    for name in (n for n in graph.topo_order() if n in members):
        op, inputs = graph.op(name), graph.nodes[name].inputs
        if name in plan.converging:  # no Process: its producers connect to each reader's port, which sums them
            out_ports[name] = [p for s in inputs for p in out_ports[s]]
            if op.bias is not None:  # and its constant term's source
                bias_procs, bias_ports = build_bias_source(op, shape[name], batch, steps, name)
                procs += bias_procs
                out_ports[name] += bias_ports
            continue
        kind = plan.stock.get(name)
        if kind:
            proc, in_ports, out_port = build_stock(kind, op, shape[inputs[0]], shape[name], types[inputs[0]], batch,
                                                   name, steps)
        else:
            ports = inputs if op.ARITY == 2 else inputs[:1]  # an IntAdd's inputs arrive summed on one port
            kernel = PortKernel(stepper(op, steps), [shape[s] for s in ports], shape[name], batch)
            if op.ARITY == 2:
                proc = BinaryNode(kernel=kernel, in_shapes=tuple(lava_shape(shape[s], batch) for s in inputs),
                                  out_shape=lava_shape(shape[name], batch), name=name)
                in_ports = [proc.in0, proc.in1]
            else:
                proc = UnaryNode(kernel=kernel, in_shape=lava_shape(shape[inputs[0]], batch),
                                 out_shape=lava_shape(shape[name], batch), name=name)
                in_ports = [proc.in0] * len(inputs)  # IntAdd: Lava sums the producers on one port
            out_port = proc.out
        for src, port in zip(inputs, in_ports):
            for p in out_ports[src]:
                _connect(p, port)
        procs.append(proc)
        out_ports[name] = [out_port]
    readers = []
    for name in plan.recorded:
        ex = Extractor(shape=lava_shape(shape[name], batch), buffer_size=steps)
        for port in out_ports[name]:  # (a recorded quantiser: its LIFs' spikes, summed by the port)
            _connect(port, ex.in_port)
        procs.append(ex)
        readers.append((ex, lambda arrays, n=name: {n: np.stack(
            [from_lava(np.rint(a).astype(np.int64), shape[n], batch) for a in arrays])}))
    return LavaNetwork(anchor=procs[0], processes=procs, readers=readers)


def _connect(out_port, in_port) -> None:
    """``out_port`` -> ``in_port``, reshaped where one is flat (a ``Sparse`` process's ports; C order on both)."""
    (out_port if out_port.shape == in_port.shape else out_port.reshape(in_port.shape)).connect(in_port)


def _slots(names: Iterable[str], shape: dict[str, tuple[int, ...]], batch: int) -> dict[str, Slot]:
    """Consecutive slots of one flat vector for the values ``names`` (each ``[B, *shape]``)."""
    slots, end = {}, 0
    for name in dict.fromkeys(names):
        slots[name] = Slot(end, shape[name], batch)
        end = slots[name].end
    return slots


def bus_layouts(plan: LavaPlan, shape: dict[str, tuple[int, ...]]) -> dict[tuple[str, int], dict[str, Slot]]:
    """The bus layout of each Process's ``("in", q)`` and ``("out", p)`` port (``p = -1``: the host's
    RingBuffer): value -> slot. A connection joins a sender's out-port to a reader's in-port, and Lava sums
    what arrives at one in-port, so ports joined by connections (directly or through other ports) share one
    layout, in which every value their senders send has its own slot; ports not so joined are vectors of
    their own length (a block's in-port holds its neighbour's values, not the host's image: every bus as
    long as all crossing values together made a message of 5 M values per Process and step on ImageNet)."""
    graph = plan.graph
    owner = {n: i for i, g in enumerate(plan.groups) for n in g} | {s: -1 for s in plan.sources}
    sent: dict[int, dict[str, None]] = {}  # sender -> the values it sends (to any reader), in order
    joined: dict[tuple[str, int], tuple[str, int]] = {}  # union-find of joined ports: port -> a port joined to it

    def root(port: tuple[str, int]) -> tuple[str, int]:
        while joined.get(port, port) != port:
            port = joined[port]
        return port

    for q, group in enumerate(plan.groups):
        members = set(group)
        for s in (s for n in group for s in graph.nodes[n].inputs if s not in members):
            sent.setdefault(owner[s], {})[s] = None
            joined[root(("out", owner[s]))] = root(("in", q))
    carried: dict[tuple[str, int], list[str]] = {}
    for p, values in sent.items():
        carried.setdefault(root(("out", p)), []).extend(values)
    layouts = {r: _slots(values, shape, plan.batch) for r, values in carried.items()}
    ports = {("out", p) for p in sent} | {("in", q) for q in range(len(plan.groups)) if root(("in", q)) in layouts}
    return {port: layouts[root(port)] for port in ports}


def _size(layout: dict[str, Slot]) -> int:
    """The length of a vector holding ``layout``'s slots: at least 1 (a Lava port has a non-empty shape)."""
    return max((s.end for s in layout.values()), default=0) or 1


def _build_fused(plan: LavaPlan, sources: dict[str, np.ndarray]) -> LavaNetwork:
    graph, batch, steps = plan.graph, plan.batch, plan.steps
    types = graph.types()
    shape = {n: tuple(types[n].shape) for n in graph.nodes}
    owner = {n: i for i, g in enumerate(plan.groups) for n in g}
    buses = bus_layouts(plan, shape)
    host = buses.get(("out", -1), {})
    data = np.zeros((_size(host), steps), dtype=np.int32)
    for s in plan.sources:
        data[host[s].offset:host[s].end] = np.asarray(sources[s]).reshape(steps, -1).T
    source = RingBuffer(data=data)
    rec = _slots(plan.recorded, shape, batch)  # every recorded value's slot in the one record vector
    rec_size = _size(rec)
    extractor = Extractor(shape=(rec_size,), buffer_size=steps)
    procs = [source]
    for i, group in enumerate(plan.groups):
        members = set(group)
        bus_in, bus_out = buses.get(("in", i), {}), buses.get(("out", i), {})
        imports = {s: bus_in[s] for n in group for s in graph.nodes[n].inputs if s not in members}
        exports = {n: bus_out[n] for n in group if n in bus_out}
        nodes = [(n, stepper(graph.op(n), steps, fast=True), graph.nodes[n].inputs) for n in group]
        kernel = FusedKernel(nodes, imports, exports, {n: rec[n] for n in group if n in rec}, _size(bus_out),
                             rec_size)
        proc = FusedNodes(kernel=kernel, in_size=_size(bus_in), out_size=_size(bus_out), rec_size=rec_size,
                          name=f"fused{i}:{group[0]}")
        for p in sorted({owner.get(s, -1) for s in imports}):
            (source.s_out if p < 0 else procs[1 + p].bus_out).connect(proc.bus_in)
        if kernel.records:
            proc.rec_out.connect(extractor.in_port)  # Lava sums the Processes' (disjoint) record vectors
        procs.append(proc)
    procs.append(extractor)
    readers = [(extractor, _decoder(rec, steps))]
    return LavaNetwork(anchor=source, processes=procs, readers=readers)


def _decoder(rec: dict[str, Slot], steps: int):
    def decode(arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
        stacked = np.rint(np.stack(arrays)).astype(np.int64)  # [steps, rec]
        return {n: stacked[:, s.offset:s.end].reshape(steps, s.batch, *s.shape) for n, s in rec.items()}
    return decode


def host_subgraph(graph: Graph, names: Iterable[str], outputs: Iterable[str], boundary: Iterable[str] = ()) -> Graph:
    """The graph of ``names`` (plus an ``Input`` standing for each ``boundary`` node) with ``outputs``."""
    types = graph.types()
    nodes = {b: Node(Input(shape=tuple(types[b].shape), dtype=types[b].dtype, time=types[b].time))
             for b in boundary}
    nodes.update({n: graph.nodes[n] for n in names})
    return Graph(nodes=nodes, outputs=tuple(outputs), time_steps=graph.time_steps)


__all__ = ["LavaBackendError", "LavaPlan", "LavaNetwork", "GRANULARITIES", "plan_lava", "build_network",
           "fused_groups", "bus_layouts", "host_subgraph"]

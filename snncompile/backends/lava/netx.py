"""Lowered, scheduled integer graph -> lava-dl netx HDF5: the part of a graph netx can express, exactly.

``plan_netx(graph)`` (here) finds the longest chain, from the graph's input, of layers netx 0.6.0 can build
(``lava.lib.dl.netx.hdf5.Network``), and gives every other node with the reason it is not exported;
``expressible_chain(graph)`` returns just ``(nodes, problems)``; a block's weights and bias, or why they
cannot be written exactly, come from :mod:`.netx_weights`. ``write_netx(graph, path)`` (:mod:`.netx_hdf5`)
writes that chain as netx HDF5 (the layout slayer writes and ``netx.utils.NetDict`` reads, spec
lava_loihi.md §5.3). ``run_netx(path, frames)`` (:mod:`.netx_run`) loads the file with ``netx.hdf5.Network``
and runs it in Lava's ``fixed_pt`` simulator, one fresh runtime per sample, in an isolated Lava session under
a timeout (:mod:`.session`: nothing of it outlives the call). h5py is the only dependency of planning and
writing; Lava is imported by ``run_netx`` alone.

What netx expresses (``Network._create``): an ``input`` layer, then blocks ``Dense``/``Conv`` synapse ->
``CUBA`` neuron (Lava ``LIF``), with ``flatten`` between them. ``pool``, ``average``, ``concat``, ``convT``
and ``unpool`` raise ``NotImplementedError``; there is no standalone neuron, shift, add or delay layer. A netx
layer here is therefore::

    [SumPool2d] [Flatten] IntDense|IntConv2d -> LoihiLIF

- the synapse (``delay=1``: a scheduled graph; Lava's Dense and Conv deliver on the next step) is written
  with the exact effective weights it computes with: ``weight << weight_exp`` (a negative ``weight_exp``
  only where it divides every weight exactly: netx picks a Dense's exponent itself, from the weights,
  and Lava's fixed Conv ignores exponents). A Dense's weights must come out of netx's
  ``optimize_weight_bits`` and Lava's clip and truncation unchanged (:func:`netx_dense_weights` mirrors
  both; in Lava ``a = (w·2^k · s) >> k``, exactly ``w·s``); a Conv's are used as they are (no clip in
  Lava's fixed Conv) and must be Loihi weights (-256..255). The sums must not wrap: not in the IR's
  ``out_bits``, not in Lava (int32 Dense, 24-bit Conv), for any input of the input's type;
- a ``SumPool2d`` in front of the synapse is folded into it (netx has no pool): pool then conv is one conv
  with kernel ``(K-1)·D·s + k``, stride ``S·s``, padding ``P·s + p``, exactly, where every zero the conv pads
  onto the pooled map lies over zero padding of the unpooled one (``k <= s + p`` and the pool covers the
  whole map); pool, flatten then dense is one dense on the unpooled map;
- the synapse's bias must be zero. In the IR it arrives with the data (``bias_start``); netx's only bias
  is the neuron's, ``bias_mant << 6`` added to ``v`` from the first step on: it would charge the neuron
  during the pipeline's leading empty steps;
- the ``LoihiLIF`` (its only consumer) maps to netx ``CUBA``: ``iDecay = current_decay``, ``vDecay =
  voltage_decay``, ``vThMant = vth`` (netx builds Lava ``LIF(du=iDecay-1, dv=vDecay, vth=vThMant)``, and
  Lava's ``ds_offset=1`` makes ``du + 1`` the decay, as in the IR); its own bias ``bias_mant << bias_exp``
  is written as the netx ``bias`` mantissa ``b`` with ``b << 6`` equal to it (a multiple of 64, ``b`` signed
  13-bit).

The chain starts at the network input: an integer or spike stream ``Input``, or, for real-valued inputs,
the integer stream the host computes (a ``Quantize`` of event frames, a ``Repeat`` of a quantised image):
that node's values are what ``run_netx`` feeds (``input_message_bits``: 0 for spikes, else the integer
width, so Lava's synapses take graded payloads). Where the input drives a ``LoihiLIF`` directly (its only
reader, no bias: a transformer stem's first neuron), that neuron is netx's ``Input`` block (an ``input`` layer
with a ``neuron``), whose Lava ``LIF`` ``run_netx`` feeds on its ``a_in``, graded values as they are. The
chain stops at the first node that cannot continue it, and at a fan-out (netx networks are one chain).
Everything else is reported by name: attention (no netx layer multiplies two spike streams), ``IntAdd``
residuals, ``IntShift``, ``TokenSum``, ``Delay``, ``MaxPool2d``, ternary neurons, host-side
``Quantize``/``Repeat``, float nodes. Each op type declares its netx mapping
(``BACKENDS.netx``: input, output, synapse, neuron, fold) or the reason it has none, which is the reason given.

Alignment (exact, no shift): Lava step ``t`` (1-based) is IR timestep ``t - 1``. The source RingBuffer
sends the IR input's frame ``t - 1`` at Lava step ``t``; each Dense/Conv adds Lava's one-step buffer, which
is the IR synapse's ``delay=1`` set by ``schedule``, so exported layer ``k`` (0-based) first sees the input at
its scheduled latency ``k + 1`` in both, and the spikes a layer emits at Lava step ``t`` (its extractor's
``t``-th value) equal its ``LoihiLIF`` node's value at IR timestep ``t - 1``, for all ``graph.time_steps``
steps, leading zeros included. A neuron with a bias restarts when its data arrive (``reset_at``, its latency
``k + 1``): netx's own mechanism does that, ``Network(reset_interval=steps + 1, reset_offset=1)`` giving
layer ``k`` Lava's ``LIFReset`` with ``reset_offset = k + 2`` (netx adds 1 for Lava's 1-based steps and 1 per
layer); it restarts the unbiased layers too, which changes nothing where nothing arrived before. So a layer is
refused where its neuron does not restart and its input may carry something before its data arrive: spikes a
restarting neuron upstream fires before its restart (its bias alone, or what reached it early), or the values of
a feed inside the graph.

A chain inside the graph. ``plan_netx(graph, feed=name)`` starts the chain at the integer stream ``name``
instead of at the input (a neuron's spikes in the middle of a transformer: an MLP after its input neuron),
the reference run's values of that node being the netx input, every step of them; layer ``k`` then sees its
data at the feed's latency ``+ k + 1`` and restarts then: the file records that offset
(``snncompile.reset_offset``) and ``run_netx`` builds ``Network(reset_offset=...)`` from it. The
zoo models' synapses carry a bias that starts with their data; the Lava ``per_op`` plan's graph
(:func:`~.synapse_biases.move_synapse_biases`) has it in the neurons, as netx holds it, so it is that graph
(``LavaPlan.graph``, ``tests/test_netx.py``) whose stem and MLP chains are exported.
"""

from dataclasses import dataclass
from typing import Mapping

import numpy as np

# absolute imports: Lava's compiler also executes this file on its own, as a sibling of the backend's Process
# definitions, when it looks for ProcessModels (spec lava_loihi.md §1.4); it must import cleanly that way
from snncompile.backends.lava.netx_weights import neuron_bias, synapse_weights
from snncompile.ir import Graph
from snncompile.ir.ops import Refused
from snncompile.ir.types import TensorType
from snncompile.ir.timing import latencies

__all__ = ["NetxExportError", "NetxLayer", "NetxPlan", "expressible_chain", "plan_netx"]

class NetxExportError(ValueError):
    """Nothing of the graph can be written as netx HDF5; the message lists every node with its reason."""

    def __init__(self, problems: Mapping[str, str], head: str = "nothing netx can express"):
        self.problems = dict(problems)
        lines = [f"node {n!r}: {r}" for n, r in self.problems.items()]
        super().__init__(f"{head} ({len(lines)} node(s) refused):\n  - " + "\n  - ".join(lines))


# -- the plan -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class NetxLayer:
    """One netx block: a synapse (with what was folded into it) and its CUBA neuron."""

    index: int                            # position among the netx blocks (``Network.layers``)
    kind: str                             # "dense" or "conv"
    synapse: str                          # the IntDense / IntConv2d node
    neuron: str                           # the LoihiLIF node
    folded: tuple[str, ...]               # SumPool2d / Flatten nodes written into this block
    flatten: bool                         # a netx 'flatten' layer precedes the block
    in_shape: tuple[int, ...]             # the block's input, IR layout ((C, H, W) or (N,))
    shape: tuple[int, ...]                # the neuron's shape, IR layout
    latency: int                          # the neuron's scheduled latency (its first input step)
    weight: np.ndarray                    # HDF5 weight: [out, in] or [C_out, C_in/g, kH, kW]
    geometry: Mapping[str, object]        # conv: stride, padding, dilation, groups (rows, columns); dense: {}
    neuron_params: Mapping[str, int]      # iDecay, vDecay, vThMant, refDelay
    bias: np.ndarray | None               # netx bias mantissa (IR layout), None when zero

    @property
    def nodes(self) -> tuple[str, ...]:
        return (*self.folded, self.synapse, self.neuron)


@dataclass(frozen=True, eq=False)
class NetxPlan:
    """What :func:`write_netx` writes: the feed, the layers, and why every other node is not exported."""

    feed: str | None                      # the node whose integer stream is the netx network's input
    input_shape: tuple[int, ...]          # its shape, IR layout
    input_message_bits: int               # 0: binary spikes; else graded payloads of this width
    layers: tuple[NetxLayer, ...]
    nodes: tuple[str, ...]                # the exported nodes (the netx network computes them), dependency order
    problems: Mapping[str, str]           # every other node -> why it is not exported
    steps: int                            # Lava steps to run: the graph's time_steps (data + latency)
    restart: bool = False                 # a layer's neuron restarts when its data arrive (LoihiLIF.reset_at)
    input_neuron: str | None = None       # a LoihiLIF the feed drives directly: netx's Input block
    input_params: Mapping[str, int] | None = None  # its CUBA parameters (iDecay, vDecay, vThMant, refDelay)

    @property
    def neurons(self) -> tuple[str, ...]:
        """The neuron of every netx block, in ``Network.layers`` order (the Input block's first)."""
        return ((self.input_neuron,) if self.input_neuron else ()) + tuple(layer.neuron for layer in self.layers)

    @property
    def reset_offset(self) -> int:
        """The step at which the first block restarts (its data's arrival); block ``k`` restarts ``k`` later."""
        return self.layers[0].latency - (1 if self.input_neuron else 0)

    def frames(self, values: Mapping[str, object]) -> np.ndarray:
        """The netx input from a ``run_graph(..., keep="all")`` result: ``[B, T, *input_shape]`` int64."""
        return _batch_major(values[self.feed], np.int64)

    def spikes(self, values: Mapping[str, object]) -> list[np.ndarray]:
        """Each exported layer's IR spikes from a ``run_graph(..., keep="all")`` result: ``[B, T, *shape]`` int8,
        what :func:`run_netx` returns for the same input (see the module docstring's alignment)."""
        return [_batch_major(values[n], np.int8) for n in self.neurons]


def _batch_major(value, dtype) -> np.ndarray:
    x = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
    if x.dtype.kind == "f" and not np.array_equal(x, np.round(x)):
        raise ValueError("expected integer values")
    return np.ascontiguousarray(np.swapaxes(x, 0, 1)).astype(dtype)


def expressible_chain(graph: Graph) -> tuple[list[str], dict[str, str]]:
    """``(nodes, problems)``: the nodes of the longest chain from the input that netx can express
    (dependency order; the integer ``Input`` and ``Output`` nodes reading an exported neuron included), and
    every other node with the reason it is not exported. See :func:`plan_netx`."""
    plan = plan_netx(graph)
    return list(plan.nodes), dict(plan.problems)


def plan_netx(graph: Graph, *, feed: str | None = None, max_layers: int | None = None) -> NetxPlan:
    """The netx export of ``graph`` (a lowered, scheduled integer graph): see the module docstring.
    ``feed``: start the chain at this integer stream inside the graph (its values, from the reference run,
    become the netx input) instead of at the graph's input; ``max_layers``: stop after that many layers (the
    rest is reported as not exported)."""
    types = graph.types()
    chain_reasons: dict[str, str] = {}
    nodes: list[str] = []
    layers: list[NetxLayer] = []
    feed = _find_feed(graph, types, chain_reasons) if feed is None else _inner_feed(graph, types, feed)
    latency = latencies(graph)
    end = input_neuron = None
    if feed is not None:
        if graph.op(feed).type_name() == "Input":
            nodes.append(feed)
        cur = feed
        early = latency[feed] > 0  # what a node inside the graph sends before its data arrive is not known here
        input_neuron = _input_neuron(graph, types, feed, latency, early)
        if input_neuron:
            nodes.append(input_neuron)
            cur = input_neuron
            early = early and bool(graph.op(input_neuron).reset_at)  # it may fire from them before its restart
        while True:
            consumers = graph.consumers(cur)
            readers = [c for c in consumers if graph.op(c).type_name() == "Output"]
            rest = [c for c in consumers if c not in readers]
            if layers or input_neuron:
                nodes += readers
            else:
                for c in readers:
                    chain_reasons[c] = (f"reads the netx network's input {cur!r}, which the host holds: nothing "
                                        "to export")
            if not rest:
                break
            if len(rest) > 1:
                for c in rest:
                    chain_reasons[c] = (f"fan-out: {cur!r} feeds {len(rest)} nodes {rest}; a netx network is a single "
                                        f"chain, so the export ends at {cur!r}")
                break
            if max_layers is not None and len(layers) >= max_layers:
                chain_reasons[rest[0]] = f"not exported: the export was limited to max_layers={max_layers}"
                break
            layer = _layer_at(graph, types, cur, rest[0], len(layers) + bool(input_neuron), latency, chain_reasons,
                              early)
            if layer is None:
                break
            layers.append(layer)
            nodes += layer.nodes
            cur = layer.neuron
            lif = graph.op(cur)
            early = bool(lif.reset_at) and (early or lif.fires_before_restart(types[cur].shape))  # else it sent nothing
        end = layers[-1].neuron if layers else input_neuron
    exported = set(nodes)
    stops = [n for n in chain_reasons if n in graph.nodes and not graph.op(n).type_name() == "Input"
             and n != feed and n not in _host_side(graph, feed)]
    where = f"ends at {end!r}" if end else "is empty"
    if stops:
        where += f" (it stops at {', '.join(map(repr, stops))})"
    problems = {}
    for n in graph.topo_order():
        if n in exported:
            continue
        problems[n] = (chain_reasons.get(n) or _own_problem(graph, types, n)
                       or f"not on the exported chain, which {where}: netx writes one feed-forward chain of "
                          "synapse -> CUBA-neuron layers from the input")
    for n in _host_side(graph, feed) - {feed}:
        problems[n] = problems[n] if n in chain_reasons else f"upstream of the netx network's input {feed!r}"
    in_type = types[feed] if feed is not None else None
    return NetxPlan(feed=feed, input_shape=tuple(in_type.shape) if in_type else (),
                    input_message_bits=_message_bits(in_type) if in_type else 0, layers=tuple(layers),
                    nodes=tuple(nodes), problems=problems, steps=graph.time_steps,
                    restart=any(graph.op(n).reset_at for n in [input_neuron, *(L.neuron for L in layers)] if n),
                    input_neuron=input_neuron, input_params=_cuba(graph.op(input_neuron)) if input_neuron else None)


def _cuba(lif) -> dict[str, int]:
    """netx's CUBA parameters of a LoihiLIF (see the module docstring)."""
    return {"iDecay": int(lif.current_decay), "vDecay": int(lif.voltage_decay), "vThMant": int(lif.vth), "refDelay": 1}


def _input_neuron(graph: Graph, types, feed: str, latency, early: bool) -> str | None:
    """The LoihiLIF that ``feed`` drives directly, as its only reader, where netx's Input block computes it
    exactly: a CUBA neuron without bias (the block has none), whose ``a_in`` ``run_netx`` feeds, restarting with
    its data or receiving nothing earlier. None where there is none."""
    consumers = [c for c in graph.consumers(feed) if graph.op(c).type_name() != "Output"]
    if len(consumers) != 1 or feed in graph.outputs:
        return None
    lif = graph.op(consumers[0])
    if lif.BACKENDS.netx != "neuron" or neuron_bias(lif) != (None, None):
        return None
    if lif.reset_at not in (0, latency[consumers[0]]) or (not lif.reset_at and early):
        return None
    return consumers[0]


def _inner_feed(graph: Graph, types, feed: str) -> str:
    if feed not in graph.nodes:
        raise ValueError(f"feed {feed!r} is not a node of the graph")
    if not _is_integer_stream(types[feed]):
        raise ValueError(f"feed {feed!r} carries {types[feed]}: a netx input is an integer or spike stream")
    return feed


def _host_side(graph: Graph, feed: str | None) -> set[str]:
    """The feed and everything upstream of it."""
    seen, todo = set(), [feed] if feed else []
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += list(graph.nodes[n].inputs)
    return seen


def _message_bits(t: TensorType) -> int:
    if t.dtype.kind == "spike":
        return 0
    if t.dtype.kind == "ternary":
        return 2  # -1 needs a graded payload (a binary one is cast to bool)
    return t.dtype.bits


def _is_integer_stream(t: TensorType) -> bool:
    return t.time == "stream" and t.dtype.kind in ("spike", "ternary", "int")


def _find_feed(graph: Graph, types, reasons: dict[str, str]) -> str | None:
    """The first integer stream on the single path from the graph's one input; host-side nodes before it
    (and it, unless an Input) get their reasons."""
    inputs = graph.inputs()
    if len(inputs) != 1:
        for n in inputs:
            reasons[n] = f"netx networks have one input; this graph has {len(inputs)} ({inputs})"
        return None
    name = inputs[0]
    host: list[str] = []
    while not _is_integer_stream(types[name]):
        consumers = graph.consumers(name)
        host.append(name)
        if len(consumers) != 1:
            reasons[name] = (f"host side, real-valued or static ({types[name]}); it feeds {len(consumers)} nodes, so "
                             "no single integer stream leaves the host to become the netx input")
            return None
        name = consumers[0]
    for n in host:
        reasons[n] = (f"host side ({types[n]}): netx networks take integer or spike streams; the host computes "
                      f"the netx input {name!r} from it")
    if name not in inputs:
        netx = graph.op(name).BACKENDS.netx
        reasons[name] = (f"{netx.reason if isinstance(netx, Refused) else 'host side'}; its integer stream "
                         f"{types[name]} is the netx network's input (run_netx feeds it through a RingBuffer)")
    return name


def _own_problem(graph: Graph, types, name: str) -> str | None:
    """Why node ``name`` can never be part of a netx export, judging the node alone (None: it could be): its op
    type's netx refusal, or what keeps this one node from its netx mapping (``BACKENDS.netx``)."""
    op = graph.op(name)
    netx = op.BACKENDS.netx
    if isinstance(netx, Refused):
        return netx.reason
    if netx == "synapse":
        src = graph.nodes[name].inputs[0]
        return synapse_weights(op, None, types[src])[2]
    if netx == "neuron":
        return neuron_bias(op)[1]
    if netx == "input":
        return None if _is_integer_stream(types[name]) else f"host side ({types[name]})"
    if netx == "output":
        return f"a graph output reading {graph.nodes[name].inputs[0]!r}, which is not exported"
    return None  # "fold": folded into the synapse after it (support.NETX_KEYS)


# -- one layer ------------------------------------------------------------------------------------------------------

def _single_consumer(graph: Graph, name: str) -> str | None:
    consumers = graph.consumers(name)
    if len(consumers) != 1 or name in graph.outputs:
        return None
    return consumers[0]


def _layer_at(graph: Graph, types, src: str, start: str, index: int, latency, reasons, early: bool
              ) -> NetxLayer | None:
    """The netx layer beginning at node ``start`` (fed by ``src``, which may send values before its data arrive
    where ``early``), or None with the reason in ``reasons``."""
    name, pool, flatten = start, None, None
    folded: list[str] = []
    for role in ("pool", "shape"):  # a sum pool, then a flatten, folded into the synapse after them
        op = graph.op(name)
        if op.BACKENDS.netx != "fold" or op.ROLE != role:
            continue
        nxt = _single_consumer(graph, name)
        if nxt is None:
            reasons[name] = (f"{op.type_name()} feeding {len(graph.consumers(name))} nodes or read as a graph "
                             "output: netx has no such layer, so it can only be folded into the one synapse after it")
            return None
        if op.delay:
            reasons[name] = f"delay={op.delay}: folded into the next synapse, it must act at once"
            return None
        folded.append(name)
        pool, flatten = (name, flatten) if role == "pool" else (pool, name)
        name = nxt
    kind = graph.op(name).type_name()
    if graph.op(name).BACKENDS.netx != "synapse":
        own = _own_problem(graph, types, name)
        if graph.op(name).BACKENDS.netx == "neuron" and not folded:
            reasons[name] = (f"a neuron fed by {src!r} directly, without a synapse: netx layers are synapse -> neuron "
                             "blocks (only a neuron the netx input drives, without a bias, can be netx's Input block)")
        elif folded and own is None:
            reasons[folded[0]] = (f"{graph.op(folded[0]).type_name()} must be followed by IntDense/IntConv2d to be "
                                  "folded")
        else:
            reasons[name] = own or f"{kind} cannot start a netx layer (synapse -> CUBA neuron)"
        return None
    syn = graph.op(name)
    neuron = _single_consumer(graph, name)
    if neuron is None or graph.op(neuron).BACKENDS.netx != "neuron":
        read = " and is a graph output" if name in graph.outputs else ""
        reasons[name] = (f"its output feeds {graph.consumers(name)}{read}: a netx block is a synapse whose only "
                         "consumer is a CUBA neuron (LoihiLIF)")
        return None
    in_type = types[src]
    if kind == "IntDense" and (pool is not None and flatten is None):
        reasons[name] = "IntDense after a SumPool2d without Flatten acts on the last axis of a map: no netx dense"
        return None
    if kind == "IntDense" and flatten is None and len(types[graph.nodes[name].inputs[0]].shape) != 1:
        reasons[name] = (f"IntDense on the last axis of a {list(types[graph.nodes[name].inputs[0]].shape)} map: "
                         "a netx dense takes a vector")
        return None
    weight, geometry, why = synapse_weights(syn, graph.op(pool) if pool else None, in_type)
    if why:
        reasons[pool if why.startswith("pool:") else name] = why.removeprefix("pool: ")
        return None
    lif = graph.op(neuron)
    bias, why = neuron_bias(lif)
    if why:
        reasons[neuron] = why
        return None
    if lif.reset_at not in (0, latency[neuron]):
        reasons[neuron] = (f"reset_at={lif.reset_at}: a netx network restarts each layer once, when its data "
                           f"arrive (step {latency[neuron]})")
        return None
    if not lif.reset_at and early:
        reasons[neuron] = (f"{src!r} may send values before its data arrive and this neuron does not restart when "
                           f"its own data do (step {latency[neuron]}), which netx would make it do")
        return None
    params = _cuba(lif)
    return NetxLayer(index=index, kind="dense" if kind == "IntDense" else "conv", synapse=name, neuron=neuron,
                     folded=tuple(folded), flatten=flatten is not None and len(in_type.shape) > 1,
                     in_shape=tuple(in_type.shape),
                     shape=tuple(types[neuron].shape), latency=latency[neuron], weight=weight, geometry=geometry,
                     neuron_params=params, bias=bias)

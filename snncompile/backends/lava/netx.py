"""Lowered, scheduled integer graph -> lava-dl netx HDF5: the part of a graph netx can express, exactly.

``plan_netx(graph)`` finds the longest chain, from the graph's input, of layers netx 0.6.0 can build
(``lava.lib.dl.netx.hdf5.Network``), and gives every other node with the reason it is not exported;
``expressible_chain(graph)`` returns just ``(nodes, problems)``. ``write_netx(graph, path)`` writes that
chain as netx HDF5 (the layout slayer writes and ``netx.utils.NetDict`` reads, spec lava_loihi.md §5.3).
``run_netx(path, frames)`` loads the file with ``netx.hdf5.Network`` and runs it in Lava's ``fixed_pt``
simulator, one fresh runtime per sample, in an isolated Lava session under a timeout (:mod:`.session`:
nothing of it outlives the call). h5py is the only dependency of planning and writing; Lava is imported by
``run_netx`` alone.

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
width, so Lava's synapses take graded payloads). It stops at the first node that cannot continue it, and
at a fan-out (netx networks are one chain). Everything else is reported by name: attention (no netx layer
multiplies two spike streams), ``IntAdd`` residuals, ``IntShift``, ``TokenSum``, ``Delay``, ``MaxPool2d``,
ternary neurons, host-side ``Quantize``/``Repeat``, float nodes.

Alignment (exact, no shift): Lava step ``t`` (1-based) is IR timestep ``t - 1``. The source RingBuffer
sends the IR input's frame ``t - 1`` at Lava step ``t``; each Dense/Conv adds Lava's one-step buffer, which
is the IR synapse's ``delay=1`` set by ``schedule``, so exported layer ``k`` (0-based) first sees the input at
its scheduled latency ``k + 1`` in both, and the spikes a layer emits at Lava step ``t`` (its extractor's
``t``-th value) equal its ``LoihiLIF`` node's value at IR timestep ``t - 1``, for all ``graph.time_steps``
steps, leading zeros included.
"""

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

# absolute imports: Lava's compiler also executes this file on its own, as a sibling of the backend's Process
# definitions, when it looks for ProcessModels (spec lava_loihi.md §1.4); it must import cleanly that way
from snncompile.backends.lava.session import (LavaBackendError, LavaTimeoutError, fixed_pt_config, import_lava,
                                              run_isolated, stopped)
from snncompile.ir import Graph
from snncompile.ir.ops.loihi import BIAS_MANT_RANGE
from snncompile.ir.types import TensorType
from snncompile.ir.timing import latencies

__all__ = ["NetxExport", "NetxExportError", "NetxLayer", "NetxPlan", "NetxRun", "NetxRunError", "expressible_chain",
           "netx_dense_weights", "plan_netx", "run_netx", "write_netx"]

NETX_BIAS_EXP = 6                        # netx builds every CUBA neuron with bias_exp=6
LAVA_CONV_BITS = 24                      # Lava's fixed Conv wraps its sums to 24 bits
LOIHI_WEIGHT_RANGE = (-256, 255)         # 8-bit magnitude with a sign
_SYNAPSES = ("IntDense", "IntConv2d")
_ATTR = "snncompile."

# -- why a node is not exported -------------------------------------------------------------------------------------
_PRODUCT = ("attention: netx has no layer that multiplies two spike streams (the Q·K / K·V products); lava-dl has "
            "no attention block")
_FLOAT = ("a float node: netx layers are integer Loihi blocks; lower the graph (lower_to_loihi) and export the "
          "integer graph")
_KIND_REASONS = {
    **{k: _PRODUCT for k in ("KVOuterAccumulate", "QMAccumulate", "SpikeScores", "ScoreValueAccumulate",
                             "SpikeColumnSum", "SpikeMask", "BlockLinearAttention", "Mul")},
    "ScoreLUT": _PRODUCT + " (nor a lookup table)", "LUTAttention": _PRODUCT + " (nor a lookup table)",
    "IntAdd": ("an integer sum of streams (a residual connection): a netx network is a single chain of layers; its "
               "'concat' and 'average' layers raise NotImplementedError in lava-dl 0.6.0"),
    "IntShift": "a power-of-two scaling between layers: netx has no such layer (a netx block is synapse -> neuron)",
    "TokenSum": ("a sum over tokens: netx has no reduction layer ('average' raises NotImplementedError in "
                 "lava-dl 0.6.0)"),
    "Delay": ("a delay line aligning converging paths: netx has no standalone delay layer (only per-synapse delays "
              "inside a Dense)"),
    "MaxPool2d": ("max pooling: netx's 'pool' raises NotImplementedError in lava-dl 0.6.0, and a max is not linear, "
                  "so it cannot be folded into the next synapse"),
    "LoihiTernaryLIF": "a ternary neuron: netx CUBA neurons are Lava LIFs, with binary spikes",
    "TimeMean": "a mean over time (the host-side readout): no netx layer",
    "Quantize": "quantisation of real values runs on the host: netx has no quantiser",
    "Repeat": "host-side repetition of a static value: no netx layer",
    "TemporalWindow": _FLOAT,
}
_FLOAT_KINDS = ("Conv2d", "Linear", "BatchNorm", "LIF", "TernaryLIF", "CubaLIF", "LI", "Add", "ReLU", "Scale",
                "TokenMean")


class NetxExportError(ValueError):
    """Nothing of the graph can be written as netx HDF5; the message lists every node with its reason."""

    def __init__(self, problems: Mapping[str, str], head: str = "nothing netx can express"):
        self.problems = dict(problems)
        lines = [f"node {n!r}: {r}" for n, r in self.problems.items()]
        super().__init__(f"{head} ({len(lines)} node(s) refused):\n  - " + "\n  - ".join(lines))


class NetxRunError(RuntimeError):
    """The Lava run of a netx network failed or timed out (its processes were killed); its ``__cause__`` is
    the error of :func:`snncompile.backends.lava.session.run_isolated`. ``worker_pid``: the worker process,
    whose process group held every Lava process of the run; ``segments``: the shared-memory files those
    processes held when they were killed (unlinked since)."""

    def __init__(self, message: str, worker_pid: int | None = None, segments: frozenset[str] = frozenset()):
        self.worker_pid = worker_pid
        self.segments = segments
        super().__init__(message)


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

    def frames(self, values: Mapping[str, object]) -> np.ndarray:
        """The netx input from a ``run_graph(..., keep="all")`` result: ``[B, T, *input_shape]`` int64."""
        return _batch_major(values[self.feed], np.int64)

    def spikes(self, values: Mapping[str, object]) -> list[np.ndarray]:
        """Each exported layer's IR spikes from a ``run_graph(..., keep="all")`` result: ``[B, T, *shape]`` int8,
        what :func:`run_netx` returns for the same input (see the module docstring's alignment)."""
        return [_batch_major(values[layer.neuron], np.int8) for layer in self.layers]


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


def plan_netx(graph: Graph, *, max_layers: int | None = None) -> NetxPlan:
    """The netx export of ``graph`` (a lowered, scheduled integer graph): see the module docstring.
    ``max_layers``: stop after that many layers (the rest is reported as not exported)."""
    types = graph.types()
    chain_reasons: dict[str, str] = {}
    nodes: list[str] = []
    layers: list[NetxLayer] = []
    feed = _find_feed(graph, types, chain_reasons)
    latency = latencies(graph)
    end = None
    if feed is not None:
        if graph.op(feed).type_name() == "Input":
            nodes.append(feed)
        cur = feed
        while True:
            consumers = graph.consumers(cur)
            readers = [c for c in consumers if graph.op(c).type_name() == "Output"]
            rest = [c for c in consumers if c not in readers]
            if layers:
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
            layer = _layer_at(graph, types, cur, rest[0], len(layers), latency, chain_reasons)
            if layer is None:
                break
            layers.append(layer)
            nodes += layer.nodes
            cur = layer.neuron
        end = layers[-1].neuron if layers else None
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
    in_type = types[feed] if feed is not None else None
    return NetxPlan(feed=feed, input_shape=tuple(in_type.shape) if in_type else (),
                    input_message_bits=_message_bits(in_type) if in_type else 0, layers=tuple(layers),
                    nodes=tuple(nodes), problems=problems, steps=graph.time_steps)


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
        kind = graph.op(name).type_name()
        reasons[name] = (f"{_KIND_REASONS.get(kind, 'host side')}; its integer stream {types[name]} is the netx "
                         "network's input (run_netx feeds it through a RingBuffer)")
    return name


def _own_problem(graph: Graph, types, name: str) -> str | None:
    """Why node ``name`` can never be part of a netx export, judging the node alone (None: it could be)."""
    op = graph.op(name)
    kind = op.type_name()
    if kind in _KIND_REASONS:
        return _KIND_REASONS[kind]
    if kind in _FLOAT_KINDS:
        return _FLOAT
    if kind in _SYNAPSES:
        src = graph.nodes[name].inputs[0]
        return _synapse_problem(op, None, types[src])[2]
    if kind == "LoihiLIF":
        return _neuron_problem(op)[1]
    if kind == "Input":
        return None if _is_integer_stream(types[name]) else f"host side ({types[name]})"
    if kind == "Output":
        return f"a graph output reading {graph.nodes[name].inputs[0]!r}, which is not exported"
    if kind in ("SumPool2d", "Flatten"):
        return None
    return f"no netx equivalent for {kind}"


# -- one layer ------------------------------------------------------------------------------------------------------

def _single_consumer(graph: Graph, name: str) -> str | None:
    consumers = graph.consumers(name)
    if len(consumers) != 1 or name in graph.outputs:
        return None
    return consumers[0]


def _layer_at(graph: Graph, types, src: str, start: str, index: int, latency, reasons) -> NetxLayer | None:
    """The netx layer beginning at node ``start`` (fed by ``src``), or None with the reason in ``reasons``."""
    name, pool, flatten = start, None, None
    folded: list[str] = []
    for kind_wanted in ("SumPool2d", "Flatten"):
        if graph.op(name).type_name() != kind_wanted:
            continue
        nxt = _single_consumer(graph, name)
        if nxt is None:
            reasons[name] = (f"{kind_wanted} feeding {len(graph.consumers(name))} nodes or read as a graph output: "
                             "netx has no such layer, so it can only be folded into the one synapse after it")
            return None
        if graph.op(name).delay:
            reasons[name] = f"delay={graph.op(name).delay}: folded into the next synapse, it must act at once"
            return None
        folded.append(name)
        pool, flatten = (name, flatten) if kind_wanted == "SumPool2d" else (pool, name)
        name = nxt
    kind = graph.op(name).type_name()
    if kind not in _SYNAPSES:
        own = _own_problem(graph, types, name)
        if kind == "LoihiLIF" and not folded:
            reasons[name] = (f"a neuron fed by {src!r} directly, without a synapse: netx layers are synapse -> neuron "
                             "blocks (netx's Input block drives its neuron only through its bias)")
        elif folded and own is None:
            reasons[folded[0]] = (f"{graph.op(folded[0]).type_name()} must be followed by IntDense/IntConv2d to be "
                                  "folded")
        else:
            reasons[name] = own or f"{kind} cannot start a netx layer (synapse -> CUBA neuron)"
        return None
    syn = graph.op(name)
    neuron = _single_consumer(graph, name)
    if neuron is None or graph.op(neuron).type_name() != "LoihiLIF":
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
    weight, geometry, why = _synapse_problem(syn, graph.op(pool) if pool else None, in_type)
    if why:
        reasons[pool if why.startswith("pool:") else name] = why.removeprefix("pool: ")
        return None
    lif = graph.op(neuron)
    bias, why = _neuron_problem(lif)
    if why:
        reasons[neuron] = why
        return None
    params = {"iDecay": int(lif.current_decay), "vDecay": int(lif.voltage_decay), "vThMant": int(lif.vth),
              "refDelay": 1}
    return NetxLayer(index=index, kind="dense" if kind == "IntDense" else "conv", synapse=name, neuron=neuron,
                     folded=tuple(folded), flatten=flatten is not None and len(in_type.shape) > 1,
                     in_shape=tuple(in_type.shape),
                     shape=tuple(types[neuron].shape), latency=latency[neuron], weight=weight, geometry=geometry,
                     neuron_params=params, bias=bias)


def _input_range(t: TensorType) -> tuple[int, int]:
    lo, hi = int(t.dtype.min), int(t.dtype.max)
    return min(lo, 0), max(hi, 0)  # zero padding and absent terms add 0


def _sum_range(weight: np.ndarray, lo: int, hi: int) -> tuple[int, int]:
    """Interval of every output's sum ``w · x`` over inputs in ``[lo, hi]`` (``lo <= 0 <= hi``)."""
    w = weight.astype(np.int64).reshape(weight.shape[0], -1)
    pos, neg = np.where(w > 0, w, 0).sum(1), np.where(w < 0, w, 0).sum(1)
    return int((pos * lo + neg * hi).min(initial=0)), int((pos * hi + neg * lo).max(initial=0))


def _synapse_problem(syn, pool, in_type: TensorType) -> tuple[np.ndarray | None, dict, str | None]:
    """``(hdf5 weight, geometry, None)`` for synapse ``syn`` (after the folded ``pool``, fed values of
    ``in_type``), or ``(None, {}, reason)``; a reason about the pool starts with ``pool:``."""
    kind = syn.type_name()
    if syn.delay != 1:
        return None, {}, (f"delay={syn.delay}: Lava's Dense and Conv deliver one step later (delay=1); export a "
                          "scheduled graph (lower_to_loihi ends with the schedule pass)")
    if syn.bias is not None and np.any(syn.bias):
        return None, {}, (f"a synapse bias ({int(syn.bias.min())}..{int(syn.bias.max())}) arrives with the data, "
                          f"from step bias_start + delay = {syn.bias_start + syn.delay} on; netx's only bias is the "
                          f"neuron's (bias_mant << {NETX_BIAS_EXP} added to v from the first step), which would charge "
                          "the neuron during the pipeline's leading empty steps: not exact")
    w = np.asarray(syn.weight).astype(np.int64)
    e = int(syn.weight_exp)
    if e >= 0:
        w = w << e
    elif np.any(w % (1 << -e)):
        return None, {}, (f"weight_exp={e} floors the accumulated sum (acc >> {-e}): netx picks a Dense's weight "
                          "exponent itself from the weights (always dividing exactly) and Lava's fixed Conv ignores "
                          "exponents, so only weights divisible by 2^-weight_exp can carry it")
    else:
        w = w >> -e
    geometry: dict = {}
    if kind == "IntConv2d":
        geometry = dict(stride=tuple(syn.stride), padding=tuple(syn.padding), dilation=tuple(syn.dilation),
                        groups=int(syn.groups))
        if pool is not None:
            folded = _fold_pool_conv(pool, w, geometry, in_type)
            if isinstance(folded, str):
                return None, {}, "pool: " + folded
            w, geometry = folded
        lo_w, hi_w = LOIHI_WEIGHT_RANGE
        if w.min(initial=0) < lo_w or w.max(initial=0) > hi_w:
            return None, {}, (f"conv weights {int(w.min())}..{int(w.max())} (after weight_exp={e}"
                              f"{' and the folded pool' if pool is not None else ''}) leave Loihi's {lo_w}..{hi_w}")
    elif pool is not None:
        w = _fold_pool_dense(pool, in_type, w)
    lo, hi = _input_range(in_type)
    s_lo, s_hi = _sum_range(w, lo, hi)
    half = 1 << (syn.out_bits - 1)
    if s_lo < -half or s_hi > half - 1:
        return None, {}, (f"its sums can reach {s_lo}..{s_hi}, beyond out_bits={syn.out_bits} ({syn.overflow} in the "
                          "IR, unclipped int32 in Lava's Dense, a 24-bit wrap in its Conv): not exact")
    if kind == "IntConv2d":
        if max(-s_lo, s_hi) >= 1 << (LAVA_CONV_BITS - 1):
            return None, {}, f"its sums can reach {s_lo}..{s_hi}: Lava's fixed Conv wraps them to 24 bits"
        return w, geometry, None
    try:
        w_lava, _, weight_exp = netx_dense_weights(w)
    except ValueError as err:
        return None, {}, str(err)
    if max(-s_lo, s_hi) << max(-weight_exp, 0) >= 1 << 31:
        return None, {}, (f"its sums, scaled by netx's 2^{-weight_exp}, can reach beyond int32 in Lava's Dense")
    return w, geometry, None


def _neuron_problem(lif) -> tuple[np.ndarray | None, str | None]:
    """``(netx bias mantissa or None, None)`` for a LoihiLIF, or ``(None, reason)``."""
    if lif.delay:
        return None, f"delay={lif.delay}: a Lava LIF answers on the step its input arrives"
    b = np.asarray(lif.bias_mant, dtype=np.int64) << int(lif.bias_exp)
    if not np.any(b):
        return None, None
    lo, hi = BIAS_MANT_RANGE
    if np.any(b % (1 << NETX_BIAS_EXP)) or (b >> NETX_BIAS_EXP).min() < lo or (b >> NETX_BIAS_EXP).max() > hi:
        return None, (f"bias bias_mant << bias_exp = {int(b.min())}..{int(b.max())}: netx writes a neuron bias as a "
                      f"13-bit mantissa with bias_exp={NETX_BIAS_EXP}, so it must be a multiple of 64 within "
                      f"{lo << NETX_BIAS_EXP}..{hi << NETX_BIAS_EXP}")
    return b >> NETX_BIAS_EXP, None


# -- folding a sum pool into the next synapse -----------------------------------------------------------------------

def _pool_windows(pool, size: int, axis: int) -> tuple[int, int, int, int]:
    k, s, p = pool.kernel[axis], pool.stride[axis], pool.padding[axis]
    return k, s, p, (size + 2 * p - k) // s + 1


def _fold_pool_conv(pool, w: np.ndarray, geo: dict, in_type: TensorType):
    """``(kernel, geometry)`` of conv(pool(x)) as one conv of x, or a reason. Per axis, with pool ``(k, s, p)``
    and conv ``(K, S, P, D)``: ``K' = (K-1)·D·s + k``, ``S' = S·s``, ``P' = P·s + p``, ``D' = 1``,
    ``w'[.., i·D·s + a] += w[.., i]``. Exact where the conv's zero padding of the pooled map covers only zero
    padding of x: the windows at pooled index -1 lie below 0 (``k <= s + p``) and those past the last window
    at or above the map's end (the pool covers every row)."""
    shape = in_type.shape  # (C, H, W) of the unpooled map
    kernel, stride, padding = [], [], []
    for axis in range(2):
        k, s, p, n_pooled = _pool_windows(pool, shape[1 + axis], axis)
        K, S, P, D = w.shape[2 + axis], geo["stride"][axis], geo["padding"][axis], geo["dilation"][axis]
        if P and (k > s + p or n_pooled * s - p < shape[1 + axis]):
            return (f"the conv after it pads the pooled map with zeros that would cover real pixels once folded (pool "
                    f"kernel {pool.kernel}, stride {pool.stride}, padding {pool.padding} on a {list(shape)} map): netx "
                    "has no pool layer")
        kernel.append((K - 1) * D * s + k)
        stride.append(S * s)
        padding.append(P * s + p)
        size_pooled_conv = (n_pooled + 2 * P - D * (K - 1) - 1) // S + 1
        size_folded = (shape[1 + axis] + 2 * padding[-1] - kernel[-1]) // stride[-1] + 1
        if size_folded != size_pooled_conv:
            return (f"folded into the conv after it, the map size changes ({size_pooled_conv} -> {size_folded} on axis "
                    f"{axis}): netx has no pool layer")
    out = np.zeros((*w.shape[:2], *kernel), dtype=np.int64)
    (k0, k1), (s0, s1) = pool.kernel, pool.stride
    d0, d1 = geo["dilation"][0] * s0, geo["dilation"][1] * s1
    for a in range(k0):
        for b in range(k1):
            out[:, :, a:a + d0 * (w.shape[2] - 1) + 1:d0, b:b + d1 * (w.shape[3] - 1) + 1:d1] += w
    return out, dict(geo, stride=tuple(stride), padding=tuple(padding), dilation=(1, 1))


def _fold_pool_dense(pool, in_type: TensorType, w: np.ndarray) -> np.ndarray:
    """The weights of dense(flatten(pool(x))) as one dense of flatten(x): every pixel gets the sum of the
    weights of the windows that cover it (none: 0)."""
    C, H, W = in_type.shape
    k0, s0, p0, h = _pool_windows(pool, H, 0)
    k1, s1, p1, wd = _pool_windows(pool, W, 1)
    w4 = w.reshape(w.shape[0], C, h, wd)
    out = np.zeros((w.shape[0], C, H, W), dtype=np.int64)
    for a in range(k0):
        rows = np.arange(h) * s0 - p0 + a
        r_ok = (rows >= 0) & (rows < H)
        for b in range(k1):
            cols = np.arange(wd) * s1 - p1 + b
            c_ok = (cols >= 0) & (cols < W)
            out[:, :, rows[r_ok][:, None], cols[c_ok][None, :]] += w4[:, :, np.flatnonzero(r_ok)[:, None],
                                                                      np.flatnonzero(c_ok)[None, :]]
    return out.reshape(w.shape[0], -1)


# -- what netx and Lava's Dense make of a weight matrix -------------------------------------------------------------

def netx_dense_weights(w: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``(weights, num_weight_bits, weight_exp)`` Lava's Dense computes with for integer HDF5 dense weights
    ``w``; raises ``ValueError`` unless that is exact: ``weights == w << -weight_exp``, so that Lava's
    ``(weights · s) >> -weight_exp`` is ``w · s``.

    Mirrors ``netx.utils.optimize_weight_bits`` (scale the weights up to the largest power of two that keeps
    them in range; ``num_weight_bits`` from the scale and the trailing zero bits; it clips, with a printed
    warning, beyond [-256, 254]) and Lava's ``PyDenseModelBitAcc`` (netx does not pass its sign mode: Lava
    re-derives it with ``determine_sign_mode``, then ``clip_weights(8)`` and ``truncate_weights``)."""
    w = np.asarray(w).astype(np.int64)
    mx, mn = int(w.max()), int(w.min())
    if (mx > 254 and mn < 0) or (mn < -256 and mx > 0):
        raise ValueError(f"dense weights {mn}..{mx}: netx's optimize_weight_bits clips mixed-sign weights to -256..254")
    if mx == 0 and mn == 0:
        raise ValueError("all dense weights are zero: netx's optimize_weight_bits divides by the largest weight")
    if mx < 0:
        signed, scale = 0, -256 / mn
    elif mn >= 0:
        signed, scale = 0, 255 / mx
    else:
        signed, scale = 1, min(127 / mx if mx else math.inf, -128 / mn)
    scale_bits = int(np.floor(np.log2(scale))) + signed
    if scale_bits < 0:
        raise ValueError(f"dense weights {mn}..{mx}: beyond Loihi's 8-bit range, netx would shift them right "
                         "by a negative count")
    n = 8
    while n > 0 and np.any(w % (1 << n)):
        n -= 1
    n -= signed
    num_weight_bits, weight_exp = 8 - scale_bits - n, -scale_bits
    scaled = w << scale_bits
    # Lava: sign mode from the scaled weights, clip to 8 bits, drop the low bits
    inhibitory = scaled.min() < 0 and scaled.max() <= 0
    mixed = scaled.min() < 0 < scaled.max()
    sign = -1 if inhibitory else 1
    magnitude = np.clip(sign * scaled, -256 if mixed else 0, 255)
    k = 8 - num_weight_bits + int(mixed)
    if not 0 <= k <= 31:
        raise ValueError(f"dense weights {mn}..{mx}: netx gives Lava num_weight_bits={num_weight_bits}, a truncation "
                         f"shift of {k} bits (numpy's shift by that count is undefined)")
    lava = sign * ((magnitude >> k) << k)
    if not np.array_equal(lava, scaled):
        bad = np.flatnonzero(lava.ravel() != scaled.ravel())
        raise ValueError(f"dense weights {mn}..{mx}: netx and Lava's Dense change {len(bad)} of them (e.g. "
                         f"{int(w.ravel()[bad[0]])} -> {int(lava.ravel()[bad[0]]) >> scale_bits})")
    return lava.astype(np.int32), num_weight_bits, weight_exp


# -- writing --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class NetxExport:
    """What :func:`write_netx` wrote: the file, the plan it followed, and each HDF5 layer group's contents
    (``layer/<i>``, in order: the input, then an optional 'flatten' and the block of every layer)."""

    path: Path
    plan: NetxPlan
    groups: tuple[dict, ...]


def write_netx(graph: Graph, path: str | Path, *, max_layers: int | None = None) -> NetxExport:
    """Write the netx-expressible chain of ``graph`` (:func:`plan_netx`) to the HDF5 file ``path``, loadable
    with ``lava.lib.dl.netx.hdf5.Network(net_config=path)``; returns what was written. Raises
    :class:`NetxExportError` (every node with its reason) when netx can express no layer.

    Layout as slayer writes it (spec lava_loihi.md §5.3): ``layer/0`` the input (``type 'input'``, ``shape``
    in CHW order, no neuron: netx only takes the input shape from it), then per layer an optional
    ``flatten`` and a ``dense`` (``shape [out]``, ``inFeatures``, ``outFeatures``, ``weight [out, in]``) or
    ``conv`` (``shape [C, H, W]``, ``inChannels``, ``outChannels``, ``kernelSize``, ``stride``, ``padding``,
    ``dilation`` as (rows, columns), ``groups``, ``weight [C_out, C_in/g, kH, kW]``: netx flips and transposes
    it into Lava's layout) with ``neuron`` (``type 'CUBA'``, ``iDecay``, ``vDecay``, ``vThMant``, ``refDelay``,
    ``gradedSpike``) and an optional ``bias`` (the neuron's mantissa; per channel or per neuron in WHC order).
    Weights are int32. Root attributes ``snncompile.*`` record the feed, the input message bits, the steps
    and the neuron node of every block (netx ignores them).
    """
    import h5py

    plan = plan_netx(graph, max_layers=max_layers)
    if not plan.layers:
        raise NetxExportError(plan.problems)
    path = Path(path)
    groups: list[dict] = [{"type": "input", "shape": np.array(plan.input_shape, dtype=np.int64)}]
    for layer in plan.layers:
        if layer.flatten:
            groups.append({"type": "flatten", "shape": np.array([int(np.prod(layer.in_shape))], dtype=np.int64)})
        neuron = {"type": "CUBA", **{k: np.int64(v) for k, v in layer.neuron_params.items()},
                  "gradedSpike": np.bool_(False)}
        group: dict = {"type": layer.kind, "shape": np.array(layer.shape, dtype=np.int64)}
        if layer.kind == "dense":
            group.update(inFeatures=np.int64(layer.weight.shape[1]), outFeatures=np.int64(layer.weight.shape[0]))
        else:
            g = layer.geometry
            group.update(inChannels=np.int64(layer.weight.shape[1] * g["groups"]),
                         outChannels=np.int64(layer.weight.shape[0]),
                         kernelSize=np.array(layer.weight.shape[2:], dtype=np.int64),
                         stride=np.array(g["stride"], dtype=np.int64), padding=np.array(g["padding"], dtype=np.int64),
                         dilation=np.array(g["dilation"], dtype=np.int64), groups=np.int64(g["groups"]))
        group["weight"] = layer.weight.astype(np.int32)
        group["neuron"] = neuron
        if layer.bias is not None:
            bias = layer.bias
            if bias.ndim == 3:  # per neuron: netx wants the neuron's (W, H, C) layout
                bias = bias.transpose(2, 1, 0)
            elif bias.ndim == 0 and len(layer.shape) == 3:  # one value: write it per channel
                bias = np.full(layer.shape[0], int(bias))
            elif bias.ndim == 0:
                bias = np.full(layer.shape, int(bias))
            group["bias"] = np.ascontiguousarray(bias).astype(np.int32)
        groups.append(group)
    with h5py.File(path, "w") as f:
        root = f.create_group("layer")
        for i, group in enumerate(groups):
            _write_group(root.create_group(str(i)), group, top=True)
        f.attrs[_ATTR + "feed"] = plan.feed
        f.attrs[_ATTR + "input_message_bits"] = plan.input_message_bits
        f.attrs[_ATTR + "steps"] = plan.steps
        f.attrs[_ATTR + "neurons"] = json.dumps([layer.neuron for layer in plan.layers])
    return NetxExport(path=path, plan=plan, groups=tuple(groups))


def _write_group(h, contents: dict, top: bool) -> None:
    for key, value in contents.items():
        if isinstance(value, dict):
            _write_group(h.create_group(key), value, top=False)
        elif key == "type":  # slayer: layer type (1,) |S10, neuron type a scalar string
            h.create_dataset(key, data=np.array([value.encode()], dtype="S10") if top else np.bytes_(value))
        else:
            h.create_dataset(key, data=value)


# -- running in Lava ------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class NetxRun:
    """Spikes of every netx block, ``[B, T, *shape]`` int8 in IR layout, and how long things took (seconds)."""

    spikes: tuple[np.ndarray, ...]
    neurons: tuple[str, ...]              # the IR neuron of each block (from the file's attributes)
    timings: Mapping[str, object]
    worker_pid: int                       # the child process (and process group) the runs happened in
    stragglers: int = 0                   # processes of that group still alive after the run (then killed)


def run_netx(path: str | Path, frames: np.ndarray, *, input_message_bits: int | None = None,
             timeout: float = 600.0, preload: bool = True) -> NetxRun:
    """Run the netx network in ``path`` on each sample of ``frames`` (``[B, T, *input shape]`` integers, IR
    layout) in Lava's ``fixed_pt`` simulator for ``T`` steps; return every block's spikes.

    Per sample: ``netx.hdf5.Network(net_config=path, input_message_bits=...)`` (default: the file's
    ``snncompile.input_message_bits``), a ``lava.proc.io.source.RingBuffer`` of the frames (transposed to
    Lava's (W, H, C) or flattened in C, H, W order, as the network's input port wants) into ``net.inp``, an
    ``Extractor`` on every block's output, ``net.run(RunSteps(T), Loihi2SimCfg(select_tag="fixed_pt"))``, then
    ``net.stop()``: a fresh runtime per sample, so every sample starts from zero state.

    All of it happens in :func:`snncompile.backends.lava.session.run_isolated`: a forked child process that
    leads its own process group; the call waits at most ``timeout`` seconds, then kills the whole group
    (Lava's processes included), unlinks the shared-memory segments they held, and raises
    :class:`NetxRunError` (as for a failed run or a dead worker; the session's error is its ``__cause__``).
    Any process of the group still alive 2 s after the worker answered is killed the same way
    (``NetxRun.stragglers`` counts them). ``preload``: import netx in this process first (once, with
    :func:`~snncompile.backends.lava.session.import_lava`, which leaves this process's multiprocessing start
    method as it was; later children fork with it loaded).
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim < 3 or frames.dtype.kind not in "iub":
        raise ValueError(f"frames must be an integer array [B, T, *shape], got {frames.dtype} {frames.shape}")
    attrs = _file_attrs(path)
    bits = int(attrs.get(_ATTR + "input_message_bits", 0)) if input_message_bits is None else int(input_message_bits)
    neurons = tuple(json.loads(attrs.get(_ATTR + "neurons", "[]")))
    t0 = time.perf_counter()
    if preload:
        import_lava("lava.lib.dl.netx.hdf5")
    timings: dict = {"preload_s": time.perf_counter() - t0}
    cleanup: dict = {}
    t0 = time.perf_counter()
    try:
        (spikes, child_timings), pgid = run_isolated(
            _run_samples, str(path), frames, bits, timeout=timeout, what=f"the Lava run of {path}", grace=2.0,
            cleanup=cleanup)
    except LavaTimeoutError as e:
        raise NetxRunError(f"the Lava run of {path} did not finish within its timeout of {timeout:g} s; its "
                           "processes were killed", cleanup.get("pgid", e.pgid), cleanup.get("segments", frozenset())
                           ) from e
    except LavaBackendError as e:  # failed in the child (its traceback included), or the child died
        raise NetxRunError(str(e), cleanup.get("pgid"), cleanup.get("segments", frozenset())) from e
    timings.update(child_timings, total_s=time.perf_counter() - t0)
    return NetxRun(spikes=tuple(spikes), neurons=neurons, timings=timings, worker_pid=pgid,
                   stragglers=cleanup["stragglers"])


def _file_attrs(path: Path) -> dict:
    import h5py

    with h5py.File(path, "r") as f:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}


def _to_lava(x: np.ndarray, port_shape: tuple[int, ...]) -> np.ndarray:
    """IR frames ``[T, *shape]`` -> a RingBuffer's ``(*port_shape, T)`` int32."""
    T = x.shape[0]
    if len(port_shape) == 3 and x.ndim == 4:
        data = x.transpose(3, 2, 1, 0)  # (T, C, H, W) -> (W, H, C, T)
    else:
        data = x.reshape(T, -1).T  # row-major (C, H, W) flatten, as netx's flatten
    if tuple(data.shape[:-1]) != tuple(port_shape):
        raise ValueError(f"input frames {x.shape[1:]} do not fit the network's input port {port_shape}")
    return np.ascontiguousarray(data).astype(np.int32)


def _from_lava(y: np.ndarray) -> np.ndarray:
    """Extracted ``(T, *port_shape)`` -> IR layout int8 (``(W, H, C)`` -> ``(C, H, W)``)."""
    if y.ndim == 4:
        y = y.transpose(0, 3, 2, 1)
    return np.ascontiguousarray(y).astype(np.int8)


def _run_samples(path: str, frames: np.ndarray, bits: int) -> tuple[list[np.ndarray], dict]:
    """In the child (:func:`~snncompile.backends.lava.session.run_isolated`): one Lava run per sample; returns
    ``(spikes, timings)``."""
    t0 = time.perf_counter()
    from lava.lib.dl.netx.hdf5 import Network
    from lava.magma.core.run_conditions import RunSteps
    from lava.proc.io.extractor import Extractor
    from lava.proc.io.source import RingBuffer

    timings: dict = {"import_s": time.perf_counter() - t0, "samples": []}
    per_layer: list[list[np.ndarray]] | None = None
    steps = frames.shape[1]
    for sample in frames:
        t = {"build_s": 0.0}
        t0 = time.perf_counter()
        net = Network(net_config=path, input_message_bits=bits)
        source = RingBuffer(data=_to_lava(sample, tuple(net.inp.shape)))
        source.s_out.connect(net.inp)
        extractors = []
        for layer in net.layers:
            ex = Extractor(shape=tuple(layer.out.shape), buffer_size=steps)
            layer.out.connect(ex.in_port)
            extractors.append(ex)
        t["build_s"] = time.perf_counter() - t0
        with stopped(net, t, "stop_s"):
            t0 = time.perf_counter()
            net.run(condition=RunSteps(num_steps=steps), run_cfg=fixed_pt_config())
            t["run_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            got = [_from_lava(np.stack([ex.receive() for _ in range(steps)])) for ex in extractors]
            t["read_s"] = time.perf_counter() - t0
        t["lava_processes"] = 2 * len(net.layers) + 1 + len(extractors)  # synapse + neuron, source, extractors
        timings["samples"].append(t)
        if per_layer is None:
            per_layer = [[] for _ in got]
        for acc, y in zip(per_layer, got):
            acc.append(y)
    return [np.stack(ys) for ys in (per_layer or [])], timings

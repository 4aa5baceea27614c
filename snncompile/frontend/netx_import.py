"""lava-dl netx HDF5 networks into the IR: the integer graph that ``lava.lib.dl.netx.hdf5.Network`` runs.

A netx file (the layout slayer writes: ``layer/<i>/...``, spec lava_loihi.md §5.3) already holds Loihi's
fixed-point parameters, so :func:`read_netx` quantises nothing: every block becomes the IR's Loihi ops with the
numbers netx hands Lava, and the graph reproduces ``Network(net_config=path)`` run in
``Loihi2SimCfg(select_tag="fixed_pt")`` exactly, every layer, step for step (``tests/test_netx_import.py`` runs
both on Intel's trained networks in ``shared/data/netx/``).

Blocks and what they become (node names: ``layer<i>`` is block ``i``'s output, its synapse ``layer<i>.synapse``)::

    input    with a neuron: Input (int16 stream, [C, H, W] or [N]) -> LoihiLIF. netx's Input block has no
             synapse: its graded input goes straight into the neuron's current (Lava: ``neuron.a_in``), as in
             Intel's PilotNet tutorial; the file's ``weight``/``bias`` are the host's image transform
             ``int(2 * weight * x - weight + bias)`` for pixels ``x`` in [0, 1] (kept in the history entry,
             not applied). Without a neuron: only the input's shape, a spike Input.
    conv     IntConv2d (the file's [C_out, C_in/groups, kH, kW] kernel as PyTorch's cross-correlation;
             stride, padding, dilation as (rows, columns); weight_exp 0, 24-bit wrap: Lava's fixed Conv) -> LoihiLIF
    flatten  Flatten of the [C, H, W] map before the next dense (netx's ``transpose([2, 1, 0]).flatten()`` of
             Lava's (W, H, C) port: the same C, H, W row-major order)
    dense    IntDense with the weights and exponent netx and Lava's Dense compute with
             (:func:`~snncompile.ir.ops.int_synapse.netx_lava_dense`; int32 wrap) -> LoihiLIF

Every synapse has ``delay=1`` (Lava's Dense and Conv deliver on the next step); neurons answer on the step
their input arrives. A CUBA/LOIHI neuron is Lava's ``LIF`` as netx builds it: ``current_decay = iDecay``
(Lava ``du = iDecay - 1``), ``voltage_decay = vDecay``, ``vth = vThMant``, ``bias_mant`` the block's ``bias``
(per channel broadcast over the map), ``bias_exp = 6``. ``refDelay`` and ``gradedSpike`` do not change Lava's
fixed-point LIF, and are ignored as netx ignores them. Weights and biases are truncated to integers as netx's
``NetDict`` does (``astype(int)``).

Timing: the graph runs ``time_steps + L`` steps, ``L`` the synapses between the input and the last block (the
last block's latency), so that the last block sees every data step; a shorter feed is zero-padded. Biases
charge every neuron from step 0, as in Lava: the graph carries no :class:`~snncompile.ir.graph.Schedule`
(a scheduled graph's neurons restart when their data arrive), its latencies are its delays'
(:func:`~snncompile.ir.timing.latencies`), and the ``schedule`` pass refuses it (its delays are set). netx's
``Network(reset_interval, reset_offset)`` restarts block ``k``'s neurons (``k`` counting the blocks with a
neuron) at Lava step ``reset_offset + 1 + k`` of every interval; ``read_netx(reset_offset=o)`` gives one such
restart, at IR step ``o + k`` (``LoihiLIF.reset_at``): one sample of that streamed run, with an interval longer
than the graph's run. With ``reset_offset=0`` on a network whose first block is an input block, each block
restarts when its data arrive (its latency), as Intel pipelines PilotNet.

Refused, each with a :class:`NetxImportError` naming the file and the block: what netx itself cannot build
(``pool``, ``convT``, ``unpool``, ``average``, ``concat``) or what has no integer IR op yet (sigma-delta and
resonate-and-fire neurons, recurrent and complex dense layers, per-synapse ``delay``), a dense layer without
a neuron, and any array over :data:`MAX_ELEMENTS` or file over :data:`MAX_BLOCKS` blocks (read before the
memory is taken). The file is read with h5py: nothing in it is executed.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from ..ir import Graph, GraphError, HistoryEntry, Node
from ..ir.ops import Flatten, Input, IntConv2d, IntDense, LoihiLIF, Output
from ..ir.ops.int_synapse import netx_lava_dense
from ..ir.ops.loihi import STATE_BITS
from ..ir.types import SPIKE, int_type

MAX_BLOCKS = 1024            #: blocks (``layer/<i>``) in one file
MAX_ELEMENTS = 1 << 26       #: elements of one array (a weight: 256 MiB as float32)
DEFAULT_TIME_STEPS = 16      #: data steps where neither the caller nor the file (``simulation/tSample``) gives them
NETX_BIAS_EXP = 6            #: netx builds every CUBA neuron with ``bias_exp=6``
INPUT_BITS = 16              #: a Lava LIF's ``a_in`` (int16): the width of an input block's graded input
NEURON_TYPES = ("CUBA", "LOIHI")
NOT_IN_NETX = ("pool", "convT", "unpool", "average", "concat")  # netx.hdf5.Network raises NotImplementedError


class NetxImportError(ValueError):
    """A netx file cannot be imported; the message names the file, the block and why, on one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def _member(group, key: str, where: str):
    """``group[key]``, or ``None`` where it has no such member, refusing what would make h5py read another
    place or file: a soft or external link, a dataset whose data live outside the file (external or virtual)."""
    import h5py

    if key not in list(group):  # the member names, without resolving any link
        return None
    link = group.get(key, getlink=True)
    if not isinstance(link, h5py.HardLink):
        raise NetxImportError(f"{where}: '{key}' is a {type(link).__name__}: links are not followed")
    item = group[key]
    if isinstance(item, h5py.Dataset) and (item.is_virtual or item.external):
        raise NetxImportError(f"{where}: '{key}' keeps its data outside the file: not read")
    return item


def _group(group, key: str, where: str):
    """The subgroup ``group[key]`` (see :func:`_member`), or ``None`` where absent."""
    item = _member(group, key, where)
    if item is not None and not hasattr(item, "keys"):
        raise NetxImportError(f"{where}: '{key}' must be a group")
    return item


class _Block:
    """One ``layer/<i>`` group, read with size checks; ``fail`` raises naming the file and the block."""

    def __init__(self, path: Path, index: int, group):
        self.path, self.index, self.group = path, index, group
        self.where = f"{path}: layer/{index}"

    def fail(self, message: str):
        raise NetxImportError(f"{self.where} ({self.kind()}): {message}")

    def kind(self) -> str:
        item = _member(self.group, "type", self.where)
        return "?" if item is None else _text(item)

    def has(self, key: str) -> bool:
        return _member(self.group, key, self.where) is not None

    def array(self, key: str, group=None) -> np.ndarray:
        """A numeric dataset, its size checked before it is read; integers as netx reads them (truncated)."""
        item = _member(self.group if group is None else group, key, self.where)
        if item is None:
            self.fail(f"'{key}' is missing")
        if not hasattr(item, "dtype") or item.dtype.kind not in "biuf":
            self.fail(f"'{key}' is not a numeric array")
        if math.prod(item.shape) > MAX_ELEMENTS:
            self.fail(f"'{key}' has {math.prod(item.shape)} elements, more than the {MAX_ELEMENTS} accepted")
        value = np.asarray(item[()])
        if value.dtype.kind == "f":
            if not np.isfinite(value).all() or np.abs(value).max(initial=0) >= 2 ** 31:
                self.fail(f"'{key}' holds NaN, infinite or out-of-int32 values")
            value = value.astype(np.int64)  # netx's NetDict: astype(int), truncating toward zero
        return value.astype(np.int64)

    def integer(self, key: str, group=None) -> int:
        value = self.array(key, group)
        if value.size != 1:
            self.fail(f"'{key}' must be one number, got shape {value.shape}")
        return int(value.reshape(-1)[0])

    def pair(self, key: str, default: int) -> tuple[int, int]:
        """A conv geometry entry as (rows, columns): a scalar for both, or the file's two values."""
        if not self.has(key):
            return default, default
        value = self.array(key).reshape(-1)
        if value.size not in (1, 2):
            self.fail(f"'{key}' must be one or two numbers, got {value.size}")
        return (int(value[0]), int(value[-1]))

    def shape(self) -> tuple[int, ...]:
        shape = tuple(int(s) for s in self.array("shape").reshape(-1))
        if not 1 <= len(shape) <= 3 or min(shape) < 1:
            self.fail(f"'shape' must be 1 to 3 positive sizes, got {list(shape)}")
        return shape

    def neuron(self, shape: tuple[int, ...], with_bias: bool) -> LoihiLIF:
        """The block's CUBA neuron as netx builds Lava's LIF (see the module docstring)."""
        group = _group(self.group, "neuron", self.where)
        if group is None:
            self.fail("no 'neuron' group: netx gives it a non-integrating default neuron that Loihi's 17-bit "
                      "threshold cannot hold")
        item = _member(group, "type", self.where)
        kind = "?" if item is None else _text(item)
        if kind not in NEURON_TYPES:
            self.fail(f"neuron type {kind!r}: only {' and '.join(NEURON_TYPES)} (Loihi's CUBA LIF) are imported; "
                      "sigma-delta and resonate-and-fire neurons have no integer IR op yet")
        bias = self._bias(shape) if with_bias and self.has("bias") else 0
        return LoihiLIF(current_decay=self.integer("iDecay", group), voltage_decay=self.integer("vDecay", group),
                        vth=self.integer("vThMant", group), bias_mant=bias, bias_exp=NETX_BIAS_EXP)

    def _bias(self, shape: tuple[int, ...]) -> int | np.ndarray:
        bias = self.array("bias").reshape(-1)
        if bias.size == 1:
            return int(bias[0])
        if bias.size != shape[0]:
            self.fail(f"'bias' has {bias.size} entries; netx takes one per channel ({shape[0]}) or one in all")
        return np.broadcast_to(bias.reshape(-1, *[1] * (len(shape) - 1)), shape).copy()


def _text(item) -> str:
    value = item[()]
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else b""
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


def read_netx(path: str | Path, *, time_steps: int | None = None, reset_offset: int | None = None) -> Graph:
    """The integer IR graph of the netx HDF5 network in ``path`` (see the module docstring), fed ``time_steps``
    data steps (default: the file's ``simulation/tSample``, else :data:`DEFAULT_TIME_STEPS`) and run until
    its last block has seen them all. ``reset_offset``: netx's, for one restart of every block (``None``: no
    restarts, netx's default). Its input node is ``input``, its output ``output`` (the last block's spikes).
    Raises :class:`NetxImportError` naming the file and the block for anything it cannot import."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "No such file", str(path))
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise NetxImportError(f"{path}: not an HDF5 file ({e})") from None
    with f:
        layers = _group(f, "layer", str(path))
        if layers is None:
            raise NetxImportError(f"{path}: no 'layer' group: not a netx network")
        if len(layers) > MAX_BLOCKS:
            raise NetxImportError(f"{path}: {len(layers)} blocks, more than the {MAX_BLOCKS} accepted")
        if sorted(layers.keys()) != sorted(str(i) for i in range(len(layers))) or not len(layers):
            raise NetxImportError(f"{path}: the 'layer' group must hold blocks '0' .. 'n-1', got "
                                  f"{sorted(layers.keys())[:8]}")
        steps = time_steps if time_steps is not None else _file_steps(f, path)
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise NetxImportError(f"{path}: time_steps must be an int >= 1, got {steps!r}")
        if reset_offset is not None and (not isinstance(reset_offset, int) or reset_offset < 0):
            raise NetxImportError(f"{path}: reset_offset must be an int >= 0 or None, got {reset_offset!r}")
        builder = _Chain(path, reset_offset)
        for i in range(len(layers)):
            block = _group(layers, str(i), str(path))
            builder.add(_Block(path, i, block))
        return builder.graph(steps)


def _file_steps(f, path: Path) -> int:
    simulation = _group(f, "simulation", str(path))
    if simulation is not None and _member(simulation, "tSample", f"{path}: simulation") is not None:
        return _Block(path, -1, simulation).integer("tSample")
    return DEFAULT_TIME_STEPS


class _Chain:
    """The graph built block by block: each block reads the previous one's output."""

    def __init__(self, path: Path, reset_offset: int | None):
        self.path, self.reset_offset = path, reset_offset
        self.nodes: dict[str, Node] = {}
        self.last: str | None = None
        self.shape: tuple[int, ...] | None = None  # the last output's per-step shape, [C, H, W] or [N]
        self.flatten_pending = False
        self.transform: dict[str, int] = {}
        self.neurons = 0  # blocks with a neuron so far: netx's layer index, which sets its reset step

    def add(self, block: _Block) -> None:
        kind = block.kind()
        if kind in NOT_IN_NETX:
            block.fail("lava-dl 0.6.0's netx cannot build this block either (NotImplementedError)")
        if block.has("delay"):
            block.fail("per-synapse delays (Lava's DelayDense) have no integer IR op yet")
        if self.last is None and kind != "input":
            self._input(block, None)
        if kind == "input":
            self._input(block, block.shape())
        elif kind == "flatten":
            if self.shape is None or len(self.shape) != 3:
                block.fail(f"netx flattens a [C, H, W] map, the block before gives {list(self.shape or ())}")
            self.flatten_pending = True
        elif kind == "conv":
            self._conv(block)
        elif kind == "dense":
            self._dense(block)
        else:
            block.fail(f"block type {kind!r} is not imported (only input, conv, flatten and dense are)")

    def _node(self, name: str, op, *inputs: str) -> str:
        self.nodes[name] = Node(op, inputs)
        return name

    def _input(self, block: _Block, shape: tuple[int, ...] | None) -> None:
        if self.last is not None:
            block.fail("an input block after the first block")
        if shape is None:  # the first block is a synapse: binary spikes arrive (netx's input_message_bits=0)
            if block.has("inFeatures") and block.kind() == "dense":
                shape = (block.integer("inFeatures"),)
            else:
                block.fail("the network's input shape is not given: the first block must be an input or a dense "
                           "layer with inFeatures")
            self.last, self.shape = self._node("input", Input(shape=shape, dtype=SPIKE)), shape
            return
        if not block.has("neuron"):  # only the input's shape (netx's input_shape)
            self.last, self.shape = self._node("input", Input(shape=shape, dtype=SPIKE)), shape
            return
        self.transform = {"input_weight": block.integer("weight") if block.has("weight") else 64,
                          "input_bias": block.integer("bias") if block.has("bias") else 0}
        x = self._node("input", Input(shape=shape, dtype=int_type(INPUT_BITS)))
        self.last = self._node(f"layer{block.index}", self._restarting(block.neuron(shape, with_bias=False)), x)
        self.shape = shape

    def _conv(self, block: _Block) -> None:
        if self.flatten_pending:
            block.fail("a conv after a flatten block (netx flattens only into a dense layer)")
        if len(self.shape) != 3:
            block.fail(f"a conv needs a [C, H, W] input, the block before gives {list(self.shape)}")
        weight = block.array("weight")
        if weight.ndim < 4 or any(s != 1 for s in weight.shape[4:]):
            block.fail(f"'weight' must be [C_out, C_in/groups, kH, kW], got shape {list(weight.shape)}")
        weight = weight.reshape(weight.shape[:4])
        bits = max(9, int(np.abs(weight).max(initial=0)).bit_length() + 1)  # Lava's Conv keeps them as they are
        synapse = IntConv2d(weight=weight, weight_bits=bits, stride=block.pair("stride", 1),
                            padding=block.pair("padding", 0), dilation=block.pair("dilation", 1),
                            groups=block.integer("groups") if block.has("groups") else 1,
                            out_bits=STATE_BITS, overflow="wrap", delay=1)
        self._layer(block, synapse, block.shape())

    def _dense(self, block: _Block) -> None:
        shape = block.shape()
        size = math.prod(shape)
        if len(self.shape) != 1 and not self.flatten_pending:
            block.fail(f"a dense layer after a {list(self.shape)} map needs a flatten block before it")
        if self.flatten_pending:
            self.last = self._node(f"layer{block.index - 1}", Flatten(), self.last)
            self.flatten_pending = False
        weight = block.array("weight")
        weight = weight.reshape(size, -1) if weight.ndim == 1 and weight.size % size == 0 else weight
        try:
            effective, _, exp = netx_lava_dense(weight)
        except ValueError as e:
            block.fail(str(e))
        synapse = IntDense(weight=effective, weight_exp=exp, out_bits=32, overflow="wrap", delay=1)
        self._layer(block, synapse, (size,))

    def _layer(self, block: _Block, synapse, shape: tuple[int, ...]) -> None:
        name = f"layer{block.index}"
        s = self._node(f"{name}.synapse", synapse, self.last)
        self.last, self.shape = self._node(name, self._restarting(block.neuron(shape, with_bias=True)), s), shape
        try:  # the block's shapes against what its synapse computes, as netx checks them
            inferred = Graph(self.nodes, (name,), 1).types()[name].shape
        except GraphError as e:
            block.fail("; ".join(e.problems))
        if tuple(inferred) != shape:
            block.fail(f"'shape' says {list(shape)}, the synapse computes {list(inferred)}")

    def _restarting(self, lif: LoihiLIF) -> LoihiLIF:
        """``lif`` restarting where netx's ``reset_offset`` restarts this block (the next with a neuron)."""
        k, self.neurons = self.neurons, self.neurons + 1
        return lif if self.reset_offset is None else dataclasses.replace(lif, reset_at=self.reset_offset + k)

    def graph(self, data_steps: int) -> Graph:
        if self.flatten_pending:
            raise NetxImportError(f"{self.path}: the last block is a flatten")
        self._node("output", Output(), self.last)
        depth = sum(node.op.delay for node in self.nodes.values())  # a chain: the last block's latency
        options = {"file": self.path.name, "data_steps": data_steps, "reset_offset": self.reset_offset,
                   **self.transform}
        graph = Graph(self.nodes, ("output",), data_steps + depth, (HistoryEntry("read_netx", options),))
        problems = graph.problems()
        if problems:
            raise NetxImportError(f"{self.path}: {'; '.join(problems)}")
        return graph


__all__ = ["read_netx", "NetxImportError", "MAX_BLOCKS", "MAX_ELEMENTS", "DEFAULT_TIME_STEPS"]

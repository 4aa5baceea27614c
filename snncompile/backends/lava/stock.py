"""The nodes Lava's own process models compute exactly (``per_op``), and those processes, batch-aware.

- ``LoihiLIF`` -> ``LIF``, or ``LIFReset`` where it restarts at ``reset_at`` (``reset_offset = reset_at + 1``, an
  interval past the run); ``LoihiTernaryLIF`` -> ``TernaryLIF`` (``du = current_decay - 1``, ``dv =
  voltage_decay``; elementwise, so the batch rides along in the shape).
- ``GradedRelay`` (a split synapse's partial sums sent on) -> ``GradedVec`` at ``vth = 0``, which sends its
  input as it is (``v * (|v| > 0)``, then ``v = 0``), as a Loihi 2 graded neuron.
- ``IntDense`` and ``IntConv2d`` without a bias, with delay 1, with weights Lava keeps as they are
  (``lava_effective_weights``, the sign mode passed explicitly) and a result the node's ``out_bits`` never
  wraps or saturates, proven from the values its input carries in the graph (``prove_ranges.analyse``):

  - ``IntConv2d`` -> ``Conv`` where ``weight_exp >= 0`` and most channel pairs of its kernel hold a weight
    (:func:`_pairs_mostly_filled`): Lava's fixed Conv neither shifts nor clips its
    weights, so the exponent rides in them (``w << weight_exp``, the same sums exactly); it wraps at 24 bits
    and keeps groups, padding, stride, dilation and the kernel size in an int8. The samples of a batch are
    channel groups (``groups * B``).
  - ``IntDense`` -> ``Dense`` with the node's ``weight_exp`` as its own (``PyDenseModelBitAcc`` shifts the
    int32 sum left, or arithmetically right: the IR's floor), the batch as the block-diagonal ``kron(I, W)``
    while that stays small (``MAX_KRON_ELEMENTS``).
  - Otherwise, where the node's connections are few enough (``MAX_SPARSE_CONNECTIONS``): ``Sparse``
    (``PySparseModelBitAcc``, the same int32 sum and shift as Dense), its matrix the node's linear map on the
    flattened Lava layout: a convolution with a negative ``weight_exp`` (a floor shift of each sum, which the
    Conv process has none of), or a dense layer whose batched matrix would be too large. Its ports are flat;
    the plan's connections reshape them (Lava's ``ReshapePort``).

  In every case the int32 sum before the shift must not overflow (proven).
- A converging sum's constant term (an ``IntAdd.bias`` that stays in the sum, :mod:`.converging_sums`) ->
  a *bias source*: a ``RingBuffer`` spiking (1) in the step before each step of the bias window, and per
  signed 8-bit digit of the bias one ``Dense`` from it, the digit its weight (:func:`build_bias_source`). Its
  messages converge with the sum's producers at each reader's port, as a Loihi bias neuron's synapses would.
"""
from __future__ import annotations

import math

import numpy as np
import snncompile.backends.lava.first_import  # noqa: F401 -- before Lava's first import (its docstring)
from lava.proc.conv.process import Conv
from lava.proc.dense.process import Dense
from lava.proc.graded.process import GradedVec
from lava.proc.io.source import RingBuffer
from lava.proc.lif.process import LIF, LIFReset, TernaryLIF
from lava.proc.sparse.process import Sparse
from lava.utils.weightutils import SignMode
from scipy.sparse import csr_matrix, kron as sparse_kron, identity

from snncompile.backends.lava.models import lava_shape, to_lava
from snncompile.backends.lava.synapse_biases import fits
from snncompile.ir import Graph
from snncompile.ir.interval import Interval, dot_range
from snncompile.ir.ops import GradedRelay, IntAdd, IntConv2d, IntDense, LoihiLIF, LoihiTernaryLIF
from snncompile.ir.ops.int_synapse import lava_effective_weights
from snncompile.ir.ops.loihi import bias_window
from snncompile.ir.types import TensorType
from snncompile.passes.prove_ranges import analyse

MAX_KRON_ELEMENTS = 1 << 22  # a batched stock Dense's block-diagonal weight matrix stays below this
MAX_SPARSE_CONNECTIONS = 1 << 22  # a stock Sparse's stored weights (all samples of the batch) stay below this
NEURONS = ("LIF", "LIFReset", "TernaryLIF")
STOCK_CLASSES = {"LIF": LIF, "LIFReset": LIFReset, "TernaryLIF": TernaryLIF, "GradedVec": GradedVec, "Dense": Dense,
                 "Conv": Conv, "Sparse": Sparse}  # the plan's names of Lava's own processes


def stock_processes(graph: Graph, chip, batch: int) -> dict[str, str]:
    """Of the ``chip`` nodes of ``graph``, those one of Lava's own processes computes exactly: node -> class."""
    types, carried = graph.types(), analyse(graph).carried
    out = {}
    for name in chip:
        srcs = graph.nodes[name].inputs
        if len(srcs) == 1:
            kind = stock_process(graph.op(name), types[srcs[0]], types[name], carried[srcs[0]], batch)
            if kind:
                out[name] = kind
    return out


def stock_process(op, in_type: TensorType, out_type: TensorType, in_range: Interval | None, batch: int) -> str | None:
    """The Lava process that computes ``op`` exactly (one of :data:`NEURONS`, ``"Dense"``, ``"Conv"``,
    ``"Sparse"``), or ``None`` where a custom process must (the module docstring). ``in_range``: the proven
    values of its input (``None``: its dtype's range)."""
    if isinstance(op, LoihiTernaryLIF):
        return "TernaryLIF"
    if isinstance(op, LoihiLIF):
        return "LIFReset" if op.reset_at else "LIF"
    if isinstance(op, GradedRelay):
        return "GradedVec"
    if not isinstance(op, (IntDense, IntConv2d)) or op.bias is not None or op.delay != 1 or op.weight.size == 0:
        return None
    x = in_range or Interval.of_dtype(in_type.dtype)
    r = op.value_range([x], [in_type], out_type)
    if not fits(r, op.out_bits):
        return None  # the node's own wrap or saturation could act: Lava's does not match it
    if isinstance(op, IntConv2d) and op.weight_exp >= 0 and _conv_fits(op, r, batch) and _pairs_mostly_filled(op):
        return "Conv"
    w = op.weight.astype(np.int64)
    if not fits(dot_range(w, x, tuple(range(1, w.ndim))), 32) or not np.array_equal(lava_effective_weights(w)[0], w):
        return None  # Lava's Dense and Sparse sum in int32 the weights they keep
    if isinstance(op, IntDense) and len(in_type.shape) < 3 and (batch * math.prod(in_type.shape[:-1])) ** 2 * \
            w.size <= MAX_KRON_ELEMENTS:
        return "Dense"
    positions = out_type.shape[1:] if isinstance(op, IntConv2d) else out_type.shape[:-1]
    connections = batch * math.prod(positions) * int(np.count_nonzero(w))  # (Sparse stores the non-zero weights)
    return "Sparse" if connections <= MAX_SPARSE_CONNECTIONS else None


def _pairs_mostly_filled(op: IntConv2d) -> bool:
    """Whether at least half of the kernel's (output, input) channel pairs hold a non-zero weight. Lava's Conv
    convolves every pair of a group, one at a time (scipy), so a kernel of mostly empty pairs (a relayed sum of
    a split synapse, :meth:`~snncompile.ir.ops.BlockSum.as_synapse`: one pair in ``blocks * C`` per output)
    runs on ``Sparse``, which stores only the non-zero weights."""
    pairs = np.abs(op.weight).reshape(*op.weight.shape[:2], -1).max(2, initial=0) != 0
    return 2 * int(pairs.sum()) >= pairs.size


def _conv_fits(op: IntConv2d, r: Interval, batch: int) -> bool:
    """Lava's Conv wraps at 24 bits and keeps its geometry and groups in an int8."""
    return (fits(r, 24) and fits(Interval(0, int(np.abs(op.weight).max(initial=0)) << op.weight_exp), 24)
            and op.groups * batch <= 127 and max(*op.padding, *op.stride, *op.dilation, *op.weight.shape[2:]) <= 127)


def build_stock(kind: str, op, in_shape, out_shape, in_type: TensorType, batch: int, name: str, steps: int):
    """One of Lava's own processes for ``op`` in a run of ``steps`` steps: (process, input ports, output port).
    A ``Sparse`` process's ports are flat (the caller reshapes what it connects)."""
    if kind in NEURONS:
        bias = op.bias_mant
        if isinstance(bias, np.ndarray):
            bias = to_lava(np.broadcast_to(bias, (batch, *out_shape)).astype(np.int32), out_shape)
        common = dict(shape=lava_shape(out_shape, batch), du=op.current_decay - 1, dv=op.voltage_decay,
                      bias_mant=bias, bias_exp=op.bias_exp, name=name)
        if kind == "TernaryLIF":
            proc = TernaryLIF(**common, vth_hi=op.vth_hi, vth_lo=op.vth_lo)
        elif kind == "LIFReset":  # Lava counts steps from 1; one reset: an interval longer than the run
            proc = LIFReset(**common, vth=op.vth, reset_interval=steps + 1, reset_offset=op.reset_at + 1)
        else:
            proc = LIF(**common, vth=op.vth)
        return proc, [proc.a_in], proc.s_out
    if kind == "GradedVec":  # v += a_in; sends v * (|v| > 0), then v = 0: its input, unchanged
        proc = GradedVec(shape=lava_shape(out_shape, batch), vth=0)  # (a GradedVec takes no name)
        return proc, [proc.a_in], proc.s_out
    graded = 0 if in_type.dtype.kind == "spike" else 16  # 0: Lava reads its input as booleans
    if kind == "Conv":  # [C_out, kW, kH, C_in/g]; the exponent (>= 0) in the weights
        kernel = np.ascontiguousarray(op.weight[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)).astype(np.int64) \
            << op.weight_exp
        proc = Conv(weight=np.tile(kernel, (batch, 1, 1, 1)).astype(np.int32),
                    input_shape=lava_shape(in_shape, batch), padding=tuple(op.padding[::-1]),
                    stride=tuple(op.stride[::-1]), dilation=tuple(op.dilation[::-1]), groups=op.groups * batch,
                    num_message_bits=graded, name=name)
        return proc, [proc.s_in], proc.a_out
    w = op.weight.astype(np.int64)
    mode = SignMode[lava_effective_weights(w)[1].upper()]
    if kind == "Dense":
        blocks = batch * math.prod(in_shape[:-1])
        proc = Dense(weights=np.kron(np.eye(blocks, dtype=np.int64), w).astype(np.int32), num_message_bits=graded,
                     sign_mode=mode, num_weight_bits=8, weight_exp=op.weight_exp, name=name)
    else:
        proc = Sparse(weights=lava_matrix(op, in_shape, out_shape, batch), num_message_bits=graded, sign_mode=mode,
                      num_weight_bits=8, weight_exp=op.weight_exp, name=name)
    return proc, [proc.s_in], proc.a_out


BIAS_DIGITS = 2  # weight_exp -1 and 7: Loihi's synaptic weight exponent spans -8..7, so two 8-bit digits
BIAS_CLOCK, BIAS_WEIGHTS = ".bias_clock", ".bias_weights"  # a bias source's processes: <sum><suffix>[<digit>]


def bias_digits(bias: np.ndarray) -> list[np.ndarray] | None:
    """``bias`` (integers) as signed 8-bit digits ``d_i`` in ``[-128, 127]``, ``bias = sum_i d_i << 8 i``, as few as
    the largest magnitude needs (at least one); ``None`` where that is more than :data:`BIAS_DIGITS`."""
    rest, digits = np.asarray(bias).astype(np.int64), []
    while rest.any() or not digits:
        if len(digits) == BIAS_DIGITS:
            return None
        digit = ((rest + 128) & 255) - 128
        digits.append(digit)
        rest = (rest - digit) >> 8
    return digits


def bias_source_processes(name: str, bias: np.ndarray) -> list[tuple[str, str]]:
    """``(process name, Lava process class)`` of each process of the bias source :func:`build_bias_source`
    builds for sum ``name`` with constant term ``bias``: its clock, then a ``Dense`` per digit."""
    return [(name + BIAS_CLOCK, "RingBuffer")] + [(f"{name}{BIAS_WEIGHTS}{i}", "Dense")
                                                  for i in range(len(bias_digits(bias)))]


def build_bias_source(op: IntAdd, shape, batch: int, steps: int, name: str) -> tuple[list, list]:
    """Lava's own processes that send the constant term of sum ``op`` (its ``bias``, per element of ``shape``) in
    its window of a run of ``steps`` steps: ``(processes, output ports)``, the ports flat (the caller reshapes what
    it connects). A ``RingBuffer`` spikes in the step before each step of the window (``Dense`` delivers what it
    receives one step later; the window must start at step 1 or later); digit ``i`` of the bias
    (:func:`bias_digits`) is the weight ``2 d_i`` of a mixed-sign ``Dense`` with ``weight_exp = 8 i - 1``
    (Lava keeps mixed 8-bit weights even: ``(2 d_0) >> 1 = d_0``, ``(2 d_1) << 7 = d_1 << 8``)."""
    start, stop = bias_window(op, steps)
    train = np.zeros((1, steps), dtype=np.int32)
    train[0, start - 1:stop - 1] = 1
    clock = RingBuffer(data=train)  # (a RingBuffer takes no name)
    per_element = to_lava(np.broadcast_to(op.bias, (batch, *shape)).astype(np.int64), tuple(shape)).reshape(-1, 1)
    procs, ports = [clock], []
    dense_names = [n for n, _ in bias_source_processes(name, op.bias)[1:]]
    for i, (digit, dense_name) in enumerate(zip(bias_digits(per_element), dense_names, strict=True)):
        dense = Dense(weights=(2 * digit).astype(np.int32), sign_mode=SignMode.MIXED, num_weight_bits=8,
                      weight_exp=8 * i - 1, name=dense_name)
        clock.s_out.connect(dense.s_in)
        procs.append(dense)
        ports.append(dense.a_out)
    return procs, ports


def lava_matrix(op, in_shape, out_shape, batch: int) -> csr_matrix:
    """The linear map of synapse ``op`` (before its shift) from the flattened Lava layout of ``batch`` inputs of
    ``in_shape`` to that of their outputs (``out_shape``): int32, one block per sample."""
    matrix = _conv_matrix(op, in_shape, out_shape) if isinstance(op, IntConv2d) else sparse_kron(
        identity(math.prod(in_shape[:-1]), dtype=np.int64, format="csr"), csr_matrix(op.weight.astype(np.int64)))
    batched = sparse_kron(identity(batch, dtype=np.int64, format="csr"), matrix, format="csr")
    rows = _ir_index(out_shape, batch)  # Lava position -> (sample, IR position) in the batched IR order
    cols = np.argsort(_ir_index(in_shape, batch))  # IR position -> Lava position
    lava = batched[rows]
    lava = csr_matrix((lava.data, cols[lava.indices], lava.indptr), shape=lava.shape)
    lava.sort_indices()
    return lava.astype(np.int32)


def _ir_index(shape, batch: int) -> np.ndarray:
    """For each position of the flattened Lava layout of ``batch`` values of ``shape``, its flat ``[B, *shape]``
    index."""
    return to_lava(np.arange(batch * math.prod(shape)).reshape(batch, *shape), tuple(shape)).reshape(-1)


def _conv_matrix(op: IntConv2d, in_shape, out_shape) -> csr_matrix:
    """The convolution of one sample as a matrix: ``[C_out * H' * W', C * H * W]`` (IR order, zero padding)."""
    c_out, c_group, kh, kw = op.weight.shape
    _, h_in, w_in = in_shape
    _, h_out, w_out = out_shape
    o, c, i, j, y, x = np.meshgrid(np.arange(c_out), np.arange(c_group), np.arange(kh), np.arange(kw),
                                   np.arange(h_out), np.arange(w_out), indexing="ij")
    src_y = y * op.stride[0] - op.padding[0] + i * op.dilation[0]
    src_x = x * op.stride[1] - op.padding[1] + j * op.dilation[1]
    src_c = (o // (c_out // op.groups)) * c_group + c
    inside = (src_y >= 0) & (src_y < h_in) & (src_x >= 0) & (src_x < w_in)
    rows = ((o * h_out + y) * w_out + x)[inside]
    cols = ((src_c * h_in + src_y) * w_in + src_x)[inside]
    values = np.broadcast_to(op.weight.astype(np.int64)[:, :, :, :, None, None], inside.shape)[inside]
    return csr_matrix((values, (rows, cols)), shape=(c_out * h_out * w_out, c_group * op.groups * h_in * w_in))


__all__ = ["BIAS_CLOCK", "BIAS_DIGITS", "BIAS_WEIGHTS", "MAX_KRON_ELEMENTS", "MAX_SPARSE_CONNECTIONS", "NEURONS",
           "STOCK_CLASSES", "bias_digits", "bias_source_processes", "build_bias_source", "build_stock", "lava_matrix",
           "stock_process", "stock_processes"]

"""``fixed_pt`` models of the backend's Processes, and the step machinery they run.

Where the models live. Lava looks for a Process's models in the Process's own module, then imports every
module of its package and executes every ``.py`` file beside it, keeping the classes whose ``@implements``
names the Process (spec lava_loihi.md §1.4). This module is one of those files: executed on its own it has
no package, so it imports absolutely and does nothing at import but define things.

One source of truth for the arithmetic. A model never re-implements an equation; every step calls either
the IR node's own ``run`` (:class:`NodeStepper`; a history node in the fused granularities through the
reference simulator's fast exact kernel where the op type has one, ``snncompile.sim.kernels``, which
``tests/test_int_kernels.py`` pins to ``run``) or, for neurons, Lava's own LIF code (:class:`NeuronStepper`).
How a node is stepped is its op type's Lava mapping (``BACKENDS.lava``, ``snncompile.ir.ops.support.LAVA_KEYS``):

- *local* nodes, whose output at step t depends on their inputs at step t only (sums, shifts, pools,
  products, attention accumulates, LUTs), run on a one-step tensor; an all-zero input (the pipeline filling
  and draining) gets the node's own answer to it, computed once;
- *synapses* (``IntDense``/``IntConv2d``) are local too, but their bias acts in a window of absolute steps
  (``bias_start``, ``bias_steps``): at step t they run as the same node with its bias acting always when t is
  in the window, and without the bias outside (exactly the rows ``run`` would compute for those steps); so
  does an ``IntAdd``
  that was given its producers' biases (:mod:`.synapse_biases`);
- *history* nodes, whose output depends on earlier steps (``KVOuterAccumulate``'s temporal blocks,
  ``TemporalWindow``), keep their input history and run on all of it every step, reading step ``t``. They
  are causal (KᵀV's block is complete once its delay has passed: checked by the mapping), so the prefix
  gives the full run's value;
- *neurons* (``LoihiLIF``, ``LoihiTernaryLIF``) would cost a run over their whole history every step (their
  state is not an IR input); they step with the ``fixed_pt`` model code of Lava's own ``LIF``/``TernaryLIF``
  Processes (``PyLifModelBitAcc``, ``PyTernLifModelFixed``) on state kept here: the very code the per-op
  granularity runs as Lava Processes, which ``tests/test_loihi_ops.py`` holds bit-exact to the IR neurons.

A node's ``delay`` is a delay line on its output (history nodes read their run at ``t - delay``). Values
keep the interpreter's conventions: an integer node gets its inputs as they come, a float-semantics node
(``INTEGER_INPUTS = False``: pools, products, ReLU ...) gets them as float32, exactly as ``run_graph`` hands
them over, so every value equals the reference simulator's.

Timing. Every model here receives its inputs of step t, computes, and sends in the same ``run_spk``: Lava
delivers a message sent in step t to a consumer's ``recv`` in step t (the consumer blocks until it arrives),
so a node without delay answers on the step its inputs arrive, like in the IR; only Lava's own Dense/Conv
send before they receive (their one-step buffer). Lava step t (``time_step``, from 1) is IR step ``t - 1``.

Layout. Per-op ports carry a whole batch per step in the layout Lava's own Conv and LIF use: a ``[C, H, W]``
value is the array ``(W, H, B*C)`` (sample b's channel c at ``b*C + c``, so a per-sample Conv becomes a
grouped Conv over the batch), anything else the flat ``[B, *shape]`` (:func:`lava_shape`). The fused bus
holds every value flat, ``[B, *shape]`` row-major, at its slot.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import snncompile.backends.lava.first_import  # noqa: F401 -- before Lava's first import (its docstring)
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from snncompile.backends.lava.processes import BinaryNode, FusedNodes, UnaryNode
from snncompile.ir.interpret import Traces
from snncompile.ir.ops import LoihiTernaryLIF
from snncompile.ir.ops.loihi import bias_acts, without_bias
from snncompile.sim.kernels import KERNELS


# -- layouts -------------------------------------------------------------------------------------------------------

def lava_shape(shape: tuple[int, ...], batch: int) -> tuple[int, ...]:
    """The port shape of a per-sample ``shape`` value for ``batch`` samples (see the module docstring)."""
    if len(shape) == 3:
        c, h, w = shape
        return (w, h, batch * c)
    return (batch * math.prod(shape),)


def to_lava(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``[B, *shape]`` (or ``[B, *shape, T]``) -> the Lava layout (a trailing time axis kept last)."""
    batch = x.shape[0]
    extra = x.shape[1 + len(shape):]
    if len(shape) == 3:
        c, h, w = shape
        y = x.reshape(batch * c, h, w, *extra)
        return np.ascontiguousarray(np.moveaxis(y, (0, 1, 2), (2, 1, 0)))
    return x.reshape(batch * math.prod(shape), *extra)


def from_lava(a: np.ndarray, shape: tuple[int, ...], batch: int) -> np.ndarray:
    """The inverse of :func:`to_lava` for one step: Lava layout -> ``[B, *shape]``."""
    if len(shape) == 3:
        c, h, w = shape
        return np.ascontiguousarray(a.transpose(2, 1, 0)).reshape(batch, c, h, w)
    return a.reshape(batch, *shape)


# -- stepping one IR node ------------------------------------------------------------------------------------------

class NodeStepper:
    """One IR node run timestep by timestep with its own ``run`` (see the module docstring).

    ``step(t, inputs)`` takes the node's inputs at step t (``[B, ...]`` tensors, steps 0, 1, ... in order)
    and returns its output at step t, its delay included. ``steps``: the run's length (history buffers).
    ``fast``: a history node through its op type's fast exact kernel where it has one (the fused granularities;
    the per-op custom processes keep ``run`` itself, so that Lava's check compares it with the simulator's).
    """

    def __init__(self, op, steps: int, fast: bool = False):
        self.op = op
        # (a history node reruns its whole past every step: there the kernel pays; on one step, run is as fast)
        self._kernel = KERNELS.get(type(op)) if fast and op.BACKENDS.lava == "history" else None
        self.kind = op.BACKENDS.lava  # "local", "synapse" or "history" (the mapping refuses the others)
        self.steps = steps
        self._history: list[torch.Tensor] | None = None
        self._line: list[torch.Tensor] = []
        self._silent: dict[tuple, torch.Tensor] = {}
        self._timed = hasattr(op, "bias_start")  # a bias in a window of steps: synapses, a sum given theirs
        if self._timed:
            self._biased = dataclasses.replace(op, delay=0, bias_start=0, bias_steps=0)
            self._unbiased = self._biased if op.bias is None else without_bias(self._biased)

    def _run(self, op, xs: list[torch.Tensor]) -> torch.Tensor:
        """``op.run(*xs)`` on a ``[t, B, ...]`` chunk (by the kernel where there is one), without the delay."""
        return op.run(*xs) if self._kernel is None else self._kernel(op, xs, 0, Traces.NONE)[0]

    def _convert(self, x: torch.Tensor) -> torch.Tensor:
        if not self.op.INTEGER_INPUTS and not x.is_floating_point():
            return x.to(torch.float32)  # what run_graph hands a float-semantics node
        return x

    def step(self, t: int, inputs: list[torch.Tensor]) -> torch.Tensor:
        xs = [self._convert(x) for x in inputs]
        delay = self.op.delay
        if self.kind == "history":
            if self._history is None:
                self._history = [torch.zeros((self.steps, *x.shape), dtype=x.dtype) for x in xs]
            for buf, x in zip(self._history, xs):
                buf[t] = x
            y = self._run(self.op, [buf[:t + 1] for buf in self._history])
            return y[t - delay] if t >= delay else torch.zeros_like(y[0])
        op = self.op
        if self._timed:
            op = self._biased if bias_acts(self.op, t) else self._unbiased
        if any(bool(x.any()) for x in xs):
            y = self._run(op, [x.unsqueeze(0) for x in xs])[0]
        else:  # silent inputs (pipeline fill and drain): the node's own answer to them, computed once
            key = (id(op), tuple(x.shape for x in xs), tuple(x.dtype for x in xs))
            if key not in self._silent:
                self._silent[key] = self._run(op, [x.unsqueeze(0) for x in xs])[0]
            y = self._silent[key]  # (nodes never write to their inputs)
        if not delay:
            return y
        self._line.append(y)
        if len(self._line) > delay:
            return self._line.pop(0)
        return torch.zeros_like(y)


class NeuronStepper:
    """A Loihi neuron stepped by Lava's own ``fixed_pt`` model code (``PyLifModelBitAcc``,
    ``PyTernLifModelFixed``), the code per-op runs as Lava's LIF/TernaryLIF Processes, here on one model
    instance in this process (its state ``u``, ``v`` kept between steps): the step of ``run_spk`` without the
    ports, and ``LIFReset``'s restart of ``u`` and ``v`` at the op's ``restart_step``. Same interface as :class:`NodeStepper`; ``op`` a ``LoihiLIF`` or ``LoihiTernaryLIF``."""

    def __init__(self, op, steps: int):
        self.op, self.steps = op, steps
        self._model = None
        self._line: list[torch.Tensor] = []

    def _build(self, shape: tuple[int, ...]):
        from lava.proc.lif.models import PyLifModelBitAcc, PyTernLifModelFixed
        op = self.op
        ternary = isinstance(op, LoihiTernaryLIF)
        m = (PyTernLifModelFixed if ternary else PyLifModelBitAcc)({})
        m.u, m.v = np.zeros(shape, np.int32), np.zeros(shape, np.int32)
        m.du, m.dv = op.current_decay - 1, op.voltage_decay  # Lava's du = iDecay - 1 (its ds_offset adds 1)
        # Lava's Process holds one bias per neuron; a shared one broadcasts the same (scale_bias is elementwise)
        bias = np.asarray(op.bias_mant, dtype=np.int16)
        m.bias_mant = np.broadcast_to(bias, shape).copy() if bias.ndim else bias
        m.bias_exp = np.int16(op.bias_exp)
        if ternary:
            m.vth_hi, m.vth_lo = np.int32(op.vth_hi), np.int32(op.vth_lo)
        else:
            m.vth = op.vth
        return m

    def step(self, t: int, inputs: list[torch.Tensor]) -> torch.Tensor:
        (x,) = inputs
        if self._model is None:
            self._model = self._build(tuple(x.shape))
        m = self._model
        a = x.numpy().astype(np.int32)  # what Lava's port delivers (int32 messages, summed in int32)
        if t == self.op.restart_step():  # what LIFReset's run_spk does at its reset step
            m.u *= 0
            m.v *= 0
        m.scale_bias()
        if not m.isthrscaled:
            m.scale_threshold()
        m.subthr_dynamics(activation_in=a)
        spikes = m.spiking_activation()
        m.reset_voltage(spike_vector=spikes)
        y = torch.from_numpy(np.asarray(spikes, dtype=np.float32))
        if not self.op.delay:
            return y
        self._line.append(y)
        return self._line.pop(0) if len(self._line) > self.op.delay else torch.zeros_like(y)


def stepper(op, steps: int, fast: bool = False):
    """The stepper of an on-chip node: :class:`NeuronStepper` for neurons, else :class:`NodeStepper` (``fast``:
    through the op's fast exact kernel)."""
    return NeuronStepper(op, steps) if op.BACKENDS.lava == "neuron" else NodeStepper(op, steps, fast)


class PortKernel:
    """A :class:`NodeStepper` between Lava ports (per-op granularity): Lava-layout arrays in, one out."""

    def __init__(self, stepper: NodeStepper, in_shapes: list[tuple[int, ...]], out_shape: tuple[int, ...],
                 batch: int):
        self.stepper, self.in_shapes, self.out_shape, self.batch = stepper, in_shapes, out_shape, batch

    def __call__(self, t: int, arrays: list[np.ndarray]) -> np.ndarray:
        xs = [torch.from_numpy(from_lava(np.asarray(a, dtype=np.int64), s, self.batch))
              for a, s in zip(arrays, self.in_shapes)]
        y = self.stepper.step(t, xs)
        return to_lava(y.numpy(), self.out_shape).astype(np.int32)


class Slot:
    """Where a value sits on a bus: ``[offset, offset + batch * prod(shape))``, ``[B, *shape]`` row-major.
    (A plain class: a dataclass cannot be defined while Lava executes this file outside its package.)"""

    __slots__ = ("offset", "shape", "batch", "end")

    def __init__(self, offset: int, shape: tuple[int, ...], batch: int):
        self.offset, self.shape, self.batch = offset, tuple(shape), batch
        self.end = offset + batch * math.prod(self.shape)

    def read(self, vector: np.ndarray) -> np.ndarray:
        return vector[self.offset:self.end].reshape(self.batch, *self.shape)


class FusedKernel:
    """Several IR nodes in one Process (fused granularity): per step, read the imported values off the bus,
    step every node in dependency order (values passed between them as the interpreter passes them), write
    the exported values to the bus and the recorded ones to the record vector.

    ``nodes``: ``(name, stepper, input names)`` in dependency order; ``imports``/``exports``: slots by
    value name on the in-bus and on the out-bus (``out_size`` long); ``records``: record slots by node name."""

    def __init__(self, nodes: list[tuple[str, NodeStepper, tuple[str, ...]]], imports: dict[str, Slot],
                 exports: dict[str, Slot], records: dict[str, Slot], out_size: int, rec_size: int):
        self.nodes, self.imports, self.exports, self.records = nodes, imports, exports, records
        self.out_size, self.rec_size = out_size, rec_size

    def __call__(self, t: int, bus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bus = np.asarray(bus, dtype=np.int64)
        values = {name: torch.from_numpy(slot.read(bus).copy()) for name, slot in self.imports.items()}
        for name, stepper, inputs in self.nodes:
            values[name] = stepper.step(t, [values[s] for s in inputs])
        out = np.zeros(self.out_size, dtype=np.int32)  # (on-chip values are at most 32 bits wide)
        for name, slot in self.exports.items():
            out[slot.offset:slot.end] = values[name].reshape(-1).numpy()
        rec = np.zeros(self.rec_size, dtype=np.int32)
        for name, slot in self.records.items():
            rec[slot.offset:slot.end] = values[name].reshape(-1).numpy()
        return out, rec


# -- Lava process models -------------------------------------------------------------------------------------------
# Integer values travel as int32 (Lava's own convention, which Lava's LIF then sums in int32); inputs are
# summed in int64 so that several producers on one port add exactly (IntAdd wraps or saturates afterwards).

@implements(proc=UnaryNode, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyUnaryNodeModel(PyLoihiProcessModel):
    in0: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=32)
    out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=32)

    def run_spk(self) -> None:
        self.out.send(self.proc_params["kernel"](self.time_step - 1, [self.in0.recv()]))


@implements(proc=BinaryNode, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyBinaryNodeModel(PyLoihiProcessModel):
    in0: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=32)
    in1: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=32)
    out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=32)

    def run_spk(self) -> None:
        self.out.send(self.proc_params["kernel"](self.time_step - 1, [self.in0.recv(), self.in1.recv()]))


@implements(proc=FusedNodes, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFusedNodesModel(PyLoihiProcessModel):
    bus_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=32)
    bus_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=32)
    rec_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=32)

    def run_spk(self) -> None:
        bus, rec = self.proc_params["kernel"](self.time_step - 1, self.bus_in.recv())
        self.bus_out.send(bus)
        self.rec_out.send(rec)


__all__ = ["NodeStepper", "PortKernel", "FusedKernel", "Slot", "lava_shape", "to_lava", "from_lava",
           "PyUnaryNodeModel", "PyBinaryNodeModel", "PyFusedNodesModel"]

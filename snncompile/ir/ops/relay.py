"""Partial sums on other cores: a synapse whose every output reads more input axons than one core receives is
split (``passes/split_fan_in.py``) into a grouped synapse of partial sums, relay compartments that send the
partial sums on, and the receiving compartment's sum of them.

On Loihi 2 a compartment can send an integer as a graded spike (Intel's Loihi 2 brief: "graded spike events
(up to 32-bit payload)", ``targets/loihi2.toml``'s ``graded_spike_payload_bits``; Lava's stock ``GradedVec``,
``v += a_in``, output ``v * (|v| > vth)``, then ``v = 0``, with threshold 0 sends its dendritic input as it
is: the design references' lava_loihi.md, section 4.5); a graded spike reaches the receiving core through
synapses of weight 1 into the dendritic accumulator, which adds every synapse reaching a compartment (Lava's
LIF: ``a = sum of a_in from all connected OutPorts``, section 4.1) and delivers one step later, like every
synapse. So the sum of ``K`` partial sums is exact, costs one synaptic hop (a step) more than the unsplit
synapse, and the receiving compartment reads ``K`` axons per output instead of every input of the unsplit
synapse. Loihi 1's dendritic tree joins compartments of one core only, so it cannot lift a per-core axon
limit. The activity counts price all three: the partial synapses' operations (the unsplit synapse's,
regrouped), the relay compartments' updates (``GradedRelay``: neuron updates, active where a partial sum is
non-zero) and their weight-1 synapses (``BlockSum``: one graded synaptic operation per non-zero relayed
value). Lava's ``per_op`` plan runs the relays on ``GradedVec`` and each sum as the synapse it is
(:meth:`BlockSum.as_synapse`); a simulation that needs neither may evaluate the three as the unsplit synapse
(:func:`joined_splits`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from ...config import is_int
from ..interval import Interval
from ..types import TensorType, int_type
from .base import Op, expect, param
from .int_synapse import IntConv2d
from .loihi import _int_array_problems, _range_problem, add_timed_bias, timed_bias_problems, timed_bias_range
from .quant import _OUT_BITS_DOC, _OVERFLOW_DOC, Overflow, _as_int64, _fit_problems, _integer_stream, fit
from .support import NIR_INTEGER, ONNX_INTEGER, Backends, Refused

_NETX_RELAY = ("partial sums relayed between cores: a netx network is a chain of synapse -> neuron blocks with no "
               "graded relay or sum of partial sums")


@dataclass(frozen=True, eq=False, kw_only=True)
class GradedRelay(Op):
    """Compartments that send their synaptic input on as graded spikes (a partial sum computed on its own
    core): Loihi 2's graded neuron, as Lava's ``GradedVec`` with threshold 0.

    Semantics: identity, ``y[t] = x[t]``, integers unchanged. Its readers receive ``y`` through synapses of
    weight 1 into their dendrites (``RELAYED``), where ``BlockSum`` adds the partial sums. Counted as neuron
    updates: a compartment keeps no state (``v = 0`` after sending), so its update is active where its input
    is non-zero.
    """

    INTEGER_INPUTS = True
    ROLE, STEPPING, WORK = "elementwise", "local", "neuron"
    RELAYED = True
    BACKENDS = Backends(lava="local", onnx=Refused(ONNX_INTEGER), nir=Refused(NIR_INTEGER),
                        netx=Refused(_NETX_RELAY))

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        _integer_stream(x, "GradedRelay")
        return x

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return _as_int64(x).clone()

    def value_range(self, inputs, in_types, out: TensorType) -> Interval | None:
        return inputs[0]


@dataclass(frozen=True, eq=False, kw_only=True)
class BlockSum(Op):
    """The receiving compartments' sum of ``blocks`` partial sums (relayed graded spikes, weight 1), then the
    split synapse's own shift, bias and overflow.

    Semantics, on an input ``[blocks * C, ...]`` (block ``g`` the partial sums of input group ``g``)::

        acc[t, c, ...] = sum_g x[t, g*C + c, ...]
        r = acc << shift (shift >= 0), or floor(acc / 2^-shift)   (+ bias[c] in bias_start .. bias_start + bias_steps - 1)
        y = r wrapped or saturated to out_bits; output y[t - delay]

    equal to the unsplit synapse whose ``weight_exp`` is ``shift`` (the partial sums are unshifted). A
    time-stepped target's synapse delay is its ``delay`` (the hop of the relayed spikes), and its bias starts
    with its data, as a synapse's. Output ``int<out_bits>``. It is the synapse of those weight-1 connections
    (:meth:`as_synapse`): each non-zero relayed value is one synaptic operation (graded: a MAC).
    """

    INTEGER_INPUTS = True
    ROLE, STEPPING, WORK, DENDRITIC = "pool", "local", "synaptic", True
    BACKENDS = Backends(lava="local", onnx=Refused(ONNX_INTEGER), nir=Refused(NIR_INTEGER),
                        netx=Refused(_NETX_RELAY))
    blocks: int = param("partial sums per output element (the input's channel blocks)")
    shift: int = param("shift of the summed partial sums: the split synapse's ``weight_exp``", 0)
    bias: np.ndarray | None = param("integer bias per output channel, added after the shift; ``None``: no bias",
                                    None)
    bias_start: int = param("first timestep from which the bias is added (the data's arrival)", 0)
    bias_steps: int = param("timesteps the bias acts from ``bias_start`` (the data steps; 0: to the end of the run)",
                            0)
    out_bits: int = param(_OUT_BITS_DOC, 24)
    overflow: Overflow = param(_OVERFLOW_DOC, "wrap")

    def problems(self) -> list[str]:
        p = [] if is_int(self.blocks) and self.blocks >= 1 else [f"blocks must be an int >= 1, got {self.blocks!r}"]
        p += _range_problem("shift", self.shift, -31, 31, "a shift of an int32 sum")
        p += _fit_problems(self)
        if self.bias is not None:
            p += _int_array_problems("bias", self.bias) or (
                [] if self.bias.ndim == 1 else [f"bias must be one entry per channel, got shape {self.bias.shape}"])
        return p + timed_bias_problems(self)

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        _integer_stream(x, "BlockSum")
        expect(len(x.shape) >= 1 and x.shape[0] % self.blocks == 0,
               f"BlockSum of {self.blocks} blocks needs a channel axis they divide, got {x}")
        channels = x.shape[0] // self.blocks
        expect(self.bias is None or self.bias.shape == (channels,),
               f"BlockSum bias has shape {None if self.bias is None else self.bias.shape}, {channels} channels")
        return TensorType((channels, *x.shape[1:]), int_type(self.out_bits))

    def scheduled(self, arrival: int, data_steps: int, run_steps: int, synapse_delay: int) -> "BlockSum":
        """The relayed spikes' synapse delay; a bias starts with the data (``bias_start``: their arrival)."""
        timed = {"bias_start": arrival, "bias_steps": data_steps} if self.bias is not None else {}
        return dataclasses.replace(self, delay=synapse_delay, **timed)

    def unscheduled(self, data_steps: int) -> "BlockSum":
        return dataclasses.replace(self, delay=0, bias_start=0, bias_steps=0)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_int64(x)
        acc = x.reshape(*x.shape[:2], self.blocks, x.shape[2] // self.blocks, *x.shape[3:]).sum(2)
        y = acc << self.shift if self.shift >= 0 else acc >> -self.shift
        if self.bias is not None:
            bias = self.tensor("bias").to(torch.int64).reshape(-1, *[1] * (y.dim() - 3))
            y = add_timed_bias(y, bias, self)
        return fit(y, self.out_bits, self.overflow)

    def reads(self, out: np.ndarray, in_shapes) -> list[np.ndarray]:
        return [np.concatenate([out] * self.blocks, axis=0)]

    def as_synapse(self, in_shape: Sequence[int]) -> IntConv2d:
        """This node as the integer synapse of its relayed connections on an input of ``in_shape`` (one sample):
        a 1x1 kernel of weight 1 from element ``c`` of every block to output ``c``, then the shift (its
        ``weight_exp``), bias, width and delay: the same values exactly."""
        channels = in_shape[0] // self.blocks
        weight = np.tile(np.eye(channels, dtype=np.int64), self.blocks)[:, :, None, None]
        timed = {"bias_start": self.bias_start, "bias_steps": self.bias_steps} if self.bias is not None else {}
        return IntConv2d(weight=weight, weight_exp=self.shift, bias=self.bias, out_bits=self.out_bits,
                         overflow=self.overflow, delay=self.delay, **timed)

    def fan_out(self, in_shape: tuple[int, ...], output_sets: list[np.ndarray] | None = None,
                all_weights: bool = False) -> torch.Tensor:
        """Per input element, the outputs in each set of flat output indices it reaches (``None``: one set, every
        output) as float64 ``[sets, *in_shape]``: one each (element ``g*C + c`` of block ``g`` reaches output
        ``c`` at its own position), every weight 1 (``all_weights`` changes nothing)."""
        if output_sets is None:
            return torch.ones((1, *in_shape), dtype=torch.float64)
        reached = np.arange(math.prod(in_shape)) % (math.prod(in_shape) // self.blocks)  # each element's output
        return torch.stack([torch.from_numpy(np.isin(reached, s).reshape(in_shape)).to(torch.float64)
                            for s in output_sets])

    def received(self, events: torch.Tensor, in_ndim: int) -> torch.Tensor:
        """Per output element, the non-zero relayed values it adds (``events``: 0/1 ``[..., *in_shape]``), float64:
        the synaptic operations of :meth:`fan_out` counted where they land."""
        lead, (channels, *rest) = events.shape[:-in_ndim], events.shape[-in_ndim:]
        blocks = events.reshape(*lead, self.blocks, channels // self.blocks, *rest).to(torch.float64)
        return blocks.sum(len(lead))

    def joined(self, partial: IntConv2d, partial_in: TensorType, relay_delay: int) -> IntConv2d | None:
        """The unsplit synapse that this sum, its relay (``relay_delay``) and ``partial`` (the grouped synapse of
        its partial sums, on an input of type ``partial_in``) replace (``passes/split_fan_in.py``): its every
        output equals this node's, the relayed hops becoming its delay and the bias window moving with them.
        ``None`` where they could differ: a partial sum that may leave the partial synapse's width (the sums
        are equal only unwrapped), or a partial synapse that is not the split's plain grouped sum."""
        k, lag = self.blocks, partial.delay + relay_delay
        sums = partial.value_range([Interval.of_dtype(partial_in.dtype)], [partial_in], partial.infer([partial_in]))
        if (partial.groups != k or partial.bias is not None or partial.weight_exp != 0
                or not sums.within(Interval.of_dtype(int_type(partial.out_bits)))
                or (self.bias is not None and self.bias_start < lag)):
            return None
        out, group, *taps = partial.weight.shape
        weight = partial.weight.reshape(k, out // k, group, *taps).swapaxes(0, 1).reshape(out // k, k * group, *taps)
        timed = {"bias_start": self.bias_start - lag, "bias_steps": self.bias_steps} if self.bias is not None else {}
        return dataclasses.replace(partial, weight=np.ascontiguousarray(weight), groups=1, weight_exp=self.shift,
                                   bias=self.bias, out_bits=self.out_bits, overflow=self.overflow,
                                   delay=lag + self.delay, **timed)

    def value_range(self, inputs, in_types, out: TensorType) -> Interval | None:
        if inputs[0] is None:
            return None
        r = inputs[0].times(self.blocks).shift(self.shift)
        if self.bias is None:
            return r
        biased = r + Interval(int(self.bias.min()), int(self.bias.max()))
        return timed_bias_range(r, biased, self)


def joined_splits(graph, types: Mapping[str, TensorType], needed: set[str]
                  ) -> dict[str, tuple[IntConv2d, tuple[str, ...]]]:
    """The split synapses of ``graph`` (a ``BlockSum`` reading a ``GradedRelay`` of a grouped ``IntConv2d``)
    whose partial sums and relay nothing else reads, none of the three named in ``needed``, each as ``BlockSum``
    name -> (the unsplit synapse, its inputs) (:meth:`BlockSum.joined`): a simulation that evaluates these in
    place of the three nodes gives every other node the same values without the partial sums' ``blocks``-fold
    stream."""
    found = {}
    for name, node in graph.nodes.items():
        if not isinstance(node.op, BlockSum):
            continue
        (relay,) = node.inputs
        if not isinstance(graph.op(relay), GradedRelay) or {name, relay, *graph.nodes[relay].inputs} & needed:
            continue
        (partial,) = graph.nodes[relay].inputs
        if (not isinstance(graph.op(partial), IntConv2d) or graph.consumers(relay) != [name]
                or graph.consumers(partial) != [relay]):
            continue
        source = graph.nodes[partial].inputs
        joined = node.op.joined(graph.op(partial), types[source[0]], graph.op(relay).delay)
        if joined is not None:
            found[name] = (joined, source)
    return found


__all__ = ["GradedRelay", "BlockSum", "joined_splits"]

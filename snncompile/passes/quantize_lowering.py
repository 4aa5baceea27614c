"""quantize's lowering: each float node's integer counterpart, node by node in dependency order, with the
scale of every integer edge it creates (see ``quantize``'s module docstring for the scheme)."""
from __future__ import annotations

import math
from typing import Collection

import numpy as np
import torch

from ..ir import Graph, Node
from ..ir.ops import (LI, Add, Conv2d, Delay, Flatten, Input, IntAdd, IntConv2d, IntDense, IntShift, LevelThreshold,
                      Linear, LoihiLIF, LoihiTernaryLIF, MaxPool2d, MultiLevelSpike, Quantize, ReLU, Repeat, Scale,
                      TemporalWindow, TernaryLIF, TimeMean, TokenMean, TokenSum)
from ..ir.ops.loihi import STATE_BITS
from ..targets import load_target
from .calibrate import value_ranges
from .multilevel import half_level_thresholds
from .pipeline import PassContext
from .quantize_formats import (WEIGHT_LIMIT, current_decay, float_threshold, integer_bias, integer_weights,
                               is_float_neuron, neuron_problem, voltage_decay, weight_exponent)
from .quantize_groups import Group, ScaleGroups

VTH_HEADROOM_BITS = 3       # a threshold at most 1/8 of the input range: inputs reach 8x the threshold
INPUT_BITS = 16             # a neuron's synaptic input (Lava's a_in is int16), unless the target says otherwise
CALIBRATED_HEADROOM = 2     # calibration peaks stay this far inside the neuron input range (clamps cover the rest)


class QuantizeError(ValueError):
    """The graph holds something this pass cannot put on integers; the message names the node."""


class Lowering:
    """One run of ``quantize`` on ``graph``: :meth:`run` builds the integer graph; ``scale`` holds the real
    value of one integer step of each new edge, ``report`` what was decided for each node."""

    def __init__(self, graph: Graph, ctx: PassContext, options: dict):
        self.graph, self.ctx, self.opt = graph, ctx, options
        self.types = graph.types()
        self.plan = ScaleGroups(graph, self.types)
        self.groups = self.plan.groups()
        self.nodes: dict[str, Node] = {}
        self.scale: dict[str, float] = {}     # integer edge (new graph) -> real scale
        self.report: dict[str, dict] = {"neurons": {}, "synapses": {}, "inputs": {}}
        self.rename: dict[str, str] = {}      # old node -> the new node its consumers read
        self.new_types: dict[str, object] = {}
        # float node -> max |value| on calibration, for the nodes whose scale or fraction bits read it
        read = {m for g in self.groups.values() for m in g.members}
        read |= {node.inputs[0] for node in graph.nodes.values() if is_float_neuron(node.op)}
        self.observed = observed_peaks(graph, ctx.calibration, read)
        target = load_target(ctx.target) if ctx.target else None
        self.input_bits = target.input_bits.value if target and target.input_bits else INPUT_BITS

    # ---- group scales
    def _consumers_via(self, name: str) -> list[tuple[str, float]]:
        """Neurons reading float edge ``name`` (directly, or behind a TokenMean) with their multipliers."""
        out = []
        for c in self.graph.consumers(name):
            op = self.graph.op(c)
            if is_float_neuron(op):
                out.append((c, 1.0))
            elif isinstance(op, TokenMean):
                out.extend((cc, token_multiplier(self.types[name])) for cc, _ in self._consumers_via(c))
        return out

    def _readers_past_token_mean(self, name: str) -> list[str]:
        """The nodes reading float edge ``name``, directly or behind a TokenMean."""
        out = []
        for c in self.graph.consumers(name):
            out += self._readers_past_token_mean(c) if isinstance(self.graph.op(c), TokenMean) else [c]
        return out

    def _fixed_scale(self, name: str) -> float | None:
        """The scale a non-weighted source imposes on its group, or None for a weighted one."""
        op = self.graph.op(name)
        if isinstance(op, Scale):
            (src,) = self.graph.nodes[name].inputs
            if self.types[src].dtype.kind == "float" or isinstance(op.scale, np.ndarray):
                factor = "per-element factors" if isinstance(op.scale, np.ndarray) else f"{op.scale:g}"
                raise QuantizeError(f"node {name!r} (Scale by {factor}) on the {self.types[src].dtype.kind} output "
                                    f"of {src!r} ({type(self.graph.op(src)).__name__}): only one constant factor "
                                    f"behind an integer result can be folded into the scales; a factor behind a "
                                    f"Linear or Conv2d belongs in its weights")
            return float(op.scale)
        if isinstance(op, Add):
            spikes = [s for s in self.graph.nodes[name].inputs if not self._is_float(s)]
            return 1.0 if spikes else None
        if isinstance(op, MultiLevelSpike):
            return 1.0 / op.norm  # it sends its integer level
        return None

    def group_scale(self, root: str) -> float:
        group = self.groups[root]
        if group.scale is not None:
            return group.scale
        fixed = {self._fixed_scale(m) for m in group.members} - {None}
        if len(fixed) > 1:
            raise QuantizeError(f"nodes {group.members} must share one scale but their sources impose "
                                f"{sorted(fixed)}")
        if fixed:
            group.fixed = group.scale = fixed.pop()
            return group.scale
        group.scale = self._free_scale(group)
        return group.scale

    def _weighted_sources(self, group: Group) -> list[str]:
        """Members whose integer weights take the group's scale (a static first layer is computed on the host
        and quantised at any scale)."""
        return [m for m in group.members if isinstance(self.graph.op(m), (Conv2d, Linear, TemporalWindow))
                and not self._is_static_first_layer(m)]

    def _is_static_first_layer(self, name: str) -> bool:
        inputs = self.graph.nodes[name].inputs
        return isinstance(self.graph.op(name), Conv2d) and bool(inputs) and self._is_static_image_path(inputs[0])

    def _effective_weights(self, name: str) -> np.ndarray:
        op = self.graph.op(name)
        w = op.weights if isinstance(op, TemporalWindow) else op.weight
        return np.asarray(w, np.float64) * self._input_scale(name)

    def _input_scale(self, name: str) -> float:
        (src,) = self.graph.nodes[name].inputs
        if not self._is_float(src):
            return 1.0
        if src in self.scale:  # lowered already on its own scale (a token mean read by a head without a neuron)
            return self.scale[src]
        if self.rename.get(src) in self.scale:  # a real-valued input, quantised already
            return self.scale[self.rename[src]]
        if self._is_static_image_path(src):
            raise QuantizeError(f"node {name!r}: a weighted node on a real-valued repeated image; only the "
                                f"first convolution of a static image is computed on the host")
        return self.group_scale(self.plan.group_of(src))

    def _is_static_image_path(self, name: str) -> bool:
        return isinstance(self.graph.op(name), Repeat)

    def _free_scale(self, group: Group) -> float:
        sources = self._weighted_sources(group)
        if not sources:
            raise QuantizeError(f"nodes {group.members}: no weighted source and no integer source to take a "
                                f"scale from")
        finest = min(float(np.max(np.abs(self._effective_weights(s)), initial=0.0)) / WEIGHT_LIMIT
                     for s in sources) or 1.0
        neurons = [n for m in group.members for n in self._consumers_via(m)]
        levels = any(isinstance(self.graph.op(c), MultiLevelSpike) for m in group.members
                     for c in self._readers_past_token_mean(m))
        if not neurons and not levels:
            return finest
        # the values seen on the calibration data must keep CALIBRATED_HEADROOM below the input clamp
        room = (1 << (self.input_bits - 1)) / CALIBRATED_HEADROOM
        coarsest = max((self.observed.get(m, 0.0) for m in group.members), default=0.0) / room
        finest = max(finest, coarsest)
        if not neurons:
            return finest  # a level quantiser compares at its half-levels, exactly on any scale
        reference, multiplier = max(neurons, key=lambda nm: nm[1])
        theta = float_threshold(self.graph.op(reference)) * multiplier
        delta = 1.0 / (128.0 * max(m for _, m in neurons))
        # Θ'/s must sit just above an integer: s = Θ'/(vth + δ), with s >= finest (the weights keep their
        # 8 bits and the calibration headroom) and 1 <= vth <= the input range / 8 (below one input step needs
        # weight exponents instead; above, inputs of a few thresholds would not fit, so the weights give up low bits)
        vth_limit = 1 << (self.input_bits - 1 - VTH_HEADROOM_BITS)
        vth = min(vth_limit, max(1, math.floor(theta / finest - delta)))
        return theta / (vth + delta)

    def _is_float(self, name: str) -> bool:
        return self.types[name].dtype.kind == "float"

    # ---- building the new graph
    def add(self, name: str, op, *inputs: str, scale: float | None = None) -> str:
        self.nodes[name] = Node(op, tuple(self.rename.get(i, i) for i in inputs))
        if scale is not None:
            self.scale[name] = scale
        return name

    def new_type(self, name: str):
        """Output type of a node of the graph being built."""
        if name not in self.new_types:
            node = self.nodes[name]
            self.new_types[name] = node.op.infer([self.new_type(i) for i in node.inputs])
        return self.new_types[name]

    def run(self) -> Graph:
        """The lowered graph, every node of the input lowered (nodes nothing reads included)."""
        for name in self.graph.topo_order():
            self.lower(name)
        return Graph(nodes=self.nodes, outputs=self.graph.outputs, time_steps=self.graph.time_steps,
                     history=self.graph.history)

    def lower(self, name: str) -> None:
        node, op = self.graph.nodes[name], self.graph.op(name)
        inputs = node.inputs
        if isinstance(op, (Conv2d, Linear, ReLU)) and name in self.plan.parent and self._feeds_requantize(name):
            return  # built by _requantize, which knows the target scale
        if self._is_static_first_layer(name):
            return self._static_first_layer(name)
        if isinstance(op, Input) and op.time == "stream" and op.dtype.kind == "float":
            return self._real_stream_input(name)
        if isinstance(op, Linear) and isinstance(self.graph.op(inputs[0]), TimeMean):
            return self._head_after_time_mean(name)
        if isinstance(op, (Conv2d, Linear)):
            return self._synapse(name)
        if isinstance(op, TemporalWindow) and self._is_float(name):
            return self._window(name)
        if is_float_neuron(op):
            return self._neuron(name)
        if isinstance(op, MultiLevelSpike):
            return self._level_quantiser(name)
        if isinstance(op, LI):
            return self._readout(name)
        if op.ROLE == "neuron" and not op.INTEGER_INPUTS:
            raise QuantizeError(f"neuron {name!r} ({op.type_name()}) has no integer lowering: a float neuron cannot "
                                f"stay inside the integer graph")
        if isinstance(op, Add) and self._is_float(name):
            return self._sum(name)
        if isinstance(op, TokenMean):
            return self._token_mean(name)
        if isinstance(op, Scale) and name in self.plan.parent and not self._is_float(inputs[0]):
            self.add(name, Delay(), *inputs)  # the factor moves into the consumers' thresholds
            self.scale[name] = self._fixed_scale(name)
            return
        if isinstance(op, Quantize):
            return self._requantize(name)
        if isinstance(op, TimeMean) and self.graph.consumers(name) and all(
                isinstance(self.graph.op(c), Linear) for c in self.graph.consumers(name)):
            return  # a classifier on the time mean is built by _head_after_time_mean
        if isinstance(op, TimeMean):
            return self._output_mean(name)
        # integer, spike and structural nodes keep their semantics (a max-pool of a group keeps its scale)
        group_member = isinstance(op, (MaxPool2d, ReLU, Flatten)) and name in self.plan.parent
        self.add(name, op, *inputs, scale=self._group_scale_of(name) if group_member else None)

    # ---- node rules
    def _group_scale_of(self, name: str) -> float:
        return self.group_scale(self.plan.group_of(name))

    def _synapse(self, name: str) -> None:
        (src,) = self.graph.nodes[name].inputs
        self._integer_synapse(name, src, self._group_scale_of(name))

    def _integer_synapse(self, name: str, src: str, out_scale: float, *, out_bits: int = STATE_BITS,
                         overflow: str = "wrap") -> None:
        op = self.graph.op(name)
        weights = self._effective_weights(name)
        e = weight_exponent(weights, out_scale)  # negative: the sums are floored by the shift (A2OS2A's K)
        w = integer_weights(weights, out_scale * 2.0 ** e)
        common = dict(weight=w, weight_exp=e, bias=integer_bias(op.bias, out_scale), out_bits=out_bits,
                      overflow=overflow, delay=0)
        if isinstance(op, Linear):
            new = IntDense(**common)
        else:
            new = IntConv2d(**common, stride=op.stride, padding=op.padding, dilation=op.dilation, groups=op.groups)
        self.add(name, new, src, scale=out_scale)
        self.report["synapses"][name] = {"scale": out_scale, "weight_exp": e,
                                         "weight_error": float(np.max(np.abs(weights - w * out_scale * 2.0 ** e),
                                                                      initial=0.0))}

    def _feeds_requantize(self, name: str) -> bool:
        group = self.groups[self.plan.group_of(name)]
        return any(isinstance(self.graph.op(c), Quantize) for m in group.members for c in self.graph.consumers(m))

    def _requantize(self, name: str) -> None:
        """Conv -> ReLU -> Quantize(s_K) (A2OS2A's K): an IntConv on the K scale, saturated, then ReLU."""
        op, (src,) = self.graph.op(name), self.graph.nodes[name].inputs
        chain = [src]
        while isinstance(self.graph.op(chain[-1]), ReLU):
            chain.append(self.graph.nodes[chain[-1]].inputs[0])
        synapse = chain[-1]
        if not isinstance(self.graph.op(synapse), (Conv2d, Linear)) or op.signed:
            raise QuantizeError(f"node {name!r}: only Conv2d/Linear -> ReLU -> unsigned Quantize is supported")
        (syn_src,) = self.graph.nodes[synapse].inputs
        self._integer_synapse(synapse, syn_src, op.scale, out_bits=op.bits + 1, overflow="saturate")
        previous = synapse
        for relu in reversed(chain[:-1]):
            previous = self.add(relu, ReLU(), previous, scale=op.scale)
        self.add(name, Delay(), previous, scale=op.scale)

    def _window(self, name: str) -> None:
        op = self.graph.op(name)
        step = self._group_scale_of(name)
        weights = np.round(np.asarray(op.weights, np.float64) / step).astype(np.int64)
        self.add(name, TemporalWindow(weights=weights), *self.graph.nodes[name].inputs, scale=step)
        self.report["synapses"][name] = {"scale": step,
                                         "weight_error": float(np.max(np.abs(op.weights - weights * step)))}

    def _sum(self, name: str) -> None:
        """An ``IntAdd`` as wide as its inputs' sum can get (a sum of spikes, Spikformer's residual stream of
        counts, is a few bits wide), at most ``STATE_BITS``."""
        scale = self._group_scale_of(name)
        inputs = self.graph.nodes[name].inputs
        bound = sum(max(abs(t.dtype.min), abs(t.dtype.max)) for t in (self.new_type(self.rename.get(i, i))
                                                                     for i in inputs))
        bits = min(STATE_BITS, int(bound).bit_length() + 1)
        self.add(name, IntAdd(out_bits=bits, overflow="wrap"), *inputs, scale=scale)

    def _static_first_layer(self, name: str) -> None:
        op, (repeat,) = self.graph.op(name), self.graph.nodes[name].inputs
        (image,) = self.graph.nodes[repeat].inputs
        # neurons, directly or behind a max-pool of the currents (QKFormer ImageNet): the pool keeps the scale
        pools = [c for c in self.graph.consumers(name) if isinstance(self.graph.op(c), MaxPool2d)]
        neurons = self._consumers_via(name) + [n for pool in pools for n in self._consumers_via(pool)]
        fed = len(self.graph.consumers(name)) + sum(len(self.graph.consumers(pool)) - 1 for pool in pools)
        if len(self.groups[self.plan.group_of(name)].members) > 1 and not pools:
            scale = self._group_scale_of(name)  # the start of a residual stream (sdt-v2): the stream's scale
        elif len(neurons) != fed:
            raise QuantizeError(f"node {name!r}: the first convolution of a static image must feed neurons "
                                "(directly or through a max-pool) or a residual sum only")
        else:
            theta = max(float_threshold(self.graph.op(n)) for n, _ in neurons)
            scale = theta / (self.opt["static_vth"] + 1.0 / 128)
            if pools:
                self.groups[self.plan.group_of(name)].scale = scale
        self.add(f"{name}.host", op, image)
        self.add(f"{name}.quant", Quantize(scale=scale, bits=self.opt["input_bits"]), f"{name}.host", scale=scale)
        rep = self.graph.op(repeat)
        self.add(name, Repeat(time_steps=rep.time_steps, data_steps=rep.data_steps), f"{name}.quant", scale=scale)
        self.report["inputs"][name] = {"scale": scale, "bits": self.opt["input_bits"], "computed": "once, on the host"}

    def _real_stream_input(self, name: str) -> None:
        op = self.graph.op(name)
        bits = self.opt["input_bits"]
        data = self._calibration_values(name)
        integral = bool(torch.equal(data, data.round()))
        peak = float(data.abs().max()) if data.numel() else 0.0
        signed = bool((data < 0).any())
        if integral and peak < 2 ** (bits - 1):  # event counts: exact, in as few bits as twice the peak needs
            scale, bits = 1.0, max(2, (2 * int(peak)).bit_length() + signed)
        else:
            scale = max(peak, 1e-12) / ((1 << (bits - 1)) - 1)
        self.add(name, op)
        self.rename[name] = self.add(f"{name}.quant", Quantize(scale=scale, bits=bits, signed=signed), name,
                                     scale=scale)
        self.report["inputs"][name] = {"scale": scale, "bits": bits, "signed": signed, "integral": integral,
                                       "peak": peak}

    def _calibration_values(self, name: str) -> torch.Tensor:
        if self.ctx.calibration is None or name not in self.ctx.calibration:
            raise QuantizeError(f"input {name!r} carries real values: quantising it needs calibration data "
                                f"(PassContext.calibration with a feed for {name!r})")
        return torch.as_tensor(self.ctx.calibration[name])

    def _neuron(self, name: str) -> None:
        op, (src,) = self.graph.op(name), self.graph.nodes[name].inputs
        problem = neuron_problem(name, op)
        if problem:
            raise QuantizeError(problem)
        multiplier, edge = 1.0, src
        if edge in self.scale:                 # lowered already (a synapse, a sum, the host's quantisation)
            scale = self.scale[edge]
        elif edge in self.plan.parent:
            scale = self._group_scale_of(edge)
        else:
            scale = 1.0                        # an integer edge the float graph already had (SDSA counts)
        # a free scale was chosen for this threshold; a fixed one needs fraction bits instead
        fixed = edge not in self.plan.parent or self.groups[self.plan.group_of(edge)].fixed is not None
        theta = float_threshold(op)
        a = src
        shift = 0
        if fixed:
            shift = self._fraction_bits(src, scale)
            if shift:
                a = self.add(f"{name}.shift", IntShift(shift=shift, out_bits=STATE_BITS, overflow="wrap"), src,
                             scale=scale / 2.0 ** shift)
        ratio = theta * multiplier * 2.0 ** shift / scale
        if fixed and shift >= self.plan.time_steps - 1:
            vth, exact = math.floor(ratio), True  # an integer membrane: h > floor(ratio) is h > ratio
        else:
            # h64 > 64·vth should be h64 > 64·ratio - 1: exact when ratio is in (vth, vth + 1/64], else
            # the nearest such vth (too few fraction bits, or a threshold the scale was not chosen for)
            vth = round(ratio - 1.0 / 64)
            exact = 0 < ratio - vth <= 1.0 / 64
        decay, i_decay = voltage_decay(name, op), current_decay(op)
        if type(op) is TernaryLIF:
            new = LoihiTernaryLIF(current_decay=i_decay, voltage_decay=decay, vth_hi=vth, vth_lo=-vth)
        else:
            new = LoihiLIF(current_decay=i_decay, voltage_decay=decay, vth=vth)
        self.add(name, new, a)
        self.report["neurons"][name] = {"input_scale": scale / 2.0 ** shift / multiplier, "vth": vth,
                                        "fraction_bits": shift, "voltage_decay": decay, "current_decay": i_decay,
                                        "threshold_exact": bool(exact), "threshold_ratio": ratio}

    def _level_quantiser(self, name: str) -> None:
        """SDT-V3's quantiser on its integer input ``a`` of scale ``s``: a ``LevelThreshold`` whose thresholds are
        the half-levels ``(k - 1/2) / s`` with ties to even (:func:`~.multilevel.half_level_thresholds`), so the
        level is ``round_half_even(clamp(s a, 0, D))`` exactly; it sends the level, one step worth ``1/norm``."""
        op, (src,) = self.graph.op(name), self.graph.nodes[name].inputs
        edge = self.rename.get(src, src)
        scale = self.scale[edge] if edge in self.scale else self._group_scale_of(src)
        thresholds = half_level_thresholds(scale, op.levels)
        self.add(name, LevelThreshold(thresholds=thresholds, encoding=op.encoding), src, scale=1.0 / op.norm)
        self.report.setdefault("levels", {})[name] = {"input_scale": scale, "thresholds": thresholds.tolist()}

    def _readout(self, name: str) -> None:
        """A leaky integrator (NIR ``LI``) is a readout the host computes after the chip: its integer input
        back in real units (a ``Scale``, which the host computes), then the float LI as it was. Exact: the LI
        sees the real values of its quantised input. Anything but the host may not read it."""
        (src,) = self.graph.nodes[name].inputs
        chip = [c for c in self.graph.consumers(name) if self.graph.op(c).ROLE not in ("io", "host")]
        if chip:
            raise QuantizeError(f"neuron {name!r} (LI) feeds {chip}: a leaky integrator is lowered as a real-valued "
                                f"readout on the host, which only the graph's outputs may read")
        if self._is_float(src) and self.rename.get(src, src) not in self.scale:
            raise QuantizeError(f"neuron {name!r} (LI) reads the real-valued {src!r}: its input must be an integer "
                                f"result (a synapse or spikes) to be read back on the host")
        step = self.scale.get(self.rename.get(src, src), 1.0)
        real = self.add(f"{name}.real", Scale(scale=float(step)), src)
        self.add(name, self.graph.op(name), real)
        self.report["neurons"][name] = {"readout": "host", "input_scale": step}

    def _fraction_bits(self, src: str, scale: float) -> int:
        """``T - 1`` fraction bits, fewer if the shifted input would leave the neuron input range: by the
        calibration data (its peak with ``CALIBRATED_HEADROOM``; the clamp covers the worst case), else
        by the input's dtype."""
        if src in self.observed:
            peak = self.observed[src] / scale * CALIBRATED_HEADROOM
        else:
            dtype = self.new_type(self.rename.get(src, src)).dtype
            peak = max(abs(dtype.min), abs(dtype.max))
        bits = max(0, self.plan.time_steps - 1)
        while bits and peak * 2 ** bits >= 1 << (self.input_bits - 1):
            bits -= 1
        return bits

    def _token_mean(self, name: str) -> None:
        """Token sum, then a right shift by ``floor(log2 N)``: the floored mean when ``N`` is a power of two,
        so the head neuron's input stays in the residual stream's range (a plain sum of ``N`` tokens would
        leave the 2^17 a neuron takes). Read by level quantisers (SDT-V3), the sum itself on scale ``s / N``:
        their half-level thresholds take the ``N``, so the mean is exact."""
        (src,) = self.graph.nodes[name].inputs
        tokens = math.prod(self.types[src].shape[1:])
        readers = self.graph.consumers(name)
        if readers and all(isinstance(self.graph.op(c), MultiLevelSpike) for c in readers):
            self.add(name, TokenSum(out_bits=STATE_BITS, overflow="wrap"), src,
                     scale=self._group_scale_of(src) / tokens)
            return
        shift = tokens.bit_length() - 1
        total = self.add(f"{name}.sum", TokenSum(out_bits=STATE_BITS, overflow="wrap"), src,
                         scale=self._group_scale_of(src))
        self.add(name, IntShift(shift=-shift, out_bits=STATE_BITS, overflow="wrap"), total,
                 scale=self._group_scale_of(src) * 2.0 ** shift / tokens)

    def _output_mean(self, name: str) -> None:
        op, (src,) = self.graph.op(name), self.graph.nodes[name].inputs
        scale = self.scale.get(src, 1.0)
        self.add(f"{name}.int", op, src, scale=scale)
        self.add(name, Scale(scale=float(scale)), f"{name}.int")


    def _head_after_time_mean(self, name: str) -> None:
        """A classifier ``Linear`` on the time mean (Spikformer's head) runs per timestep on the integer stream
        the mean reads, before the mean: ``W mean_t(z) + b = mean_t(W z + b)``, so the chip sends the logits'
        integer sums and the host averages them (``<name>.int``) and rescales (``<name>``). The weights take the
        finest scale their 8 bits allow."""
        op, (mean,) = self.graph.op(name), self.graph.nodes[name].inputs
        (src,) = self.graph.nodes[mean].inputs
        src_scale = self.scale[self.rename.get(src, src)] if self.rename.get(src, src) in self.scale else 1.0
        weights = np.asarray(op.weight, np.float64) * src_scale
        out_scale = float(np.max(np.abs(weights), initial=0.0)) / WEIGHT_LIMIT or 1.0
        e = weight_exponent(weights, out_scale)
        w = integer_weights(weights, out_scale * 2.0 ** e)
        self.add(f"{name}.dense", IntDense(weight=w, weight_exp=e, bias=integer_bias(op.bias, out_scale),
                                           out_bits=STATE_BITS, overflow="wrap", delay=0), src, scale=out_scale)
        self.add(f"{name}.int", TimeMean(), f"{name}.dense", scale=out_scale)
        self.add(name, Scale(scale=out_scale), f"{name}.int")
        self.report["synapses"][f"{name}.dense"] = {
            "scale": out_scale, "weight_exp": e,
            "weight_error": float(np.max(np.abs(weights - w * out_scale * 2.0 ** e), initial=0.0))}


def observed_peaks(graph: Graph, calibration, nodes: Collection[str] | None = None) -> dict[str, float]:
    """Largest magnitude each of ``nodes`` (default: every node) reaches on the calibration data (empty
    without data), gathered batch by batch (:func:`~.calibrate.value_ranges`)."""
    if calibration is None:
        return {}
    return value_ranges(graph, calibration, nodes=nodes).peak


def token_multiplier(t) -> float:
    """How many residual steps one step of the (shifted) token mean of ``t`` ``[C, H, W]`` is worth."""
    tokens = math.prod(t.shape[1:])
    return tokens / 2.0 ** (tokens.bit_length() - 1)


__all__ = ["Lowering", "QuantizeError", "observed_peaks", "token_multiplier"]

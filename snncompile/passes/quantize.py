"""quantize: turn a float graph (BatchNorm folded, neurons normalised, attention lowered) into the
integer graph a Loihi-style target runs: Loihi LIF neurons, 8-bit synapses, integer sums.

The scheme (one real scale per integer edge, ``real value = scale * integer``):

- **Scale groups.** Float edges that must share a scale are grouped: an ``Add``'s inputs and output (the
  residual stream), a ``MaxPool2d`` or ``ReLU``'s input and output. A group's *sources* are weighted
  nodes (``Conv2d``, ``Linear``, ``TemporalWindow``), whose integer weights can be put on any scale, or
  fixed-scale values (spikes: 1; an integer attention result behind its ``Scale`` node: that factor).
- **Thresholds decide free scales.** A normalised neuron fires on ``h > Θ'`` (``Θ'`` the float threshold
  just below ``τθ``). Lava fires on ``h64 > vth << 6`` where ``h64`` is the membrane in 1/64 input steps.
  On integer inputs ``a`` (scale ``s``) the two agree exactly when ``Θ'/s`` lies in ``[vth, vth + 1/64)``
  (no grid point of ``h64`` falls between), so a free group's scale is ``s = Θ'/(vth + δ)`` with
  ``δ = 1/(128·m)`` (``m``: the largest multiplier among its neurons). Weights are ``W/(s·2^e)`` rounded
  to Lava's even 8-bit grid [-256, 254], with the smallest exponent ``e`` that fits them (sources sharing
  a group scale differ in ``e``); a negative ``e`` floors the sum (A2OS2A's K onto its 8-bit grid).
- **Headroom.** ``vth`` is at most ``2^(input_bits-4)``, and the values the group reaches on the
  calibration data stay 2x inside the neuron input range (``input_bits``: the target's, else 16, Lava's
  ``a_in``): the scale is coarsened until both hold.
- **Fixed scales get fraction bits.** Where the input scale is fixed (attention counts, SDSA popcounts),
  the neuron's input is shifted left by ``j`` bits (``IntShift``): the τ = 2 membrane of integer inputs
  is then an integer in the shifted units for ``j`` halvings and ``vth = floor(Θ'·2^j/s)`` compares
  exactly. ``j = T - 1``, fewer if the shifted input could leave the input range.
- **Static images** are convolved once on the host (``Conv2d`` before the ``Repeat``), quantised to
  ``input_bits`` at the threshold scale of the first neurons (``vth = static_vth``), then repeated. A first
  convolution that starts a residual stream (sdt-v2's stem feeds a sum) is quantised at the stream's scale.
  Real-valued stream inputs (event frames) are quantised at scale 1 in as few bits as twice the peak
  needs when the calibration data holds integers only, else at ``max|x| / (2^(input_bits-1) - 1)``.
- **Imported neurons.** A ``CubaLIF`` (NIR) becomes a Loihi LIF whose current decays too
  (``current_decay = round(4096 dt/tau_syn)``), with the threshold on its membrane in input units
  (``quantize_formats``); an ``LI`` readout is computed on the host after the chip, on its integer input times
  its scale (``<li>.real``). Any other float neuron, and one of these that has no exact form (``v_leak``, a
  subtractive reset, per-neuron constants), is refused naming node, type and reason.
- **Multi-level quantisers** (SDT-V3, after ``lower_levels``): ``round_half_even(clamp(x, 0, D))`` on an integer
  input ``a`` of scale ``s`` becomes a ``LevelThreshold`` whose ``D`` thresholds sit at the half-levels
  ``(k - 1/2)/s``, computed in exact rationals; where a half-level is an integer the tie goes to the even level
  (level ``k`` starts at it for an even ``k``, one step above it for an odd ``k``), so the level equals the
  rounding of the real value ``s a`` exactly, on any scale. It sends its level (scale ``1/norm``: a ``/D`` left
  in a norm lands in the readers' weights). A group read only by quantisers (the residual stream of
  convolution outputs, a convolution's output) has no threshold to align: its scale is the finest its weights
  allow, coarsened for the calibration headroom as a neuron's input is; its sums are ``IntAdd`` of a proven
  width. A token mean read by quantisers is the token sum itself on scale ``s/N``: the thresholds take ``N``.
- **The head.** ``TokenMean`` becomes a ``TokenSum`` and a right shift by ``floor(log2 N)`` (the floored
  mean for ``N`` a power of two), so the head neuron's input stays in the residual stream's range. The
  classifier's ``Linear`` becomes an ``IntDense`` whose time mean is rescaled by a final ``Scale``.
- **Explicit overflow.** Biases travel with the sums (``bias``, output units). Every sum is created
  wrapping; where the range proof cannot bound a sum within its width it saturates instead, and a neuron
  whose input is not proven to fit ``input_bits`` gets a saturating clamp (``<neuron>.clamp``). Both are
  listed under ``saturating``; on real data they do not act (``snncompile verify`` reports saturation).

Every synapse is created with ``delay = 0`` (the float graph's timing); the scheduling pass gives them
the target's delays. Exactness against the float graph is measured (``snncompile verify``: float ->
quantised-float (``float_view``) -> integer), never assumed; the report lists, per neuron, the input
scale, threshold, fraction bits and whether the threshold comparison is exact, and every node's scale.
"""
from __future__ import annotations

import dataclasses

from ..ir import Graph, Node
from ..ir.interval import Interval
from ..ir.ops import IntShift, LoihiLIF, LoihiTernaryLIF
from ..ir.ops.loihi import ACT_SHIFT
from ..ir.types import int_type
from .float_view import float_view
from .pipeline import Alignment, PassContext, Reported, as_pass
from .prove_ranges import analyse
from .quantize_formats import is_float_neuron, membrane_gain
from .quantize_lowering import Lowering, QuantizeError

DEFAULTS = {"input_bits": 16, "static_vth": 512}


def _saturated_where_unproven(graph: Graph, input_bits: int) -> tuple[Graph, list[str]]:
    """Make every overflow explicit: a wrapping sum whose proven range exceeds its width saturates instead,
    and a Loihi neuron whose input range is not proven to fit ``input_bits`` gets a saturating clamp to
    that width (``<neuron>.clamp``). On data like the calibration's they never act (verify reports their saturation);
    the range proof then holds by construction. Returns the graph and the nodes made saturating."""
    changed: list[str] = []
    for _ in range(len(graph.nodes)):
        analysis = analyse(graph)
        nodes, edit = dict(graph.nodes), None
        for name in graph.topo_order():
            node, proven = graph.nodes[name], analysis.proven[name]
            out = analysis.types[name]
            if getattr(node.op, "overflow", None) == "wrap" and proven is not None \
                    and not proven.within(Interval.of_dtype(out.dtype)):
                edit = (name, Node(dataclasses.replace(node.op, overflow="saturate"), node.inputs))
                break
            if isinstance(node.op, (LoihiLIF, LoihiTernaryLIF)):
                x = analysis.carried[node.inputs[0]]
                if x is None or not x.within(Interval.of_dtype(int_type(input_bits))):
                    clamp = f"{name}.clamp"
                    nodes[clamp] = Node(IntShift(shift=0, out_bits=input_bits, overflow="saturate"), node.inputs)
                    edit = (name, Node(node.op, (clamp,)))
                    break
        if edit is None:
            return graph, changed
        nodes[edit[0]] = edit[1]
        changed.append(edit[0])
        graph = dataclasses.replace(graph, nodes=nodes)
    raise QuantizeError("making overflows explicit did not settle")


def _pruned(graph: Graph) -> Graph:
    """Drop nodes nothing reads (a Repeat whose image moved into a host convolution)."""
    live, todo = set(), list(graph.outputs)
    while todo:
        n = todo.pop()
        if n not in live:
            live.add(n)
            todo.extend(graph.nodes[n].inputs)
    nodes = {n: node for n, node in graph.nodes.items() if n in live}
    return dataclasses.replace(graph, nodes=nodes)


def _membrane_scales(before: Graph, after: Graph) -> dict[str, float]:
    """The real value of one step of each lowered neuron's Loihi membrane (``after`` quantised): the membrane
    is in 1/64 steps of the neuron's input (``ACT_SHIFT``), times the float neuron's membrane gain (a
    ``CubaLIF``'s ``g``; 1 for the LIF family)."""
    return {n: after.scales.get(after.nodes[n].inputs[0], 1.0) / (1 << ACT_SHIFT) * membrane_gain(node.op)
            for n, node in before.nodes.items() if is_float_neuron(node.op)}


def _align(before: Graph, after: Graph) -> Alignment:
    """Integer values times their scale, the Loihi membranes of the lowered neurons times theirs."""
    return Alignment(scale=dict(after.scales), membrane_scale=_membrane_scales(before, after))


@as_pass(align=_align, float_view=float_view)
def quantize(graph: Graph, ctx: PassContext) -> Reported:
    """Put the whole graph on integers (see the module docstring for the scheme).

    Requires: BatchNorms folded, neurons normalised (``normalize_neurons``), attention lowered
    (``lower_attention``); calibration data when an input carries real values over time.
    Options (``ctx.options["quantize"]``): ``input_bits`` (16), ``static_vth`` (512).
    Guarantees: no float node is left between the inputs' quantisation and the output ``Scale`` (or a host
    ``LI`` readout); every
    synapse has ``delay = 0``; ``Graph.scales`` holds the real value of one integer step of every node
    whose values are not in real units already (absent: 1). Raises :class:`QuantizeError` naming the node
    it cannot lower.
    """
    options = {**DEFAULTS, **ctx.options_for(quantize)}
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"quantize: unknown options {unknown} (known: {sorted(DEFAULTS)})")
    lowering = Lowering(graph, ctx, options)
    out, lowering.report["saturating"] = _saturated_where_unproven(_pruned(lowering.run()), lowering.input_bits)
    for name, node in out.nodes.items():  # a clamp added after the lowering has its input's scale
        if isinstance(node.op, IntShift) and node.op.shift == 0 and node.inputs[0] in lowering.scale:
            lowering.scale.setdefault(name, lowering.scale[node.inputs[0]])
    out = dataclasses.replace(out, scales={n: s for n, s in lowering.scale.items() if n in out.nodes})
    lowering.report["scales"] = dict(out.scales)
    lowering.report["membrane_scales"] = _membrane_scales(graph, out)
    return Reported(out, lowering.report)


__all__ = ["quantize", "QuantizeError"]

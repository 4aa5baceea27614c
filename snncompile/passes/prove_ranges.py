"""prove_ranges: static range analysis that proves the bit width of every integer tensor.

Each node type states how its output interval follows from its inputs' (``Op.value_range``); this pass
walks the graph with those rules, checks every integer edge, every Loihi neuron's state and, given a
target, its precision limits, and narrows each ``out_bits`` to the width its values provably need.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..ir import Graph, Node, TensorType
from ..ir.interval import Interval
from ..ir.ops import Output, ops_where
from ..ir.ops.loihi import ACT_SHIFT, STATE_BITS
from ..targets import Target, load_target
from .pipeline import PassContext, as_pass

NEURONS = ops_where(ROLE="neuron", INTEGER_INPUTS=True)
SYNAPSES = ops_where(ROLE="synapse", INTEGER_INPUTS=True)
# In-core arithmetic on synaptic sums: Lava adds every a_in port, shifts and delays inside the core.
DENDRITIC = ops_where(DENDRITIC=True)

STATE_LIMIT = (1 << (STATE_BITS - 1)) - 1        # |u| and |v| within signed 24 bits, u clear of its wrap
INPUT_LIMIT = (1 << (STATE_BITS - 1 - ACT_SHIFT)) - 1   # |a| < 2^17: a << 6 stays within 24 bits


@dataclass(frozen=True)
class RangeAnalysis:
    """``proven``: each node's output interval before its own wrap or saturation (``None``: float or
    unknown); ``carried``: the values its output edge actually carries; ``types``: the output types."""

    proven: dict[str, Interval | None]
    carried: dict[str, Interval | None]
    types: dict[str, TensorType]


def analyse(graph: Graph) -> RangeAnalysis:
    """Intervals of every node in topological order (the graph must be valid)."""
    types = graph.types()
    proven: dict[str, Interval | None] = {}
    carried: dict[str, Interval | None] = {}
    for name in graph.topo_order():
        node, out = graph.nodes[name], types[name]
        r = None
        if out.dtype.kind != "float":
            r = node.op.value_range([carried[s] for s in node.inputs], [types[s] for s in node.inputs], out)
        if r is not None and node.op.delay and out.time == "stream":
            r = Interval.hull(r, Interval(0, 0))  # a delayed stream starts with zeros
        proven[name] = r
        carried[name] = None if r is None else _after_overflow(r, node.op.overflow, out)
    return RangeAnalysis(proven, carried, types)


def value_ranges(graph: Graph) -> dict[str, Interval | None]:
    """The interval of the values every node's output edge carries (``None``: float or unknown)."""
    return analyse(graph).carried


def _after_overflow(r: Interval, overflow: str, out: TensorType) -> Interval:
    fits = Interval.of_dtype(out.dtype)
    if r.within(fits) or overflow == "none":
        return r
    return r.clip(fits) if overflow == "saturate" else fits  # a wrapped value can be anything in the dtype


def width(r: Interval, signed: bool) -> int:
    """Bits of the narrowest signed (two's complement) or unsigned integer holding ``r``."""
    if not signed:
        return max(1, r.hi.bit_length())
    return max(r.hi.bit_length(), (-r.lo - 1).bit_length() if r.lo < 0 else 0) + 1


def _what(graph: Graph, name: str) -> str:
    return f"node {name!r} ({graph.op(name).type_name()})"


def _signed_range(bits: int) -> Interval:
    return Interval(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


# -- checks --------------------------------------------------------------------------------------------------------

def _integer_nodes(graph: Graph, a: RangeAnalysis) -> list[str]:
    return [n for n in graph.nodes if a.types[n].dtype.kind == "int"]


def _unproven(graph: Graph, a: RangeAnalysis) -> list[str]:
    """Integer nodes without a proof although their inputs have one (downstream nodes inherit the gap)."""
    problems = []
    for name in _integer_nodes(graph, a):
        inputs_known = all(a.carried[s] is not None or a.types[s].dtype.kind == "float"
                           for s in graph.nodes[name].inputs)
        if a.proven[name] is None and inputs_known:
            problems.append(f"{_what(graph, name)}: no proven range (its type has no value_range rule for "
                            f"these inputs), so its {a.types[name].dtype} values cannot be checked")
    return problems


def _width_problems(graph: Graph, a: RangeAnalysis) -> list[str]:
    """A proven interval beyond the output dtype: an error unless the node saturates on purpose."""
    problems = []
    for name in _integer_nodes(graph, a):
        r, dtype, overflow = a.proven[name], a.types[name].dtype, graph.op(name).overflow
        if r is None or r.within(Interval.of_dtype(dtype)) or overflow == "saturate":
            continue
        need = width(r, dtype.signed)
        why = "would wrap them" if overflow == "wrap" else "cannot hold them (its type is too narrow)"
        problems.append(f"{_what(graph, name)}: proven values {r} need {need} bits; its {dtype} output "
                        f"(overflow={overflow!r}) {why}")
    return problems


def _neuron_inputs(graph: Graph, a: RangeAnalysis):
    """``(name, neuron, input interval)`` of every Loihi neuron whose input has a proven interval."""
    for name, node in graph.nodes.items():
        if isinstance(node.op, NEURONS) and a.carried[node.inputs[0]] is not None:
            yield name, node.op, a.carried[node.inputs[0]]


def _neuron_problems(graph: Graph, a: RangeAnalysis) -> list[str]:
    """Each Loihi neuron's input must stay within its documented limit and its current ``u`` must never
    wrap (``v``'s saturation is defined behaviour: see :func:`_saturating`)."""
    problems = []
    for name, op, x in _neuron_inputs(graph, a):
        if not x.within(Interval(-INPUT_LIMIT, INPUT_LIMIT)):
            problems.append(f"{_what(graph, name)}: input {x} exceeds the limit |a| < 2^17 (a << 6 must stay "
                            f"within 24 bits and int32)")
            continue  # state_range assumes that limit
        u, _ = op.state_range(x, graph.time_steps)
        if not u.within(Interval(-STATE_LIMIT, STATE_LIMIT)):
            problems.append(f"{_what(graph, name)}: current u may reach {u} within {graph.time_steps} steps, "
                            f"beyond the signed {STATE_BITS}-bit range: u would wrap")
    return problems


def _saturating(graph: Graph, a: RangeAnalysis) -> dict[str, dict]:
    """Deliberate saturation: ``overflow='saturate'`` nodes whose proven values exceed their width, and
    neurons whose voltage can reach Lava's saturation at +-(2^23 - 1)."""
    found = {}
    for name in _integer_nodes(graph, a):
        r, dtype = a.proven[name], a.types[name].dtype
        if r is not None and not r.within(Interval.of_dtype(dtype)) and graph.op(name).overflow == "saturate":
            found[name] = {"proven": [r.lo, r.hi], "bits": dtype.bits}
    for name, op, x in _neuron_inputs(graph, a):
        if x.within(Interval(-INPUT_LIMIT, INPUT_LIMIT)):  # beyond it, prove_ranges has already failed
            _, v = op.state_range(x, graph.time_steps)
            if not v.within(Interval(-STATE_LIMIT, STATE_LIMIT)):
                found[name] = {"proven": [v.lo, v.hi], "bits": STATE_BITS, "state": "v"}
    return found


# -- graded messages and target limits --------------------------------------------------------------------------------

def in_core(graph: Graph) -> set[str]:
    """Nodes whose output is a synaptic sum still inside the receiving core: synapses, and dendritic
    arithmetic on synaptic sums and relayed partial sums (``RELAYED``: received through synapses) only."""
    core: set[str] = set()
    for name in graph.topo_order():
        node = graph.nodes[name]
        if isinstance(node.op, SYNAPSES) or (isinstance(node.op, DENDRITIC) and all(
                s in core or graph.op(s).RELAYED for s in node.inputs)):
            core.add(name)
    return core


def graded_edges(graph: Graph, types: dict[str, TensorType]) -> list[tuple[str, str]]:
    """Edges ``(src, dst)`` that carry integer (non-spike) values from one process to another: graded
    spikes. Not graded: a synaptic sum delivered inside its core (into a Loihi neuron or further dendritic
    arithmetic), and a graph output (read by the host, not sent as a spike)."""
    core = in_core(graph)
    edges = []
    for src, dst in graph.edges():
        op = graph.op(dst)
        inside = src in core and (isinstance(op, NEURONS) or (dst in core and isinstance(op, DENDRITIC)))
        if types[src].dtype.kind == "int" and not isinstance(op, Output) and not inside:
            edges.append((src, dst))
    return edges


def _graded_sources(graph: Graph, types: dict[str, TensorType]) -> list[str]:
    return list(dict.fromkeys(src for src, _ in graded_edges(graph, types)))


def _target_problems(graph: Graph, a: RangeAnalysis, target: Target) -> list[str]:
    return (_payload_problems(graph, a, target) + _input_bits_problems(graph, a, target)
            + _weight_problems(graph, target))


def _payload_problems(graph: Graph, a: RangeAnalysis, target: Target) -> list[str]:
    if target.graded_spike_payload_bits is None:
        return []
    bits = target.graded_spike_payload_bits.value
    problems = []
    for src, dst in graded_edges(graph, a.types):
        r = a.carried[src]
        if bits == 0:
            problems.append(f"{_what(graph, src)}: sends integer values {r} to {dst!r}, a graded spike; target "
                            f"{target.name!r} has binary spikes only (graded_spike_payload_bits = 0)")
        elif r is not None and not r.within(_signed_range(bits)):
            problems.append(f"{_what(graph, src)}: sends values {r} to {dst!r}, beyond target {target.name!r}'s "
                            f"{bits}-bit graded spike payload")
    return problems


def _input_bits_problems(graph: Graph, a: RangeAnalysis, target: Target) -> list[str]:
    if target.input_bits is None:
        return []
    bits = target.input_bits.value
    problems = []
    for src, dst in graph.edges():
        r = a.carried[src]
        if isinstance(graph.op(dst), NEURONS) and r is not None and not r.within(_signed_range(bits)):
            problems.append(f"{_what(graph, dst)}: synaptic input from {src!r} spans {r}, beyond target "
                            f"{target.name!r}'s {bits}-bit neuron input (input_bits)")
    return problems


def _weight_problems(graph: Graph, target: Target) -> list[str]:
    if target.weight_bits is None:
        return []
    # a target's weight_bits is the magnitude; a mixed-sign weight adds a sign bit (IntDense.weight_bits)
    allowed = _signed_range(target.weight_bits.value + 1)
    problems = []
    for name, node in graph.nodes.items():
        if isinstance(node.op, SYNAPSES) and node.op.weight.size:
            w = Interval(int(node.op.weight.min()), int(node.op.weight.max()))
            if not w.within(allowed):
                problems.append(f"{_what(graph, name)}: weights span {w}, beyond target {target.name!r}'s "
                                f"{target.weight_bits.value}-bit weights plus sign ({allowed})")
    return problems


def _problems(graph: Graph, a: RangeAnalysis, target: Target | None) -> list[str]:
    found = _unproven(graph, a) + _width_problems(graph, a) + _neuron_problems(graph, a)
    return found + ([] if target is None else _target_problems(graph, a, target))


# -- narrowing -----------------------------------------------------------------------------------------------------

def _narrowest(graph: Graph, name: str, a: RangeAnalysis):
    """The node with the smallest ``out_bits`` (at least 2) whose output type holds its proven values and
    whose parameters stay valid (an IntDense bias, for one, must fit too); the node itself if none is
    narrower."""
    op, r = graph.op(name), a.proven[name]
    in_types = [a.types[s] for s in graph.nodes[name].inputs]
    fewest = width(r, signed=r.lo < 0)  # no dtype of fewer bits holds r: those candidates are not tried
    for bits in range(max(2, fewest), op.out_bits):
        candidate = dataclasses.replace(op, out_bits=bits)
        if not candidate.problems() and r.within(Interval.of_dtype(candidate.infer(in_types).dtype)):
            return candidate
    return op


def _narrowed(graph: Graph, a: RangeAnalysis) -> Graph:
    nodes, changed = {}, False
    for name, node in graph.nodes.items():
        op = node.op
        r = a.proven[name]
        # out_bits None: the node types its output with its proven width already (integer attention)
        narrowable = getattr(op, "out_bits", None) is not None
        if narrowable and r is not None and r.within(Interval.of_dtype(a.types[name].dtype)):
            op = _narrowest(graph, name, a)
        changed |= op is not node.op
        nodes[name] = node if op is node.op else Node(op, node.inputs)
    return dataclasses.replace(graph, nodes=nodes) if changed else graph


# -- the pass ------------------------------------------------------------------------------------------------------

def _report(before: Graph, after: Graph) -> dict:
    """``ranges``: node -> [lo, hi] its output carries; ``bits``: node -> width of those values (in its
    dtype's signedness) for every integer edge; ``narrowed``: node -> [old, new] out_bits; ``saturating``:
    node -> {"proven": [lo, hi], "bits": n} (``"state": "v"`` for a neuron's voltage); ``graded``: the
    nodes that send graded spikes."""
    a = analyse(after)
    narrowed = {n: [before.op(n).out_bits, after.op(n).out_bits] for n in after.nodes
                if n in before.nodes and hasattr(after.op(n), "out_bits")
                and before.op(n).out_bits != after.op(n).out_bits}
    return {"ranges": {n: [r.lo, r.hi] for n, r in a.carried.items() if r is not None},
            "bits": {n: width(a.carried[n], a.types[n].dtype.signed) for n in _integer_nodes(after, a)
                     if a.carried[n] is not None},
            "narrowed": narrowed,
            "saturating": _saturating(after, a),
            "graded": _graded_sources(after, a.types)}


def _check(graph: Graph, a: RangeAnalysis, target: Target | None) -> None:
    problems = _problems(graph, a, target)
    if problems:
        raise ValueError(f"{len(problems)} range problem(s):\n  - " + "\n  - ".join(problems))


@as_pass(report=_report, exact=True)  # it only narrows widths to proven ones: every value stays
def prove_ranges(graph: Graph, ctx: PassContext) -> Graph:
    """Prove the interval of every integer tensor and narrow each ``out_bits`` to it.

    Requires: a valid graph. Takes no options; reads ``ctx.target`` (a target name or path, or None).

    Computes each node's interval with its type's ``value_range`` in topological order (float edges:
    none; integer Inputs: their dtype's range; a delayed stream includes its leading zeros), then
    raises ``ValueError`` listing every problem, each naming its node:

    - an integer node without a proof (its type has no rule);
    - a proven interval beyond the node's output dtype, unless ``overflow='saturate'`` (a deliberate
      saturation, reported under ``saturating``): with ``'wrap'`` the values would wrap;
    - a Loihi neuron whose input exceeds ``|a| < 2^17`` or whose current ``u`` can leave the signed 24-bit
      range within the graph's ``time_steps`` (``state_range``): u would wrap. A voltage that can reach
      Lava's saturation is defined behaviour, reported under ``saturating``;
    - with a target: a graded spike (:func:`graded_edges`) on a target without them
      (``graded_spike_payload_bits = 0``) or beyond its payload width, a neuron input beyond
      ``input_bits``, a synapse weight beyond ``weight_bits`` plus sign. Without a target only the node
      types' own (Loihi 2) limits apply.

    Guarantees: every ``out_bits`` that holds its proven interval is narrowed to the smallest width (at
    least 2) that still holds it, so outputs are unchanged and the types show the proven widths.
    Returns ``graph`` itself when nothing narrows (a second run changes nothing). The pipeline records
    ``ranges`` (node -> [lo, hi] its output carries), ``bits`` (their width, per integer edge),
    ``narrowed`` (node -> [old, new] out_bits), ``saturating`` (node -> {"proven": [lo, hi], "bits": n})
    and ``graded`` (the nodes that send graded spikes).
    """
    if ctx.options_for(prove_ranges):
        raise ValueError(f"prove_ranges takes no options, got {dict(ctx.options_for(prove_ranges))}")
    target = None if ctx.target is None else load_target(ctx.target)
    analysis = analyse(graph)
    _check(graph, analysis, target)
    out = _narrowed(graph, analysis)
    if out is not graph:
        # narrower inputs can turn a downstream edge integer (an exact attention accumulate): prove it too
        _check(out, analyse(out), target)
    return out


__all__ = ["prove_ranges", "value_ranges", "analyse", "RangeAnalysis", "graded_edges", "in_core", "width"]


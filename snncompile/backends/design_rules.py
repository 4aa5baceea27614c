"""Design rules: does a placed, lowered graph fit a chip target? Every violation at once, by node and rule.

Each rule is a small function named as the requirement it states (Rockpool's DRC list is the model),
``rule(graph, placement, target) -> list[Violation]``, reading its limits only from the ``Target``; a
rule whose figure the target does not give (``None``) checks nothing. ``RULES`` lists them in the order
they run; ``check(graph, placement, target, max_chips=1)`` runs *all* of them and returns every
violation (it never stops at the first); ``check_or_raise`` raises :class:`DesignRuleError` listing them.
A rule with options takes them as keyword-only parameters with defaults, and ``check`` passes the ones
it is given to the rules that declare them (``max_chips``).

Conventions: a target's ``weight_bits`` is the magnitude, a mixed-sign weight adds a sign bit (as
``prove_ranges`` reads it); ``threshold_bits`` is the unsigned width of ``LoihiLIF.vth`` and the
magnitude width of a ternary neuron's signed thresholds; decays are checked in Lava's encoding (``du =
current_decay - 1``, ``dv = voltage_decay``, unsigned ``decay_bits``); a message whose source has an
integer (``int``/``uint``) output is a graded spike (:class:`~.placement.Message`).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from ..ir import Graph
from ..ir.interval import Interval
from ..ir.io import graph_digest
from ..ir.ops import Delay, LoihiLIF, ops_where
from ..passes.prove_ranges import value_ranges
from ..targets import Target
from .placement import Placement

# the lowered (integer) neurons and synapses, whose fields the rules read: the float ones exist only before
# lowering, and chip_nodes_are_lowered reports any found on the chip
NEURONS = ops_where(ROLE="neuron", INTEGER_INPUTS=True)
SYNAPSES = ops_where(ROLE="synapse", INTEGER_INPUTS=True)


@dataclass(frozen=True)
class Violation:
    """One broken rule: the rule's name, the node it concerns (``None``: the placement as a whole), and what."""

    rule: str
    node: str | None
    message: str

    def __str__(self) -> str:
        where = "placement" if self.node is None else f"node {self.node!r}"
        return f"[{self.rule}] {where}: {self.message}"


class DesignRuleError(ValueError):
    """A placed graph breaks the target's design rules; ``violations`` lists every one."""

    def __init__(self, violations: list[Violation], target: str = ""):
        self.violations = list(violations)
        on = f" on target {target!r}" if target else ""
        super().__init__(f"{len(self.violations)} design rule violation(s){on}:\n  - "
                         + "\n  - ".join(map(str, self.violations)))


def _v(rule: Callable, node: str | None, message: str) -> Violation:
    return Violation(rule.__name__, node, message)


def _signed(bits: int) -> Interval:
    return Interval(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def _span(value) -> Interval:
    """The interval of an int or an int array."""
    if hasattr(value, "size"):
        return Interval(int(value.min()), int(value.max())) if value.size else Interval(0, 0)
    return Interval(int(value), int(value))


def _ops(graph: Graph, types) -> list[tuple[str, object]]:
    return [(n, node.op) for n, node in graph.nodes.items() if isinstance(node.op, types)]


# -- the placement belongs to this graph and target ----------------------------------------------------------------

def placement_is_for_this_graph(graph: Graph, placement: Placement, target: Target) -> list[Violation]:
    digest = graph_digest(graph)
    if digest == placement.graph_digest:
        return []
    return [_v(placement_is_for_this_graph, None, f"placement was made for graph digest "
               f"{placement.graph_digest[:16]}..., the graph's is {digest[:16]}...: place it again")]


def placement_is_for_this_target(graph: Graph, placement: Placement, target: Target) -> list[Violation]:
    if placement.target == target.name:
        return []
    return [_v(placement_is_for_this_target, None, f"placement was made for target {placement.target!r}, "
               f"checked against {target.name!r}")]


def chip_nodes_are_lowered(graph: Graph, placement: Placement, target: Target) -> list[Violation]:
    """Every node placed on the chip computes on integers or spikes (a float node was not lowered)."""
    types, host = graph.types(), set(placement.host_nodes)
    return [_v(chip_nodes_are_lowered, n, f"{graph.op(n).type_name()} computes {types[n].dtype} values on the "
               f"chip; lower the graph to integers first (the 'loihi' pipeline)")
            for n in graph.nodes if n not in host and types[n].dtype.kind == "float"]


# -- per-core resources --------------------------------------------------------------------------------------------

def _per_core(rule: Callable, placement: Placement, figure, attr: str, what: str, scale: float = 1) -> list[Violation]:
    if figure is None:
        return []
    limit = figure.value * scale
    return [_v(rule, c.node, f"core {c.core} (chip {c.chip}) holds compartments [{c.start}, {c.stop}) with "
               f"{getattr(c, attr)} {what}, more than the {limit:g} per core the target allows")
            for c in placement.cores if getattr(c, attr) > limit]


def neurons_per_core_within_limit(graph: Graph, placement: Placement, target: Target) -> list[Violation]:
    return _per_core(neurons_per_core_within_limit, placement, target.neurons_per_core, "neurons", "neurons")


def synaptic_memory_per_core_within_limit(graph: Graph, placement: Placement, target: Target) -> list[Violation]:
    return _per_core(synaptic_memory_per_core_within_limit, placement, target.synaptic_memory_per_core,
                     "synaptic_bytes", "bytes of synaptic memory", 1024)


def fan_in_axons_per_core_within_limit(graph: Graph, placement: Placement, target: Target) -> list[Violation]:
    return _per_core(fan_in_axons_per_core_within_limit, placement, target.fan_in_axons_per_core,
                     "fan_in_axons", "input axons")


def fan_out_axons_per_core_within_limit(graph: Graph, placement: Placement, target: Target) -> list[Violation]:
    return _per_core(fan_out_axons_per_core_within_limit, placement, target.fan_out_axons_per_core,
                     "fan_out_axons", "output axons")


def cores_fit_on_max_chips(graph: Graph, placement: Placement, target: Target, *,
                           max_chips: int = 1) -> list[Violation]:
    """Every slice lies on one of the ``cores_per_chip x max_chips`` cores the system has."""
    if target.cores_per_chip is None:
        return []
    capacity = target.cores_per_chip.value * max_chips
    found = []
    for node, p in placement.nodes.items():
        beyond = [s.core for s in p.slices if s.core >= capacity]
        if beyond:
            found.append(_v(cores_fit_on_max_chips, node, f"{len(beyond)} of its {len(p.slices)} slice(s) lie on "
                            f"cores {beyond[0]}..{beyond[-1]}, beyond the {capacity} cores of {max_chips} chip(s) "
                            f"x {target.cores_per_chip.value}; the placement needs {placement.cores_used} cores "
                            f"({placement.chips_used} chips)"))
    return found


# -- precision ------------------------------------------------------------------------------------------------------

def weights_fit_weight_bits(graph: Graph, placement: Placement, target: Target) -> list[Violation]:
    """Synapse weights (their values and declared width) fit the target's ``weight_bits`` plus sign."""
    if target.weight_bits is None:
        return []
    bits = target.weight_bits.value
    allowed, found = _signed(bits + 1), []
    for n, op in _ops(graph, SYNAPSES):
        w = _span(op.weight)
        if not w.within(allowed) or op.weight_bits > bits + 1:
            found.append(_v(weights_fit_weight_bits, n, f"weights span {w} (declared {op.weight_bits}-bit signed), "
                            f"beyond the target's {bits}-bit weights plus sign {allowed}"))
    return found


def weight_exponents_in_target_range(graph: Graph, placement: Placement, target: Target) -> list[Violation]:
    lo, hi = target.weight_exponent_min, target.weight_exponent_max
    if lo is None or hi is None:
        return []
    return [_v(weight_exponents_in_target_range, n, f"weight_exp {op.weight_exp} is outside the target's "
               f"[{lo.value}, {hi.value}]") for n, op in _ops(graph, SYNAPSES)
            if not lo.value <= op.weight_exp <= hi.value]


def state_fits_state_bits(graph: Graph, placement: Placement, target: Target) -> list[Violation]:
    """A neuron's ``u``/``v`` (``state_bits``) and a custom-compute unit's integer output fit ``state_bits``."""
    if target.state_bits is None:
        return []
    bits, types, found = target.state_bits.value, graph.types(), []
    for n in placement.nodes:
        op = graph.op(n) if n in graph.nodes else None
        if isinstance(op, NEURONS) and op.state_bits > bits:
            found.append(_v(state_fits_state_bits, n, f"neuron state is {op.state_bits} bits, the target's "
                            f"is {bits}"))
        elif op is not None and not isinstance(op, NEURONS + SYNAPSES) and types[n].dtype.kind == "int" \
                and types[n].dtype.bits > bits:
            found.append(_v(state_fits_state_bits, n, f"its {types[n].dtype} values (held in compartment state) "
                            f"are wider than the target's {bits}-bit state"))
    return found


def thresholds_fit_threshold_bits(graph: Graph, placement: Placement, target: Target) -> list[Violation]:
    if target.threshold_bits is None:
        return []
    bits, found = target.threshold_bits.value, []
    for n, op in _ops(graph, NEURONS):
        if isinstance(op, LoihiLIF):
            vth, allowed = _span(op.vth), Interval(0, (1 << bits) - 1)
        else:
            vth, allowed = Interval.hull(_span(op.vth_lo), _span(op.vth_hi)), _signed(bits + 1)
        if not vth.within(allowed):
            found.append(_v(thresholds_fit_threshold_bits, n, f"threshold mantissa {vth} does not fit the target's "
                            f"{bits}-bit threshold {allowed}"))
    return found


def decays_fit_decay_bits(graph: Graph, placement: Placement, target: Target) -> list[Violation]:
    if target.decay_bits is None:
        return []
    bits, found = target.decay_bits.value, []
    top = (1 << bits) - 1
    for n, op in _ops(graph, NEURONS):
        du, dv = op.current_decay - 1, op.voltage_decay
        bad = [f"{name}={v}" for name, v in (("du", du), ("dv", dv)) if not 0 <= v <= top]
        if bad:
            found.append(_v(decays_fit_decay_bits, n, f"decays {', '.join(bad)} (Lava's encoding) do not fit the "
                            f"target's unsigned {bits}-bit decays [0, {top}]"))
    return found


def biases_fit_bias_bits(graph: Graph, placement: Placement, target: Target) -> list[Violation]:
    mant, exp = target.bias_mantissa_bits, target.bias_exponent_bits
    if mant is None or exp is None:
        return []
    found = []
    for n, op in _ops(graph, NEURONS):
        b = _span(op.bias_mant)
        if not b.within(_signed(mant.value)) or not 0 <= op.bias_exp < (1 << exp.value):
            found.append(_v(biases_fit_bias_bits, n, f"bias mantissa {b} / exponent {op.bias_exp} do not fit the "
                            f"target's signed {mant.value}-bit mantissa {_signed(mant.value)} and unsigned "
                            f"{exp.value}-bit exponent"))
    return found


def delays_fit_delay_bits(graph: Graph, placement: Placement, target: Target) -> list[Violation]:
    """Synaptic and ``Delay`` delays fit the target's ``synaptic_delay_bits``."""
    if target.synaptic_delay_bits is None:
        return []
    top = (1 << target.synaptic_delay_bits.value) - 1
    return [_v(delays_fit_delay_bits, n, f"delay {op.delay} exceeds the target's {top} steps "
               f"({target.synaptic_delay_bits.value}-bit synaptic delays)")
            for n, op in _ops(graph, SYNAPSES + (Delay,)) if op.delay > top]


def graded_messages_supported(graph: Graph, placement: Placement, target: Target) -> list[Violation]:
    """An integer message needs graded spikes (``graded_spike_payload_bits > 0``) whose payload holds its
    proven values (``prove_ranges``; the source's dtype where no interval is proven)."""
    if target.graded_spike_payload_bits is None:
        return []
    bits, found = target.graded_spike_payload_bits.value, []
    ranges = value_ranges(graph) if bits else {}
    by_src: dict[str, list[str]] = {}
    for m in placement.messages:
        if m.graded:
            by_src.setdefault(m.src, []).append(m.dst)
    types = graph.types() if by_src else {}
    for src, dsts in by_src.items():
        to = ", ".join(repr(d) for d in dsts)
        if bits == 0:
            found.append(_v(graded_messages_supported, src, f"sends {types[src].dtype} values to {to}: graded "
                            f"spikes, but target {target.name!r} has binary spikes only (graded_spike_payload_bits 0)"))
            continue
        r = ranges.get(src) or Interval.of_dtype(types[src].dtype)
        if not r.within(_signed(bits)):
            found.append(_v(graded_messages_supported, src, f"sends values {r} to {to}, beyond target "
                            f"{target.name!r}'s {bits}-bit graded spike payload"))
    return found


RULES: tuple[Callable[..., list[Violation]], ...] = (
    placement_is_for_this_graph, placement_is_for_this_target, chip_nodes_are_lowered,
    neurons_per_core_within_limit, synaptic_memory_per_core_within_limit, fan_in_axons_per_core_within_limit,
    fan_out_axons_per_core_within_limit, cores_fit_on_max_chips,
    weights_fit_weight_bits, weight_exponents_in_target_range, state_fits_state_bits, thresholds_fit_threshold_bits,
    decays_fit_decay_bits, biases_fit_bias_bits, delays_fit_delay_bits, graded_messages_supported,
)


def check(graph: Graph, placement: Placement, target: Target, *, max_chips: int = 1,
          rules=RULES) -> list[Violation]:
    """Every violation of every rule (in ``rules`` order, then node order); ``[]`` when the placement fits."""
    options = {"max_chips": max_chips}
    found = []
    for rule in rules:
        params = inspect.signature(rule).parameters
        found += rule(graph, placement, target, **{k: v for k, v in options.items() if k in params})
    return found


def check_or_raise(graph: Graph, placement: Placement, target: Target, *, max_chips: int = 1) -> None:
    """:func:`check`, raising :class:`DesignRuleError` listing every violation if there is one."""
    found = check(graph, placement, target, max_chips=max_chips)
    if found:
        raise DesignRuleError(found, target.name)


__all__ = ["Violation", "DesignRuleError", "RULES", "check", "check_or_raise"] + [r.__name__ for r in RULES]

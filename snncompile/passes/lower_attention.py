"""lower_attention: rewrite every float attention node into exact integer accumulates and one float Scale."""
from __future__ import annotations

import numpy as np

from ..config import is_int
from ..ir import SPIKE, Graph, Node, TensorType
from ..ir.ops import (BlockLinearAttention, KVOuterAccumulate, LUTAttention, QMAccumulate, Quantize, ReLU, Scale,
                      ScoreLUT, ScoreValueAccumulate, SpikeScores)
from .calibrate import value_ranges
from .pipeline import PassContext, as_pass
from .rewrite import Edit, apply_edit

DEFAULTS = {"association": "auto", "k_bits": 8, "lut_bits": 8}
ASSOCIATIONS = ("auto", "q(kv)", "(qk)v")
LOWERED = (BlockLinearAttention, LUTAttention)


def _options(ctx: PassContext) -> dict:
    given = dict(ctx.options_for(lower_attention))
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"lower_attention has no options {unknown} (it takes {', '.join(DEFAULTS)})")
    options = {**DEFAULTS, **given}
    if options["association"] not in ASSOCIATIONS:
        raise ValueError(f"association must be one of {ASSOCIATIONS}, got {options['association']!r}")
    for key, lo in (("k_bits", 1), ("lut_bits", 2)):
        if not is_int(options[key]) or not lo <= options[key] <= 32:
            raise ValueError(f"{key} must be an int in {lo}..32, got {options[key]!r}")
    return options


def association_costs(op: BlockLinearAttention | LUTAttention, q: TensorType) -> dict[str, int]:
    """Synaptic ops per step of both associations (models.md §3.7, §9.7), ``N`` tokens, ``D`` channels, ``d``
    per head: ``Q(K^T V)`` takes ``2·N·D·d``; ``(Q K^T) V`` takes ``2·Bk·N²·D`` (a block's scores span all its
    ``Bk·N`` rows)."""
    channels, n = q.shape[0], q.shape[1] * q.shape[2]
    block = getattr(op, "block", 1)
    return {"q(kv)": 2 * n * channels * (channels // op.heads), "(qk)v": 2 * block * n * n * channels}


def scores_possible(op: BlockLinearAttention, k: TensorType) -> bool:
    """Whether ``(Q K^T) V`` can be lowered: ``SpikeScores`` takes binary K, one step at a time (block 1)."""
    return op.block == 1 and k.dtype == SPIKE


def choose_association(op: BlockLinearAttention, k: TensorType, costs: dict[str, int], requested: str) -> str:
    """``requested``, or for ``auto`` the cheaper possible one (``q(kv)`` on a tie)."""
    if requested != "auto":
        return requested
    return "(qk)v" if scores_possible(op, k) and costs["(qk)v"] < costs["q(kv)"] else "q(kv)"


def lowering_blocker(graph: Graph, name: str, types: dict[str, TensorType], association: str) -> str | None:
    """Why the attention node ``name`` cannot be lowered with ``association`` (an option value), or ``None``."""
    op = graph.op(name)
    q, k, v = graph.nodes[name].inputs
    if types[q].dtype != SPIKE:
        return f"Q ({q!r}) must be binary spikes, got {types[q]}"
    if not types[v].dtype.is_spike:
        return f"V ({v!r}) must be spikes or ternary (it selects what the integer accumulate adds), got {types[v]}"
    if types[k].dtype.kind == "float" and not isinstance(graph.op(k), ReLU):
        return (f"K ({k!r}) is real-valued ({types[k]}) but not a ReLU output: only a non-negative K is "
                f"quantised (unsigned)")
    if isinstance(op, BlockLinearAttention) and association == "(qk)v" and not scores_possible(op, types[k]):
        return (f"association '(qk)v' needs per-step scores of binary K (block 1, spike K), got block={op.block} "
                f"and K {types[k]}")
    return None


def k_scales(graph: Graph, real_k: dict[str, str], ctx: PassContext, bits: int) -> dict[str, float]:
    """``s_K = max(K) / (2^bits - 1)`` per node of ``real_k`` (attention node -> its real K), K read from the
    calibration feeds batch by batch (:func:`~.calibrate.value_ranges`); rounded to float32, the step
    ``Quantize`` divides by."""
    if not real_k:
        return {}
    if ctx.calibration is None:
        raise ValueError(f"attention node(s) {', '.join(map(repr, real_k))} take a real-valued K, which "
                         f"lower_attention quantises with a scale chosen from data: pass calibration data "
                         f"(PassContext(calibration={{input name: tensor}}))")
    high = value_ranges(graph, ctx.calibration, nodes=set(real_k.values())).high
    scales = {}
    for name, k in real_k.items():
        peak = high.get(k, 0.0)
        if not peak > 0:
            raise ValueError(f"attention node {name!r}: K ({k!r}) is never positive on the calibration data, "
                             f"so it gives no quantisation scale")
        scales[name] = float(np.float32(peak / (2 ** bits - 1)))
    return scales


def quantise_table(table: np.ndarray, bits: int) -> tuple[np.ndarray, float]:
    """``(round(table / s_f), s_f)`` with ``s_f = max|table| / (2^(bits-1) - 1)``: signed ``bits``-bit
    integers whose largest magnitude is the top code (``s_f = 1`` for an all-zero table)."""
    peak = float(np.abs(table.astype(np.float64)).max())
    s_f = peak / (2 ** (bits - 1) - 1) if peak > 0 else 1.0
    return np.round(table.astype(np.float64) / s_f).astype(np.int32), s_f


def _linear_nodes(graph: Graph, name: str, association: str, k_scale: float | None, k_bits: int) -> dict[str, Node]:
    op = graph.op(name)
    q, k, v = graph.nodes[name].inputs
    nodes, factor = {}, float(op.scale)  # both scale positions: alpha once, on the exact integer result
    if k_scale is not None:  # A2OS2A: the real K becomes unsigned integers of step s_K
        nodes[f"{name}.k_quant"] = Node(Quantize(scale=k_scale, bits=k_bits, signed=False), (k,))
        k, factor = f"{name}.k_quant", factor * k_scale
    if association == "q(kv)":
        nodes[f"{name}.kv"] = Node(KVOuterAccumulate(heads=op.heads, block=op.block), (k, v))
        nodes[last := f"{name}.qm"] = Node(QMAccumulate(heads=op.heads), (q, f"{name}.kv"))
    else:
        nodes[f"{name}.scores"] = Node(SpikeScores(heads=op.heads), (q, k))
        nodes[last := f"{name}.sv"] = Node(ScoreValueAccumulate(heads=op.heads), (f"{name}.scores", v))
    nodes[name] = Node(Scale(scale=factor, delay=op.delay), (last,))
    return nodes


def _lut_nodes(graph: Graph, name: str, lut_bits: int) -> dict[str, Node]:
    op = graph.op(name)
    q, k, v = graph.nodes[name].inputs
    table, s_f = quantise_table(op.table, lut_bits)
    return {f"{name}.scores": Node(SpikeScores(heads=op.heads), (q, k)),
            f"{name}.lut": Node(ScoreLUT(table=table), (f"{name}.scores",)),
            f"{name}.sv": Node(ScoreValueAccumulate(heads=op.heads), (f"{name}.lut", v)),
            name: Node(Scale(scale=float(op.scale) * s_f, delay=op.delay), (f"{name}.sv",))}


def _report(before: Graph, after: Graph) -> dict:
    """``lowered``: per attention node, the association, the synaptic ops per step of each association
    possible, the final scale and, where used, ``s_K`` (A2OS2A) or ``s_f`` and the table's quantisation error
    ``max|table - s_f * round(table / s_f)|`` (DS2TA)."""
    types, lowered = before.types(), {}
    for name, node in before.nodes.items():
        if not isinstance(node.op, LOWERED):
            continue
        costs = association_costs(node.op, types[node.inputs[0]])
        entry = {"association": "q(kv)" if f"{name}.kv" in after.nodes else "(qk)v",
                 "ops_per_step": costs if isinstance(node.op, BlockLinearAttention) else {"(qk)v": costs["(qk)v"]},
                 "scale": after.op(name).scale}
        if f"{name}.k_quant" in after.nodes:
            entry["s_K"] = after.op(f"{name}.k_quant").scale
        if isinstance(node.op, LUTAttention):
            codes = after.op(f"{name}.lut").table.astype(np.float64)
            table = node.op.table.astype(np.float64)
            top = np.abs(codes).max()  # the pass maps max|table| to the top code: this is its s_f
            entry["s_f"] = float(np.abs(table).max() / top) if top else 1.0
            entry["table_error"] = float(np.abs(table - entry["s_f"] * codes).max())
        lowered[name] = entry
    return {"lowered": lowered}


@as_pass(report=_report)
def lower_attention(graph: Graph, ctx: PassContext) -> Graph:
    """Rewrite every ``BlockLinearAttention`` and ``LUTAttention`` into integer accumulates and a float
    ``Scale`` carrying the real factor (which the quantisation pass folds into the consuming neuron).

    Requires: a valid graph whose attention nodes have binary Q and spike or ternary V; K binary, ternary,
    integer, or real from a ``ReLU`` (A2OS2A), which needs ``ctx.calibration``. Anything else raises
    ``ValueError`` naming every such node and why. SDSA (``SpikeColumnSum``, ``SpikeMask``) is integer
    already and stays. Options (``ctx.options_for(lower_attention)``):

    - ``association`` (``auto``): for ``BlockLinearAttention`` with ``block == 1`` and binary K, ``q(kv)``
      or ``(qk)v``; ``auto`` takes the cheaper (:func:`association_costs`; ``q(kv)`` on a tie). Longer blocks
      and integer or quantised K are always ``q(kv)`` (forcing ``(qk)v`` on them is an error).
    - ``k_bits`` (8): width of A2OS2A's unsigned quantised K; ``lut_bits`` (8): signed width of DS2TA's table.

    Guarantees: the attention node's name moves to the final ``Scale`` (same consumers, same ``delay``);
    the new nodes are ``<name>.k_quant`` (``Quantize``), ``<name>.kv`` + ``<name>.qm`` (``KVOuterAccumulate``
    with ``block_offset=0``, ``QMAccumulate``) or ``<name>.scores`` (+ ``<name>.lut``) + ``<name>.sv``
    (``SpikeScores``, ``ScoreLUT``, ``ScoreValueAccumulate``). Returns ``graph`` itself when there is no
    attention to lower. The history records :func:`_report`'s figures.

    Accuracy, ``u = 2^-24``, with ``O`` the exact integer accumulate (below 2^24) and ``q_n``, ``v_j`` the
    non-zeros of Q's row n and V's column j within a head (and block):

    - integer K (STAtten, SSA): the output is ``fl32(alpha * O)``. Bit-identical to the float node (whose
      float32 sums of integers are exact below 2^24) when ``scale_position`` is ``out`` (it rounds the same
      product) or ``alpha`` is a power of two (nothing rounds); otherwise they differ by the float node's
      rounding of ``alpha * M`` and its sums, at most ``gamma_(d+2) * alpha * sum_i Q[n, i] |M[i, j]|``
      (``gamma_k = k u / (1 - k u)``).
    - A2OS2A: ``K = s_K * k + e`` with ``|e| <= s_K / 2 + u * max K`` while K stays within the calibration
      maximum (beyond it ``k`` saturates at ``2^k_bits - 1``), so the output moves by at most
      ``alpha * (s_K / 2 + u * max K) * q_n * v_j`` plus both sides' float32 rounding.
    - DS2TA: ``s_f * round(table / s_f)`` is within ``e_f = max|table - s_f * round(table / s_f)|``
      (``<= s_f / 2``) of the table, so the output moves by at most ``scale * e_f * v_j`` (``v_j`` over all N
      tokens) plus float32 rounding.

    ``s_K`` is ``max(K) / (2^k_bits - 1)`` over one run of the input graph on ``ctx.calibration``, rounded to
    float32 (the step ``Quantize`` divides by); ``s_f = max|table| / (2^(lut_bits - 1) - 1)``.
    """
    options = _options(ctx)
    names = [n for n, node in graph.nodes.items() if isinstance(node.op, LOWERED)]
    if not names:
        return graph
    types = graph.types()
    blockers = {n: lowering_blocker(graph, n, types, options["association"]) for n in names}
    problems = [f"node {n!r} ({graph.op(n).type_name()}): {why}" for n, why in blockers.items() if why]
    if problems:
        raise ValueError("cannot lower attention:\n  - " + "\n  - ".join(problems))
    real_k = {n: graph.nodes[n].inputs[1] for n in names if types[graph.nodes[n].inputs[1]].dtype.kind == "float"}
    scales = k_scales(graph, real_k, ctx, options["k_bits"])
    out = graph
    for name in names:
        op, (q, k, _) = graph.op(name), graph.nodes[name].inputs
        if isinstance(op, LUTAttention):
            nodes = _lut_nodes(graph, name, options["lut_bits"])
        else:
            association = choose_association(op, types[k], association_costs(op, types[q]), options["association"])
            nodes = _linear_nodes(graph, name, association, scales.get(name), options["k_bits"])
        out = apply_edit(out, name, Edit(replace=nodes))
    return out


__all__ = ["lower_attention", "association_costs", "choose_association", "scores_possible", "lowering_blocker",
           "k_scales", "quantise_table"]

"""fold_linear_chains: merge convolutions that follow each other with no neuron between them into one.

The Meta-SpikeFormer (sdt-v2) has two such chains: ``SepConv``'s depthwise 7x7 then 1x1, and ``RepConv``'s
1x1, BN-and-pad, depthwise 3x3, 1x1 (after BatchNorm folding: a 1x1 with bias, a ``BorderPad`` holding that bias
on the border, a depthwise 3x3 and a 1x1). A Loihi core has one synapse stage between neurons, so each chain
becomes one convolution, exact in real arithmetic:

- ``BorderPad(v)`` behind a 1x1 convolution (stride 1, no padding) whose bias is ``v`` is that convolution with
  padding: its border outputs are its bias.
- ``B(A(x))`` with ``B`` pointwise (1x1, stride 1, no padding, no dilation) is ``A``'s geometry with weights
  ``B @ A`` and bias ``B @ b_A + b_B``; with ``A`` pointwise (and ``B`` unpadded) it is ``B``'s geometry with
  ``A``'s padding, weights ``B`` times ``A`` per tap and bias ``b_B + sum_taps B b_A``. Grouped convolutions are
  expanded to dense ones first.

It also merges sdt-v2's ``--kd`` heads: the mean of ``k`` Linear heads' time means on one input is one head with
the mean weights and bias (``Scale(1/k)`` of an ``Add`` of ``TimeMean(Linear)``), so the lowering sees one head.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..ir import Graph, Node
from ..ir.ops import Add, BorderPad, Conv2d, Linear, Scale, TimeMean
from .pipeline import PassContext, as_pass
from .rewrite import Edit, rewrite_graph

_F64 = np.float64


def _sole_producer(graph: Graph, name: str) -> Conv2d | None:
    """The Conv2d feeding node ``name`` when ``name`` is its only reader, it has no delay and is no output."""
    (src,) = graph.nodes[name].inputs
    op = graph.op(src)
    if not isinstance(op, Conv2d) or op.delay or list(graph.consumers(src)) != [name] or src in graph.outputs:
        return None
    return op


def _pointwise(op: Conv2d) -> bool:
    return op.weight.shape[2:] == (1, 1) and op.stride == (1, 1) and op.dilation == (1, 1)


def _dense(op: Conv2d) -> np.ndarray:
    """The kernel as a dense ``[C_out, C_in, kH, kW]`` float64 array (grouped channels expanded)."""
    w = np.asarray(op.weight, _F64)
    out_per_group, in_per_group = w.shape[0] // op.groups, w.shape[1]
    dense = np.zeros((w.shape[0], in_per_group * op.groups, *w.shape[2:]), _F64)
    for g in range(op.groups):
        rows = slice(g * out_per_group, (g + 1) * out_per_group)
        dense[rows, g * in_per_group:(g + 1) * in_per_group] = w[rows]
    return dense


def _bias(op: Conv2d) -> np.ndarray:
    return np.zeros(op.weight.shape[0], _F64) if op.bias is None else np.asarray(op.bias, _F64)


def _pad_matches(graph: Graph, name: str) -> bool:
    op = graph.op(name)
    if not isinstance(op, BorderPad):
        return False
    conv = _sole_producer(graph, name)
    if conv is None or not _pointwise(conv) or conv.padding != (0, 0) or conv.bias is None:
        return False
    # the same real number BN(0), rounded in two float orders: equal within float32 rounding
    return bool(np.allclose(conv.bias, op.value, rtol=1e-5, atol=1e-6))


def _pad_into_conv(graph: Graph, name: str) -> Edit:
    (src,) = graph.nodes[name].inputs
    pad = graph.op(name).pad
    conv = dataclasses.replace(graph.op(src), padding=(pad, pad))
    return Edit(replace={src: Node(conv, graph.nodes[src].inputs)}, remove=(name,), rename={name: src})


def _composable(graph: Graph, name: str) -> bool:
    b = graph.op(name)
    if not isinstance(b, Conv2d) or b.delay:
        return False
    a = _sole_producer(graph, name)
    if a is None:
        return False
    return (_pointwise(b) and b.padding == (0, 0)) or (_pointwise(a) and b.padding == (0, 0))


def composed(a: Conv2d, b: Conv2d) -> Conv2d:
    """One convolution computing ``b(a(x))`` (float64 products, rounded once to float32)."""
    wa, wb = _dense(a), _dense(b)
    if _pointwise(b) and b.padding == (0, 0):
        weight = np.einsum("oc,cikl->oikl", wb[:, :, 0, 0], wa)
        bias = wb[:, :, 0, 0] @ _bias(a) + _bias(b)
        geometry = dict(stride=a.stride, padding=a.padding, dilation=a.dilation)
    else:
        weight = np.einsum("ockl,ci->oikl", wb, wa[:, :, 0, 0])
        bias = _bias(b) + np.einsum("ockl,c->o", wb, _bias(a))
        geometry = dict(stride=b.stride, padding=a.padding, dilation=b.dilation)
    has_bias = a.bias is not None or b.bias is not None
    return Conv2d(weight=weight.astype(np.float32), bias=bias.astype(np.float32) if has_bias else None, groups=1,
                  **geometry)


def _compose(graph: Graph, name: str) -> Edit:
    (src,) = graph.nodes[name].inputs
    merged = composed(graph.op(src), graph.op(name))
    return Edit(replace={src: Node(merged, graph.nodes[src].inputs)}, remove=(name,), rename={name: src})


def _head_branches(graph: Graph, name: str) -> list[tuple[str, str]] | None:
    """For ``Scale(1/k)`` of an ``Add`` of ``k`` time means of Linears on one input (sdt-v2's ``--kd`` heads), each
    read only there: the ``(Linear, TimeMean)`` pairs; else None."""
    op = graph.op(name)
    if not isinstance(op, Scale) or isinstance(op.scale, np.ndarray):
        return None
    (add,) = graph.nodes[name].inputs
    means = graph.nodes[add].inputs
    if not isinstance(graph.op(add), Add) or len(means) < 2 or op.scale != 1.0 / len(means) \
            or list(graph.consumers(add)) != [name]:
        return None
    branches = []
    for mean in means:
        if not isinstance(graph.op(mean), TimeMean) or list(graph.consumers(mean)) != [add]:
            return None
        (head,) = graph.nodes[mean].inputs
        if not isinstance(graph.op(head), Linear) or graph.op(head).delay or list(graph.consumers(head)) != [mean]:
            return None
        branches.append((head, mean))
    sources = {graph.nodes[head].inputs for head, _ in branches}
    return branches if len(sources) == 1 and len(set(means)) == len(means) else None


def _heads_match(graph: Graph, name: str) -> bool:
    return _head_branches(graph, name) is not None


def _merge_heads(graph: Graph, name: str) -> Edit:
    """The mean of ``k`` linear heads' time means is the time mean of one head with the mean weights and bias."""
    branches = _head_branches(graph, name)
    heads = [graph.op(h) for h, _ in branches]
    weight = np.mean([np.asarray(h.weight, _F64) for h in heads], axis=0)
    bias = np.mean([np.zeros(h.weight.shape[0], _F64) if h.bias is None else np.asarray(h.bias, _F64)
                    for h in heads], axis=0)
    (head, mean), rest = branches[0], branches[1:]
    merged = dataclasses.replace(heads[0], weight=weight.astype(np.float32), bias=bias.astype(np.float32))
    (add,) = graph.nodes[name].inputs
    return Edit(replace={head: Node(merged, graph.nodes[head].inputs)},
                remove=(add, name, *(n for pair in rest for n in pair)), rename={name: mean})


def _report(before: Graph, after: Graph) -> dict:
    """``merged``: the convolution, border-pad and head nodes that no longer exist (folded into their producer)."""
    return {"merged": [n for n, node in before.nodes.items()
                       if isinstance(node.op, (Conv2d, BorderPad, Linear)) and n not in after.nodes]}


@as_pass(report=_report)
def fold_linear_chains(graph: Graph, ctx: PassContext) -> Graph:
    """Merge every ``BorderPad`` into the 1x1 convolution that feeds it, every convolution fed only by another
    convolution into one, and a mean of linear heads into one head (see the module docstring for when each
    applies).

    Requires: BatchNorms folded (``fold_batchnorm``), so that a RepConv's BatchNorm is its 1x1's bias. Takes no
    options.

    Guarantees: no ``BorderPad`` remains behind a matching 1x1 convolution, and no such pair of convolutions
    remains; as in BatchNorm folding, the first convolution of a chain keeps its name and the readers of the
    removed nodes read it. Not bit-identical:
    the merged weights are rounded once, and the border value is the convolution's bias rather than upstream's
    separately rounded BN(0) (equal in real arithmetic). Returns ``graph`` itself when nothing matches.
    """
    if ctx.options_for(fold_linear_chains):
        raise ValueError(f"fold_linear_chains takes no options, got {dict(ctx.options_for(fold_linear_chains))}")
    return rewrite_graph(graph, [(_pad_matches, _pad_into_conv), (_composable, _compose), (_heads_match, _merge_heads)])


__all__ = ["fold_linear_chains", "composed"]

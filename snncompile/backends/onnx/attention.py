"""Attention functions. Heads are contiguous channel groups (``c = h*d + j``), tokens ``n = y*Ws + x``,
as in ``snncompile.nn.attention``; every reshape/transpose below is one of that module's."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from .builder import Body, subgraph


def _split_heads(b: Body, x: str, heads: str) -> str:
    """``[T, B, C, Hs, Ws]`` -> ``[T, B, H, N, d]`` (channel ``c = h*d + j``, token ``n = y*Ws + x``)."""
    tb, c = b.shape(x, 0, 2), b.shape(x, 2, 3)
    tokens_last = b.reshape(x, b.cat(tb, c, b.ints(-1)))
    channels_last = b.transpose(tokens_last, 0, 1, 3, 2)
    d = b.op("Div", c, heads)
    return b.transpose(b.reshape(channels_last, b.cat(tb, b.ints(-1), heads, d)), 0, 1, 3, 2, 4)


def _merge_heads(b: Body, x: str, like: str) -> str:
    """``[T, B, H, N, d]`` -> the ``[T, B, C, Hs, Ws]`` shape of ``like``."""
    return b.reshape(b.transpose(x, 0, 1, 2, 4, 3), b.shape(like))


def _erode(b: Body, x: str) -> str:
    """3x3 max over the last two axes, stride 1, padding 1 (``max_pool3d`` kernel (1, 3, 3))."""
    lead = b.shape(x, 0, -2)
    x4 = b.reshape(x, b.cat(b.ints(-1, 1), b.shape(x, -2)))
    y = b.op("MaxPool", x4, kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    return b.reshape(y, b.cat(lead, b.shape(x, -2)))


def _maybe_erode(b: Body, x: str) -> str:
    return b.where(b.attr_flag("erode"), _erode(b, x), x)



def spike_column_sum(b, x):
    k, v = x
    heads = b.attr_1d("heads")
    kv = _maybe_erode(b, _split_heads(b, b.op("Mul", k, v), heads))          # [T, B, H, N, d]
    counts = b.op("ReduceSum", kv, b.ints(3), keepdims=0)                     # [T, B, H, d]
    return b.reshape(counts, b.cat(b.shape(k, 0, 2), b.ints(-1)))


def spike_mask(b, x):
    q, m = x
    heads = b.attr_1d("heads")
    qh = _split_heads(b, q, heads)
    mh = b.reshape(m, b.cat(b.shape(m, 0, 2), heads, b.ints(1, -1)))
    return _merge_heads(b, _maybe_erode(b, b.op("Mul", qh, mh)), q)


def block_linear_attention(b, x):
    """STAtten's ``statten_scores``: rows of ``block`` consecutive steps stacked, ``M = K_b^T V_b``."""
    q, k, v = x
    heads, block = b.attr_1d("heads"), b.attr_1d("block")
    scale = b.attr("scale", "float")
    qh, kh, vh = (_split_heads(b, t, heads) for t in (q, k, v))
    per_step = b.shape(qh, 1)                                                 # [B, H, N, d]

    def blocks(t):                                                            # -> [g, B, H, block*N, d]
        grouped = b.transpose(b.reshape(t, b.cat(b.ints(-1), block, per_step)), 0, 2, 3, 1, 4, 5)
        return b.reshape(grouped, b.cat(b.ints(0, 0, 0, -1), b.shape(t, 4)))
    qb, kb, vb = blocks(qh), blocks(kh), blocks(vh)
    m = b.op("MatMul", b.transpose(kb, 0, 1, 2, 4, 3), vb)
    kv_scaled = b.op("MatMul", qb, b.op("Mul", m, scale))
    out_scaled = b.op("Mul", b.op("MatMul", qb, m), scale)
    xb = b.where(b.attr_is("scale_position", "out"), out_scaled, kv_scaled)
    steps = b.reshape(xb, b.cat(b.shape(xb, 0, 3), block, b.ints(-1), b.shape(xb, 4)))
    xh = b.reshape(b.transpose(steps, 0, 3, 1, 2, 4, 5), b.cat(b.ints(-1), per_step))
    return _merge_heads(b, xh, q)


def lut_attention(b, x):
    q, k, v, table = x
    heads = b.attr_1d("heads")
    qh, kh, vh = (_split_heads(b, t, heads) for t in (q, k, v))
    scores = b.op("MatMul", qh, b.transpose(kh, 0, 1, 2, 4, 3))               # [T, B, H, N, N], integers
    idx = b.op("Cast", b.op("Round", scores), to=TensorProto.INT64)
    width = b.shape(table, 1, 2)
    head_offset = b.reshape(b.op("Mul", b.op("Range", b.const(0, np.int64), b.reshape(heads, b.ints()),
                                             b.const(1, np.int64)), width), b.ints(-1, 1, 1))
    f = b.op("Gather", b.reshape(table, b.ints(-1)), b.op("Add", idx, head_offset), axis=0)
    return _merge_heads(b, b.op("Mul", b.op("MatMul", f, vh), b.attr("scale", "float")), q)


def temporal_window(b, x):
    """``y = x*w[0]``, then ``y += shift(x, delta) * w[delta]`` for delta = 1 .. min(W, T) - 1 (a Loop)."""
    x_in, w = x
    x = b.reshape(x_in, b.cat(b.shape(x_in, 0, 1), b.ints(-1)))                   # [T, everything else]
    t_len, w_len = b.shape(x, 0, 1), b.shape(w, 0, 1)
    trips = b.reshape(b.op("Sub", b.op("Min", t_len, w_len), b.ints(1)), b.ints())
    pad_rest = b.ints(0, 0, 0)
    first = b.op("Mul", x, b.op("Gather", w, b.const(0, np.int64), axis=0))
    s = Body(prefix=b.fresh("loop") + "_")
    it, cond, acc = s.prefix + "iter", s.prefix + "cond", s.prefix + "acc"
    delta = s.op("Add", it, s.const(1, np.int64))
    delta_1 = s.reshape(delta, s.ints(1))
    head = s.op("Slice", x, s.ints(0), s.op("Sub", t_len, delta_1), s.ints(0))
    shifted = s.op("Pad", head, s.cat(delta_1, pad_rest))
    acc_new = s.op("Add", acc, s.op("Mul", shifted, s.op("Gather", w, delta, axis=0)))
    cond_out, acc_out = s.op("Identity", cond), s.op("Identity", acc_new)
    graph = subgraph(s, s.prefix + "body", [it, cond, acc], [cond_out, acc_out], rank=2,
                     scalars={it: TensorProto.INT64, cond: TensorProto.BOOL, cond_out: TensorProto.BOOL})
    return b.reshape(b.op("Loop", trips, "", first, body=graph), b.shape(x_in))

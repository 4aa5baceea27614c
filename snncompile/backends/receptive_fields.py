"""Receptive fields for placement: which input elements a set of an op's output elements reads.

Masks are boolean arrays of one sample's shape (no time or batch axis): convolution and pooling windows, dense
rows, the head structure of the integer attention nodes; an unknown type conservatively depends on its whole
input.
"""
from __future__ import annotations

import math

import numpy as np

from ..ir.ops import (Delay, IntAdd, IntConv2d, IntDense, IntShift, KVOuterAccumulate, LoihiLIF, LoihiTernaryLIF,
                      MaxPool2d, QMAccumulate, ScoreLUT, ScoreValueAccumulate, SpikeScores, SumPool2d, TokenSum)

ELEMENTWISE = (LoihiLIF, LoihiTernaryLIF, IntAdd, IntShift, Delay, ScoreLUT)


def _window(out: np.ndarray, in_shape, kernel, stride, padding, dilation=(1, 1), groups=None) -> np.ndarray:
    """Input elements of a windowed op (convolution, pooling: ``groups = C``) that the ``[C_out, Ho, Wo]``
    output mask reads: each group's output positions, spread over their windows, for all its input channels."""
    c_in, h, w = in_shape
    groups = groups or c_in
    pos = out.reshape(groups, -1, *out.shape[1:]).any(1)  # [groups, Ho, Wo]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    ho, wo = pos.shape[1:]
    grid = np.zeros((groups, max(h + 2 * ph, dh * (kh - 1) + sh * (ho - 1) + 1),
                     max(w + 2 * pw, dw * (kw - 1) + sw * (wo - 1) + 1)), bool)  # padded coordinates
    for i in range(kh):
        for j in range(kw):
            grid[:, dh * i: dh * i + sh * (ho - 1) + 1: sh, dw * j: dw * j + sw * (wo - 1) + 1: sw] |= pos
    return np.repeat(grid[:, ph:ph + h, pw:pw + w], c_in // groups, axis=0)


def _heads(x: np.ndarray, heads: int) -> np.ndarray:
    """``[C, Hs, Ws]`` -> ``[H, d, N]`` (channel ``h*d + j``, token ``y*Ws + x``)."""
    return x.reshape(_head_shape(x.shape, heads))


def _head_shape(shape: tuple[int, ...], heads: int) -> tuple[int, int, int]:
    return heads, shape[0] // heads, math.prod(shape[1:])


def elements_read(op, out: np.ndarray, in_shapes) -> list[np.ndarray]:
    """For each input, the elements that the output elements marked in ``out`` depend on."""
    bc = lambda m, i: np.array(m).reshape(in_shapes[i])  # noqa: E731  (per-head [H, d, N] -> input shape)
    if isinstance(op, ELEMENTWISE) and all(tuple(s) == out.shape for s in in_shapes):
        return [out.copy() for _ in in_shapes]
    if isinstance(op, IntConv2d):
        return [_window(out, in_shapes[0], op.weight.shape[2:], op.stride, op.padding, op.dilation, op.groups)]
    if isinstance(op, (MaxPool2d, SumPool2d)):
        return [_window(out, in_shapes[0], op.kernel, op.stride, op.padding)]
    if isinstance(op, IntDense):
        return [np.broadcast_to(out.any(-1, keepdims=True), in_shapes[0]).copy()]
    if isinstance(op, TokenSum):
        return [np.broadcast_to(out[:, None, None], in_shapes[0]).copy()]
    if isinstance(op, KVOuterAccumulate):
        k = np.broadcast_to(out.any(2)[:, :, None], _head_shape(in_shapes[0], op.heads))  # K[h, i, :]
        v = np.broadcast_to(out.any(1)[:, :, None], _head_shape(in_shapes[1], op.heads))  # V[h, j, :]
        return [bc(k, 0), bc(v, 1)]
    if isinstance(op, QMAccumulate):
        o = _heads(out, op.heads)                                   # [H, d(j), N]
        q = np.broadcast_to(o.any(1)[:, None, :], o.shape)          # all channels of head h at token n
        m = np.broadcast_to(o.any(2)[:, None, :], in_shapes[1])     # M[h, :, j]
        return [q.reshape(in_shapes[0]), m.copy()]
    if isinstance(op, SpikeScores):
        shape = _head_shape(in_shapes[0], op.heads)
        q = np.broadcast_to(out.any(2)[:, None, :], shape)          # Q[h, :, n]
        k = np.broadcast_to(out.any(1)[:, None, :], shape)          # K[h, :, m]
        return [bc(q, 0), bc(k, 1)]
    if isinstance(op, ScoreValueAccumulate):
        o = _heads(out, op.heads)                                   # [H, d(j), N]
        s = np.broadcast_to(o.any(1)[:, :, None], in_shapes[0])     # S[h, n, :]
        v = np.broadcast_to(o.any(2)[:, :, None], o.shape)          # V[h, j, :]
        return [s.copy(), v.reshape(in_shapes[1])]
    return [np.ones(s, bool) for s in in_shapes]  # unknown structure: the whole input

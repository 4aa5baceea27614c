"""Which input elements an op's output elements read, and how many output elements each input element
reaches: the structure placement (``Op.reads``) and the activity counts (``Op.fan_out``) need.

Masks are boolean arrays of one sample's shape (no time or batch axis). Attention operands are
``[C, Hs, Ws]`` with heads as contiguous channel groups: channel ``h*d + j``, token ``n = y*Ws + x``.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def same_elements(out: np.ndarray, in_shapes) -> list[np.ndarray]:
    """An elementwise op: each output element reads the input elements at its own position."""
    if any(tuple(s) != out.shape for s in in_shapes):
        raise ValueError(f"an elementwise op's inputs {list(map(tuple, in_shapes))} differ from its output "
                         f"{out.shape}")
    return [out.copy() for _ in in_shapes]


def window(out: np.ndarray, in_shape, kernel, stride, padding, dilation=(1, 1), groups=None) -> np.ndarray:
    """Input elements of a windowed op (convolution; pooling with ``groups = C``) that the ``[C_out, Ho, Wo]``
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


def dense_rows(out: np.ndarray, in_shape) -> np.ndarray:
    """A dense layer on the last axis: an output element reads every input element of its row."""
    return np.broadcast_to(out.any(-1, keepdims=True), in_shape).copy()


def token_reduction(out: np.ndarray, in_shape) -> np.ndarray:
    """A ``[C]`` reduction over the tokens of a ``[C, H, W]`` map: channel c reads all its tokens."""
    return np.broadcast_to(out[:, None, None], in_shape).copy()


def head_shape(shape, heads: int) -> tuple[int, int, int]:
    """``[C, Hs, Ws]`` seen per head: ``[H, d, N]``."""
    return heads, shape[0] // heads, math.prod(shape[1:])


def per_head(x: np.ndarray, heads: int) -> np.ndarray:
    """A ``[C, Hs, Ws]`` mask as ``[H, d, N]``."""
    return x.reshape(head_shape(x.shape, heads))


def head_channels(mask_hd: np.ndarray, shape, heads: int) -> np.ndarray:
    """``[H, d]`` channel marks -> the ``[C, Hs, Ws]`` mask of those channels at every token."""
    return np.broadcast_to(mask_hd[:, :, None], head_shape(shape, heads)).reshape(shape).copy()


def head_tokens(mask_hn: np.ndarray, shape, heads: int) -> np.ndarray:
    """``[H, N]`` token marks -> the ``[C, Hs, Ws]`` mask of every channel of head h at those tokens."""
    return np.broadcast_to(mask_hn[:, None, :], head_shape(shape, heads)).reshape(shape).copy()


def eroded(mask_hdn: np.ndarray) -> np.ndarray:
    """A per-head ``[H, d, N]`` mask grown by a 3x3 window over (channel, token), stride 1, padding 1: what a
    3x3 max pool of the per-head ``[H, N, d]`` map reads."""
    h, d, n = mask_hdn.shape
    grown = np.zeros((h, d + 2, n + 2), bool)
    for i in range(3):
        for j in range(3):
            grown[:, i:i + d, j:j + n] |= mask_hdn
    return grown[:, 1:d + 1, 1:n + 1]


# -- fan-out: how many (output element, weight) pairs read each input element ----------------------------------

def synapse_fan_outs(weight: np.ndarray, in_shape, output_sets: list[np.ndarray], all_weights: bool,
                     conv: tuple | None) -> torch.Tensor:
    """``[len(output_sets), *in_shape]`` float64: per input element, the (output element, weight) pairs among each
    set of flat output indices that read it, counting non-zero weights only unless ``all_weights``. ``conv``:
    ``(stride, padding, dilation, groups)`` of a convolution, ``None`` for a dense layer on the last axis. The
    binarised layer's transpose (the gradient of its input) applied to the selected outputs, computed in
    float32 (float64 for huge weights), exact while a fan-out stays below 2^24."""
    weight = np.asarray(weight)
    mask = torch.from_numpy(np.ones(weight.shape, bool) if all_weights else weight != 0).to(torch.float32)
    if weight.size >= 1 << 24:
        mask = mask.double()
    out_shape = synapse_output_shape(weight, in_shape, conv)
    selected = torch.zeros((len(output_sets), math.prod(out_shape)), dtype=mask.dtype)
    for row, outputs in enumerate(output_sets):
        selected[row, torch.as_tensor(outputs, dtype=torch.int64)] = 1
    selected = selected.reshape(len(output_sets), *out_shape)
    if conv is None:
        return (selected @ mask).double()
    return torch.nn.grad.conv2d_input((len(output_sets), *in_shape), mask, selected, *conv).double()


def synapse_received(weight: np.ndarray, events: torch.Tensor, in_ndim: int, conv: tuple | None) -> torch.Tensor:
    """Per output element, the input events that reach it through a non-zero weight: ``events`` ``[..., *in_shape]``
    (0 or 1; ``in_ndim`` trailing axes are one sample) -> ``[..., *out_shape]`` float64. The binarised layer
    applied to the events (float32 products, exact while a count stays below 2^24): summed over the outputs, it
    equals the events times :func:`synapse_fan_outs` (the same synaptic operations, counted where they land)."""
    mask = torch.from_numpy(np.asarray(weight) != 0).to(torch.float32)
    lead = events.shape[:events.dim() - in_ndim]
    x = events.to(torch.float32).reshape(-1, *events.shape[len(lead):])
    found = x @ mask.T if conv is None else torch.nn.functional.conv2d(x, mask, None, *conv)
    return found.reshape(*lead, *found.shape[1:]).double()


def synapse_output_shape(weight: np.ndarray, in_shape, conv: tuple | None) -> tuple[int, ...]:
    """The per-sample output shape of a dense (``conv`` None) or convolution synapse on ``in_shape``."""
    if conv is None:
        return (*in_shape[:-1], np.asarray(weight).shape[0])
    probe = torch.empty((1, *in_shape), device="meta")
    kernel = torch.empty(np.asarray(weight).shape, device="meta")
    return tuple(torch.nn.functional.conv2d(probe, kernel, None, *conv).shape[1:])


__all__ = ["same_elements", "window", "dense_rows", "token_reduction", "head_shape", "per_head", "head_channels",
           "head_tokens", "eroded", "synapse_fan_outs", "synapse_received", "synapse_output_shape"]

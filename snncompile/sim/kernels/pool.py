"""``MaxPool2d`` as two one-dimensional maxima, bit for bit as its reference (``torch.max_pool2d``).

The reference visits every window element for every output and keeps the index of the maximum; here each row
of the padded input is reduced over the kernel's columns first (``kernel[1]`` element-wise maxima of strided
views), then those over the kernel's rows, which touches each input a few times instead of ``kh * kw`` times
(about 2x faster on the calibration's pools and the DVS models' 3x3 erosions). A window's maximum is the same
value whatever the order it is taken in, except where two elements compare equal with different bits:
``+0.0`` and ``-0.0`` (the reference keeps the first in scan order) and NaNs (it keeps the last). A float input
holding either is handed to the reference: one sum (NaN if any element is) and one minimum of the bits
(``-0.0``'s are the smallest int32) decide that.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ...ir.interpret import Traces, delayed, reference
from ...ir.ops import MaxPool2d
from ...nn.seq import per_step

_NEGATIVE_ZERO_BITS = torch.iinfo(torch.int32).min   # -0.0 as int32: no other float32 has these bits


def _ties_of_different_bits(x: torch.Tensor) -> bool:
    """Whether ``x`` may hold equal values with different bits (NaNs, or a ``-0.0``); may say so wrongly (a
    sum of infinities of both signs is NaN too), never the other way."""
    if not x.is_floating_point():
        return False
    if x.dtype != torch.float32:
        return True
    return bool(torch.isnan(x.sum())) or int(x.view(torch.int32).min()) == _NEGATIVE_ZERO_BITS


def separable_max_pool(frames: torch.Tensor, op: MaxPool2d) -> torch.Tensor:
    """``F.max_pool2d(frames, op.kernel, op.stride, op.padding)`` of ``[N, C, H, W]`` frames whose equal values
    have equal bits: the padding is the lowest value of the dtype, which never wins (every window holds an
    input element) or equals the element that does."""
    (kh, kw), (sh, sw), (ph, pw) = op.kernel, op.stride, op.padding
    lowest = float("-inf") if frames.is_floating_point() else torch.iinfo(frames.dtype).min
    padded = F.pad(frames, (pw, pw, ph, ph), value=lowest) if ph or pw else frames
    rows, columns = (padded.shape[-2] - kh) // sh + 1, (padded.shape[-1] - kw) // sw + 1
    across = padded[..., 0:sw * (columns - 1) + 1:sw].clone()
    for j in range(1, kw):
        torch.maximum(across, padded[..., j:j + sw * (columns - 1) + 1:sw], out=across)
    out = across[..., 0:sh * (rows - 1) + 1:sh, :].clone()
    for i in range(1, kh):
        torch.maximum(out, across[..., i:i + sh * (rows - 1) + 1:sh, :], out=out)
    return out


def max_pool(op: MaxPool2d, args: Sequence[torch.Tensor], delay: int, states: Traces):
    """The :data:`~snncompile.ir.interpret.Kernel` of ``MaxPool2d`` (:func:`separable_max_pool`); an input
    whose ties could differ in bits runs the reference."""
    (x,) = args
    if _ties_of_different_bits(x):
        return reference(op, args, delay, states)
    return delayed(per_step(x, lambda frames: separable_max_pool(frames, op)), delay), ()


__all__ = ["max_pool", "separable_max_pool"]

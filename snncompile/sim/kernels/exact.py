"""What the fast kernels check of an input before they narrow its arithmetic: per-step ranges, integrality."""
from __future__ import annotations

import torch

from ...ir.ops.loihi import as_int64

F32_EXACT = 1 << 24  # integers of magnitude <= 2^24 are exact in float32


def integer_float(x: torch.Tensor, what: str) -> None:
    """Raise (as :func:`~snncompile.ir.ops.loihi.as_int64`) unless the float tensor ``x`` (finite) holds
    integers only."""
    if x.is_floating_point() and x.numel() and any(v.item() != 0 for v in torch.aminmax(torch.frac(x))):
        as_int64(x, what)  # raises the documented error
        raise ValueError(f"{what} must hold integers")  # (not reached: as_int64 raises)


def step_ranges(x: torch.Tensor) -> tuple[list[int], list[int]] | None:
    """Per-timestep minimum and maximum of an integer-valued ``[T, ...]`` tensor as Python ints, or ``None``
    where the fast paths do not apply (an empty or 0-d tensor, a dtype ``aminmax`` lacks, NaN or values of
    magnitude >= 2^53). (One ``aminmax`` per step: much faster than torch's reduction along a dim.)"""
    if x.dim() == 0 or x.numel() == 0 or x.dtype == torch.bool or x.is_complex():
        return None
    lows, highs = [], []
    for step in x.reshape(x.shape[0], -1):
        lo, hi = torch.aminmax(step)
        lo, hi = lo.item(), hi.item()
        if x.is_floating_point() and not (-2.0 ** 53 < lo and hi < 2.0 ** 53):  # also false for NaN
            return None
        lows.append(int(lo))
        highs.append(int(hi))
    return lows, highs

"""The numbers of a netx block, exact or refused: a synapse's HDF5 weights (a sum pool before it folded in),
its neuron's netx bias, and what netx and Lava's Dense make of a dense weight matrix.

The rules (which weights netx and Lava keep, when a pool folds exactly, why a synapse bias cannot be written)
are those of :mod:`snncompile.backends.lava.netx`'s docstring; :func:`synapse_weights` and :func:`neuron_bias`
answer for one node with the weights or the reason it is refused. numpy only: Lava's compiler also executes
this file on its own (a sibling of the backend's Process definitions), so absolute imports, no side effects.
"""

import numpy as np

from snncompile.ir.ops.int_synapse import netx_lava_dense
from snncompile.ir.ops.loihi import BIAS_MANT_RANGE
from snncompile.ir.types import TensorType

NETX_BIAS_EXP = 6                        # netx builds every CUBA neuron with bias_exp=6
LAVA_CONV_BITS = 24                      # Lava's fixed Conv wraps its sums to 24 bits
LOIHI_WEIGHT_RANGE = (-256, 255)         # 8-bit magnitude with a sign


# -- a synapse and its neuron ---------------------------------------------------------------------------------------

def _input_range(t: TensorType) -> tuple[int, int]:
    lo, hi = int(t.dtype.min), int(t.dtype.max)
    return min(lo, 0), max(hi, 0)  # zero padding and absent terms add 0


def _sum_range(weight: np.ndarray, lo: int, hi: int) -> tuple[int, int]:
    """Interval of every output's sum ``w · x`` over inputs in ``[lo, hi]`` (``lo <= 0 <= hi``)."""
    w = weight.astype(np.int64).reshape(weight.shape[0], -1)
    pos, neg = np.where(w > 0, w, 0).sum(1), np.where(w < 0, w, 0).sum(1)
    return int((pos * lo + neg * hi).min(initial=0)), int((pos * hi + neg * lo).max(initial=0))


def synapse_weights(syn, pool, in_type: TensorType) -> tuple[np.ndarray | None, dict, str | None]:
    """``(hdf5 weight, geometry, None)`` for synapse ``syn`` (after the folded ``pool``, fed values of
    ``in_type``), or ``(None, {}, reason)``; a reason about the pool starts with ``pool:``."""
    kind = syn.type_name()
    if syn.delay != 1:
        return None, {}, (f"delay={syn.delay}: Lava's Dense and Conv deliver one step later (delay=1); export a "
                          "scheduled graph (lower_to_loihi ends with the schedule pass)")
    if syn.bias is not None and np.any(syn.bias):
        return None, {}, (f"a synapse bias ({int(syn.bias.min())}..{int(syn.bias.max())}) arrives with the data, "
                          f"from step bias_start + delay = {syn.bias_start + syn.delay} on; netx's only bias is the "
                          f"neuron's (bias_mant << {NETX_BIAS_EXP} added to v from the first step), which would charge "
                          "the neuron during the pipeline's leading empty steps: not exact")
    w = np.asarray(syn.weight).astype(np.int64)
    e = int(syn.weight_exp)
    if e >= 0:
        w = w << e
    elif np.any(w % (1 << -e)):
        return None, {}, (f"weight_exp={e} floors the accumulated sum (acc >> {-e}): netx picks a Dense's weight "
                          "exponent itself from the weights (always dividing exactly) and Lava's fixed Conv ignores "
                          "exponents, so only weights divisible by 2^-weight_exp can carry it")
    else:
        w = w >> -e
    geometry: dict = {}
    if kind == "IntConv2d":
        geometry = dict(stride=tuple(syn.stride), padding=tuple(syn.padding), dilation=tuple(syn.dilation),
                        groups=int(syn.groups))
        if pool is not None:
            folded = _fold_pool_conv(pool, w, geometry, in_type)
            if isinstance(folded, str):
                return None, {}, "pool: " + folded
            w, geometry = folded
        lo_w, hi_w = LOIHI_WEIGHT_RANGE
        if w.min(initial=0) < lo_w or w.max(initial=0) > hi_w:
            return None, {}, (f"conv weights {int(w.min())}..{int(w.max())} (after weight_exp={e}"
                              f"{' and the folded pool' if pool is not None else ''}) leave Loihi's {lo_w}..{hi_w}")
    elif pool is not None:
        w = _fold_pool_dense(pool, in_type, w)
    lo, hi = _input_range(in_type)
    s_lo, s_hi = _sum_range(w, lo, hi)
    half = 1 << (syn.out_bits - 1)
    if s_lo < -half or s_hi > half - 1:
        return None, {}, (f"its sums can reach {s_lo}..{s_hi}, beyond out_bits={syn.out_bits} ({syn.overflow} in the "
                          "IR, unclipped int32 in Lava's Dense, a 24-bit wrap in its Conv): not exact")
    if kind == "IntConv2d":
        if max(-s_lo, s_hi) >= 1 << (LAVA_CONV_BITS - 1):
            return None, {}, f"its sums can reach {s_lo}..{s_hi}: Lava's fixed Conv wraps them to 24 bits"
        return w, geometry, None
    try:
        w_lava, _, weight_exp = netx_dense_weights(w)
    except ValueError as err:
        return None, {}, str(err)
    if max(-s_lo, s_hi) << max(-weight_exp, 0) >= 1 << 31:
        return None, {}, (f"its sums, scaled by netx's 2^{-weight_exp}, can reach beyond int32 in Lava's Dense")
    return w, geometry, None


def neuron_bias(lif) -> tuple[np.ndarray | None, str | None]:
    """``(netx bias mantissa or None, None)`` for a LoihiLIF, or ``(None, reason)``."""
    if lif.delay:
        return None, f"delay={lif.delay}: a Lava LIF answers on the step its input arrives"
    b = np.asarray(lif.bias_mant, dtype=np.int64) << int(lif.bias_exp)
    if not np.any(b):
        return None, None
    lo, hi = BIAS_MANT_RANGE
    if np.any(b % (1 << NETX_BIAS_EXP)) or (b >> NETX_BIAS_EXP).min() < lo or (b >> NETX_BIAS_EXP).max() > hi:
        return None, (f"bias bias_mant << bias_exp = {int(b.min())}..{int(b.max())}: netx writes a neuron bias as a "
                      f"13-bit mantissa with bias_exp={NETX_BIAS_EXP}, so it must be a multiple of 64 within "
                      f"{lo << NETX_BIAS_EXP}..{hi << NETX_BIAS_EXP}")
    return b >> NETX_BIAS_EXP, None


# -- folding a sum pool into the next synapse -----------------------------------------------------------------------

def _pool_windows(pool, size: int, axis: int) -> tuple[int, int, int, int]:
    k, s, p = pool.kernel[axis], pool.stride[axis], pool.padding[axis]
    return k, s, p, (size + 2 * p - k) // s + 1


def _fold_pool_conv(pool, w: np.ndarray, geo: dict, in_type: TensorType):
    """``(kernel, geometry)`` of conv(pool(x)) as one conv of x, or a reason. Per axis, with pool ``(k, s, p)``
    and conv ``(K, S, P, D)``: ``K' = (K-1)·D·s + k``, ``S' = S·s``, ``P' = P·s + p``, ``D' = 1``,
    ``w'[.., i·D·s + a] += w[.., i]``. Exact where the conv's zero padding of the pooled map covers only zero
    padding of x: the windows at pooled index -1 lie below 0 (``k <= s + p``) and those past the last window
    at or above the map's end (the pool covers every row)."""
    shape = in_type.shape  # (C, H, W) of the unpooled map
    kernel, stride, padding = [], [], []
    for axis in range(2):
        k, s, p, n_pooled = _pool_windows(pool, shape[1 + axis], axis)
        K, S, P, D = w.shape[2 + axis], geo["stride"][axis], geo["padding"][axis], geo["dilation"][axis]
        if P and (k > s + p or n_pooled * s - p < shape[1 + axis]):
            return (f"the conv after it pads the pooled map with zeros that would cover real pixels once folded (pool "
                    f"kernel {pool.kernel}, stride {pool.stride}, padding {pool.padding} on a {list(shape)} map): netx "
                    "has no pool layer")
        kernel.append((K - 1) * D * s + k)
        stride.append(S * s)
        padding.append(P * s + p)
        size_pooled_conv = (n_pooled + 2 * P - D * (K - 1) - 1) // S + 1
        size_folded = (shape[1 + axis] + 2 * padding[-1] - kernel[-1]) // stride[-1] + 1
        if size_folded != size_pooled_conv:
            return (f"folded into the conv after it, the map size changes ({size_pooled_conv} -> {size_folded} on axis "
                    f"{axis}): netx has no pool layer")
    out = np.zeros((*w.shape[:2], *kernel), dtype=np.int64)
    (k0, k1), (s0, s1) = pool.kernel, pool.stride
    d0, d1 = geo["dilation"][0] * s0, geo["dilation"][1] * s1
    for a in range(k0):
        for b in range(k1):
            out[:, :, a:a + d0 * (w.shape[2] - 1) + 1:d0, b:b + d1 * (w.shape[3] - 1) + 1:d1] += w
    return out, dict(geo, stride=tuple(stride), padding=tuple(padding), dilation=(1, 1))


def _fold_pool_dense(pool, in_type: TensorType, w: np.ndarray) -> np.ndarray:
    """The weights of dense(flatten(pool(x))) as one dense of flatten(x): every pixel gets the sum of the
    weights of the windows that cover it (none: 0)."""
    C, H, W = in_type.shape
    k0, s0, p0, h = _pool_windows(pool, H, 0)
    k1, s1, p1, wd = _pool_windows(pool, W, 1)
    w4 = w.reshape(w.shape[0], C, h, wd)
    out = np.zeros((w.shape[0], C, H, W), dtype=np.int64)
    for a in range(k0):
        rows = np.arange(h) * s0 - p0 + a
        r_ok = (rows >= 0) & (rows < H)
        for b in range(k1):
            cols = np.arange(wd) * s1 - p1 + b
            c_ok = (cols >= 0) & (cols < W)
            out[:, :, rows[r_ok][:, None], cols[c_ok][None, :]] += w4[:, :, np.flatnonzero(r_ok)[:, None],
                                                                      np.flatnonzero(c_ok)[None, :]]
    return out.reshape(w.shape[0], -1)


# -- what netx and Lava's Dense make of a weight matrix -------------------------------------------------------------

def netx_dense_weights(w: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``(weights, num_weight_bits, weight_exp)`` Lava's Dense computes with for integer HDF5 dense weights
    ``w`` (:func:`~snncompile.ir.ops.int_synapse.netx_lava_dense`); raises ``ValueError`` unless that is exact:
    nothing clipped and ``weights == w << -weight_exp``, so that Lava's ``(weights · s) >> -weight_exp`` is
    ``w · s``."""
    w = np.asarray(w).astype(np.int64)
    mx, mn = int(w.max()), int(w.min())
    if (mx > 254 and mn < 0) or (mn < -256 and mx > 0):
        raise ValueError(f"dense weights {mn}..{mx}: netx's optimize_weight_bits clips mixed-sign weights to -256..254")
    lava, num_weight_bits, weight_exp = netx_lava_dense(w)
    scaled = w << -weight_exp
    if not np.array_equal(lava, scaled):
        bad = np.flatnonzero(lava.ravel() != scaled.ravel())
        raise ValueError(f"dense weights {mn}..{mx}: netx and Lava's Dense change {len(bad)} of them (e.g. "
                         f"{int(w.ravel()[bad[0]])} -> {int(lava.ravel()[bad[0]]) >> -weight_exp})")
    return lava, num_weight_bits, weight_exp


__all__ = ["synapse_weights", "neuron_bias", "netx_dense_weights", "NETX_BIAS_EXP", "LAVA_CONV_BITS",
           "LOIHI_WEIGHT_RANGE"]

"""Spiking attention cores, on per-head tensors ``[T, B, H, N, d]`` (heads = contiguous channel groups).

Each function is the float semantics of one zoo variant; the naive per-element loops in the tests
and the integer lowerings are checked against them.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def erode(x: torch.Tensor) -> torch.Tensor:
    """Upstream DVS-mode pooling: ``MaxPool3d(kernel=(1,3,3), stride=1, padding=(0,1,1))`` on a 5-D tensor.

    On ``[T, B, C, Hs, Ws]`` this is a 3x3 spatial max (OR on spikes). Upstream also applies it to the
    per-head ``[T, B, H, N, d]`` tensors of SDSA, where it pools over (token, channel-in-head)
    index windows; we keep that exactly, since checkpoints were trained with it.
    """
    return F.max_pool3d(x, kernel_size=(1, 3, 3), stride=1, padding=(0, 1, 1))


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[T, B, C, Hs, Ws]`` -> ``[T, B, H, N, d]`` with channel ``c = h*d + j`` and token ``n = y*Ws + x``."""
    T, B, C = x.shape[:3]
    return (x.flatten(3).transpose(-1, -2).reshape(T, B, -1, heads, C // heads).permute(0, 1, 3, 2, 4)
            .contiguous())


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``[T, B, H, N, d]`` -> ``[T, B, C, N]`` with ``c = h*d + j`` (token axis last, as upstream)."""
    T, B, H, N, d = x.shape
    return x.transpose(4, 3).reshape(T, B, H * d, N).contiguous()


def statten_scores(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk_size: int,
                   scale: float) -> torch.Tensor:
    """STAtten block attention ``Q_b (K_b^T V_b * scale)`` over blocks of ``chunk_size`` timesteps.

    Within block g (timesteps g*Bk .. g*Bk+Bk-1) the rows of Q, K, V of all Bk timesteps are stacked
    (row index j*N + n), so ``M = K_b^T V_b`` sums coincidences over Bk*N rows and every output of
    the block depends on all its timesteps (non-causal inside the block). Same float op order as
    upstream (scale applied to ``K^T V`` before the product with Q).
    """
    T, B, H, N, d = q.shape
    if T % chunk_size:
        raise ValueError(f"STAtten: T={T} is not a multiple of chunk_size={chunk_size}")
    g = T // chunk_size

    def blocks(x):
        return (x.reshape(g, chunk_size, B, H, N, d).permute(0, 2, 3, 1, 4, 5)
                .reshape(g, B, H, chunk_size * N, d))

    m = torch.matmul(blocks(k).transpose(-2, -1), blocks(v)) * scale
    out = torch.matmul(blocks(q), m)
    return out.reshape(g, B, H, chunk_size, N, d).permute(0, 3, 1, 2, 4, 5).reshape(T, B, H, N, d)


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Per-timestep ``Q (K^T V)`` (SSA and A2OS2A). Equal to ``(Q K^T) V`` in exact arithmetic."""
    return torch.matmul(q, torch.matmul(k.transpose(-2, -1), v))


def sdsa_column_sum(k: torch.Tensor, v: torch.Tensor, dvs: bool) -> torch.Tensor:
    """SDSA's ``sum over tokens of K AND V`` -> ``[T, B, H, 1, d]`` integer counts."""
    kv = k * v
    if dvs:
        kv = erode(kv)
    return kv.sum(dim=-2, keepdim=True)


def sdsa_mask(q: torch.Tensor, m: torch.Tensor, dvs: bool) -> torch.Tensor:
    """SDSA's ``Q AND m`` on per-head ``[T, B, H, N, d]`` Q and ``[T, B, H, 1, d]`` mask (eroded in DVS mode)."""
    a = q * m
    return erode(a) if dvs else a


class AttentionLUT(nn.Module):
    """DS2TA's denoiser: a learned table ``f: {0..d} -> R`` per head, applied to integer scores.

    The forward value is exactly ``table[h, a]`` (scores are integers). For training, the gradient
    with respect to the score is the forward difference ``table[h, a+1] - table[h, a]`` (a
    straight-through slope), so Q and K still learn. Initialised to the identity ``f(a) = a``.
    """

    def __init__(self, num_heads: int, max_score: int):
        super().__init__()
        self.max_score = max_score
        self.table = nn.Parameter(torch.arange(max_score + 1, dtype=torch.float32).repeat(num_heads, 1))

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        value, idx, heads = lut_lookup(self.table, scores)
        slope = self.table[heads, (idx + 1).clamp(max=self.max_score)] - value
        return value + (scores - scores.detach()) * slope.detach()


def lut_lookup(table: torch.Tensor, scores: torch.Tensor):
    """``table[h, scores]`` for integer-valued scores ``[T, B, H, N, N]``; returns (values, indices, head index)."""
    max_score = table.shape[1] - 1
    idx = scores.detach().round().long()
    if idx.min() < 0 or idx.max() > max_score:
        raise ValueError(f"DS2TA LUT: scores outside 0..{max_score}")
    heads = torch.arange(table.shape[0], device=scores.device).view(-1, 1, 1)
    return table[heads, idx], idx, heads


class TemporalWindow(nn.Module):
    """DS2TA's temporally attenuated input: ``X~[t] = sum_{delta < W} exp(-delta/tau) X[t-delta]``.

    One learnable ``tau`` (stored as ``log_tau``); ``X[t] = 0`` for ``t < 0`` (causal). Applied to the
    input of a bias-free projection it equals the attenuated sum of the projected inputs
    (models.md §6.2, our reading: UNVERIFIED).
    """

    def __init__(self, window: int, tau_init: float):
        super().__init__()
        self.window = window
        self.log_tau = nn.Parameter(torch.tensor(math.log(tau_init)))

    def weights(self) -> torch.Tensor:
        delta = torch.arange(self.window, dtype=torch.float32, device=self.log_tau.device)
        return torch.exp(-delta / self.log_tau.exp())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return attenuated_window(x, self.weights())


def attenuated_window(x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``y[t] = sum_{delta < len(lam)} lam[delta] * x[t - delta]`` on ``[T, ...]``, zero before t = 0."""
    out = x * lam[0]
    for delta in range(1, min(len(lam), x.shape[0])):
        out = out + F.pad(x[:-delta], [0, 0] * (x.dim() - 1) + [delta, 0]) * lam[delta]
    return out

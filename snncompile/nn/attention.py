"""Spiking attention cores, on per-head tensors ``[T, B, H, N, d]`` (heads = contiguous channel groups).

Each function is the float semantics of one zoo variant; the naive per-element loops in the tests
and the integer lowerings are checked against them.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .neurons import MultiStepLIF, MultiStepTernaryLIF


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


# Orders of SSA's product in Spikformer's three code variants (models.md §4.2). With binary Q, K, V and a
# power-of-two scale every partial sum is an exact multiple of the scale (below 2^24), so the orders give the
# same float result; each variant still computes its own, as upstream does.
SSA_ORDERS = ("(QK^T)s V", "(QK^T V)s", "Q(K^T V)s")


def ssa_scores(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, order: str) -> torch.Tensor:
    """Per-timestep SSA ``Q K^T V * scale`` on ``[T, B, H, N, d]``, the float operations in ``order``."""
    if order == "(QK^T)s V":
        return torch.matmul(torch.matmul(q, k.transpose(-2, -1)) * scale, v)
    if order == "(QK^T V)s":
        return torch.matmul(torch.matmul(q, k.transpose(-2, -1)), v) * scale
    if order == "Q(K^T V)s":
        return linear_attention(q, k, v) * scale
    raise ValueError(f"SSA order must be one of {SSA_ORDERS}, got {order!r}")


class AttentionCore(nn.Module):
    """What every backbone's attention branch shares: the Q/K/V neurons and the zoo attention core.

    A backbone's branch (``nn/sdt.py``, ``nn/spikformer.py``) projects its input to Q, K, V currents and
    maps the core's output back; in between, per ``cfg.attention`` (models.md §2-§6):

    - SDT (SDSA): ``A = Q * talking_heads_lif(sum_tokens(K*V))`` (θ = 0.5; no attn_lif)
    - STAtten: ``A = attn_lif(statten_scale * Q_b K_b^T V_b)`` per temporal block
    - SSA: ``A = attn_lif(ssa_scale * Q K^T V)`` per timestep, in the branch's ``ssa_order``
    - A2OS2A: K = ReLU(current) (real), V = ternary LIF; ``A = attn_lif(Q K^T V)`` (no scale)
    - DS2TA: ``A = attn_lif(ds2ta_scale * LUT(Q K^T) V)`` (the branch attenuates the projections' inputs)

    The modules keep upstream's attribute names (``q_lif``, ``attn_lif``, ``talking_heads_lif``, ``lut``, ...),
    so checkpoints load and spikes compare by module path.
    """

    ssa_order = "Q(K^T V)s"

    def _add_qkv_neurons(self, cfg, neuron) -> None:
        """``q_lif``, and ``k_lif``/``v_lif`` (A2OS2A: ``k_relu``/``v_ternary``); ``neuron(threshold)`` makes
        the branch's spiking neurons."""
        self.cfg, self.mode = cfg, cfg.attention
        self.q_lif = neuron(1.0)
        if self.mode == "A2OS2A":
            self.k_relu = nn.ReLU()
            self.v_ternary = MultiStepTernaryLIF(tau=cfg.ternary_tau, v_threshold=cfg.ternary_threshold)
        else:
            self.k_lif = neuron(1.0)
            self.v_lif = neuron(1.0)

    def _add_core(self, cfg, neuron) -> None:
        """The core's own neurons and tables: ``talking_heads_lif`` (SDT) or ``attn_lif`` (θ = 0.5 LIF), and
        DS2TA's ``lut`` and temporal windows (``q_window`` ... ``proj_window``)."""
        if self.mode == "SDT":
            self.talking_heads_lif = neuron(0.5)
        else:
            self.attn_lif = MultiStepLIF(v_threshold=0.5)
        if self.mode == "DS2TA":
            self.lut = AttentionLUT(cfg.num_heads, cfg.head_dim)
            self.q_window, self.k_window, self.v_window, self.proj_window = (
                TemporalWindow(cfg.ds2ta_window, cfg.ds2ta_tau_init) for _ in range(4))

    def qkv_spikes(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """The Q, K, V neurons on their currents (A2OS2A: K real through ReLU, V ternary)."""
        if self.mode == "A2OS2A":
            return self.q_lif(q), self.k_relu(k), self.v_ternary(v)
        return self.q_lif(q), self.k_lif(k), self.v_lif(v)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dvs: bool = False) -> torch.Tensor:
        """The core on ``[T, B, C, Hs, Ws]`` Q, K, V spikes; returns ``A`` of the same shape. ``dvs``: the SDT
        backbone's event mode (3x3 erode of K and V, and of Q except in SDT mode)."""
        T, B, C, Hs, Ws = q.shape
        heads = self.cfg.num_heads
        if dvs:
            # The Spike-Driven Transformer repository (the source of SDT checkpoints) erodes K and V
            # only; STAtten's code erodes Q as well.
            k, v = erode(k), erode(v)
            if self.mode != "SDT":
                q = erode(q)
        q, k, v = (split_heads(t, heads) for t in (q, k, v))
        if self.mode == "SDT":
            return merge_heads(sdsa_mask(q, self.talking_heads_lif(sdsa_column_sum(k, v, dvs)), dvs)).reshape(
                T, B, C, Hs, Ws)
        if self.mode == "STAtten":
            x = statten_scores(q, k, v, self.cfg.chunk_size, self.cfg.statten_scale)
        elif self.mode == "SSA":
            x = ssa_scores(q, k, v, self.cfg.ssa_scale, self.ssa_order)
        elif self.mode == "A2OS2A":
            x = linear_attention(q, k, v)
        else:  # DS2TA
            x = torch.matmul(self.lut(torch.matmul(q, k.transpose(-2, -1))), v) * self.cfg.ds2ta_scale
        return self.attn_lif(merge_heads(x)).reshape(T, B, C, Hs, Ws)

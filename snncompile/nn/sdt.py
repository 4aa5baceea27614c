"""Spike-Driven Transformer backbone (upstream ``sdt``) with selectable attention.

Module and parameter names follow the upstream STAtten / Spike-Driven Transformer code, so their
checkpoints load without key surgery (``talking_heads`` is kept, unused, for that reason only).
Layout is time-major ``[T, B, C, H, W]``. Data flow (models.md §2.1)::

    U0 = SPS(x)                                            real-valued membrane stream
    U' = U + BN(W_proj  attention(SN(U)))                  membrane shortcut
    U  = U' + BN(W2 SN(BN(W1 SN(U') + b1)) + b2)
    logits = head(head_lif(mean_tokens(U)))  (mean over T unless TET)
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .attention import (AttentionLUT, TemporalWindow, erode, linear_attention, merge_heads, sdsa_column_sum,
                        sdsa_mask, split_heads, statten_scores)
from .seq import per_step
from .neurons import MultiStepLIF, MultiStepTernaryLIF, make_neuron


def _branch_neuron(cfg: ModelConfig, v_threshold: float = 1.0) -> MultiStepLIF:
    """Neuron of the stem and attention branch.

    ``spike_mode`` applies to every neuron in the Spike-Driven Transformer repository (SDT mode), but
    only to the MLP and head neurons in STAtten's code, whose convention the other variants follow.
    """
    if cfg.attention == "SDT":
        return make_neuron(cfg.spike_mode, v_threshold)
    return MultiStepLIF(v_threshold=v_threshold)


def _conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-D conv + BN to a ``[T, B, C, H, W]`` tensor frame by frame."""
    return per_step(x, lambda f: bn(conv(f)))


def _maxpool(x: torch.Tensor) -> torch.Tensor:
    return per_step(x, lambda f: nn.functional.max_pool2d(f, kernel_size=3, stride=2, padding=1))


class SpikingPatchSplitting(nn.Module):
    """MS_SPS stem: four conv3x3+BN stages (LIF after the first three), optional max-pools, RPE.

    Stage 4's max-pool acts on the real BN output before ``proj_lif3``, and that pooled real map
    ``F`` is also the residual: ``U0 = F + BN(rpe_conv(SN(F)))``.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D = cfg.dim
        widths = [cfg.in_channels, D // 8, D // 4, D // 2, D]
        self.pooling_stat = cfg.pooling_stat
        for i, suffix in enumerate(["", "1", "2", "3"]):
            setattr(self, f"proj_conv{suffix}",
                    nn.Conv2d(widths[i], widths[i + 1], 3, stride=1, padding=1, bias=False))
            setattr(self, f"proj_bn{suffix}", nn.BatchNorm2d(widths[i + 1]))
            setattr(self, f"proj_lif{suffix}", _branch_neuron(cfg))
        self.rpe_conv = nn.Conv2d(D, D, 3, stride=1, padding=1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, suffix in enumerate(["", "1", "2"]):
            x = getattr(self, f"proj_lif{suffix}")(
                _conv_bn(getattr(self, f"proj_conv{suffix}"), getattr(self, f"proj_bn{suffix}"), x))
            if self.pooling_stat[i] == "1":
                x = _maxpool(x)
        feat = _conv_bn(self.proj_conv3, self.proj_bn3, x)
        if self.pooling_stat[3] == "1":
            feat = _maxpool(feat)
        return feat + _conv_bn(self.rpe_conv, self.rpe_bn, self.proj_lif3(feat))


class SpikingSelfAttention(nn.Module):
    """Attention branch of one block (upstream ``MS_SSA_Conv``), for every zoo attention variant.

    ``shortcut_lif`` turns the membrane stream into spikes S; Q, K, V = act(BN(conv1x1(S))); the
    core combines them; ``proj_bn(proj_conv(.))`` maps back. Per variant (models.md §2-§6):

    - SDT (SDSA): ``A = Q * talking_heads_lif(sum_tokens(K*V))`` (θ = 0.5; no attn_lif)
    - STAtten: ``A = attn_lif(statten_scale * Q_b K_b^T V_b)`` per temporal block
    - SSA: ``A = attn_lif(ssa_scale * Q K^T V)`` per timestep
    - A2OS2A: K = ReLU(BN(conv S)) (real), V = ternary LIF; ``A = attn_lif(Q K^T V)`` (no scale)
    - DS2TA: Q/K/V/proj inputs are temporally attenuated windows; ``A = attn_lif(ds2ta_scale * LUT(Q K^T) V)``
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D, H = cfg.dim, cfg.num_heads
        self.cfg = cfg
        self.mode = cfg.attention
        self.shortcut_lif = _branch_neuron(cfg)
        for name in "qkv":
            setattr(self, f"{name}_conv", nn.Conv2d(D, D, 1, bias=False))
            setattr(self, f"{name}_bn", nn.BatchNorm2d(D))
        self.q_lif = _branch_neuron(cfg)
        if self.mode == "A2OS2A":
            self.k_relu = nn.ReLU()
            self.v_ternary = MultiStepTernaryLIF(tau=cfg.ternary_tau, v_threshold=cfg.ternary_threshold)
        else:
            self.k_lif = _branch_neuron(cfg)
            self.v_lif = _branch_neuron(cfg)
        self.talking_heads = nn.Conv1d(H, H, 1, bias=False)  # dead upstream parameter, kept for keys
        if self.mode == "SDT":
            self.talking_heads_lif = _branch_neuron(cfg, v_threshold=0.5)
        else:
            self.attn_lif = MultiStepLIF(v_threshold=0.5)
        if self.mode == "DS2TA":
            self.lut = AttentionLUT(H, cfg.head_dim)
            self.q_window, self.k_window, self.v_window, self.proj_window = (
                TemporalWindow(cfg.ds2ta_window, cfg.ds2ta_tau_init) for _ in range(4))
        self.proj_conv = nn.Conv2d(D, D, 1)
        self.proj_bn = nn.BatchNorm2d(D)

    def _project(self, name: str, s: torch.Tensor) -> torch.Tensor:
        if self.mode == "DS2TA":
            s = getattr(self, f"{name}_window")(s)
        return _conv_bn(getattr(self, f"{name}_conv"), getattr(self, f"{name}_bn"), s)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        T, B, C, Hs, Ws = u.shape
        dvs, heads = self.cfg.dvs_mode, self.cfg.num_heads
        s = self.shortcut_lif(u)
        q = self.q_lif(self._project("q", s))
        if self.mode == "A2OS2A":
            k = self.k_relu(self._project("k", s))
            v = self.v_ternary(self._project("v", s))
        else:
            k = self.k_lif(self._project("k", s))
            v = self.v_lif(self._project("v", s))
        if dvs:
            # The Spike-Driven Transformer repository (the source of SDT checkpoints) erodes K and V
            # only; STAtten's code erodes Q as well.
            k, v = erode(k), erode(v)
            if self.mode != "SDT":
                q = erode(q)
        q, k, v = (split_heads(t, heads) for t in (q, k, v))

        if self.mode == "SDT":
            a = merge_heads(sdsa_mask(q, self.talking_heads_lif(sdsa_column_sum(k, v, dvs)), dvs))
            a = a.reshape(T, B, C, Hs, Ws)
        else:
            if self.mode == "STAtten":
                x = statten_scores(q, k, v, self.cfg.chunk_size, self.cfg.statten_scale)
            elif self.mode == "SSA":
                x = linear_attention(q, k, v) * self.cfg.ssa_scale
            elif self.mode == "A2OS2A":
                x = linear_attention(q, k, v)
            else:  # DS2TA
                x = torch.matmul(self.lut(torch.matmul(q, k.transpose(-2, -1))), v) * self.cfg.ds2ta_scale
            a = self.attn_lif(merge_heads(x)).reshape(T, B, C, Hs, Ws)
            if dvs:
                p = erode(s)
                a = a * p + p
        return u + self._project("proj", a)


class MLP(nn.Module):
    """Upstream ``MS_MLP_Conv``: ``U + BN(W2 SN(BN(W1 SN(U) + b1)) + b2)`` (inner shortcut iff hidden == D)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D, hidden = cfg.dim, cfg.dim * cfg.mlp_ratio
        self.inner_residual = hidden == D
        self.fc1_conv = nn.Conv2d(D, hidden, 1)
        self.fc1_bn = nn.BatchNorm2d(hidden)
        self.fc1_lif = make_neuron(cfg.spike_mode)
        self.fc2_conv = nn.Conv2d(hidden, D, 1)
        self.fc2_bn = nn.BatchNorm2d(D)
        self.fc2_lif = make_neuron(cfg.spike_mode)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        identity = u
        x = _conv_bn(self.fc1_conv, self.fc1_bn, self.fc1_lif(u))
        if self.inner_residual:
            x = identity + x
            identity = x
        return _conv_bn(self.fc2_conv, self.fc2_bn, self.fc2_lif(x)) + identity


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn = SpikingSelfAttention(cfg)
        self.mlp = MLP(cfg)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attn(u))


class SpikeDrivenTransformer(nn.Module):
    """The zoo model. Input ``[B, C, H, W]`` (static: repeated over T) or ``[B, T, C, H, W]`` (events).

    Returns logits ``[B, classes]`` (mean over T), or ``[T, B, classes]`` when ``cfg.tet``, as upstream.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        problems = cfg.problems()
        if problems:
            raise ValueError("invalid model config: " + "; ".join(problems))
        self.cfg = cfg
        self.patch_embed = SpikingPatchSplitting(cfg)
        self.block = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.head_lif = make_neuron(cfg.spike_mode)
        self.head = nn.Linear(cfg.dim, cfg.num_classes)
        self.apply(_init_weights)

    def time_major_input(self, x: torch.Tensor) -> torch.Tensor:
        c, s = self.cfg.in_channels, self.cfg.img_size
        if x.dim() == 4 and tuple(x.shape[1:]) == (c, s, s):
            return x.unsqueeze(0).repeat(self.cfg.time_steps, 1, 1, 1, 1)
        if x.dim() == 5 and tuple(x.shape[2:]) == (c, s, s):
            if x.shape[1] != self.cfg.time_steps:
                raise ValueError(f"input has {x.shape[1]} timesteps, the model expects "
                                 f"time_steps={self.cfg.time_steps}")
            return x.transpose(0, 1).contiguous()
        raise ValueError(f"input shape {tuple(x.shape)} is neither [B, {c}, {s}, {s}] (static) nor "
                         f"[B, T, {c}, {s}, {s}] (events)")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        u = self.patch_embed(self.time_major_input(x))
        for blk in self.block:
            u = blk(u)
        return u.flatten(3).mean(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.head_lif(self.forward_features(x)))
        return out if self.cfg.tet else out.mean(0)

    @torch.no_grad()
    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits averaged over T whatever ``cfg.tet`` says (what evaluation uses)."""
        out = self(x)
        return out.mean(0) if self.cfg.tet else out


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)

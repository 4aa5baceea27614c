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
from .attention import AttentionCore, erode
from .model_base import BackboneModel
from .seq import per_step
from .neurons import MultiStepLIF, make_neuron


def _branch_neuron(cfg: ModelConfig, v_threshold: float = 1.0) -> MultiStepLIF:
    """Neuron of the stem and attention branch.

    ``spike_mode`` applies to every neuron in the Spike-Driven Transformer repository (SDT mode), but
    only to the MLP and head neurons in STAtten's code, whose convention the other variants follow.
    """
    if cfg.attention == "SDT":
        return make_neuron(cfg.spike_mode, v_threshold)
    return MultiStepLIF(v_threshold=v_threshold)


def conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-D conv + BN to a ``[T, B, C, H, W]`` tensor frame by frame."""
    return per_step(x, lambda f: bn(conv(f)))


def stem_maxpool(x: torch.Tensor) -> torch.Tensor:
    """The stem's 3x3, stride-2, padding-1 max-pool on a ``[T, B, C, H, W]`` stream (an OR on spikes)."""
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
                conv_bn(getattr(self, f"proj_conv{suffix}"), getattr(self, f"proj_bn{suffix}"), x))
            if self.pooling_stat[i] == "1":
                x = stem_maxpool(x)
        feat = conv_bn(self.proj_conv3, self.proj_bn3, x)
        if self.pooling_stat[3] == "1":
            feat = stem_maxpool(feat)
        return feat + conv_bn(self.rpe_conv, self.rpe_bn, self.proj_lif3(feat))


class SpikingSelfAttention(AttentionCore):
    """Attention branch of one block (upstream ``MS_SSA_Conv``), for every zoo attention variant.

    ``shortcut_lif`` turns the membrane stream into spikes S; Q, K, V = act(BN(conv1x1(S))); the shared core
    (:class:`~snncompile.nn.attention.AttentionCore`, SSA in the order ``Q (K^T V) * ssa_scale``) combines them;
    ``proj_bn(proj_conv(.))`` maps back. DVS mode mixes the core's output with the eroded input spikes,
    ``A * P + P``. DS2TA attenuates the inputs of the Q/K/V/proj convolutions over time.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D, H = cfg.dim, cfg.num_heads
        self.shortcut_lif = _branch_neuron(cfg)
        for name in "qkv":
            setattr(self, f"{name}_conv", nn.Conv2d(D, D, 1, bias=False))
            setattr(self, f"{name}_bn", nn.BatchNorm2d(D))
        self._add_qkv_neurons(cfg, lambda threshold: _branch_neuron(cfg, threshold))
        self.talking_heads = nn.Conv1d(H, H, 1, bias=False)  # dead upstream parameter, kept for keys
        self._add_core(cfg, lambda threshold: _branch_neuron(cfg, threshold))
        self.proj_conv = nn.Conv2d(D, D, 1)
        self.proj_bn = nn.BatchNorm2d(D)

    def _project(self, name: str, s: torch.Tensor) -> torch.Tensor:
        if self.mode == "DS2TA":
            s = getattr(self, f"{name}_window")(s)
        return conv_bn(getattr(self, f"{name}_conv"), getattr(self, f"{name}_bn"), s)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        dvs = self.cfg.dvs_mode
        s = self.shortcut_lif(u)
        a = self.attend(*self.qkv_spikes(*(self._project(name, s) for name in "qkv")), dvs=dvs)
        if dvs and self.mode != "SDT":
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
        x = conv_bn(self.fc1_conv, self.fc1_bn, self.fc1_lif(u))
        if self.inner_residual:
            x = identity + x
            identity = x
        return conv_bn(self.fc2_conv, self.fc2_bn, self.fc2_lif(x)) + identity


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn = SpikingSelfAttention(cfg)
        self.mlp = MLP(cfg)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attn(u))


class SpikeDrivenTransformer(BackboneModel):
    """The zoo model. Input ``[B, C, H, W]`` (static: repeated over T) or ``[B, T, C, H, W]`` (events).

    Returns logits ``[B, classes]`` (mean over T), or ``[T, B, classes]`` when ``cfg.tet``, as upstream.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.patch_embed = SpikingPatchSplitting(cfg)
        self.block = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.head_lif = make_neuron(cfg.spike_mode)
        self.head = nn.Linear(cfg.dim, cfg.num_classes)
        self.apply(_init_weights)

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

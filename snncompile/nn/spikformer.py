"""Spikformer backbone (github.com/ZK-Zhou/spikformer), its three code variants, with selectable attention.

``cfg.backbone`` picks the variant; module and parameter names are upstream's, so checkpoints load without key
surgery (the LayerNorms ``norm1``/``norm2``, and ``pos_embed``/``norm`` of the CIFAR10-DVS code, are never read
upstream and are left out). Data flow (models.md §4.1)::

    X0 = SPS(x) = rpe_lif(BN(rpe_conv(F))) + F     F: the stem's pooled spikes; X0 in {0, 1, 2}
    X  = X + proj_lif(BN(W_proj A(Q, K, V)))       Q, K, V = LIF(BN(W X)); A: the attention core
    X  = X + fc2_lif(BN(W2 fc1_lif(BN(W1 X))))     SEW residual: X holds integer spike counts 0..2+2L
    logits = head(mean_T(mean_tokens(X)))          no head neuron

The variants differ in how the token-wise projections are computed (each computed as upstream computes it, so
that the float results are upstream's bit for bit):

- ``spikformer-cifar10``: Q/K/V/proj and MLP are ``nn.Linear`` (with bias) on tokens-last ``[T*B, N, C]``, each
  BatchNorm1d on its transpose; SSA ``((Q K^T) s) V``, s = 0.125.
- ``spikformer-cifar10dvs``: ``nn.Conv1d`` on ``[T*B, C, N]`` (Q/K/V without bias) + BatchNorm1d, MLP too; SSA
  ``((Q K^T) V) s``, s = 0.25; event input.
- ``spikformer-imagenet``: attention as cifar10dvs, MLP ``nn.Conv2d`` 1x1 + BatchNorm2d; SSA ``(Q (K^T V)) s``,
  s = 0.125.

Layout is time-major ``[T, B, C, Hs, Ws]`` throughout; the stem max-pools after its neurons (``pooling_stat``:
cifar10 ``0011``, the others ``1111``).
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .attention import AttentionCore
from .model_base import BackboneModel
from .neurons import MultiStepLIF
from .sdt import SpikingPatchSplitting, conv_bn, stem_maxpool
from .init import init_linear_weights

# The SSA product order of each variant's code (nn.attention.SSA_ORDERS).
SSA_ORDER = {"spikformer-cifar10": "(QK^T)s V", "spikformer-cifar10dvs": "(QK^T V)s",
             "spikformer-imagenet": "Q(K^T V)s"}


def _lif(v_threshold: float = 1.0) -> MultiStepLIF:
    return MultiStepLIF(tau=2.0, v_threshold=v_threshold)


def token_layer(cfg: ModelConfig, d_in: int, d_out: int, bias: bool, mlp: bool = False) -> nn.Module:
    """The variant's token-wise projection: Linear (cifar10), Conv1d (cifar10dvs; imagenet attention) or Conv2d
    (imagenet MLP)."""
    if cfg.backbone == "spikformer-cifar10":
        return nn.Linear(d_in, d_out, bias=bias)
    if mlp and cfg.backbone == "spikformer-imagenet":
        return nn.Conv2d(d_in, d_out, 1, bias=bias)
    return nn.Conv1d(d_in, d_out, 1, bias=bias)


def token_bn(layer: nn.Module, width: int) -> nn.Module:
    return nn.BatchNorm2d(width) if isinstance(layer, nn.Conv2d) else nn.BatchNorm1d(width)


def project(layer: nn.Module, bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``bn(layer(x))`` on a ``[T, B, C, Hs, Ws]`` stream, in the layout upstream computes it in."""
    T, B, C, Hs, Ws = x.shape
    if isinstance(layer, nn.Linear):  # tokens-last, BN on the transposed (strided) view as upstream
        y = bn(layer(x.flatten(3).transpose(2, 3).flatten(0, 1).contiguous()).transpose(-1, -2))
    elif isinstance(layer, nn.Conv1d):
        y = bn(layer(x.flatten(0, 1).flatten(2)))
    else:
        y = bn(layer(x.flatten(0, 1)))
    return y.reshape(T, B, -1, Hs, Ws)


class SpikformerSPS(SpikingPatchSplitting):
    """Upstream ``SPS``: the SDT backbone's stem modules (LIF neurons), but every stage max-pooled after its neuron
    where ``pooling_stat`` says, and the relative position embedding ``rpe_lif(BN(rpe_conv(F))) + F`` on the
    stem's spikes ``F`` (``rpe_lif`` is used here, unlike in the SDT code)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.rpe_lif = _lif()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, suffix in enumerate(["", "1", "2", "3"]):
            x = getattr(self, f"proj_lif{suffix}")(
                conv_bn(getattr(self, f"proj_conv{suffix}"), getattr(self, f"proj_bn{suffix}"), x))
            if self.pooling_stat[i] == "1":
                x = stem_maxpool(x)
        return self.rpe_lif(conv_bn(self.rpe_conv, self.rpe_bn, x)) + x


class SpikformerAttention(AttentionCore):
    """Upstream ``SSA`` (any zoo attention core): ``proj_lif(BN(W_proj A))`` with Q, K, V = LIF(BN(W X)).

    Projections are ``{q,k,v,proj}_linear`` (cifar10) or ``{q,k,v,proj}_conv``; Q/K/V carry a bias only in the
    cifar10 code. DS2TA attenuates the projections' inputs over time, as on the SDT backbone.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D = cfg.dim
        self.kind = "linear" if cfg.backbone == "spikformer-cifar10" else "conv"
        for name in "qkv":
            layer = token_layer(cfg, D, D, bias=cfg.backbone == "spikformer-cifar10")
            setattr(self, f"{name}_{self.kind}", layer)
            setattr(self, f"{name}_bn", token_bn(layer, D))
        self._add_qkv_neurons(cfg, _lif)
        self._add_core(cfg, _lif)
        self.ssa_order = SSA_ORDER[cfg.backbone]
        layer = token_layer(cfg, D, D, bias=True)
        setattr(self, f"proj_{self.kind}", layer)
        self.proj_bn = token_bn(layer, D)
        self.proj_lif = _lif()

    def _project(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "DS2TA":
            x = getattr(self, f"{name}_window")(x)
        return project(getattr(self, f"{name}_{self.kind}"), getattr(self, f"{name}_bn"), x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attend(*self.qkv_spikes(*(self._project(name, x) for name in "qkv")))
        return self.proj_lif(self._project("proj", a))


class SpikformerMLP(nn.Module):
    """Upstream ``MLP``: ``fc2_lif(BN(W2 fc1_lif(BN(W1 X + b1)) + b2))``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D, hidden = cfg.dim, cfg.dim * cfg.mlp_ratio
        self.kind = "linear" if cfg.backbone == "spikformer-cifar10" else "conv"
        for name, (d_in, d_out) in (("fc1", (D, hidden)), ("fc2", (hidden, D))):
            layer = token_layer(cfg, d_in, d_out, bias=True, mlp=True)
            setattr(self, f"{name}_{self.kind}", layer)
            setattr(self, f"{name}_bn", token_bn(layer, d_out))
            setattr(self, f"{name}_lif", _lif())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in ("fc1", "fc2"):
            x = getattr(self, f"{name}_lif")(
                project(getattr(self, f"{name}_{self.kind}"), getattr(self, f"{name}_bn"), x))
        return x


class SpikformerBlock(nn.Module):
    """``X = X + attn(X); X = X + mlp(X)``: spike-element-wise residuals on integer counts."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn = SpikformerAttention(cfg)
        self.mlp = SpikformerMLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class Spikformer(BackboneModel):
    """The Spikformer model of ``cfg.backbone``'s variant. Input ``[B, C, H, W]`` (static: repeated over T) or
    ``[B, T, C, H, W]`` (events, as the cifar10dvs code takes them); returns logits ``[B, classes]``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.patch_embed = SpikformerSPS(cfg)
        self.block = nn.ModuleList(SpikformerBlock(cfg) for _ in range(cfg.layers))
        self.head = nn.Linear(cfg.dim, cfg.num_classes)
        self.apply(init_linear_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, C]``: the mean over tokens of the last block's spike counts."""
        x = self.patch_embed(self.time_major_input(x))
        for blk in self.block:
            x = blk(x)
        return x.flatten(3).mean(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x).mean(0))


"""QKFormer backbone (Zhou et al. 2024, ``zhouchenlin2096/QKFormer``): a three-stage spiking transformer.

Two upstream variants (``ModelConfig.backbone``), module and parameter names kept as upstream so checkpoints load
without key surgery and every neuron has its upstream path (``stage1.0.tssa.attn_lif``):

- ``qkformer-cifar10`` (``cifar10/model.py``): stage depths 1, 1, layers - 2; MLP ``mlp1_*``/``mlp2_*``; the
  stage-3 attention is called ``ssa``; the first patch embedding keeps the full resolution.
- ``qkformer-imagenet`` (``imagenet/qkformer.py``): stage depths 1, 2, layers - 3; MLP ``fc1_*``/``fc2_*``;
  stage-3 attention ``attn``; the first patch embedding max-pools twice and adds a ``proj2`` conv.

Widths D/4, D/2, D per stage (``D = dim``); each patch embedding halves the token grid (a max-pool of BN outputs,
i.e. of membrane currents, before the LIF) beside a stride-2 1x1 shortcut conv, and sums the two spike maps (SEW).
Layout time-major ``[T, B, C, H, W]``; data flow::

    x = patch_embed1(image repeated T times)                 spike counts 0..2
    stage1/2 block: x = x + TokenQK(x);  x = x + MLP(x)      (SEW residuals: integer spike counts)
    stage3 block:   x = x + SSA(x);      x = x + MLP(x)
    logits = head(mean_T(mean_tokens(x)))

Token-QK attention (stages 1-2), per head h: ``a[h, n] = attn_lif(sum_{c in h} Q[c, n])`` (LIF, threshold 0.5, on
integer counts), ``out[c, n] = a[h(c), n] * K[c, n]``; no V, no scale. SSA (stage 3): ``attn_lif(0.125 Q (K^T V))``.

Per-sample semantics: upstream's stage-3 ``proj_lif`` runs on ``x.flatten(0, 1)`` = ``[T*B, C, N]``, so its
membrane carries from one sample of a batch to the next (from (t, b) to (t, b+1), and from (t, B-1) to (t+1, 0)).
With a batch of one that is an ordinary T-step LIF, which is what this model computes for every sample: a batch
here gives each sample the logits upstream gives it alone (``tests/upstream_qkformer.py`` keeps the quirk).
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .attention import linear_attention, merge_heads, split_heads
from .model_base import BackboneModel
from .neurons import MultiStepLIF
from .seq import per_step
from .init import init_linear_weights

VARIANTS = ("qkformer-cifar10", "qkformer-imagenet")  # the backbone names (config.BACKBONES) of this model


def _lif(v_threshold: float = 1.0) -> MultiStepLIF:
    """Every QKFormer neuron: SpikingJelly ``MultiStepLIFNode(tau=2.0, detach_reset=True)``."""
    return MultiStepLIF(tau=2.0, v_threshold=v_threshold)


def stage_depths(cfg: ModelConfig) -> tuple[int, int, int]:
    """Blocks per stage: upstream ``depths`` (our ``layers``) less the fixed early stages."""
    if cfg.backbone == "qkformer-cifar10":
        return 1, 1, cfg.layers - 2
    return 1, 2, cfg.layers - 3


def _conv_bn(conv: nn.Module, bn: nn.Module, x: torch.Tensor, pool: nn.Module | None = None) -> torch.Tensor:
    """``pool(bn(conv(x)))`` on every timestep of ``[T, B, ...]`` (upstream's ``flatten(0, 1)`` batches)."""
    return per_step(x, lambda f: pool(bn(conv(f))) if pool is not None else bn(conv(f)))


def _maxpool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, padding=1)


def _add_unit(m: nn.Module, name: str, c_in: int, c_out: int, *, kernel: int = 3, stride: int = 1,
              pool: bool = False) -> None:
    """Declare ``{name}_conv``, ``{name}_bn``, optional ``{name}_maxpool`` and ``{name}_lif`` on ``m``."""
    setattr(m, f"{name}_conv", nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False))
    setattr(m, f"{name}_bn", nn.BatchNorm2d(c_out))
    if pool:
        setattr(m, f"{name}_maxpool", _maxpool())
    setattr(m, f"{name}_lif", _lif())


def _run_unit(m: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    """``{name}_lif({name}_maxpool({name}_bn({name}_conv(x))))``: the pool acts on currents, before the LIF."""
    pool = getattr(m, f"{name}_maxpool", None)
    return getattr(m, f"{name}_lif")(_conv_bn(getattr(m, f"{name}_conv"), getattr(m, f"{name}_bn"), x, pool))


class PatchEmbedInit(nn.Module):
    """Upstream ``PatchEmbedInit``: ``proj`` (3x3, D/8) then ``proj1`` (3x3, D/4) [+ ``proj2`` (3x3) on ImageNet]
    beside the shortcut ``proj_res`` (1x1 on ``proj``'s spikes, stride 2 on ImageNet); output = sum of the two
    spike maps. ImageNet max-pools ``proj`` and ``proj1``'s BN outputs (``proj_maxpool``, ``proj1_maxpool``)."""

    def __init__(self, cfg: ModelConfig, dim: int):
        super().__init__()
        self.imagenet = cfg.backbone == "qkformer-imagenet"
        _add_unit(self, "proj", cfg.in_channels, dim // 2, pool=self.imagenet)
        _add_unit(self, "proj1", dim // 2, dim, pool=self.imagenet)
        if self.imagenet:
            _add_unit(self, "proj2", dim, dim)
        _add_unit(self, "proj_res", dim // 2, dim, kernel=1, stride=2 if self.imagenet else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _run_unit(self, "proj", x)
        feat = x
        x = _run_unit(self, "proj1", x)
        if self.imagenet:
            x = _run_unit(self, "proj2", x)
        return x + _run_unit(self, "proj_res", feat)


class PatchEmbeddingStage(nn.Module):
    """Upstream ``PatchEmbeddingStage``: ``proj3`` (3x3) and ``proj4`` (3x3) beside the stride-2 1x1 shortcut
    ``proj_res`` on the stage input; the grid is halved by a max-pool of ``proj4``'s BN output (CIFAR-10) or of
    ``proj3``'s (ImageNet)."""

    def __init__(self, cfg: ModelConfig, dim: int):
        super().__init__()
        imagenet = cfg.backbone == "qkformer-imagenet"
        _add_unit(self, "proj3", dim // 2, dim, pool=imagenet)
        _add_unit(self, "proj4", dim, dim, pool=not imagenet)
        _add_unit(self, "proj_res", dim // 2, dim, kernel=1, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _run_unit(self, "proj4", _run_unit(self, "proj3", x))
        return y + _run_unit(self, "proj_res", x)


class _TokenConv(nn.Module):
    """Shared part of both attentions: ``{q,k,...}_conv`` (Conv1d k=1 over tokens) + BatchNorm1d + LIF, and the
    output projection ``proj_lif(proj_bn(proj_conv(.)))`` with a bias."""

    def __init__(self, dim: int, heads: int, names: str):
        super().__init__()
        self.heads = heads
        for name in names:
            setattr(self, f"{name}_conv", nn.Conv1d(dim, dim, 1, bias=False))
            setattr(self, f"{name}_bn", nn.BatchNorm1d(dim))
            setattr(self, f"{name}_lif", _lif())
        self.attn_lif = _lif(0.5)
        self.proj_conv = nn.Conv1d(dim, dim, 1)
        self.proj_bn = nn.BatchNorm1d(dim)
        self.proj_lif = _lif()

    def spikes(self, name: str, tokens: torch.Tensor) -> torch.Tensor:
        """``{name}_lif(BN(conv(tokens)))`` on ``[T, B, C, N]``."""
        return getattr(self, f"{name}_lif")(_conv_bn(getattr(self, f"{name}_conv"), getattr(self, f"{name}_bn"),
                                                     tokens))

    def project(self, a: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """``proj_lif(BN(proj_conv(a)))`` of ``[T, B, C, N]``, back to ``shape`` ``[T, B, C, H, W]``."""
        return self.proj_lif(_conv_bn(self.proj_conv, self.proj_bn, a).reshape(shape))


class TokenQKAttention(_TokenConv):
    """Upstream ``Token_QK_Attention``: ``a = attn_lif(per-head channel sum of Q)`` masks K (no V, no scale)."""

    def __init__(self, dim: int, heads: int):
        super().__init__(dim, heads, "qk")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C = x.shape[:3]
        tokens = x.flatten(3)
        q = self.spikes("q", tokens).reshape(T, B, self.heads, C // self.heads, -1)
        k = self.spikes("k", tokens).reshape(T, B, self.heads, C // self.heads, -1)
        a = self.attn_lif(q.sum(dim=3, keepdim=True))  # [T, B, H, 1, N]: one spike per head and token
        return self.project((a * k).flatten(2, 3), x.shape)


class SpikingSelfAttention(_TokenConv):
    """Upstream ``Spiking_Self_Attention`` (stage 3): ``attn_lif(0.125 Q (K^T V))`` per head."""

    scale = 0.125

    def __init__(self, dim: int, heads: int):
        super().__init__(dim, heads, "qkv")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(3)
        q, k, v = (split_heads(self.spikes(name, tokens), self.heads) for name in "qkv")
        a = self.attn_lif(merge_heads(linear_attention(q, k, v) * self.scale))
        return self.project(a, x.shape)


class MLP(nn.Module):
    """Upstream ``MLP``: two 1x1 conv + BN + LIF units, ``{prefix}1_*`` (hidden) and ``{prefix}2_*``."""

    def __init__(self, dim: int, hidden: int, prefix: str):
        super().__init__()
        self.prefix = prefix
        for i, (c_in, c_out) in enumerate(((dim, hidden), (hidden, dim)), start=1):
            setattr(self, f"{prefix}{i}_conv", nn.Conv2d(c_in, c_out, 1))
            setattr(self, f"{prefix}{i}_bn", nn.BatchNorm2d(c_out))
            setattr(self, f"{prefix}{i}_lif", _lif())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in (1, 2):
            p = f"{self.prefix}{i}"
            x = getattr(self, f"{p}_lif")(_conv_bn(getattr(self, f"{p}_conv"), getattr(self, f"{p}_bn"), x))
        return x


class QKFormerBlock(nn.Module):
    """``x = x + attention(x); x = x + mlp(x)`` (spike-sum residuals). ``attention`` is the attribute name
    upstream gives the attention (``tssa``, ``ssa`` or ``attn``)."""

    def __init__(self, attention: str, attn: nn.Module, mlp: MLP):
        super().__init__()
        self.attention = attention
        setattr(self, attention, attn)
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + getattr(self, self.attention)(x)
        return x + self.mlp(x)


class QKFormer(BackboneModel):
    """The QKFormer model of ``cfg`` (``backbone`` one of :data:`VARIANTS`). Input ``[B, C, H, W]`` (repeated over
    T) or ``[B, T, C, H, W]``; returns logits ``[B, classes]``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        D, heads = cfg.dim, cfg.num_heads
        imagenet = cfg.backbone == "qkformer-imagenet"
        mlp_prefix, last_attention = ("fc", "attn") if imagenet else ("mlp", "ssa")
        widths = (D // 4, D // 2, D)
        self.patch_embed1 = PatchEmbedInit(cfg, widths[0])
        self.patch_embed2 = PatchEmbeddingStage(cfg, widths[1])
        self.patch_embed3 = PatchEmbeddingStage(cfg, widths[2])
        for s, (width, depth) in enumerate(zip(widths, stage_depths(cfg)), start=1):
            attention, attn_class = ("tssa", TokenQKAttention) if s < 3 else (last_attention, SpikingSelfAttention)
            setattr(self, f"stage{s}", nn.ModuleList(
                QKFormerBlock(attention, attn_class(width, heads), MLP(width, width * cfg.mlp_ratio, mlp_prefix))
                for _ in range(depth)))
        self.head = nn.Linear(D, cfg.num_classes)
        self.apply(init_linear_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Token means ``[T, B, D]`` of the last stage."""
        x = self.time_major_input(x)
        for s in (1, 2, 3):
            x = getattr(self, f"patch_embed{s}")(x)
            for blk in getattr(self, f"stage{s}"):
                x = blk(x)
        return x.flatten(3).mean(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x).mean(0))


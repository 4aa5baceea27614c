"""Spike-Driven Transformer V2 backbone (Meta-SpikeFormer, upstream ``sdt-v2``), as BICLab's
``classification/models.py`` builds it (``Spiking_vit_MetaFormer``, factories ``metaspikformer_8_{384,512,768}``).

Module and parameter names are upstream's, so its checkpoints load without key surgery and every neuron sits
under its upstream module path. Stage widths ``[D/4, D/2, D, 5D/4]`` for ``dim = D`` (8-384: [96, 192, 384, 480]).
Layout is time-major ``[T, B, C, H, W]``; the static image is repeated over T. Data flow::

    U = BN(conv7x7/2(x))                                   downsample1_1 (no neuron before it)
    conv stages: U = U + SepConv(U);  U = U + BN(conv3x3(SN(BN(conv3x3(SN(U))))))      (ConvBlock)
    downsample:  U = BN(conv(SN(U)) + b)                   stride 2 (stride 1 before stage 4)
    transformer stages: U = U + BN(RepConv(attn_lif(Q (K^T V) * 0.125))),  Q = SN(BN(RepConv(SN(U)))) ...
                        U = U + BN(W2 SN(BN(W1 SN(U) + b1)) + b2)
    logits = mean_T head(lif(mean_tokens(U)))   (with kd_head: the mean of head and head_kd)

Every residual is a membrane shortcut: the stream ``U`` is real-valued (sums of BN outputs). ``SepConv`` is a
depthwise 7x7 between two 1x1 convolutions with no non-linearity before the second one; ``RepConv`` is
``conv1x1 -> BN -> pad with BN(0) -> depthwise 3x3 -> conv1x1 -> BN``, a single 3x3 convolution with bias in
exact arithmetic. That fold is not exact in float32 (the pad value and the sums round differently), so the float
model keeps upstream's layers and their operation order; the integer lowering may fold.
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


def stage_widths(cfg: ModelConfig) -> tuple[int, int, int, int]:
    """Upstream ``embed_dim`` for ``cfg.dim`` = its third entry: ``[D/4, D/2, D, 5D/4]``."""
    return cfg.dim // 4, cfg.dim // 2, cfg.dim, cfg.dim * 5 // 4


class BNAndPad(nn.Module):
    """Upstream ``BNAndPadLayer``: BatchNorm, then a border of ``pad`` pixels holding each channel's BN(0).

    The border value is computed in upstream's float order, ``beta - mean * gamma / sqrt(var + eps)``, which is not
    always bit-equal to what ``batch_norm`` gives for a zero input.
    """

    def __init__(self, pad: int, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.pad = pad

    def border_values(self) -> torch.Tensor:
        bn = self.bn
        return bn.bias.detach() - bn.running_mean * bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, p = self.bn(x), self.pad
        n, c, h, w = y.shape
        out = self.border_values().view(1, c, 1, 1).expand(n, c, h + 2 * p, w + 2 * p).clone()
        out[:, :, p:p + h, p:p + w] = y
        return out


class RepConv(nn.Module):
    """Upstream ``RepConv`` (``body``): conv1x1, BN-and-pad, depthwise 3x3 (no padding), conv1x1, BN."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False), BNAndPad(1, channels),
            nn.Sequential(nn.Conv2d(channels, channels, 3, groups=channels, bias=False),
                          nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def rep_conv_bn(channels: int) -> nn.Sequential:
    """Upstream's ``nn.Sequential(RepConv(dim, dim), nn.BatchNorm2d(dim))`` of q/k/v/proj."""
    return nn.Sequential(RepConv(channels), nn.BatchNorm2d(channels))


class SepConv(nn.Module):
    """Upstream ``SepConv`` (MobileNetV2 inverted separable conv, expansion 2):
    ``BN(pw2(dw7x7(SN(BN(pw1(SN(U)))))))``, no neuron between the depthwise and the second pointwise conv."""

    def __init__(self, dim: int, expansion: int = 2, kernel: int = 7):
        super().__init__()
        med = dim * expansion
        self.lif1 = MultiStepLIF()
        self.pwconv1 = nn.Conv2d(dim, med, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(med)
        self.lif2 = MultiStepLIF()
        self.dwconv = nn.Conv2d(med, med, kernel, padding=kernel // 2, groups=med, bias=False)
        self.pwconv2 = nn.Conv2d(med, dim, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        x = per_step(self.lif1(u), lambda f: self.bn1(self.pwconv1(f)))
        return per_step(self.lif2(x), lambda f: self.bn2(self.pwconv2(self.dwconv(f))))


class ConvBlock(nn.Module):
    """Upstream ``MS_ConvBlock``: ``U = U + SepConv(U)``, then ``U + BN(conv3x3(SN(BN(conv3x3(SN(U))))))``."""

    def __init__(self, dim: int, mlp_ratio: int):
        super().__init__()
        self.Conv = SepConv(dim)
        self.lif1 = MultiStepLIF()
        self.conv1 = nn.Conv2d(dim, dim * mlp_ratio, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(dim * mlp_ratio)
        self.lif2 = MultiStepLIF()
        self.conv2 = nn.Conv2d(dim * mlp_ratio, dim, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        u = self.Conv(u) + u
        x = per_step(self.lif1(u), lambda f: self.bn1(self.conv1(f)))
        return u + per_step(self.lif2(x), lambda f: self.bn2(self.conv2(f)))


class DownSampling(nn.Module):
    """Upstream ``MS_DownSampling``: ``BN(conv(SN(U)) + b)``; the first one reads the image (no neuron)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, first: bool = False):
        super().__init__()
        self.encode_conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2)
        self.encode_bn = nn.BatchNorm2d(c_out)
        if not first:
            self.encode_lif = MultiStepLIF()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "encode_lif"):
            x = self.encode_lif(x)
        return per_step(x, lambda f: self.encode_bn(self.encode_conv(f)))


class Attention(nn.Module):
    """Upstream ``MS_Attention_RepConv_qkv_id``: ``BN(RepConv(attn_lif(Q (K^T V) * scale)))`` with
    Q, K, V = ``SN(BN(RepConv(head_lif(U))))`` per head; ``attn_lif`` has threshold 0.5."""

    def __init__(self, dim: int, heads: int, scale: float):
        super().__init__()
        self.num_heads, self.scale = heads, scale
        self.head_lif = MultiStepLIF()
        self.q_conv, self.k_conv, self.v_conv = rep_conv_bn(dim), rep_conv_bn(dim), rep_conv_bn(dim)
        self.q_lif, self.k_lif, self.v_lif = MultiStepLIF(), MultiStepLIF(), MultiStepLIF()
        self.attn_lif = MultiStepLIF(v_threshold=0.5)
        self.proj_conv = rep_conv_bn(dim)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = u.shape
        s = self.head_lif(u)
        q, k, v = (split_heads(lif(per_step(s, conv)), self.num_heads) for conv, lif in
                   ((self.q_conv, self.q_lif), (self.k_conv, self.k_lif), (self.v_conv, self.v_lif)))
        a = self.attn_lif(merge_heads(linear_attention(q, k, v) * self.scale)).reshape(T, B, C, H, W)
        return per_step(a, self.proj_conv)


class MLP(nn.Module):
    """Upstream ``MS_MLP``: ``BN1d(conv1d(SN(BN1d(conv1d(SN(U)) + b1))) + b2)`` on ``[T, B, C, N]`` tokens."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1_conv = nn.Conv1d(dim, hidden, 1)
        self.fc1_bn = nn.BatchNorm1d(hidden)
        self.fc1_lif = MultiStepLIF()
        self.fc2_conv = nn.Conv1d(hidden, dim, 1)
        self.fc2_bn = nn.BatchNorm1d(dim)
        self.fc2_lif = MultiStepLIF()

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        x = per_step(self.fc1_lif(u.flatten(3)), lambda f: self.fc1_bn(self.fc1_conv(f)))
        return per_step(self.fc2_lif(x), lambda f: self.fc2_bn(self.fc2_conv(f))).reshape(u.shape)


class Block(nn.Module):
    """Upstream ``MS_Block``: ``U = U + attn(U)``; ``U = U + mlp(U)``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, scale: float):
        super().__init__()
        self.attn = Attention(dim, heads, scale)
        self.mlp = MLP(dim, dim * mlp_ratio)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        u = u + self.attn(u)
        return u + self.mlp(u)


class MetaSpikeFormer(BackboneModel):
    """The sdt-v2 model. Input ``[B, C, H, W]`` (repeated over T); returns logits ``[B, classes]``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        d0, d1, d2, d3 = stage_widths(cfg)
        r, heads, scale = cfg.mlp_ratio, cfg.num_heads, cfg.ssa_scale
        self.downsample1_1 = DownSampling(cfg.in_channels, d0 // 2, 7, 2, first=True)
        self.ConvBlock1_1 = nn.ModuleList([ConvBlock(d0 // 2, r)])
        self.downsample1_2 = DownSampling(d0 // 2, d0, 3, 2)
        self.ConvBlock1_2 = nn.ModuleList([ConvBlock(d0, r)])
        self.downsample2 = DownSampling(d0, d1, 3, 2)
        self.ConvBlock2_1 = nn.ModuleList([ConvBlock(d1, r)])
        self.ConvBlock2_2 = nn.ModuleList([ConvBlock(d1, r)])
        self.downsample3 = DownSampling(d1, d2, 3, 2)
        self.block3 = nn.ModuleList(Block(d2, heads, r, scale) for _ in range(cfg.layers - 2))
        self.downsample4 = DownSampling(d2, d3, 3, 1)
        self.block4 = nn.ModuleList(Block(d3, heads, r, scale) for _ in range(2))
        self.lif = MultiStepLIF()
        self.head = nn.Linear(d3, cfg.num_classes)
        if cfg.kd_head:
            self.head_kd = nn.Linear(d3, cfg.num_classes)
        self.apply(init_linear_weights)

    def stages(self) -> list[nn.Module]:
        """The downsampling layers and blocks in forward order."""
        return [self.downsample1_1, *self.ConvBlock1_1, self.downsample1_2, *self.ConvBlock1_2, self.downsample2,
                *self.ConvBlock2_1, *self.ConvBlock2_2, self.downsample3, *self.block3, self.downsample4,
                *self.block4]

    def time_major_input(self, x: torch.Tensor) -> torch.Tensor:
        c, s = self.cfg.in_channels, self.cfg.img_size
        if x.dim() != 4 or tuple(x.shape[1:]) != (c, s, s):
            raise ValueError(f"input shape {tuple(x.shape)} is not [B, {c}, {s}, {s}] (sdt-v2 takes static images)")
        return x.unsqueeze(0).repeat(self.cfg.time_steps, 1, 1, 1, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Spikes of the head neuron ``lif`` over the token mean of the last stage, ``[T, B, 5D/4]``."""
        u = self.time_major_input(x)
        for stage in self.stages():
            u = stage(u)
        return self.lif(u.flatten(3).mean(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.forward_features(x)
        out = self.head(s).mean(0)
        if self.cfg.kd_head:
            return (out + self.head_kd(s).mean(0)) / 2
        return out


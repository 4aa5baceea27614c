"""Spike-Driven Transformer V3 (E-SpikeFormer) ``Model_Base`` (upstream ``sdt-v3``): integer activations, no time.

Module and parameter names follow upstream ``SDT_V3/Classification/Model_Base/models.py``, so its checkpoints load
without key surgery and every activation can be compared with upstream's by module path. Every spiking neuron is a
stateless quantiser (:class:`MultiLevelSpike`): ``round(clamp(x, 0, D)) / D`` with D = 4 levels and round half to
even (``torch.round``), the model's last one not divided (the head reads levels 0..4). Tensors are ``[B, C, H, W]``
(no time axis; upstream's "T = 1 x D = 4"). Data flow (backbone_checkpoints.md, "SDT-V3")::

    x = BN(conv7x7/2(image) + b)                                      downsample1_1 (no activation)
    x = x + SepConv(x);  x = x + BN(conv3x3(A(BN(conv3x3(A(x))))))    each conv block (A: the quantiser)
    x = BN(conv3x3/2(A(x)) + b)                                       downsample1_2, 2, 3; downsample4 stride 1
    x = x + SepConv3x3(x);  x = x + attention(x);  x = x + MLP(x)     each transformer block (stages 3, 4)
    logits = head(round(clamp(mean_tokens(x), 0, 4)))

SepConv (kernel 7 in the conv blocks, 3 in the transformer blocks): ``BN(pw2(A(BN(dw(A(BN(pw1(A(x)))))))))`` with a
depthwise kxk between two 1x1 convolutions (2x wide). Attention (``MS_Attention_linear``, V four times as wide):
``BN(proj(A(((Q K^T) V) * 2/sqrt(d))))`` per head, with Q, K, V = ``A(BN(conv1x1(A(x))))``.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ..config import ModelConfig
from .init import init_linear_weights
from .model_base import BackboneModel

LEVELS = 4          # D: the quantiser's largest level (upstream MultiSpike max_value)
V_WIDTH_RATIO = 4   # upstream lamda_ratio: V (and the attention output) is four times as wide as Q and K


class RoundClampSTE(torch.autograd.Function):
    """``round(clamp(x, 0, top))`` forward (round half to even); backward passes the gradient where
    ``0 <= x <= top`` (the straight-through estimator upstream trains with)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, top: int) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.top = top
        return torch.round(torch.clamp(x, min=0, max=top))

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad_output * ((x >= 0) & (x <= ctx.top)).to(grad_output.dtype), None


class MultiLevelSpike(nn.Module):
    """Stateless D-level quantiser (upstream ``MultiSpike``): ``round(clamp(x, 0, levels)) / norm``.

    ``norm`` is ``levels`` everywhere except the model's last activation (``norm = 1``). The integer level of an
    output is ``output * norm``.
    """

    def __init__(self, levels: int = LEVELS, norm: int | None = None):
        super().__init__()
        self.levels = levels
        self.norm = levels if norm is None else norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return RoundClampSTE.apply(x, self.levels) / self.norm

    def extra_repr(self) -> str:
        return f"levels={self.levels}, norm={self.norm}"


def conv_bn(c_in: int, c_out: int, kernel: int = 1, groups: int = 1) -> nn.Sequential:
    """``Sequential(conv, BN)`` without bias (upstream's ``*.0`` / ``*.1`` keys), 'same' padding."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out))


class SepConv(nn.Module):
    """Inverted separable convolution with activations before each convolution (upstream ``SepConv_Spike``)."""

    def __init__(self, dim: int, kernel_size: int):
        super().__init__()
        med = 2 * dim
        self.spike1 = MultiLevelSpike()
        self.pwconv1 = conv_bn(dim, med)
        self.spike2 = MultiLevelSpike()
        self.dwconv = conv_bn(med, med, kernel_size, groups=med)
        self.spike3 = MultiLevelSpike()
        self.pwconv2 = conv_bn(med, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pwconv1(self.spike1(x))
        x = self.dwconv(self.spike2(x))
        return self.pwconv2(self.spike3(x))


class ConvBlock(nn.Module):
    """Conv stage block (upstream ``MS_ConvBlock_spike_SepConv``): SepConv 7x7, then two full 3x3 convolutions."""

    def __init__(self, dim: int, mlp_ratio: int):
        super().__init__()
        self.Conv = SepConv(dim, kernel_size=7)
        self.spike1 = MultiLevelSpike()
        self.conv1 = nn.Conv2d(dim, dim * mlp_ratio, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(dim * mlp_ratio)
        self.spike2 = MultiLevelSpike()
        self.conv2 = nn.Conv2d(dim * mlp_ratio, dim, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv(x) + x
        y = self.bn1(self.conv1(self.spike1(x)))
        return x + self.bn2(self.conv2(self.spike2(y)))


class LinearAttention(nn.Module):
    """Multi-level linear attention (upstream ``MS_Attention_linear``, ``lamda_ratio`` 4):
    ``((Q K^T) V) * 2/sqrt(d)`` per head (d = dim / heads), then an activation and ``proj_conv``."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.head_spike = MultiLevelSpike()
        self.q_conv = conv_bn(dim, dim)
        self.q_spike = MultiLevelSpike()
        self.k_conv = conv_bn(dim, dim)
        self.k_spike = MultiLevelSpike()
        self.v_conv = conv_bn(dim, dim * V_WIDTH_RATIO)
        self.v_spike = MultiLevelSpike()
        self.attn_spike = MultiLevelSpike()
        self.proj_conv = conv_bn(dim * V_WIDTH_RATIO, dim)

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> ``[B, heads, N, C / heads]`` (heads are contiguous channel groups)."""
        b, c = x.shape[:2]
        return x.flatten(2).transpose(1, 2).reshape(b, -1, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.head_spike(x)
        q = self.heads(self.q_spike(self.q_conv(s)))
        k = self.heads(self.k_spike(self.k_conv(s)))
        v = self.heads(self.v_spike(self.v_conv(s)))
        out = ((q @ k.transpose(-2, -1)) @ v) * (self.scale * 2)
        out = self.attn_spike(out.transpose(2, 3).reshape(b, c * V_WIDTH_RATIO, h * w))
        return self.proj_conv(out.reshape(b, c * V_WIDTH_RATIO, h, w))


class MLP(nn.Module):
    """Token MLP (upstream ``MS_MLP``): 1-D 1x1 convolutions with bias, each after an activation."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1_conv = nn.Conv1d(dim, hidden, 1)
        self.fc1_bn = nn.BatchNorm1d(hidden)
        self.fc1_spike = MultiLevelSpike()
        self.fc2_conv = nn.Conv1d(hidden, dim, 1)
        self.fc2_bn = nn.BatchNorm1d(dim)
        self.fc2_spike = MultiLevelSpike()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.fc1_bn(self.fc1_conv(self.fc1_spike(x.flatten(2))))
        return self.fc2_bn(self.fc2_conv(self.fc2_spike(y))).reshape(b, c, h, w)


class TransformerBlock(nn.Module):
    """Attention stage block (upstream ``MS_Block_Spike_SepConv``): SepConv 3x3, attention, MLP, each residual."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int):
        super().__init__()
        self.conv = SepConv(dim, kernel_size=3)
        self.attn = LinearAttention(dim, num_heads)
        self.mlp = MLP(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.conv(x)
        x = x + self.attn(x)
        return x + self.mlp(x)


class DownSampling(nn.Module):
    """Strided convolution with bias + BN (upstream ``MS_DownSampling``), after an activation except on the image."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, first_layer: bool = False):
        super().__init__()
        self.encode_conv = nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2)
        self.encode_bn = nn.BatchNorm2d(c_out)
        if not first_layer:
            self.encode_spike = MultiLevelSpike()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "encode_spike"):
            x = self.encode_spike(x)
        return self.encode_bn(self.encode_conv(x))


class EfficientSpikingTransformer(BackboneModel):
    """The whole ``Model_Base`` classifier (upstream ``Spiking_vit_MetaFormer_Spike_SepConv``).

    ``cfg.stage_dims`` gives upstream's ``embed_dim`` list (four widths), ``cfg.stage_layers`` the blocks of the
    two attention stages (upstream 6, 2); the conv stages have one block each as upstream. Input ``[B, C, H, W]``
    (static images; the model has no time axis), logits ``[B, classes]``.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        d1, d2, d3, d4 = cfg.stage_widths
        layers3, layers4 = cfg.stage_depths
        heads, ratio = cfg.num_heads, cfg.mlp_ratio
        self.downsample1_1 = DownSampling(cfg.in_channels, d1 // 2, 7, 2, first_layer=True)
        self.ConvBlock1_1 = nn.ModuleList([ConvBlock(d1 // 2, ratio)])
        self.downsample1_2 = DownSampling(d1 // 2, d1, 3, 2)
        self.ConvBlock1_2 = nn.ModuleList([ConvBlock(d1, ratio)])
        self.downsample2 = DownSampling(d1, d2, 3, 2)
        self.ConvBlock2_1 = nn.ModuleList([ConvBlock(d2, ratio)])
        self.ConvBlock2_2 = nn.ModuleList([ConvBlock(d2, ratio)])
        self.downsample3 = DownSampling(d2, d3, 3, 2)
        self.block3 = nn.ModuleList(TransformerBlock(d3, heads, ratio) for _ in range(layers3))
        self.downsample4 = DownSampling(d3, d4, 3, 1)
        self.block4 = nn.ModuleList(TransformerBlock(d4, heads, ratio) for _ in range(layers4))
        self.head = nn.Linear(d4, cfg.num_classes)
        self.spike = MultiLevelSpike(norm=1)
        self.apply(init_linear_weights)

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        c, s = self.cfg.in_channels, self.cfg.img_size
        if x.dim() != 4 or tuple(x.shape[1:]) != (c, s, s):
            raise ValueError(f"input shape {tuple(x.shape)} is not [B, {c}, {s}, {s}] (sdt-v3 reads static "
                             "images: it has no time axis)")
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The real-valued stream after the last block, ``[B, C, H, W]``."""
        x = self.downsample1_1(self.check_input(x))
        stages = (self.ConvBlock1_1, self.downsample1_2, self.ConvBlock1_2, self.downsample2, self.ConvBlock2_1,
                  self.ConvBlock2_2, self.downsample3, self.block3, self.downsample4, self.block4)
        for stage in stages:
            for blk in (stage if isinstance(stage, nn.ModuleList) else [stage]):
                x = blk(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.spike(self.forward_features(x).flatten(2).mean(2)))



def activation_modules(model: nn.Module) -> dict[str, MultiLevelSpike]:
    """Every quantiser of ``model`` by module path, in registration order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, MultiLevelSpike)}


@contextmanager
def record_levels(model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, ``levels[name]`` holds the integer levels (0..D, int64) of each quantiser's last output."""
    levels: dict[str, torch.Tensor] = {}

    def hook(module, _inputs, out, name):
        levels[name] = torch.round(out.detach() * module.norm).to(torch.int64)

    handles = [m.register_forward_hook(lambda m, i, o, name=name: hook(m, i, o, name))
               for name, m in activation_modules(model).items()]
    try:
        yield levels
    finally:
        for h in handles:
            h.remove()

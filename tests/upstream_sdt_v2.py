"""Independent re-derivation of the upstream Spike-Driven Transformer V2 (Meta-SpikeFormer) forward pass.

Test-support code only: plain torch in upstream's structure, so that ``snncompile.nn.sdt_v2`` can be checked
against it neuron by neuron. It re-derives ``BICLab/Spike-Driven-Transformer-V2`` @ ``35f245f4`` (2024-04-19),
``classification/models.py`` (``--model_mode ms``): ``BNAndPadLayer``, ``RepConv``, ``SepConv``,
``MS_ConvBlock``, ``MS_MLP``, ``MS_Attention_RepConv_qkv_id``, ``MS_Block``, ``MS_DownSampling``,
``Spiking_vit_MetaFormer`` and the factories ``metaspikformer_8_{384,512,768}``; and ``main_finetune.py``'s
``model.T = args.time_steps`` and eval output (the mean of ``head`` and ``head_kd`` with ``--kd``).

Class names, attribute names and the order of the float operations are upstream's, so an upstream state_dict
loads with ``strict=True`` and every neuron has the same module path as in our model. The neurons are
SpikingJelly 0.0.0.0.12's ``MultiStepLIFNode`` on the torch backend (``upstream_reference``; upstream asks for
the CuPy backend, which evaluates the same expression, and tau = 2 halves exactly). ``timm``'s ``DropPath`` is
the identity at eval (drop_path_rate 0). Each module keeps its state between calls, as upstream: ``run`` resets
every neuron first (``functional.reset_net``, what upstream's evaluation does after each batch).
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

try:
    from .upstream_reference import MultiStepLIFNode, reset_net
except ImportError:
    from upstream_reference import MultiStepLIFNode, reset_net


def _lif(threshold: float = 1.0) -> MultiStepLIFNode:
    return MultiStepLIFNode(tau=2.0, v_threshold=threshold, detach_reset=True, backend="cupy")


class BNAndPadLayer(nn.Module):
    def __init__(self, pad_pixels, num_features):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features)
        self.pad_pixels = pad_pixels

    def forward(self, input):
        output = self.bn(input)
        p = self.pad_pixels
        pad_values = (self.bn.bias.detach()
                      - self.bn.running_mean * self.bn.weight.detach() / torch.sqrt(self.bn.running_var + self.bn.eps))
        output = F.pad(output, [p] * 4)
        pad_values = pad_values.view(1, -1, 1, 1)
        output[:, :, 0:p, :] = pad_values
        output[:, :, -p:, :] = pad_values
        output[:, :, :, 0:p] = pad_values
        output[:, :, :, -p:] = pad_values
        return output


class RepConv(nn.Module):
    def __init__(self, in_channel, out_channel):
        super().__init__()
        conv3x3 = nn.Sequential(nn.Conv2d(in_channel, in_channel, 3, 1, 0, groups=in_channel, bias=False),
                                nn.Conv2d(in_channel, out_channel, 1, 1, 0, bias=False),
                                nn.BatchNorm2d(out_channel))
        self.body = nn.Sequential(nn.Conv2d(in_channel, in_channel, 1, 1, 0, bias=False),
                                  BNAndPadLayer(1, in_channel), conv3x3)

    def forward(self, x):
        return self.body(x)


class SepConv(nn.Module):
    def __init__(self, dim, expansion_ratio=2, kernel_size=7, padding=3):
        super().__init__()
        med = int(expansion_ratio * dim)
        self.lif1 = _lif()
        self.pwconv1 = nn.Conv2d(dim, med, kernel_size=1, stride=1, bias=False)
        self.bn1 = nn.BatchNorm2d(med)
        self.lif2 = _lif()
        self.dwconv = nn.Conv2d(med, med, kernel_size=kernel_size, padding=padding, groups=med, bias=False)
        self.pwconv2 = nn.Conv2d(med, dim, kernel_size=1, stride=1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x):
        T, B, C, H, W = x.shape
        x = self.lif1(x)
        x = self.bn1(self.pwconv1(x.flatten(0, 1))).reshape(T, B, -1, H, W)
        x = self.lif2(x)
        x = self.dwconv(x.flatten(0, 1))
        return self.bn2(self.pwconv2(x)).reshape(T, B, -1, H, W)


class MS_ConvBlock(nn.Module):
    def __init__(self, dim, mlp_ratio=4):
        super().__init__()
        self.Conv = SepConv(dim=dim)
        self.lif1 = _lif()
        self.conv1 = nn.Conv2d(dim, dim * mlp_ratio, kernel_size=3, padding=1, groups=1, bias=False)
        self.bn1 = nn.BatchNorm2d(dim * mlp_ratio)
        self.lif2 = _lif()
        self.conv2 = nn.Conv2d(dim * mlp_ratio, dim, kernel_size=3, padding=1, groups=1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x):
        T, B, C, H, W = x.shape
        x = self.Conv(x) + x
        x_feat = x
        x = self.bn1(self.conv1(self.lif1(x).flatten(0, 1))).reshape(T, B, 4 * C, H, W)
        x = self.bn2(self.conv2(self.lif2(x).flatten(0, 1))).reshape(T, B, C, H, W)
        return x_feat + x


class MS_MLP(nn.Module):
    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.fc1_conv = nn.Conv1d(in_features, hidden_features, kernel_size=1, stride=1)
        self.fc1_bn = nn.BatchNorm1d(hidden_features)
        self.fc1_lif = _lif()
        self.fc2_conv = nn.Conv1d(hidden_features, in_features, kernel_size=1, stride=1)
        self.fc2_bn = nn.BatchNorm1d(in_features)
        self.fc2_lif = _lif()
        self.c_hidden = hidden_features

    def forward(self, x):
        T, B, C, H, W = x.shape
        N = H * W
        x = x.flatten(3)
        x = self.fc1_lif(x)
        x = self.fc1_conv(x.flatten(0, 1))
        x = self.fc1_bn(x).reshape(T, B, self.c_hidden, N).contiguous()
        x = self.fc2_lif(x)
        x = self.fc2_conv(x.flatten(0, 1))
        return self.fc2_bn(x).reshape(T, B, C, H, W).contiguous()


class MS_Attention_RepConv_qkv_id(nn.Module):
    def __init__(self, dim, num_heads=8):
        super().__init__()
        self.num_heads = num_heads
        self.scale = 0.125
        self.head_lif = _lif()
        self.q_conv = nn.Sequential(RepConv(dim, dim), nn.BatchNorm2d(dim))
        self.k_conv = nn.Sequential(RepConv(dim, dim), nn.BatchNorm2d(dim))
        self.v_conv = nn.Sequential(RepConv(dim, dim), nn.BatchNorm2d(dim))
        self.q_lif = _lif()
        self.k_lif = _lif()
        self.v_lif = _lif()
        self.attn_lif = _lif(0.5)
        self.proj_conv = nn.Sequential(RepConv(dim, dim), nn.BatchNorm2d(dim))

    def _heads(self, x, T, B, N, C):
        return (x.flatten(3).transpose(-1, -2).reshape(T, B, N, self.num_heads, C // self.num_heads)
                .permute(0, 1, 3, 2, 4).contiguous())

    def forward(self, x):
        T, B, C, H, W = x.shape
        N = H * W
        x = self.head_lif(x)
        q = self.q_conv(x.flatten(0, 1)).reshape(T, B, C, H, W)
        k = self.k_conv(x.flatten(0, 1)).reshape(T, B, C, H, W)
        v = self.v_conv(x.flatten(0, 1)).reshape(T, B, C, H, W)
        q = self._heads(self.q_lif(q), T, B, N, C)
        k = self._heads(self.k_lif(k), T, B, N, C)
        v = self._heads(self.v_lif(v), T, B, N, C)
        x = k.transpose(-2, -1) @ v
        x = (q @ x) * self.scale
        x = x.transpose(3, 4).reshape(T, B, C, N).contiguous()
        x = self.attn_lif(x).reshape(T, B, C, H, W)
        return self.proj_conv(x.flatten(0, 1)).reshape(T, B, C, H, W)


class MS_Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4):
        super().__init__()
        self.attn = MS_Attention_RepConv_qkv_id(dim, num_heads=num_heads)
        self.mlp = MS_MLP(in_features=dim, hidden_features=int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


class MS_DownSampling(nn.Module):
    def __init__(self, in_channels, embed_dims, kernel_size, stride, padding, first_layer):
        super().__init__()
        self.encode_conv = nn.Conv2d(in_channels, embed_dims, kernel_size=kernel_size, stride=stride,
                                     padding=padding)
        self.encode_bn = nn.BatchNorm2d(embed_dims)
        if not first_layer:
            self.encode_lif = _lif()

    def forward(self, x):
        T, B = x.shape[:2]
        if hasattr(self, "encode_lif"):
            x = self.encode_lif(x)
        x = self.encode_conv(x.flatten(0, 1))
        _, _, H, W = x.shape
        return self.encode_bn(x).reshape(T, B, -1, H, W).contiguous()


class Spiking_vit_MetaFormer(nn.Module):
    """``depths`` is upstream's 6 + 2 blocks; ``stage3_depth`` lets the tests build smaller ones (upstream
    hard-codes ``range(6)``)."""

    def __init__(self, in_channels=3, num_classes=1000, embed_dim=(96, 192, 384, 480), num_heads=8, mlp_ratios=4,
                 kd=False, stage3_depth=6):
        super().__init__()
        self.T = 1
        e = embed_dim
        self.downsample1_1 = MS_DownSampling(in_channels, e[0] // 2, 7, 2, 3, True)
        self.ConvBlock1_1 = nn.ModuleList([MS_ConvBlock(e[0] // 2, mlp_ratios)])
        self.downsample1_2 = MS_DownSampling(e[0] // 2, e[0], 3, 2, 1, False)
        self.ConvBlock1_2 = nn.ModuleList([MS_ConvBlock(e[0], mlp_ratios)])
        self.downsample2 = MS_DownSampling(e[0], e[1], 3, 2, 1, False)
        self.ConvBlock2_1 = nn.ModuleList([MS_ConvBlock(e[1], mlp_ratios)])
        self.ConvBlock2_2 = nn.ModuleList([MS_ConvBlock(e[1], mlp_ratios)])
        self.downsample3 = MS_DownSampling(e[1], e[2], 3, 2, 1, False)
        self.block3 = nn.ModuleList([MS_Block(e[2], num_heads, mlp_ratios) for _ in range(stage3_depth)])
        self.downsample4 = MS_DownSampling(e[2], e[3], 3, 1, 1, False)
        self.block4 = nn.ModuleList([MS_Block(e[3], num_heads, mlp_ratios) for _ in range(2)])
        self.lif = _lif()
        self.head = nn.Linear(e[3], num_classes)
        self.kd = kd
        if kd:
            self.head_kd = nn.Linear(e[3], num_classes)

    def forward_features(self, x):
        x = self.downsample1_1(x)
        for blk in self.ConvBlock1_1:
            x = blk(x)
        x = self.downsample1_2(x)
        for blk in self.ConvBlock1_2:
            x = blk(x)
        x = self.downsample2(x)
        for blk in self.ConvBlock2_1:
            x = blk(x)
        for blk in self.ConvBlock2_2:
            x = blk(x)
        x = self.downsample3(x)
        for blk in self.block3:
            x = blk(x)
        x = self.downsample4(x)
        for blk in self.block4:
            x = blk(x)
        return x

    def forward(self, x):
        x = (x.unsqueeze(0)).repeat(self.T, 1, 1, 1, 1)
        x = self.forward_features(x)
        x = x.flatten(3).mean(3)
        x_lif = self.lif(x)
        x = self.head(x_lif).mean(0)
        if self.kd:
            x_kd = self.head_kd(x_lif).mean(0)
            return (x + x_kd) / 2  # eval mode
        return x


FACTORIES = {"metaspikformer_8_384": (96, 192, 384, 480), "metaspikformer_8_512": (128, 256, 512, 640),
             "metaspikformer_8_768": (192, 384, 768, 960)}


def build(embed_dim, *, time_steps: int, kd: bool = False, stage3_depth: int = 6, num_classes: int = 1000,
          in_channels: int = 3, num_heads: int = 8) -> Spiking_vit_MetaFormer:
    """``main_finetune.py``: ``models.__dict__[args.model](kd=args.kd)``, then ``model.T = args.time_steps``."""
    model = Spiking_vit_MetaFormer(in_channels, num_classes, tuple(embed_dim), num_heads, kd=kd,
                                   stage3_depth=stage3_depth)
    model.T = time_steps
    return model


def run(model: Spiking_vit_MetaFormer, x: torch.Tensor) -> torch.Tensor:
    """One upstream evaluation step: fresh neuron state, then the forward."""
    reset_net(model)
    return model(x)


def finetune_args(**overrides) -> argparse.Namespace:
    """The architecture-related part of ``main_finetune.py``'s parsed args (plus a few others it saves)."""
    args = dict(model="metaspikformer_8_384", model_mode="ms", time_steps=1, kd=False, nb_classes=1000,
                input_size=224, batch_size=64, epochs=200, lr=None, blr=6e-4, drop_path=0.1,
                data_path="/raid/ligq/imagenet1-k/", output_dir="./output_dir", finetune="", dist_eval=True)
    args.update(overrides)
    return argparse.Namespace(**args)


def save_like_upstream(path, model: nn.Module, args: argparse.Namespace, epoch: int = 199) -> None:
    """``util/misc.py::save_model`` (no loss_scaler=None branch): ``model, optimizer, epoch, scaler, args``."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                           "_growth_tracker": 0},
                "args": args}, path)


def active_weights(model: nn.Module, seed: int = 0) -> nn.Module:
    """Randomise every weight and BN statistic (the same for any model with the same module paths) so that
    every neuron of a small model fires at a moderate rate, the attention's threshold included."""
    g = torch.Generator().manual_seed(seed)

    def fill(t: torch.Tensor, fn) -> None:
        t.copy_(fn(torch.empty(t.shape).normal_(generator=g), torch.empty(t.shape).uniform_(generator=g)))

    with torch.no_grad():
        for _, m in sorted(model.named_modules(), key=lambda item: item[0]):
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                fill(m.weight, lambda n, u: u * 0.5 + 0.75)
                fill(m.bias, lambda n, u: n * 0.3 + 0.4)
                fill(m.running_mean, lambda n, u: n * 0.1)
                fill(m.running_var, lambda n, u: u * 0.5 + 0.75)
            elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                fill(m.weight, lambda n, u: n * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    fill(m.bias, lambda n, u: n * 0.3)
    return model.eval()

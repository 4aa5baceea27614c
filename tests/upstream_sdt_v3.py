"""Test support: a re-derivation of upstream SDT-V3 ``Model_Base``'s eval forward (BICLab/Spike-Driven-Transformer-V3
``SDT_V3/Classification/Model_Base/models.py``), written functionally over an upstream state_dict, independent of
``snncompile.nn.sdt_v3``; and checkpoint files written as upstream ``main_finetune.py`` writes them.

Every activation (``MultiSpike``) is recorded by its upstream module path as integer levels 0..4.
"""
from __future__ import annotations

import argparse
import math
import re

import torch
import torch.nn.functional as F

from snncompile.config import ModelConfig
from snncompile.nn.backbones import build_model


class UpstreamSDTV3:
    """Upstream's forward over ``state_dict`` (keys without prefix), eval mode, float32.

    ``half_up`` replaces ``torch.round`` by ``floor(x + 0.5)`` (Model_Large's rounding), to show that the
    examples meet exact halves.
    """

    def __init__(self, state_dict: dict, num_heads: int = 8, half_up: bool = False):
        self.sd = state_dict
        self.num_heads = num_heads
        self.half_up = half_up
        self.levels: dict[str, torch.Tensor] = {}

    # -- layers -------------------------------------------------------------------------------------
    def spike(self, name: str, x: torch.Tensor, norm: int = 4) -> torch.Tensor:
        c = torch.clamp(x, min=0, max=4)
        q = torch.floor(c + 0.5) if self.half_up else torch.round(c)
        self.levels[name] = q.to(torch.int64)
        return q / norm

    def bn(self, name: str, x: torch.Tensor) -> torch.Tensor:
        s = self.sd
        return F.batch_norm(x, s[f"{name}.running_mean"], s[f"{name}.running_var"], s[f"{name}.weight"],
                            s[f"{name}.bias"], False, 0.1, 1e-5)

    def conv(self, name: str, x: torch.Tensor, stride: int = 1, groups: int = 1) -> torch.Tensor:
        w = self.sd[f"{name}.weight"]
        return F.conv2d(x, w, self.sd.get(f"{name}.bias"), stride, w.shape[-1] // 2, 1, groups)

    def seq_conv_bn(self, name: str, x: torch.Tensor, groups: int = 1) -> torch.Tensor:
        """``nn.Sequential(Conv2d(bias=False), BatchNorm2d)``: keys ``name.0`` / ``name.1``."""
        return self.bn(f"{name}.1", self.conv(f"{name}.0", x, groups=groups))

    # -- modules ------------------------------------------------------------------------------------
    def sep_conv(self, p: str, x: torch.Tensor) -> torch.Tensor:
        x = self.seq_conv_bn(f"{p}.pwconv1", self.spike(f"{p}.spike1", x))
        x = self.spike(f"{p}.spike2", x)
        x = self.seq_conv_bn(f"{p}.dwconv", x, groups=x.shape[1])
        return self.seq_conv_bn(f"{p}.pwconv2", self.spike(f"{p}.spike3", x))

    def conv_block(self, p: str, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = self.sep_conv(f"{p}.Conv", x) + x
        feat = x
        x = self.bn(f"{p}.bn1", self.conv(f"{p}.conv1", self.spike(f"{p}.spike1", x)))
        x = self.spike(f"{p}.spike2", x)
        x = self.bn(f"{p}.bn2", self.conv(f"{p}.conv2", x)).reshape(b, c, h, w)
        return feat + x

    def attention(self, p: str, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n, heads = h * w, self.num_heads
        x = self.spike(f"{p}.head_spike", x)

        def per_head(t: torch.Tensor) -> torch.Tensor:  # [B, C', H, W] -> [B, heads, N, C'/heads]
            width = t.shape[1]
            return t.flatten(2).transpose(-1, -2).reshape(b, n, heads, width // heads).permute(0, 2, 1, 3)

        q = per_head(self.spike(f"{p}.q_spike", self.seq_conv_bn(f"{p}.q_conv", x)))
        k = per_head(self.spike(f"{p}.k_spike", self.seq_conv_bn(f"{p}.k_conv", x)))
        v = per_head(self.spike(f"{p}.v_spike", self.seq_conv_bn(f"{p}.v_conv", x)))
        c_v = v.shape[1] * v.shape[3]
        scale = (c // heads) ** -0.5
        attn = q @ k.transpose(-2, -1)
        attn = (attn @ v) * (scale * 2)
        attn = self.spike(f"{p}.attn_spike", attn.transpose(2, 3).reshape(b, c_v, n))
        return self.seq_conv_bn(f"{p}.proj_conv", attn.reshape(b, c_v, h, w))

    def mlp(self, p: str, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = self.spike(f"{p}.fc1_spike", x.flatten(2))
        x = self.bn(f"{p}.fc1_bn", F.conv1d(x, self.sd[f"{p}.fc1_conv.weight"], self.sd[f"{p}.fc1_conv.bias"]))
        x = self.spike(f"{p}.fc2_spike", x)
        x = self.bn(f"{p}.fc2_bn", F.conv1d(x, self.sd[f"{p}.fc2_conv.weight"], self.sd[f"{p}.fc2_conv.bias"]))
        return x.reshape(b, c, h, w)

    def transformer_block(self, p: str, x: torch.Tensor) -> torch.Tensor:
        x = x + self.sep_conv(f"{p}.conv", x)
        x = x + self.attention(f"{p}.attn", x)
        return x + self.mlp(f"{p}.mlp", x)

    def downsample(self, p: str, x: torch.Tensor, stride: int, first: bool = False) -> torch.Tensor:
        if not first:
            x = self.spike(f"{p}.encode_spike", x)
        return self.bn(f"{p}.encode_bn", self.conv(f"{p}.encode_conv", x, stride=stride))

    def blocks(self, stage: str) -> list[str]:
        found = {int(m.group(1)) for k in self.sd if (m := re.match(rf"{stage}\.(\d+)\.", k))}
        return [f"{stage}.{i}" for i in sorted(found)]

    @torch.no_grad()
    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        self.levels = {}
        x = self.downsample("downsample1_1", image, 2, first=True)
        x = self.conv_block("ConvBlock1_1.0", x)
        x = self.downsample("downsample1_2", x, 2)
        x = self.conv_block("ConvBlock1_2.0", x)
        x = self.downsample("downsample2", x, 2)
        x = self.conv_block("ConvBlock2_1.0", x)
        x = self.conv_block("ConvBlock2_2.0", x)
        x = self.downsample("downsample3", x, 2)
        for p in self.blocks("block3"):
            x = self.transformer_block(p, x)
        x = self.downsample("downsample4", x, 1)
        for p in self.blocks("block4"):
            x = self.transformer_block(p, x)
        x = self.spike("spike", x.flatten(2).mean(2), norm=1)
        return F.linear(x, self.sd["head.weight"], self.sd["head.bias"])


def v3_cfg(**kw) -> ModelConfig:
    """The spec's ``sdtv3_base`` example (embed_dim 8,16,32,40; 8 heads; 6 + 2 blocks), smaller images by default."""
    base = dict(backbone="sdt-v3", img_size=32, in_channels=3, num_classes=10, num_heads=8, mlp_ratio=4,
                stage_dims="8,16,32,40", stage_layers="6,2", time_steps=1)
    base.update(kw)
    return ModelConfig(**base)


def trained_like_v3(cfg: ModelConfig, seed: int = 0):
    """A model whose parameters and BN statistics are random but keep activations spread over levels 0..4
    (BN scales and shifts chosen so that most pre-activations fall in [-1, 5])."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                t.fill_(7)
            elif name.endswith("running_var"):
                t.copy_(torch.rand_like(t) * 0.5 + 0.75)
            elif name.endswith("running_mean"):
                t.copy_(torch.randn_like(t) * 0.2)
            elif re.search(r"(bn\d?|\.1|_bn)\.weight$", name):
                t.copy_(torch.rand_like(t) * 1.5 + 0.5)
            elif re.search(r"(bn\d?|\.1|_bn)\.bias$", name):
                t.copy_(torch.rand_like(t) * 2.0)
            else:
                fan_in = t[0].numel() if t.dim() > 1 else 1
                t.copy_(torch.randn_like(t) * (2.0 / math.sqrt(fan_in)))
    return model.eval()


def mae_args(**overrides) -> argparse.Namespace:
    """``args`` as Model_Base ``main_finetune.py``'s parser leaves them (architecture-related fields)."""
    args = dict(model="Efficient_Spiking_Transformer_n", model_mode="ms", time_steps=1, nb_classes=1000,
                input_size=32, eval=True, batch_size=64, data_path="/data/imagenet", kd=None)
    args.update(overrides)
    args = {k: v for k, v in args.items() if v is not None}
    return argparse.Namespace(**args)


def write_mae(path, model, args: argparse.Namespace) -> None:
    """Write ``model`` as Model_Base's ``util/misc.py::save_model`` does (``model``, ``optimizer``, ``epoch``,
    ``scaler``, ``args``)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 299,
                "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                           "_growth_tracker": 0},
                "args": args}, path)

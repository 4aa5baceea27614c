"""Test support: the three Spikformer code variants re-derived from their upstream forward passes
(github.com/ZK-Zhou/spikformer @ 6212689: cifar10/, cifar10dvs/, imagenet/ model.py), and their checkpoints as
upstream's training scripts write them.

Written from the upstream semantics (backbone_checkpoints.md, models.md §4), independently of
``snncompile.nn``: module paths and parameter names are upstream's (the unused LayerNorms and ``pos_embed`` are
there too), every tensor goes through the layouts and float operation orders of upstream's code (tokens-last
Linear and BatchNorm1d on its transpose in cifar10; Conv1d in cifar10dvs and imagenet attention; the three SSA
product orders), and every LIF records its output under its module path.
"""
from __future__ import annotations

import argparse
import io
import zipfile

import numpy as np
import torch
from torch import nn


class UpstreamLIF(nn.Module):
    """SpikingJelly 0.0.0.0.12 ``MultiStepLIFNode(tau=2, v_reset=0, decay_input=True)`` in eval, written out."""

    def __init__(self, v_threshold: float = 1.0):
        super().__init__()
        self.v_threshold = v_threshold
        self.last: torch.Tensor | None = None
        self.threshold_hits = 0  # charges exactly at the threshold in the last forward (they fire: ">=")

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        v = torch.zeros_like(x_seq[0])
        out = []
        self.threshold_hits = 0
        for x in x_seq:
            h = v + (x - (v - 0.0)) / 2.0
            self.threshold_hits += int((h == self.v_threshold).sum())
            spike = (h - self.v_threshold >= 0).to(x.dtype)
            v = (1.0 - spike) * h + spike * 0.0
            out.append(spike)
        self.last = torch.stack(out)
        return self.last


def _pool(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class UpstreamSPS(nn.Module):
    def __init__(self, in_channels: int, dim: int, pools: tuple[bool, ...]):
        super().__init__()
        widths = [in_channels, dim // 8, dim // 4, dim // 2, dim]
        self.pools = pools
        for i, s in enumerate(["", "1", "2", "3"]):
            setattr(self, f"proj_conv{s}", nn.Conv2d(widths[i], widths[i + 1], 3, 1, 1, bias=False))
            setattr(self, f"proj_bn{s}", nn.BatchNorm2d(widths[i + 1]))
            setattr(self, f"proj_lif{s}", UpstreamLIF())
        self.rpe_conv = nn.Conv2d(dim, dim, 3, 1, 1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(dim)
        self.rpe_lif = UpstreamLIF()

    def forward(self, x: torch.Tensor, variant: str) -> torch.Tensor:
        """[T, B, C, H, W] -> cifar10: [T, B, N, D]; cifar10dvs: [T, B, D, N]; imagenet: [T, B, D, Hs, Ws]."""
        T, B = x.shape[:2]
        x = x.flatten(0, 1)
        for i, s in enumerate(["", "1", "2", "3"]):
            y = getattr(self, f"proj_bn{s}")(getattr(self, f"proj_conv{s}")(x))
            x = getattr(self, f"proj_lif{s}")(y.reshape(T, B, *y.shape[1:]).contiguous()).flatten(0, 1).contiguous()
            if self.pools[i]:
                x = _pool(x)
        Hs, Ws = x.shape[-2:]
        feat = x.reshape(T, B, -1, Hs, Ws).contiguous()
        rpe = self.rpe_lif(self.rpe_bn(self.rpe_conv(x)).reshape(T, B, -1, Hs, Ws).contiguous())
        if variant == "cifar10dvs":  # x + x_rpe on [T*B, ...], then [T, B, D, N]
            return (x + rpe.flatten(0, 1)).reshape(T, B, -1, Hs * Ws).contiguous()
        out = rpe + feat
        return out.flatten(-2).transpose(-1, -2) if variant == "cifar10" else out


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[T, B, N, D] -> [T, B, H, N, D/H]."""
    T, B, N, D = x.shape
    return x.reshape(T, B, N, heads, D // heads).permute(0, 1, 3, 2, 4).contiguous()


class UpstreamSSA(nn.Module):
    def __init__(self, dim: int, heads: int, variant: str):
        super().__init__()
        self.heads, self.variant = heads, variant
        for name in ("q", "k", "v", "proj"):
            if variant == "cifar10":
                setattr(self, f"{name}_linear", nn.Linear(dim, dim))
            else:
                setattr(self, f"{name}_conv", nn.Conv1d(dim, dim, 1, 1, bias=name == "proj"))
            setattr(self, f"{name}_bn", nn.BatchNorm1d(dim))
            setattr(self, f"{name}_lif", UpstreamLIF())
        self.attn_lif = UpstreamLIF(0.5)
        if variant == "cifar10dvs":
            self.res_lif = UpstreamLIF()  # registered, never called upstream

    def _tokens_last(self, name: str, x2: torch.Tensor, T: int, B: int) -> torch.Tensor:
        """cifar10: Linear on [T*B, N, D], BatchNorm1d on the transpose, LIF on [T, B, N, D]."""
        y = getattr(self, f"{name}_linear")(x2)
        y = getattr(self, f"{name}_bn")(y.transpose(-1, -2)).transpose(-1, -2)
        return getattr(self, f"{name}_lif")(y.reshape(T, B, *x2.shape[1:]).contiguous())

    def _channels_first(self, name: str, x2: torch.Tensor, T: int, B: int) -> torch.Tensor:
        """cifar10dvs, imagenet: Conv1d + BatchNorm1d on [T*B, D, N], LIF on [T, B, D, N]."""
        y = getattr(self, f"{name}_bn")(getattr(self, f"{name}_conv")(x2))
        return getattr(self, f"{name}_lif")(y.reshape(T, B, *x2.shape[1:]).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.variant == "cifar10":
            T, B, N, D = x.shape
            x2 = x.flatten(0, 1)
            q, k, v = (_heads(self._tokens_last(n, x2, T, B), self.heads) for n in "qkv")
            out = (q @ k.transpose(-2, -1)) * 0.125 @ v
            out = self.attn_lif(out.transpose(2, 3).reshape(T, B, N, D).contiguous())
            return self._tokens_last("proj", out.flatten(0, 1), T, B)
        shape = x.shape
        x = x.flatten(3)
        T, B, D, N = x.shape
        x2 = x.flatten(0, 1)
        q, k, v = (_heads(self._channels_first(n, x2, T, B).transpose(-1, -2), self.heads) for n in "qkv")
        if self.variant == "cifar10dvs":
            out = (q @ k.transpose(-2, -1) @ v) * 0.25
        else:
            out = (q @ (k.transpose(-2, -1) @ v)) * 0.125
        out = self.attn_lif(out.transpose(3, 4).reshape(T, B, D, N).contiguous())
        y = self.proj_bn(self.proj_conv(out.flatten(0, 1)))
        return self.proj_lif(y.reshape(shape))


class UpstreamMLP(nn.Module):
    def __init__(self, dim: int, hidden: int, variant: str):
        super().__init__()
        self.variant = variant
        for name, (i, o) in (("fc1", (dim, hidden)), ("fc2", (hidden, dim))):
            if variant == "cifar10":
                setattr(self, f"{name}_linear", nn.Linear(i, o))
                setattr(self, f"{name}_bn", nn.BatchNorm1d(o))
            elif variant == "cifar10dvs":
                setattr(self, f"{name}_conv", nn.Conv1d(i, o, 1, 1))
                setattr(self, f"{name}_bn", nn.BatchNorm1d(o))
            else:
                setattr(self, f"{name}_conv", nn.Conv2d(i, o, 1, 1))
                setattr(self, f"{name}_bn", nn.BatchNorm2d(o))
            setattr(self, f"{name}_lif", UpstreamLIF())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        for name in ("fc1", "fc2"):
            if self.variant == "cifar10":
                y = getattr(self, f"{name}_linear")(x.flatten(0, 1))
                y = getattr(self, f"{name}_bn")(y.transpose(-1, -2)).transpose(-1, -2)
            else:
                y = getattr(self, f"{name}_bn")(getattr(self, f"{name}_conv")(x.flatten(0, 1)))
            x = getattr(self, f"{name}_lif")(y.reshape(T, B, *y.shape[1:]).contiguous())
        return x


class UpstreamBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int, variant: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)  # never read
        self.attn = UpstreamSSA(dim, heads, variant)
        self.norm2 = nn.LayerNorm(dim)  # never read
        self.mlp = UpstreamMLP(dim, dim * mlp_ratio, variant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class UpstreamSpikformer(nn.Module):
    """``variant``: cifar10, cifar10dvs or imagenet. Static input [B, C, H, W] (repeated T times; imagenet's T is
    4 whatever ``time_steps`` says, as upstream) or, cifar10dvs, events [B, T, C, H, W]."""

    def __init__(self, variant: str, *, dim: int, heads: int, layers: int, mlp_ratio: int = 4,
                 in_channels: int = 3, num_classes: int = 10, img_size: int = 32, time_steps: int = 4):
        super().__init__()
        self.variant, self.T = variant, (4 if variant == "imagenet" else time_steps)
        pools = (False, False, True, True) if variant == "cifar10" else (True,) * 4
        self.patch_embed = UpstreamSPS(in_channels, dim, pools)
        if variant == "cifar10dvs":
            tokens = (img_size // 16) ** 2
            self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))  # never read
        self.block = nn.ModuleList(UpstreamBlock(dim, heads, mlp_ratio, variant) for _ in range(layers))
        if variant == "cifar10dvs":
            self.norm = nn.LayerNorm(dim)  # never read
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.variant == "cifar10dvs":
            x = x.permute(1, 0, 2, 3, 4)
        else:
            x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        x = self.patch_embed(x, self.variant)
        for blk in self.block:
            x = blk(x)
        x = {"cifar10": lambda t: t.mean(2), "cifar10dvs": lambda t: t.mean(3),
             "imagenet": lambda t: t.flatten(3).mean(3)}[self.variant](x)
        return self.head(x.mean(0))

    def spikes(self) -> dict[str, torch.Tensor]:
        """The last forward's output of every LIF that ran, by module path."""
        return {n: m.last for n, m in self.named_modules() if isinstance(m, UpstreamLIF) and m.last is not None}


def randomised(model: nn.Module, sample: torch.Tensor, seed: int = 0, keep: tuple[str, ...] = ()) -> nn.Module:
    """``model`` with random weights (but those whose names contain one of ``keep``) and every BN's running
    statistics those of its input on ``sample`` (then affine ``1 + 0.2 r``, bias ``1 + 0.3 r``), so that every
    neuron layer fires often; in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point() and not any(k in name for k in keep):
                t.copy_(torch.randn(t.shape, generator=g) * 0.3)
        bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for m in bns:
            m.momentum = 1.0
        model.train()(sample)
        for m in bns:
            m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
            m.bias.copy_(1 + 0.3 * torch.randn(m.bias.shape, generator=g))
            m.momentum = 0.1
    return model.eval()


def _optimizer_state(model: nn.Module) -> dict:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return optimizer.state_dict()


def timm_args(**fields) -> argparse.Namespace:
    base = dict(model="spikformer", dataset="torch/cifar10", eval_metric="top1", patch_size=4, lr=5e-4,
                epochs=300, device="cuda")
    base.update(fields)
    return argparse.Namespace(**base)


def write_timm(path, model: nn.Module, args: argparse.Namespace, *, cuda_tags: bool = False):
    """As timm's CheckpointSaver (Spikformer cifar10/ and imagenet/ train.py) writes it."""
    torch.save({"epoch": 299, "arch": args.model, "state_dict": model.state_dict(),
                "optimizer": _optimizer_state(model), "version": 2, "args": args,
                "amp_scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                               "growth_interval": 2000, "_growth_tracker": 0},
                "metric": np.float64(95.19)}, path)
    return _as_gpu_file(path) if cuda_tags else path


def write_torchvision(path, model: nn.Module, args: argparse.Namespace, *, cuda_tags: bool = False):
    """As Spikformer cifar10dvs/train.py (the torchvision reference script) writes it."""
    torch.save({"model": model.state_dict(), "optimizer": _optimizer_state(model),
                "lr_scheduler": {"T_max": 64, "eta_min": 0, "base_lrs": [0.1], "last_epoch": 10,
                                 "_step_count": 11, "verbose": False, "_get_lr_called_within_step": False,
                                 "_last_lr": [0.05]},
                "epoch": 10, "args": args, "max_test_acc1": 80.9, "test_acc5_at_max_test_acc1": 99.1}, path)
    return _as_gpu_file(path) if cuda_tags else path


def _as_gpu_file(path):
    """Rewrite a torch.save file so that every storage is tagged ``cuda:0``, as a file saved on a GPU is."""
    cpu, cuda = b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"
    with zipfile.ZipFile(path) as zf:
        records = [(info, zf.read(info.filename)) for info in zf.infolist()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for info, data in records:
            if info.filename.endswith("data.pkl"):
                assert cpu in data
                data = data.replace(cpu, cuda)
            zf.writestr(info, data)
    with open(path, "wb") as f:
        f.write(buffer.getvalue())
    return path

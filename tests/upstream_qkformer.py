"""Independent re-derivation of the upstream QKFormer forward pass (test support only).

Re-derives ``zhouchenlin2096/QKFormer`` @ ``c2a00e8e`` (model code unchanged since 2024-10): ``cifar10/model.py``
(factory ``QKFormer`` -> ``spiking_transformer``, the timm entry point) and ``imagenet/qkformer.py``
(``hierarchical_spiking_transformer``, factories ``QKFormer_10_384/512/768``), in plain torch with the upstream
class and attribute names, so an upstream ``state_dict`` loads with ``strict=True`` and every neuron is hooked by
its upstream module path. Neurons are SpikingJelly's torch-backend ``MultiStepLIFNode`` as
``tests/upstream_reference.py`` re-derives it (upstream asks for the CuPy backend: the same expression; tau = 2
makes ``/ tau`` an exact halving).

Upstream behaviour kept on purpose (do not "fix" it here):

1. ``Spiking_Self_Attention.proj_lif`` (stage 3) runs on ``x.flatten(0, 1)`` = ``[T*B, C, N]``: the multi-step
   LIF takes T*B as its time axis, so the membrane carries from sample b to b+1 and from (t, B-1) to (t+1, 0). Its
   output keeps that shape. With B = 1 it is an ordinary T-step LIF (``snncompile.nn.qkformer`` is per sample).
2. cifar10: ``spiking_transformer`` ignores its ``num_heads`` argument (always 8 heads); stage depths 1, 1,
   depths - 2. imagenet: one ``num_heads`` for every stage; stage depths 1, 2, depths - 3.
3. Max-pools act on BN outputs (currents) before the LIF.
4. The SSA output is reshaped to ``(T, B, C, W, H)`` (W and H swapped; equal on square grids).
"""
from __future__ import annotations

import torch
from torch import nn

from upstream_reference import MultiStepLIFNode, reset_net


def _lif(v_threshold: float = 1.0) -> MultiStepLIFNode:
    return MultiStepLIFNode(tau=2.0, v_threshold=v_threshold, detach_reset=True, backend="cupy")


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)


class MLP(nn.Module):
    """cifar10 names its layers ``mlp1_*``/``mlp2_*``, imagenet ``fc1_*``/``fc2_*`` (``prefix``)."""

    def __init__(self, in_features, hidden_features, prefix):
        super().__init__()
        self.prefix = prefix
        setattr(self, f"{prefix}1_conv", nn.Conv2d(in_features, hidden_features, kernel_size=1, stride=1))
        setattr(self, f"{prefix}1_bn", nn.BatchNorm2d(hidden_features))
        setattr(self, f"{prefix}1_lif", _lif())
        setattr(self, f"{prefix}2_conv", nn.Conv2d(hidden_features, in_features, kernel_size=1, stride=1))
        setattr(self, f"{prefix}2_bn", nn.BatchNorm2d(in_features))
        setattr(self, f"{prefix}2_lif", _lif())
        self.c_hidden = hidden_features

    def forward(self, x):
        T, B, C, H, W = x.shape
        layer = lambda name: getattr(self, f"{self.prefix}{name}")  # noqa: E731
        x = layer("1_bn")(layer("1_conv")(x.flatten(0, 1))).reshape(T, B, self.c_hidden, H, W).contiguous()
        x = layer("1_lif")(x)
        x = layer("2_bn")(layer("2_conv")(x.flatten(0, 1))).reshape(T, B, C, H, W).contiguous()
        return layer("2_lif")(x)


def _declare_token_layers(m: nn.Module, dim: int, names: str) -> None:
    """Both attentions' layers, declared in upstream's order: ``{name}_conv`` (Conv1d k=1, no bias),
    ``{name}_bn``, ``{name}_lif`` per name, ``attn_lif`` (threshold 0.5), ``proj_conv`` (bias), ``proj_bn``,
    ``proj_lif``."""
    for name in names:
        setattr(m, f"{name}_conv", nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False))
        setattr(m, f"{name}_bn", nn.BatchNorm1d(dim))
        setattr(m, f"{name}_lif", _lif())
    m.attn_lif = _lif(0.5)
    m.proj_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1)
    m.proj_bn = nn.BatchNorm1d(dim)
    m.proj_lif = _lif()


class Token_QK_Attention(nn.Module):  # noqa: N801 - upstream name
    def __init__(self, dim, num_heads=8):
        super().__init__()
        self.num_heads = num_heads
        _declare_token_layers(self, dim, "qk")

    def _heads(self, name, flat, T, B, C, N):
        out = getattr(self, f"{name}_bn")(getattr(self, f"{name}_conv")(flat)).reshape(T, B, C, N)
        out = getattr(self, f"{name}_lif")(out)
        return out.unsqueeze(2).reshape(T, B, self.num_heads, C // self.num_heads, N)

    def forward(self, x):
        T, B, C, H, W = x.shape
        x = x.flatten(3)
        N = x.shape[-1]
        flat = x.flatten(0, 1)
        q = self._heads("q", flat, T, B, C, N)
        k = self._heads("k", flat, T, B, C, N)
        attn = self.attn_lif(torch.sum(q, dim=3, keepdim=True))
        x = torch.mul(attn, k).flatten(2, 3)
        x = self.proj_bn(self.proj_conv(x.flatten(0, 1))).reshape(T, B, C, H, W)
        return self.proj_lif(x)


class Spiking_Self_Attention(nn.Module):  # noqa: N801 - upstream name
    def __init__(self, dim, num_heads=8):
        super().__init__()
        self.num_heads = num_heads
        self.scale = 0.125
        _declare_token_layers(self, dim, "qkv")
        self.qkv_mp = nn.MaxPool1d(4)  # declared upstream, never called

    def _heads(self, name, flat, T, B, C, N):
        out = getattr(self, f"{name}_bn")(getattr(self, f"{name}_conv")(flat)).reshape(T, B, C, N).contiguous()
        out = getattr(self, f"{name}_lif")(out)
        h = self.num_heads
        return out.transpose(-1, -2).reshape(T, B, N, h, C // h).permute(0, 1, 3, 2, 4).contiguous()

    def forward(self, x):
        T, B, C, H, W = x.shape
        x = x.flatten(3)
        N = x.shape[-1]
        flat = x.flatten(0, 1)
        q, k, v = (self._heads(name, flat, T, B, C, N) for name in "qkv")
        x = k.transpose(-2, -1) @ v
        x = (q @ x) * self.scale
        x = x.transpose(3, 4).reshape(T, B, C, N).contiguous()
        x = self.attn_lif(x)
        x = x.flatten(0, 1)
        # quirk 1: proj_lif steps over the flattened [T*B] axis
        return self.proj_lif(self.proj_bn(self.proj_conv(x))).reshape(T, B, C, W, H)


class TokenSpikingTransformer(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio, mlp_prefix):
        super().__init__()
        self.tssa = Token_QK_Attention(dim, num_heads)
        self.mlp = MLP(dim, int(dim * mlp_ratio), mlp_prefix)

    def forward(self, x):
        x = x + self.tssa(x)
        return x + self.mlp(x)


class SpikingTransformer(nn.Module):
    """cifar10 calls the attention ``ssa``, imagenet ``attn``."""

    def __init__(self, dim, num_heads, mlp_ratio, mlp_prefix, attn_name):
        super().__init__()
        self.attn_name = attn_name
        setattr(self, attn_name, Spiking_Self_Attention(dim, num_heads))
        self.mlp = MLP(dim, int(dim * mlp_ratio), mlp_prefix)

    def forward(self, x):
        x = x + getattr(self, self.attn_name)(x)
        return x + self.mlp(x)


def _conv_bn(in_c, out_c, kernel, stride=1):
    return (nn.Conv2d(in_c, out_c, kernel_size=kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(out_c))


class PatchEmbedInit(nn.Module):
    def __init__(self, in_channels, embed_dims, imagenet):
        super().__init__()
        self.imagenet = imagenet
        self.proj_conv, self.proj_bn = _conv_bn(in_channels, embed_dims // 2, 3)
        self.proj1_conv, self.proj1_bn = _conv_bn(embed_dims // 2, embed_dims, 3)
        if imagenet:
            self.proj_maxpool = _pool()
            self.proj1_maxpool = _pool()
            self.proj2_conv, self.proj2_bn = _conv_bn(embed_dims, embed_dims, 3)
            self.proj2_lif = _lif()
        self.proj_lif = _lif()
        self.proj1_lif = _lif()
        self.proj_res_conv, self.proj_res_bn = _conv_bn(embed_dims // 2, embed_dims, 1, 2 if imagenet else 1)
        self.proj_res_lif = _lif()

    def forward(self, x):
        T, B, C, H, W = x.shape
        d = 2 if self.imagenet else 1  # each max-pool halves the grid
        x = self.proj_bn(self.proj_conv(x.flatten(0, 1)))
        if self.imagenet:
            x = self.proj_maxpool(x)
        x = self.proj_lif(x.reshape(T, B, -1, H // d, W // d).contiguous()).flatten(0, 1).contiguous()
        x_feat = x
        x = self.proj1_bn(self.proj1_conv(x))
        if self.imagenet:
            x = self.proj1_maxpool(x)
        x = self.proj1_lif(x.reshape(T, B, -1, H // d ** 2, W // d ** 2).contiguous())
        if self.imagenet:
            x = self.proj2_bn(self.proj2_conv(x.flatten(0, 1).contiguous())).reshape(T, B, -1, H // 4, W // 4)
            x = self.proj2_lif(x.contiguous())
        x_feat = self.proj_res_bn(self.proj_res_conv(x_feat))
        x_feat = self.proj_res_lif(x_feat.reshape(T, B, -1, H // d ** 2, W // d ** 2).contiguous())
        return x + x_feat


class PatchEmbeddingStage(nn.Module):
    """cifar10 max-pools ``proj4``'s BN output, imagenet ``proj3``'s."""

    def __init__(self, embed_dims, imagenet):
        super().__init__()
        self.imagenet = imagenet
        self.proj3_conv, self.proj3_bn = _conv_bn(embed_dims // 2, embed_dims, 3)
        if imagenet:
            self.proj3_maxpool = _pool()
        self.proj3_lif = _lif()
        self.proj4_conv, self.proj4_bn = _conv_bn(embed_dims, embed_dims, 3)
        if not imagenet:
            self.proj4_maxpool = _pool()
        self.proj4_lif = _lif()
        self.proj_res_conv, self.proj_res_bn = _conv_bn(embed_dims // 2, embed_dims, 1, 2)
        self.proj_res_lif = _lif()

    def forward(self, x):
        T, B, C, H, W = x.shape
        x = x.flatten(0, 1).contiguous()
        x_feat = x
        x = self.proj3_bn(self.proj3_conv(x))
        if self.imagenet:
            x = self.proj3_maxpool(x)
        side = (H // 2, W // 2) if self.imagenet else (H, W)
        x = self.proj3_lif(x.reshape(T, B, -1, *side).contiguous()).flatten(0, 1).contiguous()
        x = self.proj4_bn(self.proj4_conv(x))
        if not self.imagenet:
            x = self.proj4_maxpool(x)
        x = self.proj4_lif(x.reshape(T, B, -1, H // 2, W // 2).contiguous())
        x_feat = self.proj_res_bn(self.proj_res_conv(x_feat)).reshape(T, B, -1, H // 2, W // 2).contiguous()
        return x + self.proj_res_lif(x_feat)


class _Hierarchical(nn.Module):
    """``spiking_transformer`` (cifar10) and ``hierarchical_spiking_transformer`` (imagenet)."""

    def __init__(self, imagenet, T, in_channels, num_classes, embed_dims, num_heads, mlp_ratios, depths):
        super().__init__()
        self.T = T
        mlp_prefix, attn_name = ("fc", "attn") if imagenet else ("mlp", "ssa")
        stage_depths = (1, 2, depths - 3) if imagenet else (1, 1, depths - 2)
        widths = (embed_dims // 4, embed_dims // 2, embed_dims)
        self.patch_embed1 = PatchEmbedInit(in_channels, widths[0], imagenet)
        self.stage1 = nn.ModuleList(TokenSpikingTransformer(widths[0], num_heads, mlp_ratios, mlp_prefix)
                                    for _ in range(stage_depths[0]))
        self.patch_embed2 = PatchEmbeddingStage(widths[1], imagenet)
        self.stage2 = nn.ModuleList(TokenSpikingTransformer(widths[1], num_heads, mlp_ratios, mlp_prefix)
                                    for _ in range(stage_depths[1]))
        self.patch_embed3 = PatchEmbeddingStage(widths[2], imagenet)
        self.stage3 = nn.ModuleList(SpikingTransformer(widths[2], num_heads, mlp_ratios, mlp_prefix, attn_name)
                                    for _ in range(stage_depths[2]))
        self.head = nn.Linear(embed_dims, num_classes)

    def forward_features(self, x):
        for s in (1, 2, 3):
            x = getattr(self, f"patch_embed{s}")(x)
            for blk in getattr(self, f"stage{s}"):
                x = blk(x)
        return x.flatten(3).mean(3)

    def forward(self, x):
        x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        return self.head(self.forward_features(x).mean(0))


def spiking_transformer(in_channels=3, num_classes=10, embed_dims=384, num_heads=8, mlp_ratios=4, depths=4, T=4):
    """cifar10's model (``create_model('QKFormer', ...)``); ``num_heads`` is ignored as upstream (quirk 2)."""
    return _Hierarchical(False, T, in_channels, num_classes, embed_dims, 8, mlp_ratios, depths)


def hierarchical_spiking_transformer(T=4, in_channels=3, num_classes=1000, embed_dims=512, num_heads=8,
                                     mlp_ratios=4, depths=10):
    """imagenet's model (``QKFormer_10_512(T=args.time_step)`` and its siblings)."""
    return _Hierarchical(True, T, in_channels, num_classes, embed_dims, num_heads, mlp_ratios, depths)


def run(model: nn.Module, x: torch.Tensor, spikes: dict | None = None) -> torch.Tensor:
    """One upstream evaluation step (reset every neuron, forward); ``spikes[path]`` gets every neuron's output in
    upstream's own shape (stage-3 ``proj_lif``: ``[T*B, C, N]``)."""
    reset_net(model)
    handles = [] if spikes is None else [
        m.register_forward_hook(lambda _m, _i, out, name=name: spikes.__setitem__(name, out.detach()))
        for name, m in model.named_modules() if isinstance(m, MultiStepLIFNode)]
    try:
        with torch.no_grad():
            return model(x)
    finally:
        for h in handles:
            h.remove()

"""Structural export of the QKFormer model (``snncompile.nn.qkformer``), node by node from its module attributes.

Node names are the torch module paths (``stage1.0.tssa.attn_lif``), so spike traces map 1:1 to the upstream
neurons; derived nodes carry a suffix (``.channel_sum``, ``.mask``, ``.core``, ``.add``). The token convolutions
(upstream ``Conv1d`` k=1 + ``BatchNorm1d`` on ``[C, N]``) become 1x1 ``Conv2d`` + ``BatchNorm`` on the ``[C, H, W]``
map, the same sums. Token-QK attention is ``HeadChannelSum`` -> ``attn_lif`` -> ``HeadTokenMask``; SSA is a
``BlockLinearAttention`` (block 1, scale 0.125 after the product) -> ``attn_lif``.

The readout is ``head`` on each step's token mean, then the mean over T: upstream averages over T before the
(linear) head, so the logits agree to float32 rounding while every spike is identical.
"""
from __future__ import annotations

from torch import nn

from ..ir.ops import (Add, BatchNorm, BlockLinearAttention, Conv2d, HeadChannelSum, HeadTokenMask, Input, Output,
                      Repeat, TimeMean, TokenMean)
from ..nn.neurons import MultiStepLIF
from ..nn.qkformer import (MLP, PatchEmbedInit, PatchEmbeddingStage, QKFormer, QKFormerBlock, SpikingSelfAttention,
                           TokenQKAttention)
from .builder import Builder, array, batchnorm, conv2d, join, linear, maxpool2d, neuron
from .zoo import child, structural_problems

QKFORMER_METHODS = {QKFormer: ("forward", "forward_features", "time_major_input"), PatchEmbedInit: ("forward",),
                    PatchEmbeddingStage: ("forward",), TokenQKAttention: ("forward", "spikes", "project"),
                    SpikingSelfAttention: ("forward", "spikes", "project"), MLP: ("forward",),
                    QKFormerBlock: ("forward",)}
_LEAVES = (nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.MaxPool2d, nn.Linear, nn.ModuleList, MultiStepLIF)


def qkformer_problems(path: str, model: nn.Module) -> list[str]:
    """Everything inside a QKFormer model that the structural export would not reproduce."""
    return structural_problems(path, model, QKFORMER_METHODS, _LEAVES, family="a QKFormer", owner="QKFormer's")



def _unit(b: Builder, path: str, m: nn.Module, name: str, x: str) -> str:
    """``{name}_lif({name}_maxpool({name}_bn({name}_conv(x))))``, the pool (max of currents) where present."""
    x = conv2d(b, *child(path, m, f"{name}_conv", nn.Conv2d), x)
    x = batchnorm(b, *child(path, m, f"{name}_bn", nn.BatchNorm2d), x)
    if hasattr(m, f"{name}_maxpool"):
        x = maxpool2d(b, *child(path, m, f"{name}_maxpool", nn.MaxPool2d), x)
    return neuron(b, *child(path, m, f"{name}_lif", MultiStepLIF), x)


def _token_unit(b: Builder, path: str, m: nn.Module, name: str, x: str) -> str:
    """``{name}_lif({name}_bn({name}_conv(x)))`` with the k=1 ``Conv1d`` as a 1x1 ``Conv2d`` on the map."""
    cpath, conv = child(path, m, f"{name}_conv", nn.Conv1d)
    op = Conv2d(weight=array(conv.weight)[..., None], bias=None if conv.bias is None else array(conv.bias))
    x = b.add(cpath, op, x, source=(cpath, conv))
    bpath, bn = child(path, m, f"{name}_bn", nn.BatchNorm1d)
    x = b.add(bpath, BatchNorm(weight=array(bn.weight), bias=array(bn.bias), running_mean=array(bn.running_mean),
                               running_var=array(bn.running_var), eps=float(bn.eps)), x, source=(bpath, bn))
    return neuron(b, *child(path, m, f"{name}_lif", MultiStepLIF), x)


def patch_embed_init(b: Builder, path: str, m: PatchEmbedInit, x: str) -> str:
    x = _unit(b, path, m, "proj", x)
    feat = x
    x = _unit(b, path, m, "proj1", x)
    if m.imagenet:
        x = _unit(b, path, m, "proj2", x)
    return b.add(join(path, "add"), Add(), x, _unit(b, path, m, "proj_res", feat))


def patch_embedding_stage(b: Builder, path: str, m: PatchEmbeddingStage, x: str) -> str:
    y = _unit(b, path, m, "proj4", _unit(b, path, m, "proj3", x))
    return b.add(join(path, "add"), Add(), y, _unit(b, path, m, "proj_res", x))


def token_qk_attention(b: Builder, path: str, m: TokenQKAttention, x: str) -> str:
    q, k = (_token_unit(b, path, m, name, x) for name in "qk")
    counts = b.add(join(path, "channel_sum"), HeadChannelSum(heads=m.heads), q)
    a = neuron(b, *child(path, m, "attn_lif", MultiStepLIF), counts)
    return _token_unit(b, path, m, "proj", b.add(join(path, "mask"), HeadTokenMask(heads=m.heads), k, a))


def spiking_self_attention(b: Builder, path: str, m: SpikingSelfAttention, x: str) -> str:
    q, k, v = (_token_unit(b, path, m, name, x) for name in "qkv")
    core = BlockLinearAttention(heads=m.heads, block=1, scale=float(m.scale), scale_position="out")
    a = neuron(b, *child(path, m, "attn_lif", MultiStepLIF), b.add(join(path, "core"), core, q, k, v))
    return _token_unit(b, path, m, "proj", a)


def mlp(b: Builder, path: str, m: MLP, x: str) -> str:
    for i in (1, 2):
        x = _unit(b, path, m, f"{m.prefix}{i}", x)
    return x


def block(b: Builder, path: str, m: QKFormerBlock, x: str) -> str:
    attn = getattr(m, m.attention)
    convert = token_qk_attention if type(attn) is TokenQKAttention else spiking_self_attention
    x = b.add(join(path, "attn_add"), Add(), x, convert(b, *child(path, m, m.attention, type(attn)), x))
    return b.add(join(path, "add"), Add(), x, mlp(b, *child(path, m, "mlp", MLP), x))


def qkformer_graph(b: Builder, model: QKFormer, events: bool) -> str:
    """The whole model; returns the Output node. Static input: ``Input`` (static) + ``Repeat(T)``."""
    cfg = model.cfg
    shape = (cfg.in_channels, cfg.img_size, cfg.img_size)
    x = b.add("input", Input(shape=shape, time="stream" if events else "static"))
    if not events:
        x = b.add("input.repeat", Repeat(time_steps=cfg.time_steps), x)
    x = patch_embed_init(b, *child("", model, "patch_embed1", PatchEmbedInit), x)
    for s in (1, 2, 3):
        if s > 1:
            x = patch_embedding_stage(b, *child("", model, f"patch_embed{s}", PatchEmbeddingStage), x)
        for i, blk in enumerate(getattr(model, f"stage{s}")):
            x = block(b, *child(f"stage{s}", getattr(model, f"stage{s}"), str(i), QKFormerBlock), x)
    y = linear(b, *child("", model, "head", nn.Linear), b.add("token_mean", TokenMean(), x))
    return b.add("output", Output(), b.add("time_mean", TimeMean(), y))

"""Structural export of SDT-V3 (``snncompile.nn.sdt_v3``), node by node from the module attributes.

Node names are the torch module paths (``block3.0.attn.q_spike``), so every quantiser's levels map 1:1 to the
torch model's (and upstream's) activations; nodes without a module carry a suffix (``.add``, ``.product``). The
graph has one step (the model has no time axis): ``Input`` (static) + ``Repeat(1)``. Operand order of every Add
is torch's, so float sums are bit-identical; the MLP's 1-D 1x1 convolutions are 2-D 1x1 convolutions on the
``[C, H, W]`` map (the same products and sums).
"""
from __future__ import annotations

from torch import nn

from ..ir.ops import Add, BatchNorm, Conv2d, Input, MultiLevelAttention, MultiLevelSpike, Output, Repeat, TimeMean, \
    TokenMean
from ..nn.sdt_v3 import (MLP, ConvBlock, DownSampling, EfficientSpikingTransformer, LinearAttention, SepConv,
                         TransformerBlock)
from ..nn.sdt_v3 import MultiLevelSpike as TorchMultiLevelSpike
from .builder import Builder, ExportError, array, batchnorm, conv2d, join, linear, where
from .zoo import child, structural_problems

# Classes and the methods a subclass must not override (else it is a custom module).
V3_METHODS = {EfficientSpikingTransformer: ("forward", "forward_features", "check_input"),
              SepConv: ("forward",), ConvBlock: ("forward",), LinearAttention: ("forward", "heads"),
              MLP: ("forward",), TransformerBlock: ("forward",), DownSampling: ("forward",),
              TorchMultiLevelSpike: ("forward",)}
_INNER = (nn.Conv2d, nn.Conv1d, nn.BatchNorm2d, nn.BatchNorm1d, nn.Linear, nn.Sequential, nn.ModuleList)


def v3_problems(path: str, model: nn.Module) -> list[str]:
    """Everything inside the model that the structural export would not reproduce."""
    return structural_problems(path, model, V3_METHODS, _INNER, family="an SDT-V3", owner="the model's")



def spike(b: Builder, path: str, m: nn.Module, name: str, x: str) -> str:
    spath, s = child(path, m, name, TorchMultiLevelSpike)
    return b.add(spath, MultiLevelSpike(levels=s.levels, norm=float(s.norm)), x, source=(spath, s))


def conv_bn(b: Builder, path: str, m: nn.Module, name: str, x: str) -> str:
    """``Sequential(conv, BN)`` at ``path.name`` (nodes ``name.0``, ``name.1``)."""
    spath, seq = child(path, m, name, nn.Sequential)
    b.used.add(id(seq))
    x = conv2d(b, *child(spath, seq, "0", nn.Conv2d), x)
    return batchnorm(b, *child(spath, seq, "1", nn.BatchNorm2d), x)


def sep_conv(b: Builder, path: str, m: SepConv, x: str) -> str:
    x = conv_bn(b, path, m, "pwconv1", spike(b, path, m, "spike1", x))
    x = conv_bn(b, path, m, "dwconv", spike(b, path, m, "spike2", x))
    return conv_bn(b, path, m, "pwconv2", spike(b, path, m, "spike3", x))


def conv_block(b: Builder, path: str, m: ConvBlock, x: str) -> str:
    x = b.add(join(path, "Conv.add"), Add(), sep_conv(b, *child(path, m, "Conv", SepConv), x), x)
    y = conv2d(b, *child(path, m, "conv1", nn.Conv2d), spike(b, path, m, "spike1", x))
    y = batchnorm(b, *child(path, m, "bn1", nn.BatchNorm2d), y)
    y = conv2d(b, *child(path, m, "conv2", nn.Conv2d), spike(b, path, m, "spike2", y))
    return b.add(join(path, "add"), Add(), x, batchnorm(b, *child(path, m, "bn2", nn.BatchNorm2d), y))


def attention(b: Builder, path: str, m: LinearAttention, x: str) -> str:
    """``BN(proj(A(((Q K^T) V) * scale)))``; the scale is the float torch multiplies by."""
    s = spike(b, path, m, "head_spike", x)
    q, k, v = (spike(b, path, m, f"{n}_spike", conv_bn(b, path, m, f"{n}_conv", s)) for n in "qkv")
    core = b.add(join(path, "product"), MultiLevelAttention(heads=m.num_heads, scale=m.scale * 2), q, k, v)
    return conv_bn(b, path, m, "proj_conv", spike(b, path, m, "attn_spike", core))


def _conv1d_bn(b: Builder, path: str, m: MLP, conv: str, bn: str, x: str) -> str:
    """A 1-D 1x1 convolution (with bias) and BatchNorm1d as their 2-D forms on the ``[C, H, W]`` map."""
    cpath, c = child(path, m, conv, nn.Conv1d)
    if c.kernel_size != (1,) or c.stride != (1,) or c.padding != (0,) or c.groups != 1:
        raise ExportError([f"cannot export {where(cpath, c)}: only 1x1 token convolutions"])
    x = b.add(cpath, Conv2d(weight=array(c.weight)[..., None], bias=array(c.bias)), x, source=(cpath, c))
    npath, n = child(path, m, bn, nn.BatchNorm1d)
    return b.add(npath, BatchNorm(weight=array(n.weight), bias=array(n.bias), running_mean=array(n.running_mean),
                                  running_var=array(n.running_var), eps=float(n.eps)), x, source=(npath, n))


def mlp(b: Builder, path: str, m: MLP, x: str) -> str:
    x = _conv1d_bn(b, path, m, "fc1_conv", "fc1_bn", spike(b, path, m, "fc1_spike", x))
    return _conv1d_bn(b, path, m, "fc2_conv", "fc2_bn", spike(b, path, m, "fc2_spike", x))


def transformer_block(b: Builder, path: str, m: TransformerBlock, x: str) -> str:
    x = b.add(join(path, "conv.add"), Add(), x, sep_conv(b, *child(path, m, "conv", SepConv), x))
    x = b.add(join(path, "attn.add"), Add(), x, attention(b, *child(path, m, "attn", LinearAttention), x))
    return b.add(join(path, "mlp.add"), Add(), x, mlp(b, *child(path, m, "mlp", MLP), x))


def downsample(b: Builder, path: str, m: DownSampling, x: str) -> str:
    if hasattr(m, "encode_spike"):
        x = spike(b, path, m, "encode_spike", x)
    x = conv2d(b, *child(path, m, "encode_conv", nn.Conv2d), x)
    return batchnorm(b, *child(path, m, "encode_bn", nn.BatchNorm2d), x)


def efficient_transformer(b: Builder, model: EfficientSpikingTransformer, events: bool) -> str:
    """The whole model; returns the Output node. Static image input, one step."""
    if events:
        raise ExportError([f"cannot export {where('', model)}: sdt-v3 reads static images (no time axis), not "
                           "event streams"])
    cfg = model.cfg
    x = b.add("input", Input(shape=(cfg.in_channels, cfg.img_size, cfg.img_size), time="static"))
    x = b.add("input.repeat", Repeat(time_steps=1), x)
    x = downsample(b, *child("", model, "downsample1_1", DownSampling), x)
    stages = (("ConvBlock1_1", conv_block), ("downsample1_2", downsample), ("ConvBlock1_2", conv_block),
              ("downsample2", downsample), ("ConvBlock2_1", conv_block), ("ConvBlock2_2", conv_block),
              ("downsample3", downsample), ("block3", transformer_block), ("downsample4", downsample),
              ("block4", transformer_block))
    classes = {conv_block: ConvBlock, transformer_block: TransformerBlock, downsample: DownSampling}
    for name, convert in stages:
        stage = getattr(model, name)
        if isinstance(stage, nn.ModuleList):
            for i in range(len(stage)):
                x = convert(b, *child(name, stage, str(i), classes[convert]), x)
        else:
            x = convert(b, *child("", model, name, classes[convert]), x)
    y = spike(b, "", model, "spike", b.add("token_mean", TokenMean(), x))
    y = linear(b, *child("", model, "head", nn.Linear), y)
    return b.add("output", Output(), b.add("time_mean", TimeMean(), y))

"""Structural export of the Spike-Driven Transformer V2 (``snncompile.nn.sdt_v2``), node by node.

Node names are the torch module paths (``block3.0.attn.q_lif``), so spike traces map 1:1 to the upstream
neurons; nodes without a module of their own carry a suffix (``.add``, ``.core``). Every layer keeps the float
operations of the torch model (RepConv unfolded, its ``BNAndPad`` a ``BorderPad`` node; the MLP's Conv1d and
BatchNorm1d on tokens as the same 1x1 convolution and BatchNorm on the ``[C, H, W]`` map), so the graph's float
run is bit-identical to the model's; ``passes/fold_linear_chains.py`` folds the chains before lowering.
"""
from __future__ import annotations

from torch import nn

from ..ir.ops import (Add, BatchNorm, BlockLinearAttention, BorderPad, Conv2d, Input, Output, Repeat, Scale,
                      TimeMean, TokenMean)
from ..nn.neurons import MultiStepLIF
from ..nn.sdt_v2 import (MLP, Attention, Block, BNAndPad, ConvBlock, DownSampling, MetaSpikeFormer, RepConv,
                         SepConv)
from .builder import Builder, ExportError, array, batchnorm, conv2d, join, linear, neuron, where
from .zoo import structural_problems

# Backbone classes and the methods a subclass must not override (else it is a custom module).
V2_METHODS = {MetaSpikeFormer: ("forward", "forward_features", "time_major_input", "stages"),
              DownSampling: ("forward",), ConvBlock: ("forward",), SepConv: ("forward",), Block: ("forward",),
              Attention: ("forward",), MLP: ("forward",), RepConv: ("forward",),
              BNAndPad: ("forward", "border_values")}
_LEAVES = (nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.Linear, nn.Sequential, nn.ModuleList,
           MultiStepLIF)


def v2_problems(path: str, model: nn.Module) -> list[str]:
    """Everything inside the model that the structural export would not reproduce."""
    return structural_problems(path, model, V2_METHODS, _LEAVES, family="a sdt-v2", owner="the backbone's")


def _conv_bn(b: Builder, path: str, m: nn.Module, conv: str, bn: str, x: str) -> str:
    x = conv2d(b, join(path, conv), getattr(m, conv), x)
    return batchnorm(b, join(path, bn), getattr(m, bn), x)


def _conv1d_bn(b: Builder, path: str, m: MLP, conv: str, bn: str, x: str) -> str:
    """``Conv1d(k=1)`` + ``BatchNorm1d`` on ``[C, N]`` tokens as a 1x1 ``Conv2d`` + ``BatchNorm`` on the map."""
    c, n = getattr(m, conv), getattr(m, bn)
    op = Conv2d(weight=array(c.weight)[..., None], bias=None if c.bias is None else array(c.bias))
    x = b.add(join(path, conv), op, x, source=(join(path, conv), c))
    op = BatchNorm(weight=array(n.weight), bias=array(n.bias), running_mean=array(n.running_mean),
                   running_var=array(n.running_var), eps=float(n.eps))
    return b.add(join(path, bn), op, x, source=(join(path, bn), n))


def _lif(b: Builder, path: str, m: nn.Module, name: str, x: str) -> str:
    return neuron(b, join(path, name), getattr(m, name), x)


def downsample(b: Builder, path: str, m: DownSampling, u: str) -> str:
    if hasattr(m, "encode_lif"):
        u = _lif(b, path, m, "encode_lif", u)
    return _conv_bn(b, path, m, "encode_conv", "encode_bn", u)


def conv_block(b: Builder, path: str, m: ConvBlock, u: str) -> str:
    """``U = SepConv(U) + U``; ``U + BN(conv2(SN(BN(conv1(SN(U))))))``."""
    sp, sep = join(path, "Conv"), m.Conv
    x = _conv_bn(b, sp, sep, "pwconv1", "bn1", _lif(b, sp, sep, "lif1", u))
    x = conv2d(b, join(sp, "dwconv"), sep.dwconv, _lif(b, sp, sep, "lif2", x))
    u = b.add(join(path, "sep_add"), Add(), _conv_bn(b, sp, sep, "pwconv2", "bn2", x), u)
    x = _conv_bn(b, path, m, "conv1", "bn1", _lif(b, path, m, "lif1", u))
    return b.add(join(path, "add"), Add(), u, _conv_bn(b, path, m, "conv2", "bn2", _lif(b, path, m, "lif2", x)))


def rep_conv_bn(b: Builder, path: str, seq: nn.Sequential, x: str) -> str:
    """``BN(RepConv(x))``: conv1x1, BN, BorderPad(BN(0) as upstream computes it), depthwise 3x3, conv1x1, BN, BN."""
    body_path, body = join(path, "0.body"), seq[0].body
    x = conv2d(b, join(body_path, "0"), body[0], x)
    x = batchnorm(b, join(body_path, "1.bn"), body[1].bn, x)
    pad_path = join(body_path, "1")
    x = b.add(pad_path, BorderPad(pad=body[1].pad, value=array(body[1].border_values())), x,
              source=(pad_path, body[1]))
    for i in range(2):
        x = conv2d(b, join(body_path, f"2.{i}"), body[2][i], x)
    x = batchnorm(b, join(body_path, "2.2"), body[2][2], x)
    return batchnorm(b, join(path, "1"), seq[1], x)


def attention(b: Builder, path: str, m: Attention, u: str) -> str:
    """``U + BN(RepConv(attn_lif(Q (K^T V) * scale)))``."""
    s = _lif(b, path, m, "head_lif", u)
    q, k, v = (_lif(b, path, m, f"{n}_lif", rep_conv_bn(b, join(path, f"{n}_conv"), getattr(m, f"{n}_conv"), s))
               for n in "qkv")
    x = b.add(join(path, "core"), BlockLinearAttention(heads=m.num_heads, block=1, scale=float(m.scale),
                                                       scale_position="out"), q, k, v)
    a = _lif(b, path, m, "attn_lif", x)
    return b.add(join(path, "add"), Add(), u, rep_conv_bn(b, join(path, "proj_conv"), m.proj_conv, a))


def mlp(b: Builder, path: str, m: MLP, u: str) -> str:
    x = _conv1d_bn(b, path, m, "fc1_conv", "fc1_bn", _lif(b, path, m, "fc1_lif", u))
    y = _conv1d_bn(b, path, m, "fc2_conv", "fc2_bn", _lif(b, path, m, "fc2_lif", x))
    return b.add(join(path, "add"), Add(), u, y)


def block(b: Builder, path: str, m: Block, u: str) -> str:
    return mlp(b, join(path, "mlp"), m.mlp, attention(b, join(path, "attn"), m.attn, u))


_STAGE = {DownSampling: downsample, ConvBlock: conv_block, Block: block}


def meta_spikeformer(b: Builder, model: MetaSpikeFormer, events: bool) -> str:
    """The whole model; returns the Output node. Static input: ``Input`` (static) + ``Repeat(T)``."""
    cfg = model.cfg
    if events:
        raise ExportError([f"cannot export {where('', model)}: sdt-v2 takes static images, not event streams"])
    x = b.add("input", Input(shape=(cfg.in_channels, cfg.img_size, cfg.img_size), time="static"))
    u = b.add("input.repeat", Repeat(time_steps=cfg.time_steps), x)
    paths = {id(m): name for name, m in model.named_modules()}
    for stage in model.stages():
        u = _STAGE[type(stage)](b, paths[id(stage)], stage, u)
    s = neuron(b, "lif", model.lif, b.add("token_mean", TokenMean(), u))
    y = b.add("time_mean", TimeMean(), linear(b, "head", model.head, s))
    if cfg.kd_head:  # upstream's (mean_T head + mean_T head_kd) / 2; * 0.5 is / 2 exactly
        y_kd = b.add("time_mean_kd", TimeMean(), linear(b, "head_kd", model.head_kd, s))
        y = b.add("heads_mean", Scale(scale=0.5), b.add("heads_add", Add(), y, y_kd))
    return b.add("output", Output(), y)


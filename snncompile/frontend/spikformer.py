"""Structural export of the Spikformer backbone (``snncompile.nn.spikformer``, its three code variants).

Node names are the torch module paths (upstream's), so spike traces map 1:1 to upstream's neurons; the residual
adds are ``block.<i>.attn.add`` and ``block.<i>.mlp.add``, the stem's ``patch_embed.add``. Every token-wise
projection (Linear on tokens-last, Conv1d, Conv2d 1x1) becomes a 1x1 ``Conv2d`` on the ``[C, Hs, Ws]`` token grid,
and BatchNorm1d a ``BatchNorm`` over the same channels: the same sums as upstream's, possibly accumulated in
another order (a float32 rounding apart; the SEW residual stream they read is integer). The attention core is the
one of every backbone (:func:`snncompile.frontend.zoo.attention_core`).
"""
from __future__ import annotations

from torch import nn

from ..ir.ops import Add, BatchNorm, Conv2d, Output, TimeMean, TokenMean
from ..nn.attention import AttentionLUT, TemporalWindow as TorchWindow
from ..nn.spikformer import Spikformer, SpikformerAttention, SpikformerBlock, SpikformerMLP, SpikformerSPS
from .builder import NEURONS, Builder, ExportError, array, join, linear, where
from .zoo import (attention_core, child, conv_bn, model_input, neuron_of, pool, qkv_neurons,
                  structural_problems, window)

METHODS = {Spikformer: ("forward", "forward_features", "time_major_input"), SpikformerSPS: ("forward",),
           SpikformerAttention: ("forward", "_project", "attend", "qkv_spikes"), SpikformerMLP: ("forward",),
           SpikformerBlock: ("forward",)}
_INNER = (nn.Conv2d, nn.Conv1d, nn.Linear, nn.BatchNorm2d, nn.BatchNorm1d, nn.ReLU, nn.ModuleList, AttentionLUT,
          TorchWindow)
_TOKEN_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


def spikformer_problems(path: str, model: nn.Module) -> list[str]:
    return structural_problems(path, model, METHODS, NEURONS + _INNER)


def token_projection(b: Builder, path: str, m: nn.Module, layer: str, bn: str, x: str) -> str:
    """``bn(layer(x))`` of a token-wise layer as a 1x1 ``Conv2d`` (bias kept) and a ``BatchNorm``."""
    lpath, lin = child(path, m, layer, *_TOKEN_LAYERS)
    if isinstance(lin, nn.Conv2d) and tuple(lin.kernel_size) != (1, 1) or \
            isinstance(lin, nn.Conv1d) and tuple(lin.kernel_size) != (1,):
        raise ExportError([f"cannot export {where(lpath, lin)}: a token-wise layer has a kernel of 1"])
    weight = array(lin.weight).reshape(lin.weight.shape[0], -1, 1, 1)
    x = b.add(lpath, Conv2d(weight=weight, bias=None if lin.bias is None else array(lin.bias)), x,
              source=(lpath, lin))
    bpath, norm = child(path, m, bn, nn.BatchNorm1d, nn.BatchNorm2d)
    op = BatchNorm(weight=array(norm.weight), bias=array(norm.bias), running_mean=array(norm.running_mean),
                   running_var=array(norm.running_var), eps=float(norm.eps))
    return b.add(bpath, op, x, source=(bpath, norm))


def patch_embed(b: Builder, path: str, m: SpikformerSPS, x: str) -> str:
    """Four conv, BN, LIF stages, each OR-pooled after its neuron where ``pooling_stat`` says (nodes ``maxpool``,
    ``maxpool1``, ... as upstream's modules); ``rpe_lif(BN(rpe_conv(F))) + F``."""
    for i, suffix in enumerate(["", "1", "2", "3"]):
        x = conv_bn(b, path, m, f"proj_conv{suffix}", f"proj_bn{suffix}", x)
        x = neuron_of(b, path, m, f"proj_lif{suffix}", x)
        if m.pooling_stat[i] == "1":
            x = pool(b, join(path, f"maxpool{suffix}"), x, 2)
    rpe = neuron_of(b, path, m, "rpe_lif", conv_bn(b, path, m, "rpe_conv", "rpe_bn", x))
    return b.add(join(path, "add"), Add(), rpe, x)


def attention(b: Builder, path: str, m: SpikformerAttention, x: str) -> str:
    """``proj_lif(BN(W_proj A))`` with the shared core on Q, K, V = LIF(BN(W X)) (DS2TA: attenuated inputs)."""
    def project(name: str, y: str) -> str:
        if m.mode == "DS2TA":
            y = window(b, path, m, f"{name}_window", y)
        return token_projection(b, path, m, f"{name}_{m.kind}", f"{name}_bn", y)

    q, k, v = qkv_neurons(b, path, m, lambda name: project(name, x))
    return neuron_of(b, path, m, "proj_lif", project("proj", attention_core(b, path, m, q, k, v)))


def mlp(b: Builder, path: str, m: SpikformerMLP, x: str) -> str:
    for name in ("fc1", "fc2"):
        x = neuron_of(b, path, m, f"{name}_lif", token_projection(b, path, m, f"{name}_{m.kind}", f"{name}_bn", x))
    return x


def spikformer(b: Builder, model: Spikformer, events: bool) -> str:
    """The whole model; returns the Output node: ``head(mean_T(mean_tokens(X)))``."""
    x = patch_embed(b, *child("", model, "patch_embed", SpikformerSPS), model_input(b, model.cfg, events))
    for i, blk in enumerate(model.block):
        path, blk = child("block", model.block, str(i), SpikformerBlock)
        x = b.add(join(path, "attn.add"), Add(), x, attention(b, *child(path, blk, "attn", SpikformerAttention), x))
        x = b.add(join(path, "mlp.add"), Add(), x, mlp(b, *child(path, blk, "mlp", SpikformerMLP), x))
    y = b.add("time_mean", TimeMean(), b.add("token_mean", TokenMean(), x))
    return b.add("output", Output(), linear(b, *child("", model, "head", nn.Linear), y))

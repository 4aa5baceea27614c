"""Structural export of the zoo modules (``snncompile.nn.sdt``), node by node from the module attributes.

Node names are the torch module paths (``block.0.attn.q_lif``), so spike traces map 1:1 to the torch
neuron modules; nodes without a module of their own carry a suffix (``.erode``, ``.add``, ...). The
operand order of every Add is torch's, so float sums are bit-identical.
"""
from __future__ import annotations

from torch import nn

from ..ir.ops import (Add, BlockLinearAttention, Input, LUTAttention, MaxPool2d, Mul, Output, Repeat,
                      SpikeColumnSum, SpikeMask, TemporalWindow, TimeMean, TokenMean)
from ..ir.types import SPIKE
from ..nn.attention import AttentionLUT, TemporalWindow as TorchWindow
from ..nn.sdt import MLP, Block, SpikeDrivenTransformer, SpikingPatchSplitting, SpikingSelfAttention
from .builder import (NEURONS, Builder, ExportError, array, batchnorm, conv2d, join, leaf_problems, linear, neuron,
                      relu, same_behaviour, where)

# Zoo classes and the methods a subclass must not override (else it is a custom module).
ZOO_METHODS = {SpikeDrivenTransformer: ("forward", "forward_features", "time_major_input"),
               SpikingPatchSplitting: ("forward",), SpikingSelfAttention: ("forward", "_project"),
               MLP: ("forward",), Block: ("forward",)}
# Parameters that the forward never reads (upstream keeps them so checkpoints load): dropped on export.
DEAD = ("talking_heads",)
_INNER = (nn.Conv2d, nn.BatchNorm2d, nn.Linear, nn.ReLU, nn.ModuleList, AttentionLUT, TorchWindow)


def zoo_problems(path: str, model: nn.Module) -> list[str]:
    """Everything inside a zoo module that the structural export would not reproduce."""
    problems = []
    for name, m in model.named_modules():
        sub = join(path, name)
        if name.split(".")[-1] in DEAD and type(m) is nn.Conv1d:
            continue
        known = (type(m) in NEURONS or type(m) in _INNER
                 or any(same_behaviour(m, cls, meth) for cls, meth in ZOO_METHODS.items()))
        if not known:
            problems.append(f"cannot export {where(sub, m)}: replaces a zoo layer; the structural export "
                            "only knows the zoo's own modules")
        problems += leaf_problems(sub, m)
    return problems


def _child(path: str, m: nn.Module, name: str, *classes: type) -> tuple[str, nn.Module]:
    child = getattr(m, name)
    if not any(type(child) is c for c in classes):
        raise ExportError([f"cannot export {where(join(path, name), child)}: expected "
                           f"{' or '.join(c.__name__ for c in classes)}"])
    return join(path, name), child


def _neuron(b: Builder, path: str, m: nn.Module, name: str, x: str) -> str:
    return neuron(b, *_child(path, m, name, *NEURONS), x)


def _conv_bn(b: Builder, path: str, m: nn.Module, conv: str, bn: str, x: str) -> str:
    x = conv2d(b, *_child(path, m, conv, nn.Conv2d), x)
    return batchnorm(b, *_child(path, m, bn, nn.BatchNorm2d), x)


def _pool(b: Builder, name: str, x: str, stride: int) -> str:
    """3x3 max-pool, padding 1: the stem's downsampling (stride 2) and DVS erode (stride 1)."""
    mode = "or" if b.type(x).dtype == SPIKE else "max"
    return b.add(name, MaxPool2d(kernel=(3, 3), stride=(stride, stride), padding=(1, 1), mode=mode), x)


def patch_embed(b: Builder, path: str, m: SpikingPatchSplitting, x: str) -> str:
    """Stages 0-2: conv, BN, LIF, optional OR-pool; stage 3: conv, BN, optional max-pool on the real BN
    output ``F``; ``U0 = F + BN(rpe_conv(proj_lif3(F)))``. Pool nodes are named as upstream's modules
    (``maxpool``, ``maxpool1``, ...)."""
    for i, suffix in enumerate(["", "1", "2"]):
        x = _conv_bn(b, path, m, f"proj_conv{suffix}", f"proj_bn{suffix}", x)
        x = _neuron(b, path, m, f"proj_lif{suffix}", x)
        if m.pooling_stat[i] == "1":
            x = _pool(b, join(path, f"maxpool{suffix}"), x, 2)
    feat = _conv_bn(b, path, m, "proj_conv3", "proj_bn3", x)
    if m.pooling_stat[3] == "1":
        feat = _pool(b, join(path, "maxpool3"), feat, 2)
    rpe = _conv_bn(b, path, m, "rpe_conv", "rpe_bn", _neuron(b, path, m, "proj_lif3", feat))
    return b.add(join(path, "add"), Add(), feat, rpe)


def _window(b: Builder, path: str, m: SpikingSelfAttention, name: str, x: str) -> str:
    wpath, w = _child(path, m, name, TorchWindow)
    return b.add(wpath, TemporalWindow(weights=array(w.weights())), x, source=(wpath, w))


def attention(b: Builder, path: str, m: SpikingSelfAttention, u: str) -> str:
    """One attention branch plus its membrane shortcut ``u + BN(proj_conv(A))``."""
    cfg, mode, heads, dvs = m.cfg, m.mode, m.cfg.num_heads, m.cfg.dvs_mode
    p = lambda name: join(path, name)  # noqa: E731

    def project(name: str, x: str) -> str:
        if mode == "DS2TA":
            x = _window(b, path, m, f"{name}_window", x)
        return _conv_bn(b, path, m, f"{name}_conv", f"{name}_bn", x)

    s = _neuron(b, path, m, "shortcut_lif", u)
    q = _neuron(b, path, m, "q_lif", project("q", s))
    if mode == "A2OS2A":
        k = relu(b, *_child(path, m, "k_relu", nn.ReLU), project("k", s))
        v = _neuron(b, path, m, "v_ternary", project("v", s))
    else:
        k = _neuron(b, path, m, "k_lif", project("k", s))
        v = _neuron(b, path, m, "v_lif", project("v", s))
    if dvs:  # the SDT repository erodes K and V only, STAtten's code Q as well
        k, v = _pool(b, f"{k}.erode", k, 1), _pool(b, f"{v}.erode", v, 1)
        if mode != "SDT":
            q = _pool(b, f"{q}.erode", q, 1)

    if mode == "SDT":
        counts = b.add(p("column_sum"), SpikeColumnSum(heads=heads, erode=dvs), k, v)
        mask = _neuron(b, path, m, "talking_heads_lif", counts)
        a = b.add(p("mask"), SpikeMask(heads=heads, erode=dvs), q, mask)
    else:
        if mode == "DS2TA":
            lpath, lut = _child(path, m, "lut", AttentionLUT)
            x = b.add(lpath, LUTAttention(heads=heads, table=array(lut.table), scale=float(cfg.ds2ta_scale)),
                      q, k, v, source=(lpath, lut))
        else:
            block, scale, position = {"STAtten": (cfg.chunk_size, cfg.statten_scale, "kv"),
                                      "SSA": (1, cfg.ssa_scale, "out"),
                                      "A2OS2A": (1, 1.0, "out")}[mode]  # A2OS2A: x * 1.0 is exact
            x = b.add(p("core"), BlockLinearAttention(heads=heads, block=block, scale=float(scale),
                                                      scale_position=position), q, k, v)
        a = _neuron(b, path, m, "attn_lif", x)
        if dvs:  # A = A * P + P with P = erode(S)
            erode_s = _pool(b, f"{s}.erode", s, 1)
            a = b.add(p("mix_add"), Add(), b.add(p("mix_mul"), Mul(), a, erode_s), erode_s)
    return b.add(p("add"), Add(), u, project("proj", a))


def mlp(b: Builder, path: str, m: MLP, u: str) -> str:
    """``U + BN(fc2(SN(BN(fc1(SN(U))))))``, with the inner shortcut when hidden == D."""
    identity = u
    x = _conv_bn(b, path, m, "fc1_conv", "fc1_bn", _neuron(b, path, m, "fc1_lif", u))
    if m.inner_residual:
        x = identity = b.add(join(path, "inner_add"), Add(), identity, x)
    y = _conv_bn(b, path, m, "fc2_conv", "fc2_bn", _neuron(b, path, m, "fc2_lif", x))
    return b.add(join(path, "add"), Add(), y, identity)


def block(b: Builder, path: str, m: Block, u: str) -> str:
    u = attention(b, *_child(path, m, "attn", SpikingSelfAttention), u)
    return mlp(b, *_child(path, m, "mlp", MLP), u)


CONVERTERS = {SpikingPatchSplitting: patch_embed, SpikingSelfAttention: attention, MLP: mlp, Block: block}


def zoo_converter(m: nn.Module):
    """The converter of a zoo submodule usable inside an ``nn.Sequential``, or None."""
    for cls, convert in CONVERTERS.items():
        if same_behaviour(m, cls, ZOO_METHODS[cls]):
            return convert
    return None


def transformer(b: Builder, model: SpikeDrivenTransformer, events: bool) -> str:
    """The whole zoo model; returns the Output node. Static input: ``Input`` (static) + ``Repeat(T)``."""
    cfg = model.cfg
    shape = (cfg.in_channels, cfg.img_size, cfg.img_size)
    if events:
        x = b.add("input", Input(shape=shape, time="stream"))
    else:
        x = b.add("input.repeat", Repeat(time_steps=cfg.time_steps), b.add("input", Input(shape=shape, time="static")))
    u = patch_embed(b, *_child("", model, "patch_embed", SpikingPatchSplitting), x)
    for i, blk in enumerate(model.block):
        u = block(b, *_child("block", model.block, str(i), Block), u)
    y = _neuron(b, "", model, "head_lif", b.add("token_mean", TokenMean(), u))
    y = linear(b, *_child("", model, "head", nn.Linear), y)
    if not cfg.tet:
        y = b.add("time_mean", TimeMean(), y)
    return b.add("output", Output(), y)


def dead_parameters(model: nn.Module, b: Builder, dead: tuple[str, ...]) -> list[str]:
    """State-dict names of the parameters the export did not use; raises unless each belongs to a module named in
    ``dead`` (the backbone's parameters that upstream keeps but its forward never reads)."""
    unused = [(name, m) for name, m in model.named_modules()
              if id(m) not in b.used and next(m.parameters(recurse=False), None) is not None]
    unexpected = [f"cannot export {where(n, m)}: its parameters are not used by the export" for n, m in unused
                  if n.split(".")[-1] not in dead]
    if unexpected:
        raise ExportError(unexpected)
    return [f"{n}.{k}" for n, m in unused for k, _ in m.named_parameters(recurse=False)]

